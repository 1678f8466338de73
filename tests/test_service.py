"""The HTTP service, run for real: `humanmatting serve` on a free local port, real requests
(good photos, every kind of bad input, 16 at once), and the web page in headless Chromium."""

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from humanmatting.io import sample_image_path

PHOTO = sample_image_path().read_bytes()
MODEL = "likeunet_night_lite"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, *, content_type="application/octet-stream", method=None):
    """(status, headers, body bytes) of one request; 4xx / 5xx answers are returned too."""
    req = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None
                                                                   else "GET"))
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=120) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def multipart(fields):
    """A multipart/form-data body from {name: bytes (a file) or str (a field)}."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{name}.bin"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
            parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode() + value + b"\r\n")
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode())
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary}"


def png_of(image):
    return cv2.imencode(".png", image)[1].tobytes()


def decode(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a running `humanmatting serve` (stopped after the module)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "humanmatting", "serve", "--port", str(port), "--model",
             MODEL, "--models", MODEL, "likeunet_night", "--no-flip", "--scales", "1",
             "--no-refine", "--max-megabytes", "1", "--max-megapixels", "1", "--queue", "64"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                if request(base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.time() < deadline, "the service did not start: " + log.read_text()
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_photo_comes_back_in_every_format_at_its_size(server):
    status, headers, body = request(server + "/v1/matte?format=rgba", PHOTO)
    assert status == 200 and headers["content-type"] == "image/png"
    assert headers["x-model"] == MODEL
    rgba = decode(body)
    assert rgba.shape == (512, 512, 4)
    assert rgba[..., 3].min() == 0 and rgba[..., 3].max() == 255   # a person and background
    body, kind = multipart({"image": PHOTO, "format": "alpha"})
    status, _, alpha = request(server + "/v1/matte", body, content_type=kind)
    alpha = decode(alpha)
    assert status == 200 and alpha.shape == (512, 512)
    np.testing.assert_array_equal(alpha, rgba[..., 3])       # one model, one answer
    status, _, green = request(server + "/v1/matte?format=composite&background=green", PHOTO)
    green = cv2.cvtColor(decode(green), cv2.COLOR_BGR2RGB)
    assert status == 200 and green.shape == (512, 512, 3)
    assert (green[alpha == 0] == (0, 177, 64)).all()
    background = np.zeros((100, 80, 3), np.uint8)
    background[..., 2] = 255   # red, in OpenCV's BGR
    body, kind = multipart({"image": PHOTO, "background": png_of(background)})
    status, _, red = request(server + "/v1/matte?format=composite", body, content_type=kind)
    red = cv2.cvtColor(decode(red), cv2.COLOR_BGR2RGB)
    assert status == 200 and (red[alpha == 0] == (255, 0, 0)).all()
    status, _, mask = request(server + "/v1/matte?format=mask&post_process=true", PHOTO)
    assert status == 200 and set(np.unique(decode(mask))) <= {0, 255}
    status, _, other = request(server + "/v1/matte?format=alpha&model=likeunet_night", PHOTO)
    assert status == 200 and decode(other).shape == (512, 512)


BAD = [
    ("not an image", lambda: (b"hello, world" * 10, None, ""), 400, "not a readable image"),
    ("empty", lambda: (b"", None, ""), 400, "empty"),
    ("truncated JPEG", lambda: (PHOTO[: len(PHOTO) // 2], None, ""), 400, "truncated JPEG"),
    ("too many bytes", lambda: (os.urandom(1_200_000), None, ""), 413, "limit"),
    ("too many pixels", lambda: (png_of(np.zeros((1100, 1000, 3), np.uint8)), None, ""), 413,
     "1000x1100 is more than 1000000 pixels"),
    ("unknown model", lambda: (PHOTO, None, "model=nope"), 400, "unknown model 'nope'"),
    ("bad format", lambda: (PHOTO, None, "format=jpeg"), 400, "format='jpeg'"),
    ("bad colour", lambda: (PHOTO, None, "format=composite&background=sky"), 400,
     "not a colour"),
    ("colour without composite", lambda: (PHOTO, None, "background=red"), 400,
     "format=composite"),
    ("bad boolean", lambda: (PHOTO, None, "refine=maybe"), 400, "must be true or false"),
    ("unknown option", lambda: (PHOTO, None, "colour=red"), 400, "unknown option 'colour'"),
    ("a trimap for a model without one", lambda: (*multipart({
        "image": PHOTO, "trimap": png_of(np.full((512, 512), 128, np.uint8))}), ""), 400,
     "takes no trimap"),
    ("a form without an image", lambda: (*multipart({"picture": PHOTO}), ""), 400,
     "unknown file field 'picture'"),
    ("a broken form", lambda: (b"--x\r\nnonsense", "multipart/form-data; boundary=x", ""), 400,
     ""),
]


@pytest.mark.slow
@pytest.mark.parametrize("what, make, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_json_4xx_naming_the_problem(server, what, make, status, message):
    body, kind, query = make()
    got, headers, answer = request(f"{server}/v1/matte?{query}", body,
                                   content_type=kind or "application/octet-stream")
    assert got == status, (what, answer)
    assert headers["content-type"] == "application/json"
    assert message in json.loads(answer)["error"]


@pytest.mark.slow
def test_16_concurrent_requests_with_bad_ones_among_them(server):
    small = png_of(cv2.resize(decode(PHOTO), (160, 120)))

    def one(i):
        if i % 5 == 4:
            return request(server + "/v1/matte", b"garbage")
        return request(server + "/v1/matte?format=alpha", PHOTO if i % 2 else small)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    alphas = {}
    for i, (status, _, body) in enumerate(answers):
        if i % 5 == 4:
            assert status == 400
            continue
        assert status == 200, body
        alpha = decode(body)
        assert alpha.shape == ((512, 512) if i % 2 else (120, 160))
        alphas.setdefault(alpha.shape, alpha)
        np.testing.assert_array_equal(alpha, alphas[alpha.shape])   # no request spoils another
    status, _, body = request(server + "/health")
    assert status == 200 and json.loads(body)["served"] >= 13


@pytest.mark.slow
def test_models_health_docs_and_page(server):
    status, _, body = request(server + "/v1/models")
    models = json.loads(body)
    assert status == 200 and models["default"] == MODEL
    assert [m["name"] for m in models["models"]] == [MODEL, "likeunet_night"]
    night = models["models"][1]["validation_iou"]
    assert 0.9 < night["portraits"] <= 1 and "people-free" in night
    status, _, body = request(server + "/openapi.json")
    assert status == 200 and "/v1/matte" in json.loads(body)["paths"]
    status, headers, body = request(server + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'id="file"' in body and b"http" not in body.split(b"<script>")[0].replace(
        b'http-equiv', b'')   # nothing fetched from elsewhere
    assert request(server + "/nope")[0] == 404


def browser():
    """Debian's chromium and chromedriver, installed with apt when missing (as root)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                        "apt-get install chromium chromium-driver")
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
                       check=True, capture_output=True, timeout=900,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.mark.slow
def test_the_page_cuts_out_an_uploaded_photo_in_a_browser(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser()
    try:
        driver.get(server + "/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
        assert Select(driver.find_element(By.ID, "model")).first_selected_option.get_attribute(
            "value") == MODEL
        driver.find_element(By.ID, "file").send_keys(str(Path(sample_image_path())))
        Select(driver.find_element(By.ID, "output")).select_by_value("colour")
        driver.find_element(By.ID, "run").click()
        size = wait.until(lambda d: d.execute_script(
            "const r = document.getElementById('result');"
            "return r.complete && r.naturalWidth ? [r.naturalWidth, r.naturalHeight] : null;"))
        assert size == [512, 512]
        assert "done" in driver.find_element(By.ID, "status").text
        assert driver.find_element(By.ID, "download").get_attribute("download") == \
            "astronaut-colour.png"
        original = driver.execute_script("return document.getElementById('original')"
                                         ".naturalWidth")
        assert original == 512
    finally:
        driver.quit()


def test_a_slow_request_times_out_and_a_full_queue_answers_busy():
    import asyncio
    import threading

    from humanmatting.service import Matting, RequestProblem

    release = threading.Event()
    matting = Matting(MODEL, models=[MODEL], timeout=0.3, queue=1)
    matting._matte = lambda *args: (release.wait(5), np.zeros((4, 4), np.uint8))[1]
    options = matting.options({"format": "alpha"})

    async def scenario():
        first = asyncio.ensure_future(matting.matte(None, options))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestProblem) as busy:   # one waits already: the next is refused
            await matting.matte(None, options)
        assert busy.value.status == 503 and "busy" in busy.value.message
        with pytest.raises(RequestProblem) as late:
            await first
        assert late.value.status == 503 and "timed out after 0.3 s" in late.value.message
        release.set()
        png = await matting.matte(None, options)   # the model thread is free again
        assert decode(png).shape == (4, 4)

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        matting.close()

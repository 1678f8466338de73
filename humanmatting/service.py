"""An HTTP service for matting: `humanmatting serve`, on FastAPI and uvicorn.

    POST /v1/matte     an image (multipart field `image`, or the raw request body) -> PNG
    GET  /v1/models    the released models, with their cards' validation IoU per kind
    GET  /health       {"status": "ok", ...} once the default model is loaded
    GET  /             the web page (humanmatting/web/index.html: plain HTML and JS)
    GET  /docs         OpenAPI docs (/openapi.json)

Each worker process loads each model it is asked for once and reuses it. TensorFlow runs on
one thread per worker: requests wait in a bounded queue for it (decoding and encoding run
beside it), so concurrent requests never run TensorFlow at once and a burst past the queue
gets 503 instead of exhausting memory. Every bad request gets a 4xx JSON answer
{"error": "..."} naming the problem; nothing a request sends can stop the service.
"""

import asyncio
import concurrent.futures
import json
import os
import threading
from importlib import resources

import cv2

from humanmatting.io import OUTPUT_FORMATS as FORMATS
from humanmatting.io import ImageError, decode_image, encode_png, parse_color

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
TIMEOUT_S = 60.0
QUEUE = 32
#: the options /v1/matte reads from the query string (or, for a form upload, its fields)
OPTIONS = ("model", "format", "background", "refine", "post_process")


class RequestProblem(Exception):
    """A bad request: `status` (4xx, or 503 when busy) and a message naming the problem."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _truthy(name, value):
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise RequestProblem(400, f"{name}={value!r}: must be true or false")


class Matting:
    """The models of one worker and the one thread that runs them.

    Args:
        default_model: the model a request gets when it names none (loaded at start).
        models: the model names requests may ask for (default: every released model).
        timeout: seconds a request may wait and run before it is answered 503.
        queue: requests that may wait for the model thread at once; more get 503.
        matter_options: `Matter` keyword arguments for every model (e.g. flip, scales).
    """

    def __init__(self, default_model=None, *, models=None, timeout=TIMEOUT_S, queue=QUEUE,
                 **matter_options):
        from humanmatting.registry import DEFAULT_MODEL, get_preset, released_models

        self.default_model = default_model or DEFAULT_MODEL
        get_preset(self.default_model)   # ValueError naming the known ones
        self.models = list(models) if models else released_models()
        if self.default_model not in self.models:
            self.models.insert(0, self.default_model)
        self.timeout = timeout
        self.matter_options = matter_options
        self._slots = threading.BoundedSemaphore(queue)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="matting")
        self._matters = {}
        self.served = 0

    def load(self, name):
        """The `Matter` of a model, built on the model thread the first time."""
        if name not in self._matters:
            from humanmatting.inference import Matter

            self._matters[name] = Matter(name, **self.matter_options)
        return self._matters[name]

    def start(self):
        """Loads the default model (blocking), so that /health is ready and the first request
        is not slow."""
        self._pool.submit(self.load, self.default_model).result()

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)

    def describe(self):
        """[{name, description, default, loaded, task, validation_iou: {kind: IoU}}]."""
        from humanmatting.registry import get_preset, weights_dir
        from humanmatting.training.release import card_numbers

        out = []
        for name in self.models:
            preset = get_preset(name)
            out.append({"name": name, "description": preset.description,
                        "default": name == self.default_model, "task": preset.task,
                        "trimap": preset.input.trimap, "loaded": name in self._matters,
                        "validation_iou": card_numbers(weights_dir() / f"{name}.md")})
        return out

    def options(self, params):
        """Validated request options from a mapping of strings."""
        unknown = sorted(set(params) - set(OPTIONS))
        if unknown:
            raise RequestProblem(400, f"unknown option {unknown[0]!r}; options: "
                                      f"{', '.join(OPTIONS)}")
        model = params.get("model") or self.default_model
        if model not in self.models:
            raise RequestProblem(400, f"unknown model {model!r}; this service has: "
                                      f"{', '.join(self.models)}")
        fmt = params.get("format") or "rgba"
        if fmt not in FORMATS:
            raise RequestProblem(400, f"format={fmt!r}: must be one of {', '.join(FORMATS)}")
        colour = None
        if params.get("background"):
            if fmt != "composite":
                raise RequestProblem(400, "background= is for format=composite")
            try:
                colour = parse_color(params["background"])
            except ValueError as err:
                raise RequestProblem(400, f"background: {err}") from None
        refine = params.get("refine")
        refine = None if refine in (None, "") else _truthy("refine", refine)
        post = _truthy("post_process", params.get("post_process") or "false")
        return {"model": model, "format": fmt, "colour": colour, "refine": refine,
                "post_process": post}

    def _matte(self, image, options, background, trimap):
        matter = self.load(options["model"])
        if options["refine"] is not None and bool(matter.refine) != options["refine"]:
            matter = self._variant(options["model"], options["refine"])
        return matter.render(image, options["format"],
                             background if background is not None else options["colour"],
                             post_process=options["post_process"], trimap=trimap)

    def _variant(self, name, refine):
        key = (name, refine)
        if key not in self._matters:
            from humanmatting.inference import Matter

            options = dict(self.matter_options, refine="cf" if refine else False)
            self._matters[key] = Matter(name, **options)
        return self._matters[key]

    async def matte(self, image, options, background=None, trimap=None):
        """The PNG bytes of one request's result, run on the model thread."""
        if not self._slots.acquire(blocking=False):
            raise RequestProblem(503, "the service is busy (its queue is full); try again")
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool, self._matte, image, options,
                                          background, trimap)
            try:
                result = await asyncio.wait_for(future, self.timeout)
            except asyncio.TimeoutError:
                raise RequestProblem(503, f"timed out after {self.timeout:g} s") from None
            except ValueError as err:   # e.g. a trimap given to a model that takes none
                raise RequestProblem(400, str(err)) from None
        finally:
            self._slots.release()
        return await loop.run_in_executor(None, encode_png, result)


def page():
    """The web page's HTML, shipped in the package."""
    return resources.files("humanmatting").joinpath("web/index.html").read_text()


def create_app(default_model=None, *, models=None, max_bytes=MAX_BYTES,
               max_pixels=MAX_PIXELS, timeout=TIMEOUT_S, queue=QUEUE, **matter_options):
    """The FastAPI application (see the module docstring). Keyword arguments as `Matting`'s;
    `max_bytes` / `max_pixels` bound each upload."""
    import contextlib

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException

    from humanmatting import __version__

    matting = Matting(default_model, models=models, timeout=timeout, queue=queue,
                      **matter_options)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, matting.start)
        yield
        matting.close()

    app = FastAPI(title="humanmatting", version=__version__, lifespan=lifespan,
                  description="Human matting: a photo in, the person's alpha matte, cut-out "
                              "or new background out.")
    app.state.matting = matting

    def problem(status, message):
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestProblem)
    async def on_problem(request, exc):
        return problem(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def on_http(request, exc):
        return problem(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_error(request, exc):   # a bug must not take the service down
        return problem(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page()

    @app.get("/health")
    async def health():
        """Ready once the default model is loaded."""
        return {"status": "ok", "version": __version__, "default_model": matting.default_model,
                "served": matting.served}

    @app.get("/v1/models")
    async def list_models():
        """The models this service runs, with their cards' validation IoU per kind."""
        return {"default": matting.default_model, "models": matting.describe()}

    async def read_body(request, limit):
        """The body, at most `limit` bytes; past it, 413. The rest of a body up to 4x the
        limit is read and dropped first, so that the client, still sending, gets the answer
        rather than a broken connection; a larger one is cut off."""
        length = request.headers.get("content-length")
        declared = int(length) if length and length.isdigit() else None
        if declared is not None and declared > 4 * limit:
            raise RequestProblem(413, f"the upload is {declared} bytes; the limit is {limit}")
        body, seen = bytearray(), 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen <= limit:
                body += chunk
            elif seen > 4 * limit:
                break
        if seen > limit:
            raise RequestProblem(413, f"the upload is {declared or seen} bytes; the limit is "
                                      f"{limit}")
        return bytes(body)

    def decode(data, what, **kwargs):
        try:
            return decode_image(data, what, max_pixels=max_pixels, **kwargs)
        except ImageError as err:
            status = 413 if "pixels" in str(err) else 400
            raise RequestProblem(status, str(err)) from None

    @app.post("/v1/matte", response_class=Response, responses={
        200: {"content": {"image/png": {}}, "description": "the result, at the input's size"},
        400: {"description": "a bad image or option ({\"error\": ...})"},
        413: {"description": "too many bytes or pixels"}, 503: {"description": "busy"}},
        openapi_extra={"parameters": [
            {"name": "model", "in": "query", "schema": {"type": "string"}},
            {"name": "format", "in": "query", "schema": {"enum": list(FORMATS)}},
            {"name": "background", "in": "query", "schema": {"type": "string"},
             "description": "format=composite: a colour (name, #rrggbb, r,g,b); or upload "
                            "a `background` image field"},
            {"name": "refine", "in": "query", "schema": {"type": "boolean"}},
            {"name": "post_process", "in": "query", "schema": {"type": "boolean"}}],
            "requestBody": {"content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "background": {"type": "string", "format": "binary"},
                    "trimap": {"type": "string", "format": "binary"}}}},
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}}}}})
    async def matte(request: Request):
        """Mattes one image: multipart (`image`, optional `background` image and `trimap`)
        or the raw body; options from the query string (or the form's fields)."""
        params = dict(request.query_params)
        files = {}
        body = await read_body(request, max_bytes)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            from starlette.datastructures import UploadFile
            from starlette.requests import Request as Plain

            async def replay():
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                form = await Plain(request.scope, replay).form(max_files=3, max_fields=16)
            except Exception as err:   # a malformed multipart body
                raise RequestProblem(400, f"not a valid multipart form: {err}") from None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key not in ("image", "background", "trimap"):
                        raise RequestProblem(400, f"unknown file field {key!r}; fields: "
                                                  "image, background, trimap")
                    files[key] = await value.read()
                else:
                    params.setdefault(key, value)
            if "image" not in files:
                raise RequestProblem(400, "the form has no `image` file field")
        else:
            files["image"] = body
        options = matting.options(params)
        if not files["image"]:
            raise RequestProblem(400, "no image: the upload is empty")
        image = decode(files["image"], "image")
        background = None
        if files.get("background"):
            if options["format"] != "composite":
                raise RequestProblem(400, "a background image is for format=composite")
            background = decode(files["background"], "background")
        trimap = (decode(files["trimap"], "trimap", flags=cv2.IMREAD_GRAYSCALE)
                  if files.get("trimap") else None)
        png = await matting.matte(image, options, background, trimap)
        matting.served += 1
        return Response(png, media_type="image/png",
                        headers={"X-Model": options["model"]})

    return app


#: environment variable that carries `create_app`'s arguments to uvicorn's worker processes
CONFIG_ENV = "HUMANMATTING_SERVE"


def app_from_environment():
    """`create_app` with the JSON arguments in $HUMANMATTING_SERVE (uvicorn's factory for
    --workers > 1, where each worker process builds its own app and models)."""
    return create_app(**json.loads(os.environ.get(CONFIG_ENV, "{}")))


def serve(*, host="127.0.0.1", port=8000, workers=1, log_level="info", **app_options):
    """Runs the service with uvicorn until interrupted."""
    import uvicorn

    if workers > 1:
        os.environ[CONFIG_ENV] = json.dumps(app_options)
        uvicorn.run("humanmatting.service:app_from_environment", factory=True, host=host,
                    port=port, workers=workers, log_level=log_level)
    else:
        uvicorn.run(create_app(**app_options), host=host, port=port, log_level=log_level)


__all__ = ["FORMATS", "Matting", "RequestProblem", "app_from_environment", "create_app",
           "page", "serve"]

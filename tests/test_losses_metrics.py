"""Losses and metrics against hand-computed cases; streaming metrics against NumPy."""

import numpy as np
import pytest

from humanmatting import metrics as M
from humanmatting.losses import MattingLoss


def square(shape=(10, 10), top=2, left=2, size=4):
    a = np.zeros(shape, np.float32)
    a[top:top + size, left:left + size] = 1.0
    return a


def test_iou_miou_mae_sad_mse_hand_computed():
    gt = square()                      # 16 pixels
    pred = square(top=3)               # shifted one row: 12 shared, 20 in the union
    assert M.iou(pred, gt) == pytest.approx(12 / 20)
    # background: 100 - 20 = 80 shared of 100 - 12 = 88 in the union
    assert M.miou(pred, gt) == pytest.approx(0.5 * (12 / 20 + 80 / 88))
    assert M.mae(pred, gt) == pytest.approx(8 / 100)
    assert M.sad(pred, gt) == pytest.approx(8 / 1000)
    assert M.mse(pred, gt) == pytest.approx(8 / 100 * 1000)
    assert M.iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_boundary_f_hand_computed():
    gt = square((40, 40), 10, 10, 20)
    assert M.boundary_f(gt, gt) == 1.0
    assert M.boundary_f(np.zeros_like(gt), gt) == 0.0
    assert M.boundary_f(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    # A one-pixel shift is within the tolerance ceil(0.008 * 56.6) = 1: perfect.
    assert M.boundary_f(square((40, 40), 11, 10, 20), gt) == 1.0
    # A far shift matches only where the boundaries overlap.
    assert M.boundary_f(square((40, 40), 10, 25, 20), gt) < 0.5


def test_grad_and_conn_are_zero_for_perfect_and_grow_with_error():
    gt = square((30, 30), 8, 8, 12)
    assert M.gradient_error(gt, gt) == 0.0 and M.connectivity_error(gt, gt) == 0.0
    blurred = np.clip(gt + 0.3 * square((30, 30), 4, 4, 20), 0, 1)
    assert M.gradient_error(blurred, gt) > 0
    # A detached blob of 0.5: unconnected pixels get phi = 1 - (0.5 - l).
    blob = gt.copy()
    blob[0:3, 0:3] = 0.5
    assert M.connectivity_error(blob, gt) > 0
    assert M.connectivity_error(blob, gt) < M.sad(blob, gt) + 1e-9


def test_streaming_metrics_match_numpy():
    rng = np.random.default_rng(0)
    gts = (rng.uniform(size=(3, 16, 12)) > 0.5).astype(np.float32)
    preds = np.clip(gts + rng.normal(0, 0.4, gts.shape), 0, 1).astype(np.float32)
    y_true = np.stack([gts, np.ones_like(gts)], -1)
    y_pred = np.stack([1 - preds, preds], -1)
    for metric, ref in ((M.PersonIoU(), M.iou), (M.AlphaMAE(), M.mae), (M.MeanIoU(), M.miou),
                        (M.SAD(), M.sad), (M.MSE(), M.mse)):
        metric.update_state(y_true[:2], y_pred[:2])
        metric.update_state(y_true[2:], y_pred[2:])
        expected = np.mean([ref(p, g) for p, g in zip(preds, gts)])
        assert float(metric.result()) == pytest.approx(expected, rel=1e-5), metric.name


def test_matting_loss_terms_hand_computed():
    alpha = np.array([[[1.0, 0.0]]], np.float32)            # (1, 1, 2)
    prob = np.array([[[0.8, 0.4]]], np.float32)
    y_pred = np.stack([1 - prob, prob], -1)
    rough = np.stack([alpha, np.zeros_like(alpha)], -1)
    refined = np.stack([alpha, np.ones_like(alpha)], -1)
    loss = MattingLoss(ce_weight=1.0, iou_weight=0.5, l1_weight=1.0, grad_weight=0.5)
    terms = {k: float(v[0]) for k, v in loss.terms(rough, y_pred).items()}
    ce = -(np.log(0.8) + np.log(0.6)) / 2
    iou = 1 - (0.8 + 1) / (1 + 0.4 + 1)      # smoothed: (inter + 1) / (union + 1)
    assert terms["ce"] == pytest.approx(ce, rel=1e-5)
    assert terms["iou"] == pytest.approx(iou, rel=1e-5)
    assert terms["alpha_l1"] == 0.0 and terms["gradient"] == 0.0   # rough: not used
    assert terms["total"] == pytest.approx(ce + 0.5 * iou, rel=1e-5)
    soft = {k: float(v[0]) for k, v in loss.terms(refined, y_pred).items()}
    assert soft["alpha_l1"] == pytest.approx((0.2 + 0.4) / 2, rel=1e-5)
    # gradient along x of (prob - alpha) = [-0.2, 0.4]: |0.6|; no y neighbours.
    assert soft["gradient"] == pytest.approx(0.6, rel=1e-5)
    assert MattingLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_paired_difference_hand_computed():
    same = M.paired_difference([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same["mean"] == same["low"] == same["high"] == 0.0
    assert (same["better"], same["worse"], same["equal"], same["count"]) == (0, 0, 3, 3)
    shifted = M.paired_difference([0.91, 0.81, 0.71], [0.9, 0.8, 0.7])
    assert shifted["low"] == pytest.approx(0.01) and shifted["high"] == pytest.approx(0.01)
    assert shifted["better"] == 3
    # differences -0.1 and +0.1: the resampled means are -0.1, 0, +0.1 with chances 1/4, 1/2,
    # 1/4, so the 95% interval runs from -0.1 to +0.1 around a mean of 0
    two = M.paired_difference([0.0, 0.2], [0.1, 0.1])
    assert two["mean"] == pytest.approx(0.0, abs=1e-12)
    assert two["low"] == pytest.approx(-0.1) and two["high"] == pytest.approx(0.1)
    assert (two["better"], two["worse"]) == (1, 1)
    assert M.paired_difference([0.0, 0.2], [0.1, 0.1], seed=3) == M.paired_difference(
        [0.0, 0.2], [0.1, 0.1], seed=3)


def test_paired_difference_matches_the_normal_interval():
    # many images: the bootstrap interval of a mean approaches mean +- 1.96 sd / sqrt(n)
    rng = np.random.default_rng(1)
    diff = rng.normal(0.01, 0.02, 400)
    got = M.paired_difference(0.5 + diff, np.full(400, 0.5), samples=20000)
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert got["mean"] == pytest.approx(diff.mean())
    assert got["low"] == pytest.approx(diff.mean() - half, abs=0.1 * half)
    assert got["high"] == pytest.approx(diff.mean() + half, abs=0.1 * half)
    narrow = M.paired_difference(0.5 + diff, np.full(400, 0.5), samples=20000, level=0.5)
    assert got["low"] < narrow["low"] < narrow["high"] < got["high"]


@pytest.mark.parametrize("args, kwargs, message", [
    (([0.5, 0.6], [0.5]), {}, "same length"),
    (([], []), {}, "at least one image"),
    (([[0.5]], [[0.5]]), {}, "1-D"),
    (([0.5], [0.5]), {"level": 1.0}, "level"),
    (([0.5], [0.5]), {"samples": 0}, "samples"),
])
def test_paired_difference_rejects_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        M.paired_difference(*args, **kwargs)


def test_compare_lists_the_largest_losses():
    from humanmatting.evaluation import compare, describe_comparison

    result = {"images": ["a/1.jpg", "a/2.jpg", "a/3.jpg", "a/4.jpg"],
              "per_image": {"ours": {"iou": [0.95, 0.70, 0.90, 0.99]},
                            "peer": {"iou": [0.90, 0.95, 0.92, 0.99]}}}
    got = compare(result, "ours", "peer", worst=3)
    assert got["mean"] == pytest.approx((0.05 - 0.25 - 0.02 + 0.0) / 4)
    assert (got["better"], got["worse"], got["equal"]) == (1, 2, 1)
    # worst first; an image where ours is not below the peer is never a loss
    assert [p for p, _ in got["largest_losses"]] == ["a/2.jpg", "a/3.jpg"]
    assert got["largest_losses"][0][1] == pytest.approx(-0.25)
    line = describe_comparison(got, "ours", "peer")
    assert "ours - peer, iou per image: mean -0.0550" in line
    assert "better on 1, worse on 2" in line and "2.jpg -0.250, 3.jpg -0.020" in line


def _portrait_reference(alpha, prob, refined):
    """The portrait fork's loss terms for one image, with OpenCV's morphology and blur."""
    import cv2

    grown = cv2.dilate((alpha > 1e-3).astype(np.uint8),
                       cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11)), iterations=5)
    core = cv2.erode((alpha >= 1 - 1e-3).astype(np.uint8), np.ones((3, 3), np.uint8),
                     iterations=3)
    band = (grown * (1 - core)).astype(np.float64)
    l1_mask, details_mask = (np.ones_like(band), band) if refined else (1 - band, 0 * band)
    err = np.abs(prob - alpha)

    def masked(mask):
        return (mask * err).sum() / mask.sum() if mask.sum() else 0.0

    blurred = cv2.GaussianBlur(alpha.astype(np.float32), (9, 9), 2.5)
    terms = {"l1": masked(l1_mask), "details": masked(details_mask),
             "blur_mse": np.mean((prob - blurred) ** 2)}
    terms["total"] = 2 * terms["l1"] + 3 * terms["details"] + terms["blur_mse"]
    return terms, band


def test_portrait_loss_matches_an_opencv_reference():
    from humanmatting.losses import PortraitLoss
    from humanmatting.specs import make_target

    rng = np.random.default_rng(3)
    alphas = np.zeros((3, 72, 88), np.float32)
    alphas[0, 20:50, 30:60] = 1                    # rough mask inside the frame
    alphas[1, 30:, :40] = 1                        # touching two borders: OpenCV's border rules
    alphas[1, 29, :40] = 0.5
    alphas[2] = np.clip(rng.normal(0.5, 0.4, (72, 88)), 0, 1)   # soft, refined
    refined = [0, 1, 1]
    targets = np.stack([make_target(a, r) for a, r in zip(alphas, refined)])
    probs = rng.uniform(0, 1, (3, 72, 88, 1)).astype(np.float32)
    loss = PortraitLoss()
    terms = {k: np.asarray(v) for k, v in loss.terms(targets, probs).items()}
    band = np.asarray(loss.band(alphas))
    for i in range(3):
        ref, ref_band = _portrait_reference(alphas[i], probs[i, ..., 0], refined[i])
        np.testing.assert_array_equal(band[i], ref_band)
        for name, value in ref.items():
            assert terms[name][i] == pytest.approx(value, rel=1e-4, abs=1e-6), (i, name)
    assert band[0].sum() > 0 and band[0, 35, 45] == 0      # the core is not in the band


def test_portrait_loss_is_finite_without_refined_samples_or_without_a_band():
    import keras

    from humanmatting.losses import PortraitLoss
    from humanmatting.specs import make_target

    alphas = np.zeros((2, 40, 40), np.float32)
    alphas[1] = 1   # all person: no band, no outside
    targets = np.stack([make_target(a, 0) for a in alphas])
    probs = keras.Variable(np.full((2, 40, 40, 1), 0.3, np.float32))
    terms = PortraitLoss().terms(targets, probs)
    values = {k: np.asarray(v) for k, v in terms.items()}
    assert all(np.isfinite(v).all() for v in values.values())
    assert values["details"].tolist() == [0.0, 0.0]
    assert values["l1"] == pytest.approx([0.3, 0.7])


def test_bce_loss_and_make_loss_per_output():
    from humanmatting.losses import BCELoss, PortraitLoss, make_loss
    from humanmatting.registry import get_preset

    alpha = np.array([[[1.0, 0.0]]], np.float32)
    prob = np.array([[[[0.8], [0.4]]]], np.float32)
    expected = -(np.log(0.8) + np.log(0.6)) / 2
    assert float(BCELoss()(alpha[..., None], prob)) == pytest.approx(expected, rel=1e-5)
    loss = make_loss(get_preset("u2netp"), {"kind": "portrait", "details_weight": 5})
    assert sorted(loss) == sorted(["fused", *(f"side{i}" for i in range(1, 7))])
    assert all(isinstance(v, PortraitLoss) and v.details_weight == 5 for v in loss.values())
    assert isinstance(make_loss(get_preset("likeunet_night")), MattingLoss)
    with pytest.raises(ValueError, match="loss.kind must be one of"):
        make_loss(get_preset("u2netp"), {"kind": "dice"})
    with pytest.raises(ValueError, match="unexpected keyword"):
        make_loss(get_preset("u2netp"), {"kind": "bce", "iou_weight": 1})

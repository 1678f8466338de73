"""The augmentation for people in any photo: zoom-out, pasted people, far rotations, motion
blur, low light and JPEG keep every mask exact and stay reproducible; backgrounds fitted;
frozen BatchNorm; the sequence split and per-kind validation."""

import numpy as np
import pytest

from humanmatting.data.augment import (
    AugmentConfig, augment_sample, draw_angle, fit_background, make_sample, paint_out,
    paste_over, person_box)

SIZE = (96, 64)


def person(h=120, w=80, seed=0):
    """A photo with a solid person box (alpha exactly 0 / 1) on a textured background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.float32)
    alpha[h // 4:h - 5, w // 3:2 * w // 3] = 1.0
    image[alpha > 0] = (230, 40, 40)
    return make_sample(image, alpha)


def scene(h=100, w=150, seed=1):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def composite_holds(s, atol=1.0):
    a = s["alpha"][..., None]
    expected = a * s["fg"].astype(np.float32) + (1 - a) * s["bg"].astype(np.float32)
    return np.abs(expected - s["image"].astype(np.float32)).max() <= atol + 1.0


def test_zoom_out_pastes_the_person_small_with_an_exact_mask():
    aug = AugmentConfig(zoom_out=1.0, zoom_out_height=(0.2, 0.2), rotation=0, flip=0,
                        perspective=0, own_background=0.0, brightness=0, contrast=0,
                        saturation=0, balance=0, grayscale=0)
    for seed in range(6):
        s = augment_sample(np.random.default_rng(seed), person(), SIZE, aug, [scene()])
        assert s["image"].shape == (*SIZE, 3) and s["alpha"].shape == SIZE
        box = person_box(s["alpha"], 0.5)
        assert box is not None
        height = box[1] - box[0]
        # the box of a 0.2 x 96 = 19 px person, unless the frame's edge cuts it
        assert height <= 21 and (height >= 17 or box[0] == 0 or box[1] == SIZE[0])
        assert s["alpha"].mean() < 0.1
        # the person's pixels are its colour: the mask is where the person went
        solid = s["alpha"] > 0.99
        assert solid.any()
        assert np.abs(s["image"][solid].astype(int) - (230, 40, 40)).max() <= 2
        assert composite_holds(s)


def test_zoom_out_onto_its_own_background_paints_the_person_out():
    sample = person()
    filled = paint_out(sample["image"], sample["alpha"])
    assert filled.shape == sample["image"].shape
    # the red person is gone from the canvas
    assert (filled[sample["alpha"] > 0][:, 0] > 200).mean() < 0.05
    aug = AugmentConfig(zoom_out=1.0, own_background=1.0)
    s = augment_sample(np.random.default_rng(3), sample, SIZE, aug, [])
    assert composite_holds(s) and 0 < s["alpha"].mean() < 0.5


def test_pasted_people_go_over_the_frame_and_the_mask_is_their_union():
    rng = np.random.default_rng(0)
    base = np.zeros(SIZE, np.float32)
    base[10:40, 10:30] = 1.0
    layers = {"alpha": base.copy(), "fgp": np.zeros((*SIZE, 3), np.float32),
              "bg": np.full((*SIZE, 3), 50.0, np.float32)}
    layers["fgp"][base > 0] = (0, 0, 200)
    aug = AugmentConfig(rotation=0, flip=0, brightness=0, contrast=0, saturation=0,
                        balance=0, grayscale=0)
    paste_over(rng, layers, person(), 0.5, aug)
    alpha = layers["alpha"]
    assert (alpha[base > 0] == 1).all()                 # the first person stays whole
    assert alpha.sum() > base.sum() + 50                # the new one is added
    assert alpha.max() <= 1.0 + 1e-6
    # where the new person is solid, its colour is on top
    new = (alpha > 0.99) & (base == 0)
    assert np.abs(layers["fgp"][new] - (230, 40, 40)).max() < 2


def test_extra_people_reach_people_free_frames_through_the_pool():
    empty = make_sample(scene(80, 60), np.zeros((80, 60), np.uint8))
    aug = AugmentConfig(extra_people=1.0, max_extra_people=2)
    s = augment_sample(np.random.default_rng(5), empty, SIZE, aug, [],
                       people=lambda rng: person(seed=int(rng.integers(10))))
    assert s["alpha"].max() > 0.99 and composite_holds(s)
    # without a pool, nothing is pasted
    s = augment_sample(np.random.default_rng(5), empty, SIZE, aug, [], people=None)
    assert s["alpha"].max() == 0


def test_degradations_keep_types_and_the_same_seed_gives_the_same_sample():
    aug = AugmentConfig(zoom_out=0.5, extra_people=0.5, rotation=30, rotation_far=0.3,
                        motion_blur=1.0, low_light=1.0, jpeg=1.0)
    pool = lambda rng: person(seed=int(rng.integers(5)))   # noqa: E731
    for seed in range(4):
        one = augment_sample(np.random.default_rng(seed), person(), SIZE, aug, [scene()], pool)
        two = augment_sample(np.random.default_rng(seed), person(), SIZE, aug, [scene()], pool)
        for key in ("image", "alpha", "fg", "bg"):
            np.testing.assert_array_equal(one[key], two[key])
        assert one["image"].dtype == np.uint8 and one["alpha"].dtype == np.float32
        assert 0 <= one["alpha"].min() and one["alpha"].max() <= 1


def test_motion_blur_smears_image_and_alpha_alike():
    aug = AugmentConfig(motion_blur=1.0, motion_blur_length=(0.2, 0.2), rotation=0, flip=0,
                        perspective=0, min_scale=1.0)
    s = augment_sample(np.random.default_rng(0), person(), SIZE, aug, [])
    soft = (s["alpha"] > 0.05) & (s["alpha"] < 0.95)
    assert soft.mean() > 0.05        # a hard 0/1 box became a blurred edge


def test_far_rotations_are_rare_and_beyond_the_normal_range():
    aug = AugmentConfig(rotation=30, rotation_far=0.1)
    angles = np.array([draw_angle(np.random.default_rng(i), aug) for i in range(2000)])
    far = np.abs(angles) > 30
    assert 0.07 < far.mean() < 0.13 and np.abs(angles).max() <= 180
    assert np.abs(angles[~far]).max() <= 30


@pytest.mark.parametrize("field, value", [("zoom_out", 1.5), ("jpeg_quality", (0, 50)),
                                          ("zoom_out_height", (0.5, 0.1)),
                                          ("max_extra_people", 0), ("edge_crop", -0.1)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


def test_background_is_cropped_to_the_photos_aspect_ratio_or_stretched():
    band = np.tile(np.arange(200, dtype=np.uint8), (50, 1))[..., None].repeat(3, axis=2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        cropped = fit_background(rng, band, 60, 60, crop=True)
        assert cropped.shape == (60, 60, 3)
        span = int(cropped[..., 0].max()) - int(cropped[..., 0].min())
        assert 45 <= span <= 50                       # a 50-wide window of the 200-wide band
    stretched = fit_background(rng, band, 60, 60, crop=False)
    assert int(stretched.max()) - int(stretched.min()) >= 195   # the whole band, squashed
    assert fit_background(rng, band.transpose(1, 0, 2), 30, 90, crop=True).shape == (30, 90, 3)


def test_frozen_batchnorm_makes_training_mode_the_inference_function():
    import humanmatting
    from conftest import randomize_batchnorm
    from humanmatting.training.fit import freeze_batchnorm

    model = humanmatting.create_model("likeunet_dark_light", weights=None, deploy=False)
    randomize_batchnorm(model, seed=1)
    x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 1)).astype("float32")
    assert np.abs(np.asarray(model(x, training=True)) -
                  np.asarray(model(x, training=False))).max() > 1e-3
    before = len(model.trainable_weights)
    assert freeze_batchnorm(model) == 15                   # one per block (sum-form ACNet)
    assert len(model.trainable_weights) == before - 2 * 15  # gamma and beta of each
    np.testing.assert_allclose(np.asarray(model(x, training=True)),
                               np.asarray(model(x, training=False)), atol=0)


def test_sequence_split_keeps_whole_sequences_apart(tmp_path):
    from humanmatting.data.readers import PairList, read_split, validation_by_kind
    from humanmatting.training.config import DataSource

    stems = [f"{seq}_{i:06d}" for seq in ("0001TP", "0006R0", "Seq05VD") for i in range(5)]
    pairs = PairList([f"/x/images/{s}.jpg" for s in stems], [f"/x/masks/{s}.png" for s in stems])
    train, val = pairs.split(0.1, val_groups=["0006R0"])
    assert sorted(val.images) == sorted(f"/x/images/0006R0_{i:06d}.jpg" for i in range(5))
    assert len(train) == 10
    # through a config's data source: one split rule for training and evaluation
    from conftest import make_folder_dataset

    data = make_folder_dataset(tmp_path / "d", count=8)
    source = DataSource(str(data), photos="scenes", val_fraction=0.5)
    _, tr, va = read_split(source)
    assert len(tr) + len(va) == 8 and 0 < len(va) < 8
    kinds = validation_by_kind([source, DataSource(str(data), photos="scenes",
                                                   val_fraction=0.5)])
    assert list(kinds) == ["scenes"] and len(kinds["scenes"]) == 2 * len(va)
    assert DataSource("x/bg", kind="backgrounds").photos == "people-free"


def test_distillation_reaches_only_the_kinds_it_is_asked_for(tmp_path):
    from conftest import make_folder_dataset
    from humanmatting.data import pipeline
    from humanmatting.data.pipeline import distil_target
    from humanmatting.data.readers import read_dataset
    from humanmatting.registry import get_preset
    from humanmatting.training import load_config
    from humanmatting.training.fit import distil_sources

    y = np.zeros((2, 2, 2, 2), np.float32)
    y[1, ..., 0] = 1.0
    out = distil_target(y, np.full((2, 2, 2), 0.5, np.float32), [0.5, 0.0])
    np.testing.assert_allclose(out[0, ..., 0], 0.25)        # 0.5 x 0 + 0.5 x 0.5
    np.testing.assert_allclose(out[1, ..., 0], 1.0)         # weight 0: the label as it was

    a = make_folder_dataset(tmp_path / "a", count=4, shape=(48, 48))
    b = make_folder_dataset(tmp_path / "b", count=4, shape=(48, 48), seed=9)
    config = load_config(None, [f"data=[{{path: {a}, photos: portraits}}, "
                                f"{{path: {b}, photos: scenes}}]", "distil_photos=[portraits]"])
    assert distil_sources(config) == [0]
    with pytest.raises(ValueError, match="groups"):
        distil_sources(load_config(None, [f"data=[{{path: {a}}}]", "distil_photos=[groups]"]))
    store = pipeline.ImageStore([read_dataset(a), read_dataset(b)], short_side=48)
    spec = get_preset("likeunet_night").input
    kwargs = dict(input_spec=spec, batch_size=4, steps_per_epoch=2, seed=3, sizes=[(32, 32)],
                  teacher=lambda x: np.full(x.shape[:3], 0.5, np.float32), distil_weight=1.0)
    plain = pipeline.BatchMaker(store, [1, 1], **{**kwargs, "teacher": None})
    only = pipeline.BatchMaker(store, [1, 1], distil_sources=[0], **kwargs)
    for step in range(2):
        (_, y0), (_, y1) = plain.batch(0, step), only.batch(0, step)
        sources = only.plan(0)["source"][4 * step:4 * step + 4]
        for k, source in enumerate(sources):
            if source == 0:
                np.testing.assert_allclose(y1[k, ..., 0], 0.5)
            else:
                np.testing.assert_array_equal(y1[k], y0[k])


def test_edge_crops_are_centred_on_the_persons_edge():
    from humanmatting.data.augment import edge_pixel

    rng = np.random.default_rng(0)
    sample = person(200, 160)          # a solid box: rows 50..194, columns 53..105
    alpha = sample["alpha"]
    for _ in range(20):                # a binary mask: a pixel on its boundary
        y, x = edge_pixel(rng, alpha)
        window = alpha[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
        assert window.min() == 0 and window.max() == 1
    soft = alpha.copy()
    soft[100, 60:64] = 0.5             # soft pixels win over the boundary
    assert all(edge_pixel(rng, soft) in [(100, c) for c in range(60, 64)] for _ in range(10))
    assert edge_pixel(rng, np.zeros((8, 8), np.float32)) is None
    # small crops (1-2 % of the area) centred on the edge: always both person and
    # background in view, where anywhere-crops of that size mostly miss the edge
    aug = AugmentConfig(min_scale=0.01, max_scale=0.02, rotation=0, perspective=0, flip=0,
                        composite=0)

    def mixed(config, seed):
        out = augment_sample(np.random.default_rng(seed), sample, (32, 32), config)
        return 0 < out["alpha"].mean() < 1

    edge = sum(mixed(AugmentConfig(**{**aug.__dict__, "edge_crop": 1.0}), i) for i in range(40))
    anywhere = sum(mixed(aug, i) for i in range(40))
    assert edge >= 38 and anywhere < 30, (edge, anywhere)
    # the same seed: the same crop
    config = AugmentConfig(**{**aug.__dict__, "edge_crop": 1.0})
    one, two = (augment_sample(np.random.default_rng(5), sample, (32, 32), config)
                for _ in range(2))
    np.testing.assert_array_equal(one["image"], two["image"])

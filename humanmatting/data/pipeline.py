"""tf.data pipelines for training and validation.

Decode, then augment (image and alpha jointly), then batch by size:

    pairs -> decode once (threads) into an in-memory `ImageStore` -> per epoch, a sampling
    plan (which dataset, which item, which size bucket, which seed) -> tf.data: fetch +
    augment (parallel map, stateless ops) -> group_by_window (one (H, W) per batch) -> prefetch

The plan and every random op derive from (seed, epoch, element index), so a pipeline built with
the same seed yields the same batches in the same order, and the batches of epoch e do not
depend on how many epochs ran before: a run resumed at epoch e sees exactly what an
uninterrupted run saw. Datasets are mixed by sampling weights; a batch's bucket is drawn per
batch, uniformly over the size table, so over an epoch the network sees every shape.

Elements are `(image, target)`: image (B, H, W, C) float32 in the model's input convention,
target (B, H, W, 2) float32 = [alpha in [0, 1], refined flag (1 = soft alpha, 0 = rough
binary mask)].
"""

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from humanmatting.registry import SIZES_256


@dataclasses.dataclass
class AugmentConfig:
    """Joint augmentation settings (training only).

    Attributes:
        flip: probability of a horizontal flip.
        rotation: maximum rotation in degrees (uniform in +-rotation).
        perspective: maximum corner displacement as a fraction of the side.
        min_scale, max_scale: area of the crop window relative to the largest window of the
            bucket's aspect ratio that fits in the image (values above 1 zoom out, filling
            with reflection).
        grayscale: probability of turning the image gray.
        brightness, contrast, saturation, hue: colour jitter ranges.
        composite: probability of compositing the person onto a random background (only
            when backgrounds are given).
    """

    flip: float = 0.5
    rotation: float = 15.0
    perspective: float = 0.06
    min_scale: float = 0.35
    max_scale: float = 1.0
    grayscale: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.3
    saturation: float = 0.4
    hue: float = 0.04
    composite: float = 0.25


def trimap_from_alpha(alpha, *, erode=10, dilate=10):
    """Trimap from a mask or matte: 0 background, 0.5 unknown, 1 foreground.

    The foreground is the alpha == 1 region eroded by `erode` pixels, the background the
    alpha == 0 region eroded by `dilate` pixels (i.e. the person dilated), the rest unknown.

    Args:
        alpha: (..., H, W, 1) float in [0, 1].
        erode, dilate: band half-widths in pixels.

    Returns:
        Tensor of alpha's shape with values in {0, 0.5, 1}.
    """
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    batched = alpha.shape.rank == 4
    a = alpha if batched else alpha[None]
    fg = tf.cast(a >= 1.0 - 1e-3, tf.float32)
    bg = tf.cast(a <= 1e-3, tf.float32)
    if erode > 0:
        fg = -tf.nn.max_pool2d(-fg, 2 * erode + 1, 1, "SAME")
    if dilate > 0:
        bg = -tf.nn.max_pool2d(-bg, 2 * dilate + 1, 1, "SAME")
    trimap = 0.5 + 0.5 * fg - 0.5 * bg
    return trimap if batched else trimap[0]


def _uniform(seed, low=0.0, high=1.0):
    return tf.random.stateless_uniform((), seed, low, high)


def _projective(seed, height, width, rotation_deg, perspective):
    """A random rotation about the centre plus corner jitter, as the 8-vector that
    ImageProjectiveTransformV3 takes (it maps output to input coordinates)."""
    s = tf.random.experimental.stateless_split(seed, 3)
    angle = _uniform(s[0], -1.0, 1.0) * rotation_deg * math.pi / 180.0
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cx, cy = w / 2.0, h / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Output -> input: translate to centre, rotate, translate back.
    a0, a1, a2 = cos, -sin, cx - cos * cx + sin * cy
    b0, b1, b2 = sin, cos, cy - sin * cx - cos * cy
    c = tf.random.stateless_uniform((2,), s[1], -1.0, 1.0) * perspective
    c0, c1 = c[0] / w, c[1] / h
    return tf.stack([a0, a1, a2, b0, b1, b2, c0, c1])


def _transform(stack, transform):
    out_size = tf.shape(stack)[:2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=stack[None], transforms=transform[None], output_shape=out_size,
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")[0]


def _crop_box(seed, height, width, target_h, target_w, min_scale, max_scale):
    """A normalised [y1, x1, y2, x2] box of the target aspect ratio."""
    s = tf.random.experimental.stateless_split(seed, 3)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    aspect = tf.cast(target_h, tf.float32) / tf.cast(target_w, tf.float32)
    # The largest window of this aspect inside the image, then scaled by sqrt(area scale).
    box_h = tf.minimum(h, w * aspect)
    scale = tf.sqrt(_uniform(s[0], min_scale, max_scale))
    box_h = box_h * scale
    box_w = box_h / aspect
    y0 = _uniform(s[1]) * (h - box_h)
    x0 = _uniform(s[2]) * (w - box_w)
    return tf.stack([y0 / h, x0 / w, (y0 + box_h) / h, (x0 + box_w) / w])


def _colour(image, seed, aug):
    s = tf.random.experimental.stateless_split(seed, 5)
    image = tf.image.stateless_random_brightness(image, aug.brightness, s[0])
    image = tf.image.stateless_random_contrast(image, 1 - aug.contrast, 1 + aug.contrast, s[1])
    image = tf.image.stateless_random_saturation(image, 1 - aug.saturation,
                                                 1 + aug.saturation, s[2])
    image = tf.image.stateless_random_hue(image, aug.hue, s[3])
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    image = tf.where(_uniform(s[4]) < aug.grayscale, gray, image)
    return tf.clip_by_value(image, 0.0, 1.0)


def make_augment(sizes, aug, backgrounds=None):
    """The per-element training transform.

    Returns:
        augment(image, alpha, bucket, seed) -> (image, alpha): image uint8 (h, w, 3) and
        alpha uint8 (h, w, 1) at any size in, float32 [0, 1] at sizes[bucket] out.
    """
    sizes_t = tf.constant(sizes, tf.int32)
    n_bg = 0 if backgrounds is None else int(backgrounds.shape[0])

    def augment(image, alpha, bucket, seed):
        s = tf.random.experimental.stateless_split(seed, 8)
        target = sizes_t[bucket]
        stack = tf.concat([tf.cast(image, tf.float32), tf.cast(alpha, tf.float32)], -1) / 255.0
        height, width = tf.shape(stack)[0], tf.shape(stack)[1]
        stack = _transform(stack, _projective(s[1], height, width, aug.rotation,
                                              aug.perspective))
        box = _crop_box(s[2], height, width, target[0], target[1], aug.min_scale,
                        aug.max_scale)
        stack = tf.image.crop_and_resize(stack[None], box[None], [0], target)[0]
        stack = tf.where(_uniform(s[3]) < aug.flip, tf.reverse(stack, [1]), stack)
        image, alpha = stack[..., :3], tf.clip_by_value(stack[..., 3:], 0.0, 1.0)
        if n_bg:
            k = tf.random.stateless_uniform((), s[4], 0, n_bg, tf.int32)
            bg = tf.cast(tf.gather(backgrounds, k), tf.float32) / 255.0
            bg_box = _crop_box(s[5], tf.shape(bg)[0], tf.shape(bg)[1], target[0], target[1],
                               0.3, 1.0)
            bg = tf.image.crop_and_resize(bg[None], bg_box[None], [0], target)[0]
            composite = alpha * image + (1.0 - alpha) * bg
            image = tf.where(_uniform(s[6]) < aug.composite, composite, image)
        image = _colour(image, s[7], aug)
        return image, alpha

    return augment


def _to_model_input(image, input_spec):
    """[0, 1] RGB -> the model's convention (gray and/or scaled)."""
    if input_spec.channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    return image * (255.0 * input_spec.scale)




class ImageStore:
    """Decoded images and alphas of several datasets, in memory, fetchable by index in tf.data.

    Pixels live in one flat uint8 tf.Variable (captured by handle, so tf.data graphs stay
    small) with per-item offsets and shapes. Images are shrunk once so their short side is at
    most `short_side`. Files that fail to decode, or whose image and target sizes differ, are
    left out and listed in `problems`.
    """

    def __init__(self, pair_lists, *, short_side=384, workers=4):
        import cv2

        from humanmatting.io import read_image

        def load(item):
            image_path, target_path, alpha_channel = item
            try:
                image = read_image(image_path)
                if not target_path:
                    alpha = np.zeros(image.shape[:2], np.uint8)
                else:
                    flag = cv2.IMREAD_UNCHANGED if alpha_channel else cv2.IMREAD_GRAYSCALE
                    alpha = cv2.imdecode(np.fromfile(target_path, np.uint8), flag)
                    if alpha is None:
                        return None, (target_path, "not a readable image")
                    if alpha_channel:
                        if alpha.ndim != 3 or alpha.shape[2] != 4:
                            return None, (target_path, "has no alpha channel")
                        alpha = alpha[..., 3]
                    if alpha.shape != image.shape[:2]:
                        return None, (target_path, f"size {alpha.shape} differs from its "
                                                   f"image's {image.shape[:2]}")
            except (ValueError, FileNotFoundError) as err:
                return None, (image_path, str(err))
            scale = short_side / min(image.shape[:2])
            if scale < 1:
                size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
            return np.dstack([image, alpha]), None

        self.problems = []
        self.sources = []      # per pair list: array of store indices
        self.refined = []      # per pair list
        items, shapes, offsets = [], [], []
        offset = 0
        with ThreadPoolExecutor(workers) as pool:
            for pairs in pair_lists:
                self.problems += pairs.problems
                jobs = [(i, t, pairs.alpha_channel) for i, t in zip(pairs.images,
                                                                      pairs.targets)]
                indices = []
                for array, problem in pool.map(load, jobs):
                    if problem:
                        self.problems.append(problem)
                        continue
                    indices.append(len(items))
                    items.append(array.reshape(-1))
                    shapes.append(array.shape[:2])
                    offsets.append(offset)
                    offset += array.size
                self.sources.append(np.asarray(indices, np.int64))
                self.refined.append(float(pairs.refined))
        if not items:
            raise ValueError("no usable image/target pairs")
        self.shapes = np.asarray(shapes, np.int64)
        self.offsets = np.asarray(offsets, np.int64)
        self._pixels = tf.Variable(np.concatenate(items), trainable=False, name="pixels")
        self._shapes = tf.constant(self.shapes)
        self._offsets = tf.constant(self.offsets)

    def __len__(self):
        return len(self.offsets)

    def fetch(self, index):
        """Item `index` as (image uint8 (h, w, 3), alpha uint8 (h, w, 1)), inside tf.data."""
        shape = self._shapes[index]
        size = shape[0] * shape[1] * 4
        flat = self._pixels[self._offsets[index]:self._offsets[index] + size]
        array = tf.reshape(flat, tf.concat([shape, [4]], 0))
        return array[..., :3], array[..., 3:]


def load_backgrounds(pairs, short_side=288):
    """Background images as one uint8 tf.Variable (N, h, w, 3), centre-cropped to 4:3."""
    import cv2

    from humanmatting.io import read_image

    out = []
    h, w = short_side, short_side * 4 // 3
    for path in pairs.images:
        try:
            image = read_image(path)
        except (ValueError, FileNotFoundError):
            continue
        ih, iw = image.shape[:2]
        scale = max(h / ih, w / iw)
        image = cv2.resize(image, (math.ceil(iw * scale), math.ceil(ih * scale)),
                           interpolation=cv2.INTER_AREA)
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        out.append(image[top:top + h, left:left + w])
    if not out:
        return None
    return tf.Variable(np.stack(out), trainable=False, name="backgrounds")


def _seed_int(*values):
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0])


def epoch_plan(store, weights, *, epoch, seed, steps, batch_size, n_sizes):
    """The sampling plan of one epoch: store indices, buckets and element seeds.

    Sources are drawn by weight; within a source, items come in a fresh permutation per epoch
    (cycled if the epoch needs more); each batch gets one bucket, uniform over the size table.

    Returns:
        dict of int64 arrays, each of length steps * batch_size: index, bucket, refined, seed.
    """
    rng = np.random.default_rng([seed, epoch])
    n = steps * batch_size
    weights = np.asarray(weights, np.float64) / np.sum(weights)
    source = rng.choice(len(weights), size=n, p=weights)
    index = np.empty(n, np.int64)
    for k, members in enumerate(store.sources):
        where = np.flatnonzero(source == k)
        if len(where) == 0:
            continue
        if len(members) == 0:
            raise ValueError(f"dataset {k} has no usable pairs")
        reps = -(-len(where) // len(members))
        order = np.concatenate([rng.permutation(members) for _ in range(reps)])
        index[where] = order[:len(where)]
    bucket = np.repeat(rng.integers(0, n_sizes, size=steps), batch_size)
    refined = np.asarray(store.refined)[source]
    element_seed = np.stack([np.full(n, _seed_int(seed, epoch)), np.arange(n)], 1)
    return {"index": index, "bucket": bucket, "refined": refined, "seed": element_seed}


def _group_by_bucket(ds, batch_size, drop_remainder):
    return ds.group_by_window(
        key_func=lambda bucket, image, target: tf.cast(bucket, tf.int64),
        reduce_func=lambda key, window: window.map(
            lambda bucket, image, target: (image, target)).batch(
                batch_size, drop_remainder=drop_remainder),
        window_size=batch_size)


def train_dataset(store, weights, *, input_spec, batch_size, steps_per_epoch, epochs, seed=0,
                  sizes=SIZES_256, augment=None, backgrounds=None, initial_epoch=0):
    """The training dataset for epochs [initial_epoch, epochs), `steps_per_epoch` batches each.

    Args:
        store: ImageStore of the training pair lists.
        weights: one sampling weight per pair list of the store.
        input_spec: the model's InputSpec (channels, scale).
        batch_size: images per batch; every batch has one (H, W) from `sizes`.
        steps_per_epoch: batches per epoch.
        epochs: last epoch (exclusive); initial_epoch: first epoch (resume).
        seed: the seed everything random derives from.
        sizes: (H, W) buckets, multiples of 32.
        augment: AugmentConfig (default settings when None).
        backgrounds: tf.Variable from `load_backgrounds`, or None.

    Returns:
        tf.data.Dataset of (image, target) batches; see the module docstring.
    """
    if len(weights) != len(store.sources):
        raise ValueError(f"{len(weights)} weights for {len(store.sources)} datasets")
    aug = augment or AugmentConfig()
    augment_fn = make_augment(sizes, aug, backgrounds)
    plans = [epoch_plan(store, weights, epoch=e, seed=seed, steps=steps_per_epoch,
                        batch_size=batch_size, n_sizes=len(sizes))
             for e in range(initial_epoch, epochs)]
    plan = {k: np.concatenate([p[k] for p in plans]) for k in plans[0]}

    def element(index, bucket, refined, element_seed):
        image, alpha = store.fetch(index)
        image, alpha = augment_fn(image, alpha, tf.cast(bucket, tf.int32), element_seed)
        target = tf.concat([alpha, tf.ones_like(alpha) * tf.cast(refined, tf.float32)], -1)
        return bucket, _to_model_input(image, input_spec), target

    ds = tf.data.Dataset.from_tensor_slices(
        (plan["index"], plan["bucket"], plan["refined"], plan["seed"]))
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Consecutive elements share their bucket, so each window is exactly one batch, in order.
    ds = _group_by_bucket(ds, batch_size, drop_remainder=True)
    # group_by_window hides the length; state it so Keras knows where epochs end.
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch * len(plans)))
    return ds.prefetch(tf.data.AUTOTUNE)


def val_dataset(store, *, input_spec, sizes=SIZES_256, batch_size=8):
    """Validation batches: every item once, resized (no crop) to the size nearest its aspect
    ratio, as `Matter` does at inference; no augmentation; a fixed order."""
    from humanmatting.inference import choose_size

    buckets = np.asarray([sizes.index(choose_size(h, w, sizes)) for h, w in store.shapes])
    order = np.argsort(buckets, kind="stable")
    refined = np.concatenate([np.full(len(m), r) for m, r in zip(store.sources,
                                                                 store.refined)])
    sizes_t = tf.constant(sizes, tf.int32)

    def element(index, bucket, refined):
        image, alpha = store.fetch(index)
        size = sizes_t[bucket]
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, size, method="area")
        alpha = tf.image.resize(tf.cast(alpha, tf.float32) / 255.0, size, method="area")
        target = tf.concat([alpha, tf.ones_like(alpha) * tf.cast(refined, tf.float32)], -1)
        return bucket, _to_model_input(image, input_spec), target

    ds = tf.data.Dataset.from_tensor_slices((order, buckets[order], refined[order]))
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = _group_by_bucket(ds, batch_size, drop_remainder=False)
    batches = sum(-(-int(n) // batch_size) for n in np.bincount(buckets) if n)
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds.prefetch(tf.data.AUTOTUNE)

"""Training and validation data on every Keras backend.

    pairs -> decode once (threads) into an in-memory `ImageStore` -> per epoch, a sampling
    plan (which dataset, which item, which size bucket, which seed) -> each batch made by the
    one augmentation (`humanmatting.data.augment`, NumPy + OpenCV) -> model input and target
    by the model's specs (`humanmatting.specs`)

The batches reach `fit` as a tf.data pipeline on the TensorFlow backend (`tf.numpy_function`
in a parallel, ordered map, prefetched) and as a `keras.utils.PyDataset` on JAX and PyTorch
(the GPU machine has no TensorFlow); both call the same `BatchMaker.batch(epoch, step)`, so
the same seed gives the same batches on either path.

The plan and every random draw derive from (seed, epoch, element index), so a pipeline built
with the same seed yields the same batches in the same order, and the batches of epoch e do
not depend on how many epochs ran before: a run resumed at epoch e sees exactly what an
uninterrupted run saw. Datasets are mixed by sampling weights; a batch's bucket is drawn per
batch, uniformly over the size table, so over an epoch the network sees every shape.

Batches are `(x, y)`: x (B, H, W, C) float32 in the model's input convention (with the
trimap as the last channel for a trimap model), y (B, H, W, 2) float32 = [alpha in [0, 1],
refined flag (1 = soft alpha, 0 = rough binary mask)] (`humanmatting.specs.make_target`), a
dict of it, one per output name, for a dict-output model; for a trimap model (B, H, W, 9) with
the unknown region, foreground and background too (`humanmatting.specs.make_matting_target`).
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np

from humanmatting.data.augment import AugmentConfig, augment_sample, make_sample
from humanmatting.specs import (SIZES_256, OutputSpec, make_matting_target, make_target,
                                make_trimap, target_channels, to_model_input)

__all__ = ["AugmentConfig", "BatchMaker", "ImageStore", "TrainBatches", "ValBatches",
           "distil_target", "epoch_plan", "load_backgrounds", "model_batch", "train_dataset",
           "val_dataset"]


class ImageStore:
    """Decoded images and alphas of several datasets, in memory, as uint8 arrays.

    Images are shrunk once so their short side is at most `short_side`. Files that fail to
    decode, or whose image and target sizes differ, are left out and listed in `problems`.
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
            return (image, alpha), None

        self.problems = []
        self.sources = []      # per pair list: array of store indices
        self.refined = []      # per pair list
        items, shapes, refined = [], [], []
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
                    items.append(array)
                    shapes.append(array[1].shape)
                    refined.append(bool(pairs.refined))
                self.sources.append(np.asarray(indices, np.int64))
                self.refined.append(float(pairs.refined))
        if not items:
            raise ValueError("no usable image/target pairs")
        self.shapes = np.asarray(shapes, np.int64)
        # items with a person (some alpha above one half): the pool `extra_people` draws from
        self.people = np.asarray([i for i, (_, a) in enumerate(items) if a.max() > 127],
                                 np.int64)
        self._items = items
        self._refined = refined

    def __len__(self):
        return len(self._items)

    def sample(self, index):
        """Item `index` as a sample dict (`humanmatting.data.augment.make_sample`)."""
        image, alpha = self._items[index]
        return make_sample(image, alpha, self._refined[index])


def load_backgrounds(pairs, short_side=288):
    """People-free images as a list of uint8 (h, w, 3) arrays, short side at most
    `short_side` (None when none could be read)."""
    import cv2

    from humanmatting.io import read_image

    out = []
    for path in pairs.images:
        try:
            image = read_image(path)
        except (ValueError, FileNotFoundError):
            continue
        scale = short_side / min(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, (math.ceil(image.shape[1] * scale),
                                       math.ceil(image.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        out.append(image)
    return out or None


def _seed_int(*values):
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0])


def epoch_plan(store, weights, *, epoch, seed, steps, batch_size, n_sizes):
    """The sampling plan of one epoch: store indices, buckets and element seeds.

    Sources are drawn by weight; within a source, items come in a fresh permutation per epoch
    (cycled if the epoch needs more); each batch gets one bucket, uniform over the size table.

    Returns:
        dict of int64 arrays, each of length steps * batch_size: index, bucket, refined, seed,
        source (the pair list drawn).
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
    refined = np.asarray(store.refined, np.float64)[source]
    element_seed = np.stack([np.full(n, _seed_int(seed, epoch)), np.arange(n)], 1)
    return {"index": index, "bucket": bucket, "refined": refined, "seed": element_seed,
            "source": source}


def _layer(sample, key):
    """A sample's foreground or background at its image's size; the image itself where the
    sample has none of that size (an unaugmented photo: fg = bg = image)."""
    layer = sample.get(key)
    return sample["image"] if layer is None or layer.shape != sample["image"].shape else layer


def model_batch(samples, input_spec, output_spec=None):
    """Samples at one size -> (x, y): the model's input and target (see the module
    docstring)."""
    images = np.stack([s["image"] for s in samples])
    trimaps = None
    if input_spec.trimap:
        trimaps = np.stack([s["trimap"] if s.get("trimap") is not None
                            else make_trimap(s["alpha"], erode=8, dilate=8) for s in samples])
    x = to_model_input(images, input_spec, trimaps)
    if input_spec.trimap:
        y = np.stack([make_matting_target(s["alpha"], s["refined"], t, _layer(s, "fg"),
                                          _layer(s, "bg")) for s, t in zip(samples, trimaps)])
    else:
        y = np.stack([make_target(s["alpha"], s["refined"]) for s in samples])
    names = OutputSpec.of(output_spec or "softmax2").names
    return x, ({name: y for name in names} if names else y)


def distil_target(y, teacher_prob, weight):
    """Targets with a teacher's person probability blended into the alpha (knowledge
    distillation): alpha <- (1 - w) alpha + w teacher; the refined flag is kept. `weight` is
    one number or one per sample."""
    weight = np.asarray(weight, np.float32)
    if weight.min() < 0.0 or weight.max() > 1.0:
        raise ValueError(f"distil_weight must be in [0, 1], got {weight}")
    if weight.ndim:
        weight = weight.reshape(-1, 1, 1)
    teacher_prob = np.clip(np.asarray(teacher_prob, np.float32), 0.0, 1.0)
    if teacher_prob.shape != y.shape[:3]:
        raise ValueError(f"teacher output {teacher_prob.shape} does not match the targets "
                         f"{y.shape[:3]}")
    out = np.array(y, np.float32, copy=True)
    out[..., 0] = (1.0 - weight) * out[..., 0] + weight * teacher_prob
    return out


class BatchMaker:
    """Makes training batch `step` of epoch `epoch`, the same every time (thread-safe).

    Args:
        store: ImageStore of the training pair lists.
        weights: one sampling weight per pair list of the store.
        input_spec, output_spec: the model's specs.
        batch_size: images per batch; every batch has one (H, W) from `sizes`.
        steps_per_epoch: batches per epoch.
        seed: the seed everything random derives from.
        sizes: (H, W) buckets, multiples of 32.
        augment: AugmentConfig (default settings when None).
        backgrounds: people-free uint8 images to paste people onto (`load_backgrounds`).
        teacher: None, or a function (B, H, W, C) model input -> (B, H, W) person
            probability whose output is blended into the targets (`distil_target`) with
            `distil_weight`; distil_sources: the pair lists whose samples are blended (None:
            all).
    """

    def __init__(self, store, weights, *, input_spec, batch_size, steps_per_epoch, seed=0,
                 sizes=SIZES_256, augment=None, backgrounds=None, output_spec=None,
                 teacher=None, distil_weight=0.5, distil_sources=None):
        if len(weights) != len(store.sources):
            raise ValueError(f"{len(weights)} weights for {len(store.sources)} datasets")
        self.store, self.weights = store, list(weights)
        self.input_spec, self.output_spec = input_spec, output_spec
        self.batch_size, self.steps = batch_size, steps_per_epoch
        self.seed, self.sizes = seed, [tuple(s) for s in sizes]
        self.augment = augment or AugmentConfig()
        self.backgrounds = backgrounds or []
        self.teacher, self.distil_weight = teacher, distil_weight
        self.distil_sources = None if distil_sources is None else set(distil_sources)
        self._plans = {}
        self._lock = threading.Lock()
        self._teacher_lock = threading.Lock()

    def plan(self, epoch):
        with self._lock:
            if epoch not in self._plans:
                if len(self._plans) > 2:
                    self._plans.pop(min(self._plans))
                self._plans[epoch] = epoch_plan(
                    self.store, self.weights, epoch=epoch, seed=self.seed, steps=self.steps,
                    batch_size=self.batch_size, n_sizes=len(self.sizes))
            return self._plans[epoch]

    def samples(self, epoch, step):
        """The augmented sample dicts of one batch."""
        plan = self.plan(epoch)
        first = step * self.batch_size
        size = self.sizes[int(plan["bucket"][first])]
        pool = self.store.people
        people = ((lambda rng: self.store.sample(int(pool[rng.integers(len(pool))])))
                  if len(pool) else None)
        out = []
        for k in range(first, first + self.batch_size):
            rng = np.random.default_rng([int(v) for v in plan["seed"][k]])
            out.append(augment_sample(rng, self.store.sample(int(plan["index"][k])), size,
                                      self.augment, self.backgrounds, people))
        return out

    def batch(self, epoch, step):
        """(x, y) of batch `step` of epoch `epoch`."""
        samples = self.samples(epoch, step)
        x, y = model_batch(samples, self.input_spec, self.output_spec)
        if self.teacher is not None:
            with self._teacher_lock:
                prob = self.teacher(x)
            weight = self.distil_weight
            if self.distil_sources is not None:
                # only the chosen datasets' samples, and not frames rearranged by zoom-out or
                # pasted people (the teacher would miss the small people it never learnt)
                first = step * self.batch_size
                sources = self.plan(epoch)["source"][first:first + self.batch_size]
                weight = np.asarray([self.distil_weight if int(k) in self.distil_sources
                                     and not s.get("rearranged") else 0.0
                                     for k, s in zip(sources, samples)], np.float32)
            if isinstance(y, dict):
                y = {k: distil_target(v, prob, weight) for k, v in y.items()}
            else:
                y = distil_target(y, prob, weight)
        return x, y


class TrainBatches(keras.utils.PyDataset):
    """A BatchMaker as a PyDataset: one epoch of batches, the epoch advanced by Keras's
    `on_epoch_end` (after its workers have stopped), starting at `initial_epoch`."""

    def __init__(self, maker, initial_epoch=0, workers=1):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.maker, self.epoch = maker, initial_epoch

    def __len__(self):
        return self.maker.steps

    def __getitem__(self, step):
        return self.maker.batch(self.epoch, step)

    def on_epoch_end(self):
        self.epoch += 1


def _signature(input_spec, output_spec):
    import tensorflow as tf

    x = tf.TensorSpec((None, None, None, input_spec.model_channels), tf.float32)
    y = tf.TensorSpec((None, None, None, target_channels(input_spec)), tf.float32)
    names = OutputSpec.of(output_spec or "softmax2").names
    return x, ({n: y for n in names} if names else y)


def as_tf_dataset(batches, input_spec, output_spec=None, epochs=1):
    """A PyDataset of batches of several sizes as a tf.data.Dataset with dynamic H and W
    (Keras's own conversion fixes every shape at the first batch's)."""
    import tensorflow as tf

    def generate():
        for _ in range(epochs):
            for i in range(len(batches)):
                yield batches[i]
            batches.on_epoch_end()

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=_signature(input_spec, output_spec))
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(batches) * epochs))
    return ds.prefetch(2)


def _tf_train_dataset(maker, epochs, initial_epoch):
    import tensorflow as tf

    steps = maker.steps
    channels = maker.input_spec.model_channels
    names = OutputSpec.of(maker.output_spec or "softmax2").names

    def make(k):
        x, y = maker.batch(int(k) // steps, int(k) % steps)
        return (x, *([y[n] for n in names] if names else [y]))

    def element(k):
        out = tf.numpy_function(make, [k], [tf.float32] * (1 + max(1, len(names))),
                                stateful=False)
        x = tf.ensure_shape(out[0], (maker.batch_size, None, None, channels))
        ys = [tf.ensure_shape(t, (maker.batch_size, None, None,
                                  target_channels(maker.input_spec))) for t in out[1:]]
        return x, (dict(zip(names, ys)) if names else ys[0])

    ds = tf.data.Dataset.range(initial_epoch * steps, epochs * steps)
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_dataset(store, weights, *, input_spec, batch_size, steps_per_epoch, epochs, seed=0,
                  sizes=SIZES_256, augment=None, backgrounds=None, initial_epoch=0,
                  output_spec=None, workers=2, backend=None, teacher=None,
                  distil_weight=0.5, distil_sources=None):
    """The training batches of epochs [initial_epoch, epochs), `steps_per_epoch` each.

    Args: as for `BatchMaker`, plus `epochs` (last epoch, exclusive), `initial_epoch`
    (resume), `workers` (threads making batches on the PyDataset path) and `backend`
    ("tensorflow" for tf.data, anything else for a PyDataset; default: Keras's backend).

    Returns:
        On TensorFlow a tf.data.Dataset of every epoch's batches in order (pass
        `steps_per_epoch` to `fit`); otherwise a `TrainBatches` PyDataset of one epoch that
        moves to the next at each epoch's end (pass no `steps_per_epoch`).
    """
    maker = BatchMaker(store, weights, input_spec=input_spec, batch_size=batch_size,
                       steps_per_epoch=steps_per_epoch, seed=seed, sizes=sizes,
                       augment=augment, backgrounds=backgrounds, output_spec=output_spec,
                       teacher=teacher, distil_weight=distil_weight,
                       distil_sources=distil_sources)
    if (backend or keras.backend.backend()) != "tensorflow":
        return TrainBatches(maker, initial_epoch, workers=workers)
    if teacher is None:
        return _tf_train_dataset(maker, epochs, initial_epoch)
    # the teacher runs in Python, outside tf.data's graph
    return as_tf_dataset(TrainBatches(maker, initial_epoch), input_spec, output_spec,
                         epochs=epochs - initial_epoch)


class ValBatches(keras.utils.PyDataset):
    """Validation batches: every item once, resized (no crop) to the size nearest its aspect
    ratio, as `Matter` does at inference; no augmentation; in a fixed order, grouped by size.
    A PyDataset on every backend."""

    def __init__(self, store, *, input_spec, sizes=SIZES_256, batch_size=8, output_spec=None,
                 indices=None):
        super().__init__()
        from humanmatting.inference import choose_size

        sizes = [tuple(s) for s in sizes]
        self.store, self.input_spec, self.output_spec = store, input_spec, output_spec
        self.sizes = sizes
        indices = np.arange(len(store)) if indices is None else np.asarray(indices, np.int64)
        buckets = np.asarray([sizes.index(choose_size(h, w, sizes))
                              for h, w in store.shapes[indices]], np.int64)
        order = indices[np.argsort(buckets, kind="stable")]
        buckets = np.sort(buckets, kind="stable")
        self.batches = []
        for b in np.unique(buckets):
            members = order[buckets == b]
            self.batches += [(int(b), members[i:i + batch_size])
                             for i in range(0, len(members), batch_size)]

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        import cv2

        bucket, members = self.batches[i]
        h, w = self.sizes[bucket]
        samples = []
        for index in members:
            s = self.store.sample(int(index))
            image = cv2.resize(s["image"], (w, h), interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(s["alpha"], (w, h), interpolation=cv2.INTER_AREA)
            samples.append({**s, "image": image, "alpha": alpha, "trimap": None})
        return model_batch(samples, self.input_spec, self.output_spec)


def val_dataset(store, *, input_spec, sizes=SIZES_256, batch_size=8, output_spec=None,
                backend=None):
    """The validation batches: `ValBatches`, as a tf.data.Dataset on TensorFlow (`backend`,
    default Keras's)."""
    batches = ValBatches(store, input_spec=input_spec, sizes=sizes, batch_size=batch_size,
                         output_spec=output_spec)
    if (backend or keras.backend.backend()) == "tensorflow":
        return as_tf_dataset(batches, input_spec, output_spec)
    return batches

"""Converts the original LikeUnet Dark-Light release into `models/` and proves it unchanged.

The release (tf.keras 2.x JSON + h5, MIT, Zhenzhong Tang 2020) comes in two files: the deployed
network (ACNet branches fused, BatchNorm still separate) and the same network in training form.
This script
1. loads both originals with Keras 3,
2. copies the deployed release into our `likeunet_dark_light_original` deploy form, folding
   each BatchNorm into its convolution, and checks the outputs agree,
3. loads the training-form release into our training form (ACNet, norm="sum"), fuses it with
   `humanmatting.fuse`, and checks that this agrees too,
4. writes `models/likeunet_dark_light_original.weights.h5` (deploy form) and
   `models/likeunet_dark_light_original.train.weights.h5` (training form, for starting other
   variants from it), their SHA256SUMS, all atomically, and a test reference
   (`tests/data/original_reference.npz`: an input and the original model's output).

Usage:
    python tools/convert_original.py [--peer ../shared/peers/likeunet-original]
"""

import argparse
import sys
from pathlib import Path

import cv2
import keras
import numpy as np

import humanmatting
from humanmatting.io import atomic_path
from humanmatting.layers import fold_batchnorm, transpose_to_conv_kernel
from humanmatting.registry import sha256_file, weights_dir

ROOT = Path(__file__).resolve().parent.parent

def _keras_name(base, index):
    """tf.keras auto-naming: the first layer of a kind is `base`, later ones `base_1`, ..."""
    return base if index == 0 else f"{base}_{index}"


# Our layer name -> (original conv layer, original BatchNorm layer)
STAGES = {f"enc{i}_conv": (f"conv{i}", _keras_name("batch_normalization", i - 1))
          for i in range(1, 6)}
STAGES["bottleneck_conv"] = ("conv6", "batch_normalization_5")
for k in range(5):
    STAGES[f"dec{k + 1}_tconv"] = (_keras_name("conv2d_transpose", k),
                                   _keras_name("batch_normalization", 6 + 2 * k))
for j in range(4):
    STAGES[f"dec{j + 2}_conv"] = (f"conv{7 + j}", _keras_name("batch_normalization", 7 + 2 * j))
PLAIN = {"pre_conv": "conv2d", "post_conv": "conv2d_1", "head": "conv2d_2"}


def load_original(peer, stem):
    text = (peer / f"{stem}.json").read_text()
    model = keras.models.model_from_json(text, custom_objects={"Model": keras.Model})
    weights = next(peer.glob(f"{stem}-[0-9]*.h5"))
    model.load_weights(weights)
    return model


def bn_params(layer):
    gamma, beta, mean, var = layer.get_weights()
    return gamma, beta, mean, var, layer.epsilon


def copy_deployed(original, ours):
    """Folds the deployed release's (conv, BN) pairs into our deploy-form layers."""
    for name, (conv_name, bn_name) in STAGES.items():
        kernel, bias = original.get_layer(conv_name).get_weights()
        transpose = name.endswith("tconv")
        kernel, bias = fold_batchnorm(kernel, bias, *bn_params(original.get_layer(bn_name)),
                                      out_axis=-2 if transpose else -1)
        if transpose:
            kernel = transpose_to_conv_kernel(kernel)
        ours.get_layer(name).set_weights([kernel.astype("float32"), bias.astype("float32")])
    for name, orig in PLAIN.items():
        ours.get_layer(name).set_weights(original.get_layer(orig).get_weights())


def copy_training_form(original, ours):
    """Copies the training-form release into our ACNet (norm="sum") training form."""
    for name, (conv_name, bn_name) in STAGES.items():
        layer = ours.get_layer(name)
        bn = original.get_layer(bn_name).get_weights()
        if name.endswith("tconv"):
            layer.conv.set_weights(original.get_layer(conv_name).get_weights())
            layer.bn.set_weights(bn)
            continue
        for suffix, branch in (("1", layer.square), ("2", layer.hor), ("3", layer.ver)):
            branch.set_weights(original.get_layer(f"{conv_name}-{suffix}").get_weights())
        layer.bn.set_weights(bn)
    for name, orig in PLAIN.items():
        ours.get_layer(name).set_weights(original.get_layer(orig).get_weights())


def sample_inputs():
    """Raw 0-255 grayscale inputs: the bundled photo at two non-square sizes, and noise."""
    rgb = cv2.cvtColor(cv2.imread(str(ROOT / "humanmatting/assets/astronaut.jpg")),
                       cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    photo = [cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)[None, ..., None]
             for h, w in ((256, 320), (128, 160))]
    noise = np.random.default_rng(0).uniform(0, 255, (2, 96, 64, 1))
    return [p.astype("float32") for p in photo] + [noise.astype("float32")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", type=Path,
                        default=ROOT.parent / "shared/peers/likeunet-original")
    args = parser.parse_args(argv)

    deployed = load_original(args.peer, "dark-light")
    training = load_original(args.peer, "dark-light-pre")
    print(f"original parameters: deployed {deployed.count_params():,}, "
          f"training form {training.count_params():,}")

    ours = humanmatting.create_model("likeunet_dark_light_original", weights=None)
    copy_deployed(deployed, ours)
    ours_train = humanmatting.create_model("likeunet_dark_light_original", weights=None,
                                           deploy=False)
    copy_training_form(training, ours_train)
    fused = humanmatting.fuse(ours_train)
    print(f"ours: deploy {ours.count_params():,} parameters, "
          f"training form {ours_train.count_params():,}")

    worst = {}
    for x in sample_inputs():
        ref = deployed(x).numpy()
        worst["ours vs original deployed"] = max(worst.get("ours vs original deployed", 0),
                                                 float(np.abs(ours(x).numpy() - ref).max()))
        ref_pre = training(x).numpy()
        worst["original training form vs original deployed"] = max(
            worst.get("original training form vs original deployed", 0),
            float(np.abs(ref_pre - ref).max()))
        worst["our training form vs original training form"] = max(
            worst.get("our training form vs original training form", 0),
            float(np.abs(ours_train(x, training=False).numpy() - ref_pre).max()))
        worst["fuse(our training form) vs original deployed"] = max(
            worst.get("fuse(our training form) vs original deployed", 0),
            float(np.abs(fused(x).numpy() - ref).max()))
    for what, diff in worst.items():
        print(f"max |diff| {what}: {diff:.2e}")
    if worst["ours vs original deployed"] >= 1e-4:
        print("conversion does not match the original", file=sys.stderr)
        return 1

    out = weights_dir() / "likeunet_dark_light_original.weights.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        ours.save_weights(tmp)
    print(f"wrote {out} sha256 {sha256_file(out)}")

    # The training form too (with the release's own BatchNorm statistics): variants start
    # from it (`init_from` in a training config).
    train_out = out.with_name("likeunet_dark_light_original.train.weights.h5")
    with atomic_path(train_out) as tmp:
        ours_train.save_weights(tmp)
    print(f"wrote {train_out} sha256 {sha256_file(train_out)}")
    with atomic_path(out.with_name("SHA256SUMS")) as tmp:
        tmp.write_text("".join(f"{sha256_file(p)}  {p.name}\n" for p in (out, train_out)))

    x = sample_inputs()[1]
    np.savez_compressed(ROOT / "tests/data/original_reference.npz",
                        image=x[0, ..., 0].astype("uint8"),
                        person=deployed(x).numpy()[0, ..., 1].astype("float32"))
    print("wrote tests/data/original_reference.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())

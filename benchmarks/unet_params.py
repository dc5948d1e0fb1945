"""Parameter counts and skip connections of the eight zoo U-Nets.

Usage::

    python benchmarks/unet_params.py [--size 128] [--channels 1] [--classes 1] [--backbones ...]

Prints one line per backbone: total / trainable parameters, and for each skip connection
``decoder_stage{i}_concat`` its resolution and the channels of (upsampled decoder tensor,
encoder tensor). Built with ``encoder_weights=None`` (the counts do not depend on the weights).
"""

from __future__ import annotations

import argparse

from iac_tf._keras import keras
from iac_tf.machine import header
from iac_tf.unets import BACKBONES, build_unet, skip_layer_names


def describe(backbone: str, size: int, channels: int, classes: int) -> str:
    keras.backend.clear_session()
    model = build_unet(backbone, input_shape=(size, size, channels), classes=classes)
    trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    skips = []
    for name in skip_layer_names(model):
        up, skip = model.get_layer(name).input
        skips.append(f"{skip.shape[1]}x{skip.shape[2]}:{up.shape[-1]}+{skip.shape[-1]}")
    return (
        f"{backbone:<18} {model.count_params():>12,} {trainable:>12,}  "
        f"skips(res:up+enc) {' '.join(skips)}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument(
        "--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES
    )
    args = parser.parse_args(argv)
    print(header(), flush=True)
    print(f"input {args.size}x{args.size}x{args.channels}, {args.classes} class(es)")
    print(f"{'backbone':<18} {'params':>12} {'trainable':>12}")
    for backbone in args.backbones:
        print(describe(backbone, args.size, args.channels, args.classes), flush=True)


if __name__ == "__main__":
    main()

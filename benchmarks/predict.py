"""Benchmark: ``iac predict`` time per 512x512x100 CT volume, base U-Net vs its IAC U-Nets.

    python benchmarks/predict.py                         # 512x512x100, 128x128 windows, base 64
    python benchmarks/predict.py --slices 4 --base-filters 16 --cell-channels 8   # the sample's sizes
    python benchmarks/predict.py --genotype my_genotype.json     # only that genotype
    python benchmarks/predict.py --slices 4 --base-filters 16 --cell-channels 8 --genotype example \
        --tta off on --blend constant gaussian --step-size 0.5 1.0 0.25   # the options' cost

Both models are built here with random weights (the time does not depend on the weights): the
base U-Net (``--base-filters``) and the same U-Net with a :class:`~iac_tf.genotype.DiscreteCell`
in every skip connection (``--cell-channels``), one IAC U-Net per genotype: ``--genotype NAME or
FILE`` (repeatable; default: the three of ``benchmarks/genotypes.py``, ``example``, ``searched``
and ``heaviest``). One synthetic CT volume (HU noise with a body and a lesion) goes through the
whole prediction path of ``iac predict`` (whole-volume CT normalisation, sliding ``--patch``
windows over every slice, back to the file's grid, labels), once per model and setting as
warm-up (tracing), then ``--repeats`` times alternating over models and settings.

Settings: every combination of ``--tta`` (``off``/``on``: mirroring test-time augmentation),
``--blend`` (``constant``: equal weights, ``gaussian``: nnU-Net's importance map) and
``--step-size`` (fraction of the window); by default only ``iac predict``'s defaults (TTA on,
Gaussian, 0.5). Printed: the machine, the median seconds per volume of each model and setting,
slices per second, windows per second (model calls count 4 per window with TTA), each setting's
time relative to the first, and each IAC / U-Net ratio per setting (target <= 1.10). With
``--slices`` below 100 the per-volume time is also extrapolated to 100 slices (the cost is linear
in the slice count). On a shared machine compare the ratios, which are measured within one run,
not the absolute times.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import iac_tf  # noqa: E402,F401
from iac_tf.labels import probabilities_to_labels  # noqa: E402
from iac_tf.inference.tiling import keras_predictor, predict_slices, windows_per_slice  # noqa: E402
from iac_tf.data.preprocessing import Preprocessing  # noqa: E402
from iac_tf.inference.volume import from_slices, to_slices  # noqa: E402
from iac_tf.machine import header  # noqa: E402
import genotypes  # noqa: E402  (same folder)

#: The example genotype (a mix of operations; ``benchmarks/genotypes.py``).
GENOTYPE = genotypes.EXAMPLE


def ct_volume(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.normal(-900, 30, shape).astype(np.float32)
    xx, yy = np.mgrid[: shape[0], : shape[1]]
    body = (xx - shape[0] / 2) ** 2 / (0.4 * shape[0]) ** 2 + (yy - shape[1] / 2) ** 2 / (
        0.35 * shape[1]) ** 2 <= 1
    vol[body] += 900
    lesion = (xx - shape[0] * 0.4) ** 2 + (yy - shape[1] * 0.55) ** 2 <= (shape[0] / 20) ** 2
    vol[lesion] += 150
    return vol[..., None]


def predict_once(predict, image, prep, patch, classes, batch_size, setting) -> float:
    tta, blend, step = setting
    t0 = time.perf_counter()
    slices, fill = to_slices(image, prep.modalities, prep)
    probs = predict_slices(predict, slices, patch, fill, len(classes), batch_size=batch_size,
                           step_size=step, tta=tta == "on", blend=blend)
    labels = probabilities_to_labels(from_slices(probs, image.shape[:3]), classes)
    assert labels.shape == image.shape[:3]
    return time.perf_counter() - t0


def main(argv=None) -> None:
    from iac_tf.training.stage3 import build_iac_unet
    from iac_tf.unets import build_unet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="in-plane side of the volume")
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--patch", type=int, default=128, help="model input side")
    parser.add_argument("--base-filters", type=int, default=64, help="64: the zoo's base U-Net")
    parser.add_argument("--cell-channels", type=int, default=16)
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument("--genotype", action="append", default=None, metavar="NAME_OR_FILE",
                        help=f"genotype: one of {', '.join(genotypes.NAMES)} or a JSON file "
                             "(repeatable; default: all three names)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-unet", action="store_true", help="time the IAC U-Nets only")
    parser.add_argument("--tta", nargs="+", choices=("on", "off"), default=["on"])
    parser.add_argument("--blend", nargs="+", choices=("gaussian", "constant"),
                        default=["gaussian"])
    parser.add_argument("--step-size", nargs="+", type=float, default=[0.5])
    args = parser.parse_args(argv)
    print(header(), flush=True)

    chosen = dict(genotypes.load(g) for g in (args.genotype or genotypes.NAMES))
    unet = build_unet("base", input_shape=(args.patch, args.patch, 1), classes=args.classes,
                      base_filters=args.base_filters)
    iacs = {f"iac {name}": build_iac_unet(unet, g, cell_channels=args.cell_channels)
            for name, g in chosen.items()}
    classes = tuple((k + 1,) for k in range(args.classes))
    prep = Preprocessing(patch_size=args.patch, zoom=1.0, reorient=True, nonzero=False,
                         ct_window=(), ct_percentiles=(0.5, 99.5),
                         class_names=tuple(f"c{k}" for k in range(args.classes)),
                         classes=classes, modalities=("CT",))
    image = ct_volume((args.size, args.size, args.slices))
    settings = list(itertools.product(args.tta, args.blend, args.step_size))
    print(f"volume {args.size}x{args.size}x{args.slices} CT, {args.patch}x{args.patch} windows; "
          f"base U-Net base_filters={args.base_filters} ({unet.count_params():,} params), IAC "
          f"U-Nets cell C={args.cell_channels}; batch {args.batch_size} windows:", flush=True)
    for name, g in chosen.items():
        print(f"  iac {name}: {genotypes.describe(g)} ({iacs['iac ' + name].count_params():,} params)")
    models = {} if args.no_unet else {"unet": keras_predictor(unet)}
    models.update({k: keras_predictor(m) for k, m in iacs.items()})
    for predict in models.values():  # warm-up: trace once on a few slices
        for setting in settings:
            predict_once(predict, image[:, :, :2], prep, args.patch, classes, args.batch_size,
                         setting)
    times = {(name, setting): [] for name in models for setting in settings}
    for r in range(args.repeats):
        for setting in settings:
            for name, predict in models.items():
                seconds = predict_once(predict, image, prep, args.patch, classes,
                                       args.batch_size, setting)
                times[name, setting].append(seconds)
                print(f"  repeat {r + 1}: {name:<14} {label(setting):<32} {seconds:8.2f} s",
                      flush=True)
    per_volume = {key: statistics.median(t) for key, t in times.items()}
    for (name, setting), seconds in per_volume.items():
        windows = windows_per_slice(args.size, args.size, args.patch, setting[2]) * args.slices
        line = (f"{name:<14} {label(setting):<32} {seconds:8.2f} s per volume  "
                f"{args.slices / seconds:7.2f} slices/s  {windows / seconds:8.1f} windows/s  "
                f"x{seconds / per_volume[name, settings[0]]:.2f} of the first setting")
        if args.slices != 100:
            line += f"  (~{seconds * 100 / args.slices:.1f} s per 100 slices, extrapolated)"
        print(line)
    if "unet" in models:
        for setting in settings:
            for name in iacs:
                ratio = per_volume[name, setting] / per_volume["unet", setting]
                print(f"{name} / U-Net time ratio, {label(setting)}: {ratio:.3f} (target <= "
                      f"1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


def label(setting) -> str:
    tta, blend, step = setting
    return f"TTA {tta}, {blend}, step {step:g}"


if __name__ == "__main__":
    main()

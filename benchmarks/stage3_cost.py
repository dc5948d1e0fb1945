"""Benchmark: what the IAC U-Net costs against its U-Net, at the sample's and the paper's sizes.

    python benchmarks/stage3_cost.py                  # both sizes, replace mode, three genotypes
    python benchmarks/stage3_cost.py --sizes 16:8 --modes replace residual --genotype searched
    python benchmarks/stage3_cost.py --genotype my_genotype.json

Three ratios per size (``--sizes F:C``: a base U-Net with F filters, discrete cells with C
channels; default ``16:8``, the sample's, and ``64:16``, the paper's), each measured in one run:

* inference: IAC U-Net / U-Net time for a batch of ``--infer-batch`` 128x128 windows, the Keras
  model called in inference mode in one traced function (what ``iac predict`` runs), and the
  same for both models exported as SavedModels and loaded back (what TF Serving runs);
* training step: one Stage III step (the IAC U-Net, U-Net frozen, Stage III's compile) / one
  Stage I step (the U-Net, every weight trained), batch ``--batch``;
* memory: the peak bytes of TensorFlow's allocator during two steps, Stage III / Stage I, each in
  a fresh process (CPU: the BFC allocator switched on, one op at a time; median of
  ``--mem-repeats`` processes).

``--ablations`` adds, in the same run, the IAC U-Net without each way to its speed (each row a
ratio to the same U-Net / Stage I step): ``no-absorb`` (``fuse_output_conv`` and
``fuse_upsampling`` off: the cells leave the upsampling and the decoder convolution to the U-Net),
``no-recompute`` (training keeps every tensor of the separable-convolution blocks instead of
recomputing them, :mod:`iac_tf.search.recompute`; with its peak memory) and ``keras-depthwise``
(also Keras' depthwise layers and TensorFlow's gradients).

Times are medians of ``--repeats`` turns in which the two models alternate (a drift in the
shared machine's speed moves both alike), ratios the median of the per-turn ratios.

Genotypes: ``--genotype NAME or FILE`` (repeatable; default: the three of
``benchmarks/genotypes.py``: ``example``, a mix with two ``skip_connect`` edges; ``searched``, one
a search found on real data; ``heaviest``, every edge ``sep_conv_5x5``). Each row also gives the
ratio of the FLOPs the two traced functions run (TensorFlow's per-op statistics, as
``benchmarks/roofline.py`` counts them): where a time ratio misses its target, the FLOP ratio
says how much of it the cell's own arithmetic explains. The machine (CPU, vector instruction
sets, oneDNN on or off) is printed first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "--child" in sys.argv:  # memory children, before TensorFlow is imported: a CPU allocator that
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # keeps statistics

import numpy as np  # noqa: E402

import iac_tf  # noqa: E402,F401
from iac_tf._keras import tf  # noqa: E402
import genotypes  # noqa: E402  (same folder)
from iac_tf.machine import header  # noqa: E402
from roofline import graph_flops  # noqa: E402
from search_step import _allocator_mib, _device, _interleaved_seconds, _peak_mib, _sync  # noqa: E402

SIZE = 128
TARGETS = {"inference": 1.10, "step": 1.0, "memory": 1.0}


def _unet(filters: int):
    from iac_tf.unets import build_unet

    return build_unet("base", input_shape=(SIZE, SIZE, 1), classes=2, base_filters=filters)


def _iac(filters: int, C: int, mode: str, genotype, absorb: bool = True):
    from iac_tf.training.stage3 import build_iac_unet

    return build_iac_unet(_unet(filters), genotype, cell_channels=C, implant_mode=mode,
                          fuse_output_conv=absorb, fuse_upsampling=absorb)


@contextlib.contextmanager
def _without(way: str):
    """The IAC U-Net built and traced inside runs without ``way`` (``--ablations``)."""
    from iac_tf.search import operations
    from iac_tf.search.operations import ReLUSepConvBN

    saved = ReLUSepConvBN._depthwise, operations.can_recompute
    if way == "keras-depthwise":  # Keras' depthwise layers and TensorFlow's gradients
        ReLUSepConvBN._depthwise = lambda self, layer, x: layer(x)
        operations.can_recompute = lambda x, bn: False
    elif way == "no-recompute":
        operations.can_recompute = lambda x, bn: False
    elif way not in ("", "no-absorb"):  # no-absorb: _iac(absorb=False)
        raise ValueError(f"unknown ablation {way!r}")
    try:
        yield
    finally:
        ReLUSepConvBN._depthwise, operations.can_recompute = saved


def _batch(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, SIZE, SIZE, 1)).astype(np.float32)
    y = (rng.random((batch, SIZE, SIZE, 2)) > 0.7).astype(np.float32)
    return tf.constant(x), tf.constant(y)


def training_step(model, stage: int, batch: int):
    """``model``'s traced ``train_step`` on one fixed batch, compiled as Stage I or III compiles."""
    from iac_tf.config.stages import Stage1Config, Stage3Config
    from iac_tf.training.fit import compile_for_training

    compile_for_training(model, Stage1Config() if stage == 1 else Stage3Config())
    data = _batch(batch)
    step = tf.function(model.train_step)
    run = lambda: step(data)  # noqa: E731
    run.step, run.data = step, data
    run.flops = lambda: graph_flops(step, data)[0]
    return run


def _inference(model, x):
    fn = tf.function(lambda t: model(t, training=False))
    run = lambda: fn(x)  # noqa: E731
    run.flops = lambda: graph_flops(fn, x)[0]
    return run


def _savedmodel(model, folder: str, x):
    """``model`` exported as a SavedModel (the way ``iac export`` writes it) and loaded back."""
    from iac_tf.files import save_model

    path = save_model(model, folder, save_format="tf")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    name = list(serve.structured_input_signature[1])[0]
    return lambda: serve(**{name: x})


def _memory_child(args) -> None:
    tf.config.threading.set_inter_op_parallelism_threads(1)  # the peak depends on the op order
    filters, C = (int(v) for v in args.sizes[0].split(":"))
    with _without(args.without):
        model = (_unet(filters) if args.child == "stage1"
                 else _iac(filters, C, args.modes[0], genotypes.load(args.genotype[0])[1]))
        step = training_step(model, 1 if args.child == "stage1" else 3, args.batch)
        _sync(step())  # trace and first step outside the measurement
    stats = _allocator_mib()
    if stats is not None:
        tf.config.experimental.reset_memory_stats(_device())
        before = _allocator_mib()[0]
    else:
        before = _peak_mib()[0]
    _sync(step())
    _sync(step())
    peak, source = _peak_mib()
    print(json.dumps({"peak_mib": peak, "before_mib": before, "source": source}))


def _memory(args, size: str, kind: str, mode: str, without: str = "",
            genotype: str = "example") -> tuple[float, str]:
    cmd = [sys.executable, __file__, "--child", kind, "--sizes", size, "--modes", mode,
           "--batch", str(args.batch), "--without", without, "--genotype", genotype]
    peaks, source = [], ""
    for _ in range(args.mem_repeats):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        peaks.append(out["peak_mib"] - out["before_mib"])
        source = out["source"]
    return statistics.median(peaks), source


def _verdict(ratio: float, key: str) -> str:
    return "met" if ratio <= TARGETS[key] else "NOT met"


def _row(filters, C, label, mode, measure, a, b, ratio, key, flop_ratio="") -> None:
    print(f"| {filters} | {C} | {label} | {mode} | {measure} | {a} | {b} | {ratio:.2f} | "
          f"{_verdict(ratio, key)} | {flop_ratio} |", flush=True)


def _flop_ratio(fns) -> str:
    try:
        base, other = (fn.flops() for fn in fns)
    except Exception as exc:  # noqa: BLE001 - a graph the statistics cannot walk: say so
        return f"n/a ({type(exc).__name__})"
    return f"{other / base:.2f} ({base / 1e9:.1f} / {other / 1e9:.1f} GFLOP)"


def _ablations(args, filters: int, C: int, unet, x, label: str, spec: str, genotype) -> None:
    for way in ("no-absorb", "no-recompute", "keras-depthwise"):
        with _without(way):
            iac = _iac(filters, C, "replace", genotype, absorb=way != "no-absorb")
            rows = []
            if way == "no-absorb":  # the one way that changes inference
                rows.append(("inference", _inference(unet, x), _inference(iac, x)))
            rows.append(("step", training_step(_unet(filters), 1, args.batch),
                             training_step(iac, 3, args.batch)))
            for key, base, fn in rows:
                (a, b), ratio = _interleaved_seconds([base, fn], args.repeats)
                measure = "inference (s)" if key == "inference" else "training step (s)"
                _row(filters, C, label, way, measure, f"{a:.3f}", f"{b:.3f}", ratio, key)
            if way == "no-recompute" and not args.no_memory:
                size = f"{filters}:{C}"
                m1, source = _memory(args, size, "stage1", "replace", genotype=spec)
                m3, _ = _memory(args, size, "stage3", "replace", without=way, genotype=spec)
                _row(filters, C, label, way, f"step peak memory (MiB; {source})", f"{m1:.0f}",
                     f"{m3:.0f}", m3 / m1, "memory")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["16:8", "64:16"], help="F:C pairs")
    p.add_argument("--modes", nargs="+", default=["replace"], choices=["replace", "residual"])
    p.add_argument("--batch", type=int, default=8, help="training batch")
    p.add_argument("--infer-batch", type=int, default=32, help="windows per inference batch")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--mem-repeats", type=int, default=3)
    p.add_argument("--no-savedmodel", action="store_true", help="skip the SavedModel rows")
    p.add_argument("--no-memory", action="store_true", help="skip the memory rows")
    p.add_argument("--ablations", action="store_true",
                   help="also time the IAC U-Net without each way to its speed (replace mode)")
    p.add_argument("--genotype", action="append", default=None, metavar="NAME_OR_FILE",
                   help=f"genotype: one of {', '.join(genotypes.NAMES)} or a JSON file "
                        "(repeatable; default: all three names)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP ratios")
    p.add_argument("--child", choices=["stage1", "stage3"], help=argparse.SUPPRESS)
    p.add_argument("--without", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.genotype = args.genotype or list(genotypes.NAMES)
    if args.child:
        _memory_child(args)
        return

    print(header(), flush=True)
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}; {SIZE}x{SIZE}x1 input, "
          f"2 classes; training batch {args.batch}, inference batch {args.infer_batch}; "
          f"{args.repeats} alternating turns; targets: inference <= {TARGETS['inference']}x, "
          f"step and memory <= {TARGETS['step']}x")
    chosen = [(spec, *genotypes.load(spec)) for spec in args.genotype]
    for _, label, g in chosen:
        print(f"genotype {label}: {genotypes.describe(g)}")
    print("\n| U-Net filters | C | genotype | mode | measure | U-Net / Stage I | IAC U-Net / Stage III "
          "| ratio | target | FLOP ratio (U-Net / IAC GFLOP run) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    x = _batch(args.infer_batch, seed=2)[0]
    for size in args.sizes:
        filters, C = (int(v) for v in size.split(":"))
        for spec, label, genotype in chosen:
            for mode in args.modes:
                unet, iac = _unet(filters), _iac(filters, C, mode, genotype)
                rows = [("inference (s)", "inference", [_inference(unet, x), _inference(iac, x)])]
                if not args.no_savedmodel:
                    with tempfile.TemporaryDirectory() as tmp:
                        served = [_savedmodel(m, os.path.join(tmp, name), x)
                                  for m, name in ((unet, "unet"), (iac, "iac"))]
                    rows.append(("SavedModel inference (s)", "inference", served))
                rows.append(("training step (s)", "step",
                             [training_step(_unet(filters), 1, args.batch),
                              training_step(iac, 3, args.batch)]))
                for measure, key, fns in rows:
                    (a, b), ratio = _interleaved_seconds(fns, args.repeats)
                    flops = "" if args.no_flops or not hasattr(fns[0], "flops") else _flop_ratio(fns)
                    _row(filters, C, label, mode, measure, f"{a:.3f}", f"{b:.3f}", ratio, key, flops)
                if args.ablations and mode == "replace":
                    _ablations(args, filters, C, unet, x, label, spec, genotype)
                if not args.no_memory:
                    m1, source = _memory(args, size, "stage1", mode, genotype=spec)
                    m3, _ = _memory(args, size, "stage3", mode, genotype=spec)
                    _row(filters, C, label, mode, f"step peak memory (MiB; {source})", f"{m1:.0f}",
                         f"{m3:.0f}", m3 / m1, "memory")


if __name__ == "__main__":
    main()

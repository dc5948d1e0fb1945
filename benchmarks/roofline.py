"""Roofline: FLOPs and achieved GFLOP/s of a Stage I step, a Stage II search iteration and a
discrete-IAC inference, beside the machine's measured dense-convolution GFLOP/s, and a projection
of the paper's Stage II + III hours on a GPU of a stated throughput.

    python benchmarks/roofline.py [--backbone base] [--size 128] [--batch 8] [--repeats 5]
                                  [--slices 10000] [--gpu-tflops 10]

FLOPs: the FLOP statistics TensorFlow registers per op (what ``tf.compat.v1.profiler``'s
``float_operation`` adds up: convolutions and their gradients, matmuls, most element-wise ops;
ops without statistics count 0, so the numbers are lower bounds dominated by the convolutions),
summed over the ops of the traced step that its results need (the whole traced graph, which also
holds gradient ops the runtime prunes, is printed beside it). Times: median of ``--repeats``
after one warm-up, all measured in this one process.

Projection (labelled as such): hours = epochs x slices x FLOPs per slice / (GPU FLOP/s achieved),
with the paper's settings (Section IV-B: 200 search epochs incl. 15 warm-up over train_search_dt
and val_search_dt, then 200 Stage III epochs over train_dt at 128x128). The paper gives no slice
counts, so ``--slices`` (train_dt slices; each search set is half of them) is an input, and
``--gpu-tflops`` is the throughput assumed achieved on the GPU (an RTX 3090 Ti peaks at ~40 TFLOP/s
FP32; dense convolutions usually reach 25-50 % of it, hence the default 10).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from iac_tf._keras import keras, tf  # noqa: E402
from iac_tf.machine import header  # noqa: E402
from search_step import _batch, _median_seconds, ops_run  # noqa: E402  (same folder: one timing loop, one batch)

EXAMPLE_GENOTYPE = {
    "format": "iac_tf.genotype", "version": 1,
    "edges": [[["sep_conv_3x3", 1], ["skip_connect", 0]], [["dil_conv_3x3", 2], ["sep_conv_5x5", 1]],
              [["avg_pool_3x3", 0], ["sep_conv_3x3", 3]], [["dil_conv_5x5", 4], ["skip_connect", 2]]],
}


def graph_flops(fn, *args) -> tuple[int, int]:
    """(FLOPs of the ops one call of the tf.function ``fn`` runs, FLOPs of its whole graph).

    Per op the FLOP statistics TensorFlow registers (what ``tf.compat.v1.profiler``'s
    ``float_operation`` adds up). The first number counts only the ops the call's results and
    side effects need: a traced gradient also builds, e.g., the filter gradients of the frozen
    U-Net's convolutions, which nothing uses and the runtime prunes.
    """
    from tensorflow.python.framework import ops as tf_ops

    concrete = fn.get_concrete_function(*args)
    graph = concrete.graph
    needed = ops_run(concrete)
    run = total = 0
    for op in graph.get_operations():
        try:
            flops = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value or 0
        except (ValueError, TypeError):  # no statistics registered / shape unknown: 0, as the profiler
            flops = 0
        total += flops
        run += flops if op.name in needed else 0
    return int(run), int(total)


def median_seconds(fn, args, repeats: int) -> float:
    """Median seconds of ``fn(*args)`` after one warm-up call (search_step's timing loop)."""
    return _median_seconds(lambda: fn(*args), repeats)


def _unet(backbone, size):
    from iac_tf.unets import build_unet

    return build_unet(backbone, input_shape=(size, size, 1), classes=2)


def steps(backbone: str, size: int, batch: int, K: int):
    """(name, tf.function, args, samples per call) for the three workloads."""
    from iac_tf.config.stages import Stage1Config
    from iac_tf.training.fit import compile_for_training
    from iac_tf.training.stage2 import Stage2Config, build_supernet
    from iac_tf.training.stage3 import build_iac_unet

    tr, val = _batch(batch, size, 0), _batch(batch, size, 1)
    unet = _unet(backbone, size)
    compile_for_training(unet, Stage1Config())
    stage1 = tf.function(unet.train_step)
    sn = build_supernet(_unet(backbone, size), Stage2Config(partial_channels=K))
    sn.search_active = True
    search = tf.function(sn.train_step)
    frozen = _unet(backbone, size)
    frozen.trainable = False
    iac = build_iac_unet(frozen, EXAMPLE_GENOTYPE)
    infer = tf.function(lambda x: iac(x, training=False))
    return [("Stage I step", stage1, (tr,), batch),
            ("search iteration", search, ((tr, val),), batch),
            ("discrete-IAC inference", infer, (tr[0],), batch)]


def dense_conv_gflops(repeats: int) -> float:
    """GFLOP/s of a 3x3, 64 -> 64 'same' convolution at 128x128, batch 8 (forward only)."""
    x = tf.random.normal((8, 128, 128, 64))
    k = tf.random.normal((3, 3, 64, 64))
    conv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
    flops = 2 * 8 * 128 * 128 * 64 * 64 * 9
    return flops / median_seconds(conv, (), repeats) / 1e9


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="base")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--slices", type=int, default=10000, help="train_dt slices assumed (projection)")
    p.add_argument("--gpu-tflops", type=float, default=10.0, help="achieved GPU TFLOP/s assumed")
    args = p.parse_args(argv)
    print(header(), flush=True)

    print(f"CPU ({os.cpu_count()} cores), load {os.getloadavg()[0]:.1f}; backbone {args.backbone}, "
          f"{args.size}x{args.size}, batch {args.batch}, K={args.k}")
    peak = dense_conv_gflops(args.repeats)
    print(f"measured dense conv (3x3, 64->64, 128x128, batch 8): {peak:.1f} GFLOP/s\n")
    print("| workload | GFLOP per call (whole graph) | GFLOP per slice | median s | achieved GFLOP/s | "
          "of dense conv |")
    print("|---|---|---|---|---|---|")
    per_slice = {}
    for name, fn, call_args, samples in steps(args.backbone, args.size, args.batch, args.k):
        flops, whole = graph_flops(fn, *call_args)
        sec = median_seconds(fn, call_args, args.repeats)
        per_slice[name] = flops / samples
        print(f"| {name} | {flops / 1e9:.2f} ({whole / 1e9:.2f}) | {flops / samples / 1e9:.3f} | {sec:.3f} | "
              f"{flops / sec / 1e9:.1f} | {flops / sec / 1e9 / peak:.0%} |", flush=True)
    keras.backend.clear_session()

    # Stage III trains the discrete IAC: forward + backward down to the first cell, about the
    # FLOPs of a Stage I step (upper bound: Stage I also differentiates the encoder weights).
    search_slices = args.slices // 2  # train_search_dt: half of train_dt; one iteration uses a
    stage2 = 200 * search_slices * per_slice["search iteration"]  # pair of slices (tr, val)
    stage3 = 200 * args.slices * per_slice["Stage I step"]
    rate = args.gpu_tflops * 1e12
    print(f"\nPROJECTION (not a measurement): {args.slices} train_dt slices, 200 + 200 epochs, "
          f"{args.gpu_tflops:g} TFLOP/s achieved on the GPU:")
    print(f"  Stage II {stage2 / rate / 3600:.2f} h + Stage III {stage3 / rate / 3600:.2f} h "
          f"= {(stage2 + stage3) / rate / 3600:.2f} h (Table III of the paper: 0.5-11 h per dataset)")


if __name__ == "__main__":
    main()

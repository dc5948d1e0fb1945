"""Parameter counts of one SearchCell / DiscreteCell and SearchCell forward+backward timings.

Usage::

    python benchmarks/search_cell.py [--size 64] [--batch 8] [--runs 5] [--warmup 2] [--xla]

Prints (cell inputs 64 + 64 channels -> 128 output channels, C = 16):
* parameters of one SearchCell (K = 1 and K = 4: K divides the channels of the edge ops) and
  of one DiscreteCell for an example genotype and for the smallest / largest genotypes,
* the median seconds of one forward+backward step (gradients w.r.t. omega, alpha and beta) of a
  SearchCell at size x size, batch ``--batch``, for K = 1 and K = 4, traced with tf.function,
  after ``--warmup`` untimed steps, for ``implementation="reference"`` (edge by edge: the cell as
  it was before the fused path) and ``"fused"`` (the default), run interleaved in one process,
  and their ratio; ``--xla`` adds the fused cell under ``jit_compile=True``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from iac_tf._keras import keras, tf
from iac_tf.genotype import DiscreteCell, Genotype
from iac_tf.machine import header
from iac_tf.search import ArchitectureParameters, SearchCell, fused_cell

CU, CS, C = 64, 64, 16
EXAMPLE = Genotype((
    (("sep_conv_3x3", 1), ("skip_connect", 0)),
    (("dil_conv_3x3", 2), ("sep_conv_5x5", 1)),
    (("avg_pool_3x3", 0), ("sep_conv_3x3", 3)),
    (("dil_conv_5x5", 4), ("skip_connect", 2)),
))


def _counts(layer):
    trainable = sum(int(tf.size(w)) for w in layer.trainable_weights)
    return trainable, layer.count_params()


def param_counts(size: int = 64) -> dict:
    shapes = [(None, size, size, CU), (None, size, size, CS)]
    out = {}
    for K in (1, 4):
        cell = SearchCell(CU + CS, C=C, K=K)
        cell.build(shapes + [(14, 8), (14,)])
        out[f"SearchCell K={K}"] = _counts(cell)
    for label, genotype in [
        ("DiscreteCell example", EXAMPLE),
        ("DiscreteCell all skip_connect (min)", Genotype(tuple(
            (("skip_connect", 0), ("skip_connect", 1)) for _ in range(4)))),
        ("DiscreteCell all sep_conv_5x5 (max)", Genotype(tuple(
            (("sep_conv_5x5", 0), ("sep_conv_5x5", 1)) for _ in range(4)))),
    ]:
        cell = DiscreteCell(genotype, CU + CS, C=C)
        cell.build(shapes)
        out[label] = _counts(cell)
    return out


def make_step(K: int, size: int, batch: int, implementation: str, jit_compile: bool = False,
              group_max_channels: int | None = None):
    """A traced forward+backward of one SearchCell (gradients for omega, alpha and beta).

    ``group_max_channels`` overrides ``fused_cell.GROUP_CONVS_MAX_CHANNELS`` while tracing."""
    arch = ArchitectureParameters()
    cell = SearchCell(CU + CS, C=C, K=K, implementation=implementation)
    x0 = tf.random.normal((batch, size, size, CU), seed=0)
    x1 = tf.random.normal((batch, size, size, CS), seed=1)
    cell([x0, x1, *arch(x0)])  # build
    variables = [arch.alpha, arch.beta] + cell.trainable_weights

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            alpha, beta = arch(x0)
            loss = tf.reduce_mean(tf.cast(cell([x0, x1, alpha, beta], training=True), tf.float32) ** 2)
        grads = tape.gradient(loss, variables)
        return loss, tf.add_n([tf.reduce_sum(g) for g in grads])

    saved = fused_cell.GROUP_CONVS_MAX_CHANNELS
    if group_max_channels is not None:
        fused_cell.GROUP_CONVS_MAX_CHANNELS = group_max_channels
    try:
        step.get_concrete_function()  # trace now, under the override
    finally:
        fused_cell.GROUP_CONVS_MAX_CHANNELS = saved
    return lambda: [t.numpy() for t in step()]  # .numpy() waits for the device


def interleaved_medians(steps: dict, runs: int, warmup: int) -> dict:
    """Median seconds of each step, run in turn (A, B, A, B, ...) so load changes hit all alike."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    for _ in range(runs):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--xla", action="store_true", help="also time the fused cell with jit_compile")
    parser.add_argument("--grouping", action="store_true",
                        help="also time the fused cell with every / no edges' conv ops grouped")
    parser.add_argument("--no-params", action="store_true", help="skip the parameter counts")
    args = parser.parse_args(argv)
    print(header(), flush=True)
    devices = [d.device_type + ":" + d.name.split(":")[-1] for d in tf.config.list_logical_devices()]
    print(f"devices: {devices}")
    if not args.no_params:
        print(f"parameters (inputs {CU}+{CS} channels -> {CU + CS}, C={C}; trainable / total incl. BN stats):")
        for label, (trainable, total) in param_counts().items():
            print(f"  {label:38s} {trainable:8d} / {total:8d}")
    print(f"SearchCell forward+backward, {args.size}x{args.size}, batch {args.batch}, "
          f"median of {args.runs} interleaved runs after {args.warmup} warm-up "
          f"(reference = the edge-by-edge cell as before the fused path; load {os.getloadavg()[0]:.1f}):")
    for K in (1, 4):
        keras.backend.clear_session()
        steps = {impl: make_step(K, args.size, args.batch, impl) for impl in ("reference", "fused")}
        if args.grouping:
            steps["fused, convs grouped"] = make_step(K, args.size, args.batch, "fused", group_max_channels=10**6)
            steps["fused, convs per edge"] = make_step(K, args.size, args.batch, "fused", group_max_channels=0)
        if args.xla:
            steps["fused+xla"] = make_step(K, args.size, args.batch, "fused", jit_compile=True)
        med = interleaved_medians(steps, args.runs, args.warmup)
        cells = "  ".join(f"{name} {sec:.4f} s" for name, sec in med.items())
        ratios = "  ".join(f"reference/{name} {med['reference'] / sec:.2f}x"
                           for name, sec in med.items() if name != "reference")
        print(f"  K={K}: {cells}  |  speed-up {ratios}", flush=True)

if __name__ == "__main__":
    main()

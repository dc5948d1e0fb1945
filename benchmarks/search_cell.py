"""Parameter counts of one SearchCell / DiscreteCell and SearchCell forward+backward timings.

Usage::

    python benchmarks/search_cell.py [--size 64] [--batch 8] [--runs 5] [--warmup 2]

Prints (cell inputs 64 + 64 channels -> 128 output channels, C = 16):
* parameters of one SearchCell (K = 1 and K = 4: K divides the channels of the edge ops) and
  of one DiscreteCell for an example genotype and for the smallest / largest genotypes,
* the median seconds of one forward+backward step (gradients w.r.t. omega, alpha and beta) of a
  SearchCell at size x size, batch ``--batch``, for K = 1 and K = 4, traced with tf.function,
  after ``--warmup`` untimed steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

from iac_tf._keras import keras, tf
from iac_tf.genotype import DiscreteCell, Genotype
from iac_tf.search import ArchitectureParameters, SearchCell

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


def time_search_cell(K: int, size: int, batch: int, runs: int, warmup: int) -> float:
    keras.backend.clear_session()
    arch = ArchitectureParameters()
    cell = SearchCell(CU + CS, C=C, K=K)
    x0 = tf.random.normal((batch, size, size, CU), seed=0)
    x1 = tf.random.normal((batch, size, size, CS), seed=1)
    cell([x0, x1, *arch(x0)])  # build
    variables = [arch.alpha, arch.beta] + cell.trainable_weights

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            alpha, beta = arch(x0)
            loss = tf.reduce_mean(tf.cast(cell([x0, x1, alpha, beta], training=True), tf.float32) ** 2)
        grads = tape.gradient(loss, variables)
        return loss, tf.add_n([tf.reduce_sum(g) for g in grads])

    for _ in range(warmup):
        [t.numpy() for t in step()]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        [t.numpy() for t in step()]  # .numpy() waits for the device
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    devices = [d.device_type + ":" + d.name.split(":")[-1] for d in tf.config.list_logical_devices()]
    print(f"devices: {devices}")
    print(f"parameters (inputs {CU}+{CS} channels -> {CU + CS}, C={C}; trainable / total incl. BN stats):")
    for label, (trainable, total) in param_counts().items():
        print(f"  {label:38s} {trainable:8d} / {total:8d}")
    print(f"SearchCell forward+backward, {args.size}x{args.size}, batch {args.batch}, "
          f"median of {args.runs} after {args.warmup} warm-up:")
    for K in (1, 4):
        seconds = time_search_cell(K, args.size, args.batch, args.runs, args.warmup)
        print(f"  K={K}: {seconds:.4f} s")


if __name__ == "__main__":
    main()

"""Input pipeline: the share of a Stage I and a Stage II epoch spent waiting for data.

    python benchmarks/input_pipeline.py [--experiment experiments/sample.yaml] [--max-batches 30]

Runs from the repository root (the experiment's relative paths). Builds the experiment's slice
cache (in ``--cache-dir``, default a temporary folder, so the run folder is left alone), its U-Net
and its supernet, then runs one epoch (at most ``--max-batches`` steps) of

* a Stage I training step over ``train_dt`` and
* a Stage II search iteration over ``(train_search_dt, val_search_dt)`` pairs,

each with the data read per batch from the HDF5 cache (what datasets larger than the in-memory
limit use) and with the split held in memory (what the sample uses). The wait is the time spent in
``next(iterator)`` (the step's compute is synchronised before the clock stops), and the share is
wait / epoch time. The first step (trace) is excluded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from iac_tf._keras import keras, tf  # noqa: E402
from iac_tf.machine import header  # noqa: E402


def epoch_wait_share(step, dataset, max_batches: int) -> tuple[float, float, int]:
    """(wait share, epoch seconds, batches) of one pass of ``step`` over ``dataset``."""
    it = iter(dataset)
    _sync(step(next(it)))  # trace outside the clock
    wait = total = 0.0
    n = 0
    while n < max_batches:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        _sync(step(batch))
        t2 = time.perf_counter()
        wait += t1 - t0
        total += t2 - t0
        n += 1
    return (wait / total if total else float("nan")), total, n


def _sync(out):
    for v in tf.nest.flatten(out):
        if hasattr(v, "numpy"):
            v.numpy()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="experiments/sample.yaml")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--max-batches", type=int, default=30)
    args = p.parse_args(argv)
    print(header(), flush=True)

    import dataclasses

    from iac_tf.data import pipeline as data_pipeline
    from iac_tf.data import prepare_dataset
    from iac_tf.config.experiment import load_experiment
    from iac_tf.training.fit import compile_for_training
    from iac_tf.training.stage2 import build_supernet
    from iac_tf.unets import build_unet

    cfg = load_experiment(args.experiment)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="iac_pipeline_")
    data = prepare_dataset(dataclasses.replace(cfg.data, cache_dir=cache_dir), progress=False)
    shape = (data.patch_size, data.patch_size, data.in_channels)
    unet = build_unet(cfg.unet.backbone, input_shape=shape, classes=data.num_classes,
                      **dict(cfg.unet.options or {}))
    compile_for_training(unet, cfg.stage1)
    stage1 = tf.function(unet.train_step)
    search_unet = build_unet(cfg.unet.backbone, input_shape=shape, classes=data.num_classes,
                             **dict(cfg.unet.options or {}))
    search_unet.trainable = False
    sn = build_supernet(search_unet, cfg.stage2)
    sn.search_active = True
    search = tf.function(sn.train_step)

    print(f"CPU ({os.cpu_count()} cores), load {os.getloadavg()[0]:.1f}; {args.experiment}: "
          f"{cfg.unet.backbone} U-Net, {shape}, Stage I batch {cfg.stage1.batch_size}, "
          f"Stage II batch {cfg.stage2.batch_size}")
    print("| epoch | data source | batches | epoch s (timed part) | waiting for data |")
    print("|---|---|---|---|---|")
    limit = data_pipeline.IN_MEMORY_BYTES
    for source, bytes_limit in (("HDF5 per batch", 0), ("in memory", limit)):
        data_pipeline.IN_MEMORY_BYTES = bytes_limit
        data._memory.clear()
        try:
            train = data.dataset("train_dt", cfg.stage1.batch_size, shuffle=True, seed=0)
            share, total, n = epoch_wait_share(stage1, train, args.max_batches)
            print(f"| Stage I | {source} | {n} | {total:.2f} | {share:.1%} |", flush=True)
            b = cfg.stage2.batch_size
            pairs = tf.data.Dataset.zip((
                data.dataset("train_search_dt", b, shuffle=True, seed=0),
                data.dataset("val_search_dt", b, shuffle=True, seed=1)))
            share, total, n = epoch_wait_share(search, pairs, args.max_batches)
            print(f"| Stage II | {source} | {n} | {total:.2f} | {share:.1%} |", flush=True)
        finally:
            data_pipeline.IN_MEMORY_BYTES = limit
    keras.backend.clear_session()


if __name__ == "__main__":
    main()

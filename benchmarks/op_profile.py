"""Where the time goes: TensorFlow's op-level profile of the search cell and the discrete cell,
with oneDNN on, off, and limited to AVX2, side by side.

    python benchmarks/op_profile.py                              # every workload, three settings
    python benchmarks/op_profile.py --workloads search-cell --settings default onednn-off

Each setting runs in a fresh process, because TensorFlow reads them when it is imported:

* ``default``: as the environment is (this process' ``TF_ENABLE_ONEDNN_OPTS`` / ``ONEDNN_MAX_CPU_ISA``);
* ``onednn-off``: ``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's Eigen kernels (the default on x86 CPUs
  without AVX-512 VNNI / BF16 / AMX);
* ``onednn-on``: ``TF_ENABLE_ONEDNN_OPTS=1``;
* ``avx2``: ``TF_ENABLE_ONEDNN_OPTS=1`` and ``ONEDNN_MAX_CPU_ISA=AVX2``, oneDNN limited to AVX2 (on
  an AVX-512 CPU, an emulation of an AVX2 CPU's oneDNN kernels, not of its speed);
* ``avx2-off``: ``TF_ENABLE_ONEDNN_OPTS=0`` and ``ONEDNN_MAX_CPU_ISA=AVX2`` (the same Eigen path as
  ``onednn-off``; Eigen's kernels are chosen when TensorFlow is compiled, not at run time).

Workloads (``--workloads``): ``search-cell``: one SearchCell forward+backward (inputs 64+64
channels, 64x64, batch 8, C=16, K=4; ``benchmarks/search_cell.py``'s step, the size of the
comparison with PC-DARTS' cell); ``stage3-step`` / ``stage1-step``: one Stage III step of the
IAC U-Net / one Stage I step of its U-Net (base U-Net, ``--filters`` and ``--cell-channels``,
128x128, batch 8; ``benchmarks/stage3_cost.py``'s steps, ``--genotype`` as there);
``iac-inference`` / ``unet-inference``: the two models on 32 windows.

Per workload and setting: the median wall and CPU seconds (user + system of every thread of the
process) of ``--repeats`` steps, the op time per step
(the sum of the durations of the ops TensorFlow's profiler records on its executor threads, over
``--profile-steps`` steps; ops run in parallel, so it can exceed the wall time), and the op types
(kernel names: oneDNN's are ``_Mkl...``) that take most of it, forward and backward apart
(``bwd``: ops of the gradient).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = {
    "default": {},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn-on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "avx2": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx2-off": {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
WORKLOADS = ("search-cell", "stage3-step", "stage1-step", "iac-inference", "unet-inference")


def _workload(name: str, args):
    """A zero-argument callable running one step of ``name`` (traced on its first call)."""
    if name == "search-cell":
        from search_cell import make_step

        return make_step(4, 64, 8, "fused")
    import genotypes
    from stage3_cost import _batch, _iac, _inference, _unet, training_step

    genotype = genotypes.load(args.genotype)[1]
    if name == "stage3-step":
        return training_step(_iac(args.filters, args.cell_channels, "replace", genotype), 3, 8)
    if name == "stage1-step":
        return training_step(_unet(args.filters), 1, 8)
    x = _batch(32, seed=2)[0]
    if name == "iac-inference":
        return _inference(_iac(args.filters, args.cell_channels, "replace", genotype), x)
    if name == "unet-inference":
        return _inference(_unet(args.filters), x)
    raise ValueError(f"unknown workload {name!r}")


def op_times(logdir: str) -> tuple[dict[str, float], int]:
    """Microseconds per op key (``kernel type``, ``bwd`` prefixed for gradient ops) summed over the
    executor threads of the profile in ``logdir``, and the number of op events."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as fh:
        space.ParseFromString(fh.read())
    totals: dict[str, float] = collections.defaultdict(float)
    count = 0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute") and "inter" not in line.name.lower():
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op, sep, kernel = name.rpartition(":")
                if not sep or "::" in name or " " in name or not kernel.lstrip("_")[:1].isupper():
                    continue
                backward = "gradient" in op.lower() or "/grad" in op.lower()
                totals[("bwd " if backward else "") + kernel] += event.duration_ps / 1e6
                count += 1
    return dict(totals), count


def _child(args) -> None:
    from iac_tf._keras import keras, tf
    from iac_tf.machine import describe, summary
    from search_step import _sync

    out = {"machine": summary(describe(tensorflow=True)), "workloads": {}}
    for name in args.workloads:
        step = _workload(name, args)
        for _ in range(2):
            _sync(step())
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            _sync(step())
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            for _ in range(args.profile_steps):
                _sync(step())
            tf.profiler.experimental.stop()
            ops, count = op_times(logdir)
        out["workloads"][name] = {
            "seconds": statistics.median(times),
            "cpu_seconds": statistics.median(cpu),
            "ops_ms": {k: v / 1e3 / args.profile_steps for k, v in ops.items()},
            "events": count // args.profile_steps,
        }
        keras.backend.clear_session()
    print(json.dumps(out))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["default", "onednn-off", "avx2"],
                   choices=list(SETTINGS))
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--cell-channels", type=int, default=8)
    p.add_argument("--genotype", default="searched", help="name or JSON file (benchmarks/genotypes.py)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--top", type=int, default=14, help="op types shown per workload")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return

    from iac_tf.machine import header

    print(header(tensorflow=False), flush=True)
    results = {}
    for setting in args.settings:
        env = {**os.environ, **SETTINGS[setting]}
        cmd = [sys.executable, __file__, "--child", "--workloads", *args.workloads, "--filters",
               str(args.filters), "--cell-channels", str(args.cell_channels), "--genotype",
               args.genotype, "--repeats", str(args.repeats), "--profile-steps", str(args.profile_steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(f"{setting}: {proc.stderr[-3000:]}")
        results[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{setting}: {results[setting]['machine']}", flush=True)
    try:
        load = f" (load average {os.getloadavg()[0]:.1f})"
    except OSError:
        load = ""
    print(f"\nms per step; settings run one after the other{load}")
    for name in args.workloads:
        per = {s: results[s]["workloads"][name] for s in args.settings}
        print(f"\n### {name}\n")
        print("| op (kernel) | " + " | ".join(args.settings) + " |")
        print("|---|" + "---|" * len(args.settings))
        print("| wall s per step (median) | " + " | ".join(f"{per[s]['seconds']:.3f}" for s in args.settings) + " |")
        print("| CPU s per step (median) | " + " | ".join(f"{per[s]['cpu_seconds']:.3f}" for s in args.settings) + " |")
        print("| op time ms per step | " + " | ".join(
            f"{sum(per[s]['ops_ms'].values()):.0f}" for s in args.settings) + " |")
        keys = set().union(*(per[s]["ops_ms"] for s in args.settings))
        top = sorted(keys, key=lambda k: -max(per[s]["ops_ms"].get(k, 0.0) for s in args.settings))
        for key in top[: args.top]:
            print(f"| {key} | " + " | ".join(f"{per[s]['ops_ms'].get(key, 0.0):.1f}" for s in args.settings) + " |")


if __name__ == "__main__":
    main()

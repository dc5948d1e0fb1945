"""Our SearchCell against PC-DARTS' search cell (PyTorch), forward+backward on the CPU.

    bash benchmarks/pcdarts_cell/setup.sh            # once: .venv-pcdarts with PyTorch (CPU)
    python benchmarks/search_cell_vs_pcdarts.py [--settings default onednn-off avx2]
        [--turns 5] [--runs 3] [--warmup 2]

Shapes (both cells): inputs 64 + 64 channels, 64x64, batch 8, C=16, K=4 (``--K``), four nodes,
14 edges, the eight DARTS operations. Ours is ``benchmarks/search_cell.py``'s step: the fused
SearchCell (tan edge normalisation, output 1x1 convolution to 128 channels), gradients for omega,
alpha and beta, traced with ``tf.function``. Theirs is ``benchmarks/pcdarts_cell/cell.py``, a
PyTorch implementation of PC-DARTS' normal search cell (softmax edge normalisation, output the
concatenated nodes, 64 channels), gradients for its weights, alpha and beta, eager PyTorch as
PC-DARTS runs, in PyTorch's default NCHW order (``nchw``, as PC-DARTS runs) and in NHWC order
(``channels_last``, where PyTorch's CPU depthwise convolutions are several times faster: a
stronger baseline than PC-DARTS itself). Both losses are ``mean(out ** 2)``.

The PyTorch cell runs in its own environment (``.venv-pcdarts/bin/python``, ``--torch-python``);
nothing of PyTorch enters the package's. Our cell runs in one fresh process per setting (the
settings of ``benchmarks/op_profile.py``: ``default``, ``onednn-off``, ``avx2`` ...), because
TensorFlow reads them when it is imported. Every process builds its cell once and then waits;
turn by turn each of our processes and the PyTorch process time ``--runs`` steps while the
others wait (the order alternates from turn to turn), so a change of the host's load hits both
sides of a ratio alike. Per setting: the median of the per-turn ratios of the median step times,
wall and CPU (user + system seconds of every thread of the process; on a host whose other jobs
take the cores away, less noisy than the wall time).

Threads: PyTorch ``torch.set_num_threads(--torch-threads)`` (default 2) and TensorFlow's default
(intra-op threads = the usable CPUs, 2 on the benchmark machine; each setting's line shows them).
PyTorch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, ``--omp-wait-policy``): on
a host shared with other jobs, OpenMP's default spinning made the PyTorch cell several times
slower (which would flatter our ratio); ``--omp-wait-policy default`` leaves the variable unset.

Machine kinds: where our setting emulates an AVX2 CPU (``onednn-off``: TensorFlow's default there;
``avx2``: oneDNN limited to AVX2, what iac_tf does there), the PyTorch cell runs limited to AVX2
as well (``ONEDNN_MAX_CPU_ISA=AVX2``, ``ATEN_CPU_CAPABILITY=avx2``; ``--torch-isa native`` turns
this off): kernels of that instruction set, not that CPU's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CELL_SCRIPT = os.path.join(HERE, "pcdarts_cell", "cell.py")
TORCH_PYTHON = os.path.join(ROOT, ".venv-pcdarts", "bin", "python")

SETTINGS = {
    "default": {},
    "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn-on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "avx2": {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
#: The instruction set PyTorch's side gets per setting (``--torch-isa match``): where our side
#: emulates an AVX2 CPU (oneDNN limited to AVX2, or off as TensorFlow leaves it on such CPUs), the
#: PyTorch cell runs its AVX2 kernels too (PyTorch's own oneDNN limited to AVX2, its ATen kernels
#: dispatched to AVX2), as it would on that CPU.
TORCH_ISA = {"default": "native", "onednn-on": "native", "onednn-off": "avx2", "avx2": "avx2"}
TORCH_ISA_ENV = {"native": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
CU, CS, C, SIZE, BATCH = 64, 64, 16, 64, 8


def _serve_ours(args) -> None:
    """Child: build and trace our cell's step, warm it up, then answer ``RUNS`` lines."""
    sys.path.insert(0, HERE)
    from search_cell import make_step

    from iac_tf.machine import describe, summary

    step = make_step(args.K, SIZE, BATCH, "fused")
    for _ in range(args.warmup):
        step()
    print(json.dumps({"ready": True, "machine": summary(describe(tensorflow=True))}), flush=True)
    for line in sys.stdin:
        if line.strip():
            times, cpu = [], []
            for _ in range(int(line)):
                start, cpu_start = time.perf_counter(), time.process_time()
                step()
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
            print(json.dumps({"times": times, "cpu": cpu}), flush=True)


class Server:
    """A child process that builds a cell, then times ``runs`` steps per request."""

    def __init__(self, name: str, cmd: list[str], env: dict):
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()[-3000:]
                raise SystemExit(f"{self.name}: the process ended without an answer:\n{err}")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def times(self, runs: int) -> dict:
        """``{"times": wall seconds, "cpu": CPU seconds}`` of ``runs`` steps."""
        self.proc.stdin.write(f"{runs}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["default"], choices=list(SETTINGS))
    p.add_argument("--K", type=int, default=4, help="partial-channel divisor of both cells")
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--runs", type=int, default=3, help="steps per side and turn")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after each build")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--torch-isa", choices=["match", "native"], default="match",
                   help="match: PyTorch limited to AVX2 where our setting emulates an AVX2 CPU")
    p.add_argument("--omp-wait-policy", choices=["passive", "default"], default="passive")
    p.add_argument("--torch-python", default=TORCH_PYTHON)
    p.add_argument("--torch-formats", nargs="+", default=["nchw", "channels_last"],
                   choices=["nchw", "channels_last"],
                   help="PyTorch memory formats timed (nchw: as PC-DARTS runs)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _serve_ours(args)
        return
    if not os.path.exists(args.torch_python):
        raise SystemExit(f"{args.torch_python} not found: run `bash benchmarks/pcdarts_cell/setup.sh` "
                         "first (it makes .venv-pcdarts with PyTorch).")

    from iac_tf.machine import header

    print(header(tensorflow=False), flush=True)
    load_start = _load()
    torch_env = dict(os.environ)
    if args.omp_wait_policy == "passive":
        torch_env["OMP_WAIT_POLICY"] = "PASSIVE"
    servers, theirs = {}, {}
    try:
        isa_of = {s: TORCH_ISA[s] if args.torch_isa == "match" else "native" for s in args.settings}
        for isa in sorted(set(isa_of.values())):
            for fmt in args.torch_formats:
                theirs[isa, fmt] = Server(f"PC-DARTS (PyTorch, {isa}, {fmt})", [
                    args.torch_python, CELL_SCRIPT, "--serve", "--K", str(args.K), "--C", str(C),
                    "--batch", str(BATCH), "--size", str(SIZE), "--c-prev-prev", str(CU), "--c-prev",
                    str(CS), "--threads", str(args.torch_threads), "--warmup", str(args.warmup),
                    "--memory-format", fmt], {**torch_env, **TORCH_ISA_ENV[isa]})
                info = theirs[isa, fmt].info
                print(f"PC-DARTS cell, {fmt}, {isa} ({' '.join(f'{k}={v}' for k, v in TORCH_ISA_ENV[isa].items())}"
                      f"): PyTorch {info['torch']}, CPU capability {info['cpu_capability']}, threads "
                      f"{info['threads']} (inter-op {info['interop_threads']}), OMP_WAIT_POLICY="
                      f"{torch_env.get('OMP_WAIT_POLICY', 'unset')}, {info['parameters']} parameters, "
                      f"output {info['shape']['out_channels']} channels", flush=True)
        for setting in args.settings:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--K", str(args.K),
                   "--warmup", str(args.warmup)]
            servers[setting] = Server(setting, cmd, {**os.environ, **SETTINGS[setting]})
            print(f"ours, {setting}: {servers[setting].info['machine']}", flush=True)
        ours_t = {s: [] for s in args.settings}
        theirs_t = {(s, f): [] for s in args.settings for f in args.torch_formats}
        ratios = {(s, f): [] for s in args.settings for f in args.torch_formats}
        ours_cpu = {s: [] for s in args.settings}
        theirs_cpu = {(s, f): [] for s in args.settings for f in args.torch_formats}
        cpu_ratios = {(s, f): [] for s in args.settings for f in args.torch_formats}
        for turn in range(args.turns):
            for setting in args.settings:
                order = [("ours", servers[setting])] + [
                    (f, theirs[isa_of[setting], f]) for f in args.torch_formats]
                if turn % 2:
                    order.reverse()
                got = {name: server.times(args.runs) for name, server in order}
                mine = statistics.median(got["ours"]["times"])
                mine_cpu = statistics.median(got["ours"]["cpu"])
                ours_t[setting] += got["ours"]["times"]
                ours_cpu[setting] += got["ours"]["cpu"]
                line = [f"ours {mine:.4f} s"]
                for fmt in args.torch_formats:
                    theirs_t[setting, fmt] += got[fmt]["times"]
                    theirs_cpu[setting, fmt] += got[fmt]["cpu"]
                    ratios[setting, fmt].append(mine / statistics.median(got[fmt]["times"]))
                    cpu_ratios[setting, fmt].append(mine_cpu / statistics.median(got[fmt]["cpu"]))
                    line.append(f"PC-DARTS {fmt} {statistics.median(got[fmt]['times']):.4f} s "
                                f"(ratio {ratios[setting, fmt][-1]:.3f}, CPU {cpu_ratios[setting, fmt][-1]:.3f})")
                print(f"  turn {turn + 1} {setting}: " + ", ".join(line), flush=True)
    finally:
        for server in list(servers.values()) + list(theirs.values()):
            server.close()
    load_end = _load()
    print(f"\nSearchCell forward+backward, inputs {CU}+{CS} channels, {SIZE}x{SIZE}, batch {BATCH}, "
          f"C={C}, K={args.K}: {args.turns} turns x {args.runs} steps per side after {args.warmup} "
          f"warm-up; ratio = median over the turns of ours / PC-DARTS (load average {load_start:.1f} "
          f"at the start, {load_end:.1f} at the end)")
    results = {}
    for setting in args.settings:
        results[setting] = {"ours_s": statistics.median(ours_t[setting]),
                            "ours_cpu_s": statistics.median(ours_cpu[setting]),
                            "machine": servers[setting].info["machine"]}
        line = [f"ours {results[setting]['ours_s']:.4f} s (CPU {results[setting]['ours_cpu_s']:.3f} s)"]
        for fmt in args.torch_formats:
            r, rc = ratios[setting, fmt], cpu_ratios[setting, fmt]
            results[setting][fmt] = {"pcdarts_s": statistics.median(theirs_t[setting, fmt]),
                                     "pcdarts_cpu_s": statistics.median(theirs_cpu[setting, fmt]),
                                     "ratio": statistics.median(r), "ratio_range": [min(r), max(r)],
                                     "cpu_ratio": statistics.median(rc),
                                     "cpu_ratio_range": [min(rc), max(rc)]}
            line.append(f"PC-DARTS {fmt} {results[setting][fmt]['pcdarts_s']:.4f} s "
                        f"(CPU {results[setting][fmt]['pcdarts_cpu_s']:.3f} s): wall "
                        f"{statistics.median(r):.3f}x (turns {min(r):.3f}-{max(r):.3f}), CPU "
                        f"{statistics.median(rc):.3f}x (turns {min(rc):.3f}-{max(rc):.3f})")
        print(f"  {setting:10s} (PyTorch {isa_of[setting]}) " + "  |  ".join(line))
    if args.json:
        print(json.dumps({"load": [load_start, load_end], "results": results}))


if __name__ == "__main__":
    main()

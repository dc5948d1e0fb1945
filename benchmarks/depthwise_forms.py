"""The depthwise convolution of the cells' separable blocks in four formulations that compute the
same function, forward + backward (gradients for the input and the kernel), with oneDNN on, off
and limited to AVX2 (each setting in a fresh process, as ``benchmarks/op_profile.py`` runs them).

    python benchmarks/depthwise_forms.py
    python benchmarks/depthwise_forms.py --settings default onednn-off --repeats 9

Formulations of ``y = depthwise(x, kernel)`` (``kernel`` ``(k, k, c, m)``, stride 1, SAME):

* ``hand``: :func:`iac_tf.search.kernels.depthwise_conv`, the op with hand-written gradients
  (what the cells run in float32);
* ``tf``: ``tf.nn.depthwise_conv2d`` and TensorFlow's gradients (Keras' ``DepthwiseConv2D``);
* ``grouped``: ``tf.nn.conv2d`` with the kernel as a ``(k, k, 1, c*m)`` grouped convolution of
  ``c`` groups (TensorFlow has CPU gradients for it only through oneDNN: ``n/a`` otherwise);
* ``dense``: ``tf.nn.conv2d`` with the dense ``(k, k, c, c*m)`` kernel that is zero outside the
  depthwise entries (``c`` times the FLOPs, but the dense convolution kernels).

Shapes (``--shapes``): where the cells spend their depthwise time: the search cell of the
comparison with PC-DARTS (C=16, K=4: 4 channels, 4 edges grouped as multiplier 4, 64x64, batch 8;
then the sep_conv's second block, 16 channels), and the discrete cell's states at the top of the
base U-Net (128x128, batch 8) with C=8 (the sample's) and C=16 (the paper's). Each at 3x3 and
5x5, undilated and dilated by 2 (dilated: ``hand`` runs on the space-to-batch sub-grids, the
others with the ``dilations`` argument).

Printed per setting and shape: each formulation's median over ``--repeats`` turns (formulations
in turn) of the process' CPU time (user + system of all its threads: on a shared machine less
disturbed by other tenants than the wall time) and of the wall time, and its time relative to
``hand`` in the same setting (below 1: faster than ``hand``).
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

from op_profile import SETTINGS  # noqa: E402  (same folder)

#: name -> (batch, size, channels c, multiplier m)
SHAPES = {
    "search 4ch x4 64px": (8, 64, 4, 4),
    "search 16ch 64px": (8, 64, 16, 1),
    "discrete C=8 128px": (8, 128, 8, 1),
    "discrete C=16 128px": (8, 128, 16, 1),
}
FORMS = ("hand", "tf", "grouped", "dense")


def _forms(tf, np):
    from iac_tf.search.kernels import depthwise_conv

    def hand(x, w, d):
        return depthwise_conv(x, w, d)

    def tf_form(x, w, d):
        return tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME", dilations=[d, d])

    def grouped(x, w, d):
        k, _, c, m = w.shape.as_list()
        return tf.nn.conv2d(x, tf.reshape(w, [k, k, 1, c * m]), 1, "SAME", dilations=d)

    def dense(x, w, d):
        k, _, c, m = w.shape.as_list()
        mask = np.kron(np.eye(c, dtype=np.float32), np.ones((1, m), np.float32))  # (c, c*m)
        full = tf.reshape(w, [k, k, 1, c * m]) * mask  # [.., i, i*m + j] = w[.., i, j]
        return tf.nn.conv2d(x, full, 1, "SAME", dilations=d)

    return {"hand": hand, "tf": tf_form, "grouped": grouped, "dense": dense}


def _child(args) -> None:
    import numpy as np

    from iac_tf._keras import tf
    from iac_tf.machine import describe, summary

    forms = _forms(tf, np)
    out = {"machine": summary(describe(tensorflow=True)), "rows": []}
    for shape in args.shapes:
        b, size, c, m = SHAPES[shape]
        for k, d in ((3, 1), (5, 1), (3, 2), (5, 2)):
            x = tf.random.normal((b, size, size, c), seed=0)
            w = tf.Variable(tf.random.normal((k, k, c, m), seed=1) * 0.1)
            g = tf.random.normal((b, size, size, c * m), seed=2)
            steps, errors = {}, {}
            for name in FORMS:
                fn = forms[name]

                @tf.function
                def step(fn=fn, x=x, w=w, d=d, g=g):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        y = fn(x, w, d)
                    dx, dw = tape.gradient(y, [x, w], output_gradients=g)
                    return tf.reduce_sum(y) + tf.reduce_sum(dx) + tf.reduce_sum(dw)

                try:
                    step().numpy()
                    steps[name] = step
                except Exception as exc:  # noqa: BLE001 - unsupported here: say so
                    errors[name] = type(exc).__name__
            times = {name: [] for name in steps}
            cpu = {name: [] for name in steps}
            for _ in range(args.repeats):
                for name, step in steps.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    step().numpy()
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
            out["rows"].append({"shape": shape, "k": k, "d": d,
                                "seconds": {n: statistics.median(t) for n, t in times.items()},
                                "cpu": {n: statistics.median(t) for n, t in cpu.items()},
                                "errors": errors})
    print(json.dumps(out))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["default", "onednn-off", "avx2"],
                   choices=list(SETTINGS))
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return

    from iac_tf.machine import header

    print(header(tensorflow=False), flush=True)
    print("fwd+bwd ms, median of turns, CPU time / wall time; (x.xx) = CPU time / hand's in the "
          "same setting")
    for setting in args.settings:
        cmd = [sys.executable, __file__, "--child", "--shapes", *args.shapes, "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **SETTINGS[setting]})
        if proc.returncode:
            raise SystemExit(f"{setting}: {proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"\n### {setting}: {res['machine']}\n")
        print("| shape | k | dilation | " + " | ".join(FORMS) + " |")
        print("|---|---|---|" + "---|" * len(FORMS))
        for row in res["rows"]:
            hand = row["cpu"].get("hand")
            cells = []
            for name in FORMS:
                sec, wall = row["cpu"].get(name), row["seconds"].get(name)
                if sec is None:
                    cells.append(f"n/a ({row['errors'].get(name, '?')})")
                else:
                    rel = f" ({sec / hand:.2f})" if hand and name != "hand" else ""
                    cells.append(f"{sec * 1e3:.1f} / {wall * 1e3:.1f}{rel}")
            print(f"| {row['shape']} | {row['k']} | {row['d']} | " + " | ".join(cells) + " |", flush=True)
    try:
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    except OSError:
        pass


if __name__ == "__main__":
    main()

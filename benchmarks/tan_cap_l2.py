"""The L2 on beta (PC-DARTS' arch_weight_decay 1e-3) combined with the paper's tan cap (eq. 7-10).

Where the cap is active the winning edge's Psi is the constant 0.5, so its beta gets no gradient
from the loss; its only gradient is the L2 term ``wd * beta``. Adam divides a gradient by its own
running RMS, so this tiny gradient becomes a step of about the full learning rate, always
downwards. This script measures it on one node with three incoming edges: beta starts at
``[1.3, 1.0, 1.0]`` (edge 0 capped at Psi 0.5), the loss prefers edge 0
(``L = -sum_i c_i Psi_i`` with ``c = [1, 0, 0]``), Adam(1e-3, betas 0.5/0.999) as in Stage II, for
``--steps`` steps, with ``arch_weight_decay`` 1e-3 and 0. Prints beta_0 and Psi_0 over the steps.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def run(wd: float, steps: int, report_every: int):
    from iac_tf._keras import keras, tf
    from iac_tf.search.psi import psi_edge_weights

    beta = tf.Variable([1.3, 1.0, 1.0])
    c = tf.constant([1.0, 0.0, 0.0])
    opt = keras.optimizers.Adam(1e-3, beta_1=0.5, beta_2=0.999)
    rows = []
    for step in range(steps + 1):
        if step % report_every == 0:
            psi = psi_edge_weights(beta, "tan").numpy()
            rows.append((step, float(beta[0]), float(psi[0])))
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(c * psi_edge_weights(beta, "tan"))
            loss += 0.5 * wd * tf.reduce_sum(tf.square(beta))
        opt.apply_gradients([(tape.gradient(loss, beta), beta)])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--report-every", type=int, default=100)
    args = parser.parse_args(argv)
    from iac_tf.machine import header

    print(header(), flush=True)
    results = {wd: run(wd, args.steps, args.report_every) for wd in (1e-3, 0.0)}
    print("| step | beta_0 (wd 1e-3) | Psi_0 (wd 1e-3) | beta_0 (wd 0) | Psi_0 (wd 0) |")
    print("|---|---|---|---|---|")
    for a, b in zip(results[1e-3], results[0.0]):
        print(f"| {a[0]} | {a[1]:.4f} | {a[2]:.4f} | {b[1]:.4f} | {b[2]:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

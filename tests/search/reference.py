"""Independent NumPy references (float64) for the search-space maths, written from the paper."""

from __future__ import annotations

import numpy as np


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def psi_softmax(beta):
    """eq. (4)."""
    return softmax(beta)


def psi_tan(beta):
    """eq. (6)-(10), literally: hat = softmax(tan b - max tan b); cap the winner at 0.5.

    Extended precision (x87 long double, exp down to ~1e-4900) so that S_rest of eq. (9) stays
    non-zero near the poles of tan, where float64 would divide 0 by 0.
    """
    t = np.tan(np.asarray(beta, np.float64)).astype(np.longdouble)
    hat = np.exp(t - t.max()) / np.exp(t - t.max()).sum()  # eq. (6)
    if hat.max() <= 0.5:  # eq. (7)
        return hat.astype(np.float64)
    star = int(np.argmax(hat))
    s_rest = sum(hat[i] for i in range(len(hat)) if i != star)  # eq. (9)
    out = np.array([0.5 * hat[i] / s_rest for i in range(len(hat))], np.longdouble)  # eq. (10)
    out[star] = 0.5  # eq. (8)
    return out.astype(np.float64)


PSI = {"tan": psi_tan, "softmax": psi_softmax}


def node_slices(steps=4):
    out, start = [], 0
    for j in range(steps):
        out.append((start, start + j + 2))
        start += j + 2
    return out


def psi_all(beta, mode):
    return np.concatenate([PSI[mode](np.asarray(beta)[s:e]) for s, e in node_slices(len_to_steps(len(beta)))])


def len_to_steps(n):
    steps, total = 0, 0
    while total < n:
        total += steps + 2
        steps += 1
    assert total == n
    return steps


def channel_shuffle(x, groups):
    """Output channel c*K + g is input channel g*(C/K) + c, written as an explicit loop."""
    C = x.shape[-1]
    per = C // groups
    out = np.empty_like(x)
    for g in range(groups):
        for c in range(per):
            out[..., c * groups + g] = x[..., g * per + c]
    return out


def mixed_op(x, phi, op_outputs, K):
    """eq. (3) + shuffle: op_outputs[o] = o(x[..., :C/K])."""
    part = x.shape[-1] // K
    mixed = sum(p * y for p, y in zip(phi, op_outputs))
    if K == 1:
        return mixed
    return channel_shuffle(np.concatenate([mixed, x[..., part:]], axis=-1), K)

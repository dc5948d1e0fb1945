"""Independent NumPy re-computations of the comparison modules' formulas (float64)."""

import numpy as np


def conv1x1(x, kernel, bias=None):
    y = np.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    return y if bias is None else y + bias


def conv3x3_same(x, kernel, bias):
    b, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((b, h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            y += np.einsum("bhwc,cd->bhwd", xp[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
    return y + bias


def batchnorm_inference(x, gamma, beta, mean, var, eps=1e-3):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def relu(x):
    return np.maximum(x, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def attention_gate(up, skip, W_x, W_g, b_g, psi, b_psi):
    """Oktay et al. 2018, Eqs. (1)-(2), then concat [g, x_hat]."""
    q_att = conv1x1(relu(conv1x1(skip, W_x) + conv1x1(up, W_g, b_g)), psi, b_psi)
    alpha = sigmoid(q_att)
    return np.concatenate([up, alpha * skip], axis=-1)


def attention_augmentation(up, skip, high, low, att, transform):
    """RAUNet's AAM; ``high``/``low``/``transform`` = (kernel, bias, gamma, beta, mean, var)."""
    def cbr(x, p):
        return relu(batchnorm_inference(conv1x1(x, p[0], p[1]), *p[2:]))

    z_h = cbr(up.mean(axis=(1, 2), keepdims=True), high)
    z_l = cbr(skip.mean(axis=(1, 2), keepdims=True), low)
    a = softmax(conv1x1(z_h + z_l, att[0], att[1]), axis=-1)
    f_o = up + a * cbr(skip, transform)
    return np.concatenate([f_o, skip], axis=-1)


def nested_skip(up, skip, below, convs):
    """UNet++ x^{i,1} = H([x^{i,0}, U(x^{i+1,0})]); ``convs`` = [(kernel, bias, gamma, beta,
    mean, var)]; U = nearest 2x (np.repeat); output concat [up, skip + x^{i,1}]."""
    factor = skip.shape[1] // below.shape[1]
    u = np.repeat(np.repeat(below, factor, axis=1), factor, axis=2)
    x = np.concatenate([skip, u], axis=-1)
    for k, b, *bn in convs:
        x = relu(batchnorm_inference(conv3x3_same(x, k, b), *bn))
    return np.concatenate([up, skip + x], axis=-1)

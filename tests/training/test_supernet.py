"""The Stage II supernet (:class:`SearchSupernet`, Algorithm 1) built directly over a tiny
implanted U-Net: its two parameter groups, the warm-up that leaves alpha and beta alone, and the
architecture step's L2 (eq. (14) with ``wd / 2 |alpha|^2``) and beta-DARTS terms against their
NumPy gradients. Which batch updates which group: ``tests/training/test_stage2.py``."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.implant import implant
from iac_tf.implant.search_module import SearchModule
from iac_tf.search import ArchitectureParameters, SearchCell, num_edges
from iac_tf.training.supernet import SearchSupernet
from tests.tiny import disc_data, tiny_unet

LR = 0.1


def _net():
    keras.utils.set_random_seed(0)
    arch = ArchitectureParameters(num_edges=num_edges(2), init="normal", seed=3, name="arch")

    def make_module(level, up_shape, skip_shape):
        return SearchModule(arch, SearchCell(out_channels=up_shape[-1] + skip_shape[-1], C=4, K=2,
                                             steps=2, name=f"cell{level}"))

    return implant(tiny_unet(size=8, f=4, levels=1), make_module), arch


def _supernet(**kw):
    net, arch = _net()
    sn = SearchSupernet(net, arch, **kw)
    sn.compile(arch_optimizer=keras.optimizers.SGD(LR), weight_optimizer=keras.optimizers.SGD(LR))
    return sn


def _batches():
    x, y = disc_data(4, size=8, seed=1)
    return (tf.constant(x[:2]), tf.constant(y[:2])), (tf.constant(x[2:]), tf.constant(y[2:]))


def test_bad_arguments():
    net, arch = _net()
    with pytest.raises(ValueError, match="update_order must be"):
        SearchSupernet(net, arch, update_order="both")
    with pytest.raises(ValueError, match="output must be 'sigmoid' or 'softmax'"):
        SearchSupernet(net, arch, output="linear")


def test_two_parameter_groups_and_the_frozen_unet():
    sn = _supernet()
    train, _ = _batches()
    sn(train[0])
    arch = {v.ref() for v in sn.arch_variables}
    omega = {v.ref() for v in sn.omega_variables}
    assert len(arch) == 2 and omega and not arch & omega
    assert arch | omega == {v.ref() for v in sn.net.trainable_variables}
    assert all(v.name.startswith("cell") for v in sn.omega_variables)  # no U-Net weight


def test_the_warm_up_trains_omega_only():
    sn = _supernet()
    train, val = _batches()
    sn(train[0])
    alpha, beta = (v.numpy().copy() for v in sn.arch_variables)
    omega = [v.numpy().copy() for v in sn.omega_variables]
    logs = sn.train_step((train, val))  # search_active is False: a warm-up step
    np.testing.assert_array_equal(sn.arch.alpha.numpy(), alpha)
    np.testing.assert_array_equal(sn.arch.beta.numpy(), beta)
    assert any(not np.array_equal(v.numpy(), w) for v, w in zip(sn.omega_variables, omega))
    assert float(logs["loss_train_search"]) > 0
    scores = sn.test_step(val)
    assert set(scores) == {"loss", "soft_dice"} and 0 <= float(scores["soft_dice"]) <= 1


def _arch_steps(*settings):
    """alpha, beta at the start and after one search step for each ``(weight decay, lambda)``
    of ``settings``, each step from the same weights."""
    sn = _supernet()
    train, val = _batches()
    sn(train[0])
    sn.search_active = True
    snapshot = [(v, v.numpy().copy()) for v in sn.variables]
    start = [v.numpy().copy() for v in sn.arch_variables]
    after = []
    for weight_decay, reg_lambda in settings:
        for v, value in snapshot:
            v.assign(value)
        sn.arch_weight_decay = weight_decay
        sn.reg_lambda.assign(reg_lambda)
        sn.train_step((train, val))
        after.append([v.numpy() for v in sn.arch_variables])
    return start, after


def test_the_arch_steps_l2_and_beta_darts_terms_equal_their_gradients():
    (alpha, beta), (plain, decayed, regularised) = _arch_steps((0.0, 0.0), (0.5, 0.0), (0.0, 0.3))
    # d/dp (wd / 2 |p|^2) = wd * p: one SGD step moves each parameter by -lr * wd * p more
    np.testing.assert_allclose(decayed[0] - plain[0], -LR * 0.5 * alpha, atol=1e-6)
    np.testing.assert_allclose(decayed[1] - plain[1], -LR * 0.5 * beta, atol=1e-6)
    # d/d alpha of lambda * mean_e logsumexp(alpha_e) = lambda * softmax(alpha_e) / E
    softmax = np.exp(alpha) / np.exp(alpha).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(regularised[0] - plain[0], -LR * 0.3 * softmax / len(alpha), atol=1e-6)
    np.testing.assert_allclose(regularised[1], plain[1], atol=1e-7)

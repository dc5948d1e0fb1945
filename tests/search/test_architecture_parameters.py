"""ArchitectureParameters: shapes, initialisation, float32 under mixed precision, identity."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.search import ArchitectureParameters, SearchCell


def test_ones_init_and_call_returns_values():
    arch = ArchitectureParameters()
    alpha, beta = arch(tf.zeros((1, 4, 4, 3)))
    assert alpha.shape == (14, 8) and beta.shape == (14,)
    np.testing.assert_array_equal(alpha.numpy(), 1.0)
    np.testing.assert_array_equal(beta.numpy(), 1.0)
    arch.alpha.assign_add(tf.ones((14, 8)))
    np.testing.assert_array_equal(arch(tf.zeros(1))[0].numpy(), 2.0)


def test_normal_init_is_pcdarts_scale():
    arch = ArchitectureParameters(init="normal", seed=3)
    a = arch.alpha.numpy()
    assert 2e-4 < a.std() < 5e-3 and abs(a.mean()) < 1e-3
    assert not np.allclose(a, a[0, 0])


def test_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        arch = ArchitectureParameters()
        alpha, beta = arch(tf.zeros((1, 2), tf.float16))
        assert arch.alpha.dtype == tf.float32 and alpha.dtype == tf.float32 and beta.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_identity_separates_arch_from_cell_weights():
    up = keras.Input((8, 8, 8))
    skip = keras.Input((8, 8, 4))
    arch = ArchitectureParameters(num_edges=5, name="arch")  # 2-node cells keep the test small
    alpha, beta = arch(up)
    y1 = SearchCell(12, C=8, K=2, steps=2, name="cell_a")([up, skip, alpha, beta])
    y2 = SearchCell(12, C=8, K=2, steps=2, name="cell_b")([skip, y1, alpha, beta])
    model = keras.Model([up, skip], y2)
    arch_ids = {id(arch.alpha), id(arch.beta)}
    found = [w for w in model.trainable_weights if id(w) in arch_ids]
    assert len(found) == 2  # shared: listed once although two cells use them
    omega = [w for w in model.trainable_weights if id(w) not in arch_ids]
    assert omega and all(w.shape not in ((5, 8), (5,)) for w in omega)
    x = [tf.random.normal((2, 8, 8, 8)), tf.random.normal((2, 8, 8, 4))]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True) ** 2)
    g_alpha, g_beta = tape.gradient(loss, [arch.alpha, arch.beta])
    assert np.abs(g_alpha.numpy()).sum() > 0 and np.isfinite(g_beta.numpy()).all()


def test_errors_and_config():
    with pytest.raises(ValueError, match="init must be one of"):
        ArchitectureParameters(init="zeros")
    with pytest.raises(ValueError, match="num_edges"):
        ArchitectureParameters(num_edges=0)
    arch = ArchitectureParameters(init="normal", seed=1, name="arch")
    clone = ArchitectureParameters.from_config(arch.get_config())
    assert (clone.init, clone.seed, clone.num_edges, clone.num_ops) == ("normal", 1, 14, 8)
    assert clone.dtype == "float32"

"""FusedSGD: the same update and state as tf_keras' SGD, in one op per variable."""

import numpy as np
import pytest

from iac_tf._keras import keras, tf
from iac_tf.training.optimizers import FusedSGD, make_optimizer


def _numpy_sgd(w, grads, lr, momentum, nesterov):
    """tf_keras' SGD update written out in NumPy (m starts at 0 and is updated even at momentum 0)."""
    m = np.zeros_like(w)
    for g in grads:
        m = momentum * m - lr * g
        w = w + (momentum * m - lr * g if nesterov else m)
    return w, m


@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.9, True), (0.0, False)])
def test_fused_sgd_is_bit_identical_to_keras_sgd(momentum, nesterov):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    grads = [rng.normal(size=w0.shape).astype(np.float32) for _ in range(4)]
    plain, fused = tf.Variable(w0), tf.Variable(w0)
    ref = keras.optimizers.SGD(0.05, momentum=momentum, nesterov=nesterov)
    ours = FusedSGD(0.05, momentum=momentum, nesterov=nesterov)

    @tf.function
    def step(g):
        ref.apply_gradients([(g, plain)])
        ours.apply_gradients([(g, fused)])

    for g in grads:
        step(tf.constant(g))
    np.testing.assert_array_equal(fused.numpy(), plain.numpy())
    np.testing.assert_array_equal(ours.momentums[0].numpy(), ref.momentums[0].numpy())
    w_np, m_np = _numpy_sgd(w0.astype(np.float64), grads, 0.05, momentum, nesterov)
    np.testing.assert_allclose(fused.numpy(), w_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.momentums[0].numpy(), m_np, rtol=1e-5, atol=1e-6)
    assert int(ours.iterations.numpy()) == len(grads)


def test_fused_sgd_is_fewer_ops_per_variable():
    variables = [tf.Variable(tf.zeros([4])) for _ in range(20)]
    counts = {}
    for label, opt in (("keras", keras.optimizers.SGD(0.1, momentum=0.9)),
                       ("fused", FusedSGD(0.1, momentum=0.9))):
        opt.build(variables)
        fn = tf.function(lambda opt=opt: opt.apply_gradients([(tf.ones([4]), v) for v in variables]))
        counts[label] = len(fn.get_concrete_function().graph.get_operations())
    assert counts["fused"] < 0.6 * counts["keras"], counts


def test_fused_sgd_under_loss_scaling_and_config_round_trip():
    opt = make_optimizer("sgd", 0.1, momentum=0.9)
    assert isinstance(opt, FusedSGD)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, FusedSGD)
    assert clone.get_config()["momentum"] == pytest.approx(0.9)

    w = tf.Variable([1.0, 2.0])
    scaled = keras.mixed_precision.LossScaleOptimizer(FusedSGD(0.5))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(w * w)
        scaled_loss = scaled.get_scaled_loss(loss)
    grads = scaled.get_unscaled_gradients(tape.gradient(scaled_loss, [w]))
    scaled.apply_gradients(zip(grads, [w]))
    np.testing.assert_allclose(w.numpy(), [1.0 - 0.5 * 2.0, 2.0 - 0.5 * 4.0], rtol=1e-6)


def test_fused_sgd_checkpoint_restores_momentum(tmp_path):
    w = tf.Variable([1.0, -1.0])
    opt = FusedSGD(0.1, momentum=0.9)
    opt.apply_gradients([(tf.constant([1.0, 2.0]), w)])
    path = tf.train.Checkpoint(w=w, opt=opt).save(str(tmp_path / "ckpt"))
    w2 = tf.Variable([0.0, 0.0])
    opt2 = keras.optimizers.SGD(0.1, momentum=0.9)  # the same slots: tf_keras' SGD restores them
    opt2.build([w2])
    tf.train.Checkpoint(w=w2, opt=opt2).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(w2.numpy(), w.numpy())
    np.testing.assert_array_equal(opt2.momentums[0].numpy(), opt.momentums[0].numpy())

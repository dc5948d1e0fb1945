"""A separable-convolution block that keeps only its input for the backward pass.

The block of ``sep_conv_kxk`` / ``dil_conv_kxk`` (:class:`~iac_tf.search.operations.ReLUSepConvBN`)
is ReLU -> depthwise ``k x k`` -> pointwise 1x1 -> BatchNorm. Trained through TensorFlow's
gradients it keeps three tensors of its width until the backward pass: the ReLU's output (for its
own gradient and the depthwise filter gradient), the depthwise output (the pointwise filter
gradient) and the pointwise output (the BN gradient). `sep_conv_block` computes the same block as
one operation with a custom gradient that keeps only the block's input and the kernels, and
recomputes the block in the backward pass: one more depthwise, pointwise and BN forward per block,
against two tensors fewer kept per block. In Stage III, whose cells at the sample's size keep more
than the U-Net's own training does, this is what brings the step's peak memory under Stage I's
(`benchmarks/stage3_cost.py`, numbers in docs/benchmarks.md).

Training mode only, float32, trainable BN: the BN normalises with the batch statistics and
updates the layer's moving statistics once (in the forward pass; the recomputation does not),
exactly as the Keras layer does (``FusedBatchNorm`` with the exponential average factor ``1 -
momentum``, whose moving variance averages the Bessel-corrected batch variance).
``tests/search/test_recompute.py`` compares outputs, gradients and moving statistics with the Keras
layers.
"""

from __future__ import annotations

from typing import Any

from iac_tf._keras import tf
from iac_tf.search.kernels import depthwise_conv


def _forward(x, dw_kernel, pw_kernel, scale, offset, mean, variance, dilation: int,
             epsilon: float, avg_factor: float):
    h = depthwise_conv(tf.nn.relu(x), dw_kernel, dilation)
    p = tf.nn.conv2d(h, pw_kernel, 1, "VALID")
    y, new_mean, new_var, _, _ = tf.raw_ops.FusedBatchNorm(
        x=p, scale=scale, offset=offset, mean=mean, variance=variance, epsilon=epsilon,
        exponential_avg_factor=avg_factor, is_training=True)
    return y, new_mean, new_var


def can_recompute(x, bn: Any) -> bool:
    """Whether `sep_conv_block` applies: float32 input and a trainable BatchNorm (a frozen Keras
    BatchNorm runs in inference mode, which the Keras layers handle)."""
    return x.dtype == tf.float32 and bool(bn.trainable)


def sep_conv_block(x, depthwise: Any, pointwise: Any, bn: Any):
    """``bn(pointwise(depthwise(relu(x))), training=True)`` for the Keras layers of one block
    (a ``DepthwiseConv2D`` with odd kernel, stride 1, ``same``; a bias-free 1x1 ``Conv2D``; a
    ``BatchNormalization``), keeping only ``x`` and the kernels for the backward pass."""
    dilation = int(depthwise.dilation_rate[0])
    epsilon, avg_factor = float(bn.epsilon), 1.0 - float(bn.momentum)
    channels = int(pointwise.filters)
    scale = bn.gamma if bn.scale else tf.ones([channels], tf.float32)
    offset = bn.beta if bn.center else tf.zeros([channels], tf.float32)
    mean, variance = tf.identity(bn.moving_mean), tf.identity(bn.moving_variance)

    @tf.custom_gradient
    def block(x, dw_kernel, pw_kernel, scale, offset):
        y, new_mean, new_var = _forward(x, dw_kernel, pw_kernel, scale, offset, mean, variance,
                                        dilation, epsilon, avg_factor)

        def grad(dy, *_):  # the statistics outputs get no gradient
            # recompute when the upstream gradient is there, not as soon as x is (the executor
            # would otherwise run the recomputation during the forward pass and keep its tensors)
            with tf.control_dependencies([dy]):
                inputs = [tf.identity(x), dw_kernel, pw_kernel, scale, offset]
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                y_again = _forward(*inputs, mean, variance, dilation, epsilon, 1.0)[0]
            return tape.gradient(y_again, inputs, output_gradients=dy)

        return (y, tf.stop_gradient(new_mean), tf.stop_gradient(new_var)), grad

    y, new_mean, new_var = block(x, depthwise.depthwise_kernel, pointwise.kernel, scale, offset)
    bn.moving_mean.assign(new_mean)
    bn.moving_variance.assign(new_var)
    return y

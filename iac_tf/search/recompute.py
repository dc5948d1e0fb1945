"""A separable-convolution block that keeps only its input for the backward pass.

The block of ``sep_conv_kxk`` / ``dil_conv_kxk`` (:class:`~iac_tf.search.operations.ReLUSepConvBN`)
is ReLU -> depthwise ``k x k`` -> pointwise 1x1 -> BatchNorm. Trained through TensorFlow's
gradients it keeps three tensors of its width until the backward pass: the ReLU's output (for its
own gradient and the depthwise filter gradient), the depthwise output (the pointwise filter
gradient) and the pointwise output (the BN gradient). `sep_conv_block` computes the same block as
one operation with a custom gradient that keeps only the block's input, the kernels and the BN's
batch statistics, and recomputes the convolutions in the backward pass once the upstream
gradient is there (one more ReLU, depthwise and pointwise forward per block; the BN's gradient is
TensorFlow's own from the saved statistics), against two tensors fewer kept per block. In
Stage III, whose cells at the sample's size keep more than the U-Net's own training does, this is
what brings the step's peak memory under Stage I's (`benchmarks/stage3_cost.py`, numbers in
docs/benchmarks.md).

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


def _convolutions(x, dw_kernel, pw_kernel, dilation: int):
    """ReLU, depthwise, pointwise: ``(depthwise output h, pointwise output p)``."""
    h = depthwise_conv(tf.nn.relu(x), dw_kernel, dilation)
    return h, tf.nn.conv2d(h, pw_kernel, 1, "VALID")


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
        _, p = _convolutions(x, dw_kernel, pw_kernel, dilation)
        y, new_mean, new_var, batch_mean, batch_var = tf.raw_ops.FusedBatchNorm(
            x=p, scale=scale, offset=offset, mean=mean, variance=variance, epsilon=epsilon,
            exponential_avg_factor=avg_factor, is_training=True)

        def grad(dy, *_):  # the statistics outputs get no gradient
            # recompute when the upstream gradient is there, not as soon as x is (the executor
            # would otherwise run the recomputation during the forward pass and keep its tensors)
            with tf.control_dependencies([dy]):
                x_again = tf.identity(x)
            with tf.GradientTape() as tape:
                tape.watch([x_again, dw_kernel])
                h, _ = _convolutions(x_again, dw_kernel, pw_kernel, dilation)
            p_again = tf.nn.conv2d(h, pw_kernel, 1, "VALID")
            # the BN's gradient as TensorFlow's own (its saved batch statistics); no BN forward
            dp, d_scale, d_offset, _, _ = tf.raw_ops.FusedBatchNormGrad(
                y_backprop=dy, x=p_again, scale=scale, reserve_space_1=batch_mean,
                reserve_space_2=batch_var, epsilon=epsilon, is_training=True)
            dh = tf.nn.conv2d(dp, tf.transpose(pw_kernel, [0, 1, 3, 2]), 1, "VALID")
            d_pw = tf.raw_ops.Conv2DBackpropFilter(
                input=h, filter_sizes=tf.shape(pw_kernel), out_backprop=dp, strides=[1, 1, 1, 1],
                padding="VALID")
            dx, d_dw = tape.gradient(h, [x_again, dw_kernel], output_gradients=dh)
            return dx, d_dw, d_pw, d_scale, d_offset

        return (y, tf.stop_gradient(new_mean), tf.stop_gradient(new_var)), grad

    y, new_mean, new_var = block(x, depthwise.depthwise_kernel, pointwise.kernel, scale, offset)
    bn.moving_mean.assign(new_mean)
    bn.moving_variance.assign(new_var)
    return y

"""The attention augmentation module of RAUNet (Ni et al. 2019, ref. [24] of the IAC paper)."""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer, build_sublayer
from iac_tf.comparisons._common import channels, check_up_index, decoder_concat

L = keras.layers


def _conv_bn_relu(filters, name, dtype):
    return [L.Conv2D(filters, 1, name=f"{name}_conv", dtype=dtype),
            L.BatchNormalization(name=f"{name}_bn", dtype=dtype)]


@keras.utils.register_keras_serializable(package="iac_tf")
class AttentionAugmentation(ScopedLayer):
    """RAUNet's attention augmentation module (AAM) on a skip connection, then the concatenation.

    Follows Ni et al., "RAUNet: Residual Attention U-Net for Semantic Segmentation of Cataract
    Surgical Instruments" (ICONIP 2019), Fig. 3 / Section 3.2, with ``F_h`` the high-level
    (decoder, ``up``) feature and ``F_l`` the low-level (encoder, ``skip``) feature::

        z_h = ReLU(BN(W_h GAP(F_h) + b_h))        global context of each input: global average
        z_l = ReLU(BN(W_l GAP(F_l) + b_l))        pooling, 1x1 conv, BN, ReLU
        A   = softmax_c(W_a (z_h + z_l) + b_a)    channel attention, softmax over channels
        F_o = F_h + A * ReLU(BN(W_t F_l + b_t))   the re-weighted low-level feature added to
                                                  the high-level one (residual)
        output = concat(F_o, F_l)   in the replaced concatenation's channel order

    In RAUNet the AAM's output ``F_o`` goes straight into the decoder block (its decoder adds, it
    does not concatenate). A frozen U-Net's decoder expects ``C_up + C_skip`` channels, so the
    module returns ``F_o`` in the place of ``up`` and keeps ``F_l`` in the place of the skip
    (see docs/decisions.md, "Comparison methods"). ``W_t`` maps ``C_skip`` to ``C_up`` channels,
    as the 1x1 conv on the low-level input in the authors' code.

    Args:
        up_index: 0 if the U-Net concatenated ``[up, skip]``, 1 for ``[skip, up]``.

    Call arguments:
        inputs: ``[up, skip]``, ``(B, H, W, C_up)`` and ``(B, H, W, C_skip)``.
        training: BatchNorm mode.

    Returns:
        ``(B, H, W, C_up + C_skip)``, like the concatenation it replaces.

    Reference:
        Z.-L. Ni et al., arXiv:1909.10360 (2019); code: github.com/nizhenliang/RAUNet.
    """

    def __init__(self, up_index=0, **kwargs):
        super().__init__(**kwargs)
        self.up_index = check_up_index(self.name, up_index)

    def build(self, input_shape):
        up_shape, skip_shape = input_shape
        c_up = channels(up_shape, "up", self.name)
        c_skip = channels(skip_shape, "skip", self.name)
        dtype = self.dtype_policy
        self.high = _conv_bn_relu(c_up, "high", dtype)
        self.low = _conv_bn_relu(c_up, "low", dtype)
        self.attention = L.Conv2D(c_up, 1, name="attention_conv", dtype=dtype)
        self.transform = _conv_bn_relu(c_up, "transform", dtype)
        pooled = tf.TensorShape([None, 1, 1])
        for (conv, bn), c_in in ((self.high, c_up), (self.low, c_skip)):
            build_sublayer(conv, pooled.concatenate([c_in]))
            build_sublayer(bn, pooled.concatenate([c_up]))
        build_sublayer(self.attention, pooled.concatenate([c_up]))
        spatial = tf.TensorShape(skip_shape)[:-1]
        build_sublayer(self.transform[0], spatial.concatenate([c_skip]))
        build_sublayer(self.transform[1], spatial.concatenate([c_up]))
        super().build(input_shape)

    @staticmethod
    def _apply(block, x, training):
        conv, bn = block
        return tf.nn.relu(bn(conv(x), training=training))

    def attention_weights(self, up, skip, training=None):
        """``A``: ``(B, 1, 1, C_up)``, softmax over channels (sums to one per sample)."""
        z_h = self._apply(self.high, tf.reduce_mean(up, axis=(1, 2), keepdims=True), training)
        z_l = self._apply(self.low, tf.reduce_mean(skip, axis=(1, 2), keepdims=True), training)
        return tf.nn.softmax(self.attention(z_h + z_l), axis=-1)

    def call(self, inputs, training=None):
        up, skip = inputs
        weights = self.attention_weights(up, skip, training)
        f_o = up + weights * self._apply(self.transform, skip, training)  # residual
        return decoder_concat(f_o, skip, self.up_index)

    def get_config(self):
        config = super().get_config()
        config.update(up_index=self.up_index)
        return config

"""The attention gate of Attention U-Net (Oktay et al. 2018, ref. [23] of the IAC paper)."""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer, build_sublayer
from iac_tf.comparisons._common import channels, check_up_index, decoder_concat

L = keras.layers


@keras.utils.register_keras_serializable(package="iac_tf")
class AttentionGate(ScopedLayer):
    """Additive attention gate on a skip connection, then the decoder's concatenation.

    Follows Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas" (MIDL 2018),
    Fig. 2 and Eqs. (1)-(2), with ``x_l`` the skip (encoder) feature and ``g`` the gating signal
    from the coarser decoder level::

        q_att = psi^T ReLU(W_x^T x_l + W_g^T g + b_g) + b_psi      (Eq. 1)
        alpha = sigmoid(q_att)                                     (Eq. 1, sigma_2)
        x_hat = alpha * x_l                                        (Eq. 2: element-wise, one
                                                                    coefficient per pixel)
        output = concat(g, x_hat)     in the replaced concatenation's channel order

    ``W_x`` has no bias, ``W_g`` and ``psi`` have biases (as in Eq. 1). Adapted to a frozen
    U-Net (see docs/decisions.md, "Comparison methods"): the gating signal is the decoder feature
    the U-Net concatenates (``up``, the coarser level already upsampled to the skip's resolution),
    so ``W_x`` is a stride-1 1x1 convolution and no resampling of ``alpha`` is needed; the output
    transform (1x1 conv + BN on ``x_hat``) of the authors' code is left out (Fig. 2 has none), so
    the frozen decoder keeps receiving a gated copy of the skip it was trained on.

    Args:
        inter_channels: ``F_int``, channels of the intermediate space; default ``C_skip // 2``
            (the authors' reference code; our choice of default).
        up_index: 0 if the U-Net concatenated ``[up, skip]``, 1 for ``[skip, up]``.

    Call arguments:
        inputs: ``[up, skip]``, ``(B, H, W, C_up)`` and ``(B, H, W, C_skip)``.

    Returns:
        ``(B, H, W, C_up + C_skip)``, like the concatenation it replaces.

    Reference:
        O. Oktay et al., arXiv:1804.03999 (2018); code: github.com/ozan-oktay/Attention-Gated-Networks.
    """

    def __init__(self, inter_channels=None, up_index=0, **kwargs):
        super().__init__(**kwargs)
        if inter_channels is not None and int(inter_channels) < 1:
            raise ValueError(f"{self.name}: inter_channels must be >= 1, got {inter_channels}")
        self.inter_channels = None if inter_channels is None else int(inter_channels)
        self.up_index = check_up_index(self.name, up_index)

    def build(self, input_shape):
        up_shape, skip_shape = input_shape
        c_up = channels(up_shape, "up", self.name)
        c_skip = channels(skip_shape, "skip", self.name)
        f_int = self.inter_channels or max(1, c_skip // 2)
        self.W_x = L.Conv2D(f_int, 1, use_bias=False, name="W_x", dtype=self.dtype_policy)
        self.W_g = L.Conv2D(f_int, 1, use_bias=True, name="W_g", dtype=self.dtype_policy)
        self.psi = L.Conv2D(1, 1, use_bias=True, name="psi", dtype=self.dtype_policy)
        build_sublayer(self.W_x, tf.TensorShape(skip_shape)[:-1].concatenate([c_skip]))
        build_sublayer(self.W_g, tf.TensorShape(up_shape)[:-1].concatenate([c_up]))
        build_sublayer(self.psi, tf.TensorShape(skip_shape)[:-1].concatenate([f_int]))
        super().build(input_shape)

    def attention_coefficients(self, up, skip):
        """``alpha`` of Eq. (1), ``(B, H, W, 1)`` in [0, 1]."""
        q_att = self.psi(tf.nn.relu(self.W_x(skip) + self.W_g(up)))  # Eq. (1)
        return tf.sigmoid(q_att)

    def call(self, inputs):
        up, skip = inputs
        alpha = self.attention_coefficients(up, skip)
        return decoder_concat(up, alpha * skip, self.up_index)  # Eq. (2), then the concat

    def get_config(self):
        config = super().get_config()
        config.update(inter_channels=self.inter_channels, up_index=self.up_index)
        return config

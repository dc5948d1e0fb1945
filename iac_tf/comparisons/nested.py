"""UNet++-style nested skip refinement (Zhou et al. 2018, ref. [25] of the IAC paper), adapted
to the fixed decoder of a trained U-Net."""

from __future__ import annotations

from iac_tf._keras import keras, tf
from iac_tf.layer_scope import ScopedLayer, build_sublayer
from iac_tf.comparisons._common import channels, check_up_index, decoder_concat

L = keras.layers


@keras.utils.register_keras_serializable(package="iac_tf")
class NestedSkip(ScopedLayer):
    """A UNet++ intermediate node ``X^{i,1}`` on a skip connection, then the concatenation.

    Follows Zhou et al., "UNet++: A Nested U-Net Architecture for Medical Image Segmentation"
    (DLMIA 2018), Fig. 1 and Eq. (1): a node of the nested skip pathways is
    ``x^{i,j} = H([x^{i,0}, ..., x^{i,j-1}, U(x^{i+1,j-1})])`` with ``H`` a convolution block and
    ``U`` an up-sampling. Here, for the skip of one level (``x^{i,0}``, the encoder feature)::

        x^{i,1} = H([x^{i,0}, U(x^{i+1,0})])           Eq. (1) with j = 1
        skip'   = x^{i,0} + x^{i,1}                    the dense skip [x^{i,0}, x^{i,1}] folded
                                                       into the skip's C_skip channels
        output  = concat(up, skip')   in the replaced concatenation's channel order

    ``x^{i+1,0}`` is the encoder feature of the next deeper skip (the ``below`` input; for the
    deepest skip, the decoder's up-sampled bottleneck ``up``), ``U`` is nearest-neighbour
    resizing to the skip's resolution (the zoo decoders' ``UpSampling2D``), and ``H`` is
    ``num_convs`` times (3x3 conv, BatchNorm, ReLU) with ``C_skip`` filters. The frozen decoder
    takes ``C_up + C_skip`` channels, so UNet++'s dense concatenation ``[x^{i,0}, x^{i,1}]`` is
    folded into a sum: a decoder convolution ``W`` on the sum equals the one on the concatenation
    with the two weight blocks tied. Only the first column of nodes (j = 1) is built; see
    docs/decisions.md, "Comparison methods".

    Args:
        num_convs: convolutions in ``H`` (UNet++'s ``standard_unit`` has 2; our default 2).
        up_index: 0 if the U-Net concatenated ``[up, skip]``, 1 for ``[skip, up]``.

    Call arguments:
        inputs: ``[up, skip]`` or ``[up, skip, below]``; ``up`` and ``skip`` at the skip's
            resolution, ``below`` at any resolution (resized to the skip's).
        training: BatchNorm mode.

    Returns:
        ``(B, H, W, C_up + C_skip)``, like the concatenation it replaces.

    Reference:
        Z. Zhou et al., arXiv:1807.10165 (2018); code: github.com/MrGiovanni/UNetPlusPlus.
    """

    def __init__(self, num_convs=2, up_index=0, **kwargs):
        super().__init__(**kwargs)
        if int(num_convs) < 1:
            raise ValueError(f"{self.name}: num_convs must be >= 1, got {num_convs}")
        self.num_convs = int(num_convs)
        self.up_index = check_up_index(self.name, up_index)

    def build(self, input_shape):
        if len(input_shape) not in (2, 3):
            raise ValueError(f"{self.name}: expects [up, skip] or [up, skip, below], got {input_shape}")
        skip_shape = tf.TensorShape(input_shape[1])
        below_shape = input_shape[2] if len(input_shape) == 3 else input_shape[0]
        c_skip = channels(skip_shape, "skip", self.name)
        c_in = c_skip + channels(below_shape, "below", self.name)
        self.H = []
        for k in range(self.num_convs):
            conv = L.Conv2D(c_skip, 3, padding="same", name=f"H_conv{k}", dtype=self.dtype_policy)
            bn = L.BatchNormalization(name=f"H_bn{k}", dtype=self.dtype_policy)
            build_sublayer(conv, skip_shape[:-1].concatenate([c_in if k == 0 else c_skip]))
            build_sublayer(bn, skip_shape[:-1].concatenate([c_skip]))
            self.H += [conv, bn]
        super().build(input_shape)

    def call(self, inputs, training=None):
        up, skip = inputs[0], inputs[1]
        below = inputs[2] if len(inputs) == 3 else up
        below = tf.image.resize(below, tf.shape(skip)[1:3], method="nearest")  # U(x^{i+1,0})
        x = tf.concat([skip, tf.cast(below, skip.dtype)], axis=-1)
        for conv, bn in zip(self.H[::2], self.H[1::2]):
            x = tf.nn.relu(bn(conv(x), training=training))  # H, Eq. (1)
        return decoder_concat(up, skip + x, self.up_index)

    def get_config(self):
        config = super().get_config()
        config.update(num_convs=self.num_convs, up_index=self.up_index)
        return config

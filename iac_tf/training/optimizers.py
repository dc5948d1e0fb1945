"""Optimisers by name (the ``optimizer:`` keys of the stage configs)."""

from __future__ import annotations

from iac_tf._keras import keras, tf


@keras.utils.register_keras_serializable(package="iac_tf")
class FusedSGD(keras.optimizers.SGD):
    """tf_keras' SGD with the dense update of each variable as one fused training op.

    Same update, slot variables (``m``) and checkpoints as ``keras.optimizers.SGD``:
    ``m <- momentum * m - lr * g``, ``w <- w + m`` (Nesterov: ``w <- w + momentum * m - lr * g``
    with the new ``m``); like tf_keras, ``m`` is updated also when ``momentum`` is 0. tf_keras
    builds ~11 small ops per variable for it; a search supernet has ~700 cell variables, so its
    weight step traced ~7,600 optimiser ops (15 % of the search step's graph).
    ``ResourceApplyKerasMomentum`` does the same arithmetic in one op per variable (bit-identical
    results, ``tests/training/test_optimizers.py``). Sparse gradients (``IndexedSlices``) take
    tf_keras' own path.
    """

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        m = self.momentums[self._index_dict[self._var_key(variable)]]
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=m.handle, lr=tf.cast(self.learning_rate, variable.dtype),
            grad=gradient, momentum=tf.cast(self.momentum, variable.dtype),
            use_nesterov=self.nesterov,
        )


def make_optimizer(name: str, learning_rate, **kwargs) -> keras.optimizers.Optimizer:
    """Build a tf_keras optimiser by name (``adam`` / ``sgd``; ``sgd`` is :class:`FusedSGD`)."""
    name = name.lower()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, **kwargs)
    if name == "sgd":
        return FusedSGD(learning_rate=learning_rate, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")

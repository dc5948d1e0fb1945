"""iac_tf: Implantable Adaptive Cells for trained U-Nets (TensorFlow / tf_keras).

Importing the package sets the Keras 2 flags (``TF_USE_LEGACY_KERAS=1``, see
:mod:`iac_tf._flags`) but does not import TensorFlow: the modules that need it import it through
:mod:`iac_tf._keras`. If TensorFlow was imported before ``iac_tf``, the Keras version is checked
right away. It prints nothing.

Every Keras class the package saves into model files is known to Keras as soon as ``tf_keras``
is imported (:mod:`iac_tf._serializable`), so after ``import iac_tf`` a plain
``tf.keras.models.load_model(path)`` loads every model the tool saves.
"""

import sys as _sys

from iac_tf._flags import set_keras_flags as _set_keras_flags
from iac_tf._serializable import register_when_keras_loads as _register_when_keras_loads

_set_keras_flags()
if "tensorflow" in _sys.modules:
    from iac_tf import _keras  # noqa: F401  (fails now if tf.keras is Keras 3)
_register_when_keras_loads()

__version__ = "0.1.0"

__all__ = ["__version__"]

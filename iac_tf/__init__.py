"""iac_tf: Implantable Adaptive Cells for trained U-Nets (TensorFlow / tf_keras).

Importing the package sets up the Keras 2 API (see :mod:`iac_tf._keras`); it prints nothing.
"""

from iac_tf import _keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

__version__ = "0.1.0"

__all__ = ["__version__"]

"""The one place where TensorFlow, Keras 2 (``tf_keras``) and segmentation-models are imported.

segmentation-models 1.0.1 only works with the Keras 2 API. TensorFlow >= 2.16 puts Keras 3 behind
``tf.keras`` unless ``TF_USE_LEGACY_KERAS=1`` is set *before TensorFlow is imported*. This module
sets that flag (and ``SM_FRAMEWORK=tf.keras``), imports TensorFlow, and then asserts that
``tf.keras`` really is ``tf_keras``. Every other module of the package does::

    from iac_tf._keras import tf, keras

and never imports ``tensorflow.keras``, ``keras`` or ``tf_keras`` itself.
"""

from __future__ import annotations

import contextlib
import io
import os

from iac_tf._flags import KERAS3_MESSAGE, set_keras_flags  # noqa: E402

set_keras_flags()

import tensorflow as tf  # noqa: E402  (must follow the flags above)

try:
    import tf_keras as keras  # noqa: E402
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "iac_tf needs the package tf-keras matching TensorFlow (pip install 'tf-keras~=2.21.0')."
    ) from exc


def _assert_legacy_keras() -> None:
    """Fail loudly if ``tf.keras`` is Keras 3 (i.e. TensorFlow was imported before the flag)."""
    tfk = getattr(tf, "keras", None)
    if tfk is None:
        raise ImportError(KERAS3_MESSAGE)
    version = getattr(tfk, "__version__", "")
    layer_module = getattr(tfk.layers.Layer, "__module__", "")
    if str(version).startswith("3") or not layer_module.startswith("tf_keras"):
        raise ImportError(KERAS3_MESSAGE)


_assert_legacy_keras()


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process (decided at its import)."""
    from tensorflow.python.util import _pywrap_util_port  # noqa: PLC0415 - the one reliable probe

    return bool(_pywrap_util_port.IsMklEnabled())


def onednn_status() -> str:
    """One line: oneDNN on/off and who decided it (the user's TF_ENABLE_ONEDNN_OPTS, iac_tf on a
    CPU where TensorFlow leaves it off, or TensorFlow's own default)."""
    from iac_tf import _flags  # noqa: PLC0415

    why = {
        "user": f"{_flags.ONEDNN_VARIABLE}={os.environ.get(_flags.ONEDNN_VARIABLE, '')!r} set by the user",
        "iac_tf": "turned on by iac_tf: TensorFlow leaves it off on this CPU (no AVX-512 VNNI/BF16, AMX)",
        "tensorflow": "TensorFlow's default on this CPU",
        "late": "TensorFlow was imported before iac_tf: its default on this CPU",
    }.get(_flags.onednn_decided_by or "", "TensorFlow's default")
    return f"oneDNN {'on' if onednn_enabled() else 'off'} ({why})"


def import_segmentation_models():
    """Import segmentation_models lazily (it prints at import and is slow to load)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import segmentation_models as sm  # noqa: PLC0415 - slow, prints at import; only its backbones need it
    sm.set_framework("tf.keras")
    return sm


__all__ = ["tf", "keras", "import_segmentation_models", "onednn_enabled", "onednn_status",
           "KERAS3_MESSAGE"]

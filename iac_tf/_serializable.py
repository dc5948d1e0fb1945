"""Every Keras class the package saves into model files, known to Keras as soon as ``tf_keras``
is imported, without ``import iac_tf`` importing TensorFlow.

A model file names each custom layer by its registered name (``"iac_tf>DiscreteCell"``);
``keras.models.load_model`` finds the class in Keras' registry, which the class' module fills
when it is imported (``@keras.utils.register_keras_serializable``). ``import iac_tf`` alone
imports none of these modules (it must stay free of TensorFlow), so a plain
``tf.keras.models.load_model("RUN/stage3/best_model.keras")`` found no class and failed inside
Keras with ``TypeError: 'str' object is not callable``.

:func:`register_when_keras_loads` (called by ``iac_tf/__init__.py``) fixes that: if ``tf_keras``
is already imported it registers right away, otherwise a one-shot import hook (a
``sys.meta_path`` finder that wraps the loader of ``tf_keras``) registers right after
``tf_keras`` has executed. What it registers is a *placeholder* per name of :data:`CLASSES`
whose ``from_config`` imports the package's layer modules (which replace every placeholder by
the real class) and hands over to the real ``from_config``. The modules are imported at the
first load, not inside the hook: the hook runs in the middle of ``import tensorflow`` (which
imports ``tf_keras``) or of an ``iac_tf`` module's own import, where importing them would
re-enter half-initialised modules. See docs/decisions.md ("Keras interop").
"""

from __future__ import annotations

import importlib
import sys

#: Every class the package registers with Keras: registered name -> the module whose import
#: registers it (``tests/test_keras_interop.py`` checks this table against Keras' registry).
CLASSES = {
    "iac_tf>ArchitectureParameters": "iac_tf.search.architecture_parameters",
    "iac_tf>AttentionAugmentation": "iac_tf.comparisons.residual_attention",
    "iac_tf>AttentionGate": "iac_tf.comparisons.attention",
    "iac_tf>ComposedConv": "iac_tf.implant.composed_conv",
    "iac_tf>DiceCoefficient": "iac_tf.losses",
    "iac_tf>DiceLoss": "iac_tf.losses",
    "iac_tf>DiceCELoss": "iac_tf.losses",
    "iac_tf>DiscreteCell": "iac_tf.genotype.discrete_cell",
    "iac_tf>FusedSGD": "iac_tf.training.optimizers",
    "iac_tf>Identity": "iac_tf.search.operations",
    "iac_tf>LayerScale": "iac_tf.unets",  # ConvNeXt's, registered by iac_tf.unets on import
    "iac_tf>MixedOp": "iac_tf.search.mixed_op",
    "iac_tf>NestedSkip": "iac_tf.comparisons.nested",
    "iac_tf>PsiEdgeNorm": "iac_tf.search.psi",
    "iac_tf>ReLUConvBN": "iac_tf.search.operations",
    "iac_tf>ReLUSepConvBN": "iac_tf.search.operations",
    "iac_tf>ResidualImplant": "iac_tf.implant.residual",
    "iac_tf>SearchCell": "iac_tf.search.search_cell",
    "iac_tf>Zero": "iac_tf.search.operations",
}


class _Placeholder:
    """Stands in Keras' registry for one class of :data:`CLASSES` until its module is imported."""

    registered_name = ""

    @classmethod
    def from_config(cls, config):
        return real_class(cls.registered_name).from_config(config)


def _registry() -> dict:
    """Keras' live registry of custom objects (``tf_keras.utils.get_custom_objects()``)."""
    return sys.modules["tf_keras"].utils.get_custom_objects()


def real_class(name: str) -> type:
    """The class registered as ``name``, its module imported first."""
    for module in sorted(set(CLASSES.values())):
        importlib.import_module(module)
    cls = _registry().get(name)
    if cls is None or isinstance(cls, type) and issubclass(cls, _Placeholder):
        raise ImportError(f"{CLASSES[name]} did not register the Keras class {name!r}")
    return cls


def register_placeholders() -> None:
    """Put a placeholder into Keras' registry for each name of :data:`CLASSES` not registered
    yet (``tf_keras`` must be imported). Idempotent; never replaces a real class."""
    registry = _registry()
    for name in CLASSES:
        if name not in registry:
            registry[name] = type(f"Deferred{name.split('>')[1]}", (_Placeholder,),
                                  {"registered_name": name})


class _RegisterAfter:
    """Runs ``tf_keras``'s own loader, then :func:`register_placeholders` (a loader by duck
    typing: ``importlib.abc`` costs ``import iac_tf`` 10 ms)."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # tf_keras keeps its own loader
        self.loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TfKerasHook)]
        register_placeholders()

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _TfKerasHook:
    """Finds ``tf_keras`` through the other finders and wraps its loader; stays in
    ``sys.meta_path`` until ``tf_keras`` is loaded (TensorFlow probes it with ``find_spec``
    before importing it)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tf_keras":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisterAfter(spec.loader)
        return spec


def register_when_keras_loads() -> None:
    """Register the placeholders now if ``tf_keras`` is imported, else as soon as it is."""
    keras = sys.modules.get("tf_keras")
    if keras is not None and hasattr(keras, "utils"):
        register_placeholders()
    elif not any(isinstance(f, _TfKerasHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TfKerasHook())

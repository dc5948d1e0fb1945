"""Medical data for the three IAC stages: readers, 2D preprocessing, splits, cache, tf.data.

Typical use (the ``data:`` section of an experiment YAML is a :class:`DataConfig`)::

    from iac_tf.data import DataConfig, prepare_dataset
    prepared = prepare_dataset(DataConfig(format="nnunet",
                                          root="data/sample/Dataset001_PyradiomicsSample"))
    print(prepared.summary())
    train = prepared.dataset("train_dt", batch_size=32, shuffle=True, seed=0)

``test_dt`` (:data:`TEST_SPLIT`): the dataset's ``imagesTs``/``labelsTs`` or ``data.test_fraction``
of the patients, held out before the four splits; never cached, trained or selected on
(``prepared.test_cases``; ``iac run`` scores it on whole volumes).

The ``data:`` section itself (DataConfig, SPLITS, TEST_SPLIT) is :mod:`iac_tf.config.data`;
DataError is in :mod:`iac_tf.errors`. Modules: ``datasets`` (the registry of layouts),
``nifti`` (reading + checks), ``preprocess`` (pure NumPy 3D -> 2D), ``splits`` (Fig. 5),
``cache`` (HDF5), ``pipeline`` (PreparedDataset), ``prepare`` and ``check`` (behind
``iac data prepare|check``).
"""

import importlib

#: public name -> the module that defines it, imported on first use (PEP 562): the data
#: layer's records (``iac_tf.data.fingerprint``, ``preprocessing``) load without the slice cache,
#: tf.data or SciPy
_EXPORTS = {
    "FORMATS": "iac_tf.config.data", "SPLITS": "iac_tf.config.data",
    "TEST_SPLIT": "iac_tf.config.data", "DataConfig": "iac_tf.config.data",
    "load_data_config": "iac_tf.config.data",
    "CheckReport": "iac_tf.data.check", "check_dataset": "iac_tf.data.check",
    "DATASETS": "iac_tf.data.datasets",
    "PreparedDataset": "iac_tf.data.pipeline",
    "prepare_dataset": "iac_tf.data.prepare",
    "DataError": "iac_tf.errors",
}

#: The bundled sample (relative to the repository root).
SAMPLE_DATASET = "data/sample/Dataset001_PyradiomicsSample"

__all__ = [
    "DATASETS",
    "FORMATS",
    "SAMPLE_DATASET",
    "SPLITS",
    "TEST_SPLIT",
    "CheckReport",
    "DataConfig",
    "DataError",
    "PreparedDataset",
    "check_dataset",
    "load_data_config",
    "prepare_dataset",
]


def __getattr__(name: str):
    """Import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

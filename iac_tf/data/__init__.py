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

from iac_tf.config.data import FORMATS, SPLITS, TEST_SPLIT, DataConfig, load_data_config
from iac_tf.data.check import CheckReport, check_dataset
from iac_tf.data.datasets import DATASETS
from iac_tf.data.pipeline import PreparedDataset
from iac_tf.data.prepare import prepare_dataset
from iac_tf.errors import DataError

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

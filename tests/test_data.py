"""The data package's names, imported on first use: the dataset record and the run's
preprocessing load without the slice cache (h5py) or TensorFlow."""

import subprocess
import sys

import pytest

import iac_tf.data as data


def test_every_public_name_resolves_to_its_module():
    from iac_tf.config.data import DataConfig
    from iac_tf.data.prepare import prepare_dataset

    assert data.DataConfig is DataConfig and data.prepare_dataset is prepare_dataset
    assert all(hasattr(data, name) for name in data.__all__)
    assert set(data.__all__) <= set(dir(data))
    with pytest.raises(AttributeError, match="no_such_name"):
        data.no_such_name  # noqa: B018


def test_the_records_load_without_the_cache_or_tensorflow():
    code = ("import sys, iac_tf.run_layout, iac_tf.data.fingerprint, iac_tf.data.preprocessing; "
            "print(sorted(m for m in ('h5py', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"

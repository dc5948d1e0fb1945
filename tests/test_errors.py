"""The error classes: every specific error of the package is a ``UserError`` (the ``iac`` command
shows it as one line, exit status 2), none of them is a ``ValueError`` unless it is a
``UserValueError``, and Ctrl-C during preparation stays a ``KeyboardInterrupt``."""

import pytest

from iac_tf.config import ConfigError
from iac_tf.data.cache import CorruptCacheError
from iac_tf.errors import DataError, PrepareInterrupted, UserError, UserValueError
from iac_tf.files import RefusedPath
from iac_tf.genotype.genotype import GenotypeError
from iac_tf.implant.rebuild import ImplantError
from iac_tf.implant.skips import NoSkipConnectionsError
from iac_tf.locks import LockedError, LockLost
from iac_tf.preflight import PreflightError
from iac_tf.reporting.collect import UnreadableFile
from iac_tf.reporting.tables import SettingRunTwice
from iac_tf.run_layout import DatasetMismatch, UnreadableRecord
from iac_tf.run_records import RunConflict
from iac_tf.run_unet import UNetChanged

SPECIFIC = [ConfigError, CorruptCacheError, DataError, DatasetMismatch, GenotypeError, ImplantError,
            LockLost, LockedError, PreflightError, RefusedPath, RunConflict, SettingRunTwice,
            UNetChanged, UnreadableFile, UnreadableRecord]


@pytest.mark.parametrize("error", SPECIFIC, ids=lambda e: e.__name__)
def test_every_specific_error_is_a_user_error_and_no_value_error(error):
    assert issubclass(error, UserError)
    assert not issubclass(error, ValueError)  # a bug's ValueError is never taken for bad input


def test_a_bad_argument_value_is_both():
    for error in (UserValueError, NoSkipConnectionsError):
        assert issubclass(error, UserError) and issubclass(error, ValueError)
    with pytest.raises(ValueError, match="batch"):
        raise UserValueError("batch_size must be positive")


def test_data_errors_nest():
    assert issubclass(CorruptCacheError, DataError) and issubclass(RunConflict, ConfigError)
    assert not issubclass(UserError, ValueError)


def test_ctrl_c_during_preparation_is_still_an_interrupt():
    assert issubclass(PrepareInterrupted, KeyboardInterrupt)
    assert not issubclass(PrepareInterrupted, Exception)  # `except Exception` does not swallow it

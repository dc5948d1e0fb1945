"""Pre-flight checks on tiny models, without the CLI: what a trained U-Net file offers
(``iac_tf.models.inspect_unet``), how it is matched against the data, and the free-space check.

Covers: iac_tf/models.py
"""

from __future__ import annotations

import pytest

from iac_tf.data.check import DataShape
from iac_tf.config.experiment import load_experiment
from iac_tf.models import inspect_unet, match_data
from iac_tf.preflight import FAIL, OK, PreflightError, checked_prepare, output_space_check
from tests.data import fixtures
from tests.tiny import tiny_unet, write_config


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("unet") / "tiny.keras"
    tiny_unet(32, f=4, classes=2).save(str(path))
    return path


def test_a_tiny_unet_offers_two_skips_a_sigmoid_and_its_shapes(unet_file):
    info, problems = inspect_unet(unet_file, 32)
    assert problems == []
    assert (info.in_channels, info.classes, info.skips) == (1, 2, 2) and info.params > 0
    assert match_data(info, DataShape(1, 2, 32), "data") == []
    mismatch = match_data(info, DataShape(3, 4, 32), "data")
    assert len(mismatch) == 2 and "3" in mismatch[0] and "4 " in mismatch[1] + " "


def test_a_fixed_input_size_other_than_the_patch_is_named(unet_file):
    _, problems = inspect_unet(unet_file, 64)
    assert len(problems) == 1 and "takes 32x32 inputs but data.patch_size is 64" in problems[0]


def test_every_failure_is_listed_before_the_data_is_prepared(tmp_path, unet_file):
    dataset = fixtures.write_nnunet(tmp_path / "raw")
    cfg = load_experiment(write_config(tmp_path, dataset, tmp_path / "cache",
                                       data__patch_size=64))
    prepared = []
    with pytest.raises(PreflightError) as err:
        checked_prepare(cfg, 3, lambda c: prepared.append(c), unet_path=unet_file,
                        genotype_path=[tmp_path / "missing.json"])
    text = str(err.value)
    assert "problems found before starting" in text and "missing.json" in text
    assert "data.patch_size is 64" in text
    assert prepared == []  # nothing was prepared


def test_the_output_space_check_fails_on_a_full_disk(tmp_path, monkeypatch):
    import iac_tf.preflight as preflight

    dataset = fixtures.write_nnunet(tmp_path / "raw")
    cfg = load_experiment(write_config(tmp_path, dataset, tmp_path / "cache"))
    assert output_space_check(cfg, 1000).status == OK
    monkeypatch.setattr(preflight, "free_bytes", lambda path: 1024)
    row = output_space_check(cfg, 1000)
    assert row.status == FAIL and str(cfg.run_dir) in row.detail

"""Every reader on its fixture layout: cases, patients, classes, channels, orientation.

Covers: iac_tf/data/datasets.py, iac_tf/data/nifti.py
"""

import numpy as np
import pytest

from iac_tf.data import DataConfig, check_dataset, prepare_dataset
from iac_tf.data.datasets import DATASETS, detect_format, list_cases
from iac_tf.data.nifti import load_case, load_nifti
from iac_tf.labels import LabelRule
from tests.data import fixtures

# format -> (num cases, num patients, class names (regions), in_channels, modalities of case 0)
EXPECTED = {
    "nnunet": (5, 5, ["organ", "lesion"], 1, ("T2",)),
    "acdc": (10, 5, ["RV", "MYO", "LV"], 1, ("MRI",)),
    "brats": (5, 4, ["WT", "TC", "ET"], 4, ("t1n", "t1c", "t2w", "t2f")),
    "kits": (5, 5, ["kidney_and_masses", "masses", "tumor"], 1, ("CT",)),
    "amos": (5, 5, list(fixtures.AMOS_ORGANS), 1, ("CT",)),
}


@pytest.mark.parametrize("fmt", sorted(EXPECTED))
def test_reader_lists_cases_and_prepares(fmt, tmp_path):
    root = fixtures.WRITERS[fmt](tmp_path / "raw")
    n_cases, n_patients, names, channels, mods = EXPECTED[fmt]
    cases = list_cases(fmt, root)
    assert len(cases) == n_cases
    assert len({c.patient_id for c in cases}) == n_patients
    assert cases[0].modalities == mods
    assert detect_format(root) == fmt
    assert check_dataset(root).ok
    prepared = prepare_dataset(DataConfig(format=fmt, root=str(root), patch_size=16,
                                          cache_dir=str(tmp_path / "cache")), progress=False)
    assert prepared.class_names == names
    assert prepared.num_classes == len(names)
    assert prepared.in_channels == channels
    images, masks, ids = prepared.arrays("train_dt")
    assert images.shape[1:] == (16, 16, channels) and images.dtype == np.float32
    assert masks.shape[1:] == (16, 16, len(names)) and set(np.unique(masks)) <= {0.0, 1.0}
    assert masks[..., 0].sum() > 0


def test_acdc_uses_info_cfg_frames_and_keeps_patient_together(tmp_path):
    root = fixtures.write_acdc(tmp_path)
    cases = {c.case_id: c for c in list_cases("acdc", root)}
    assert cases["patient003_ES"].image_paths[0].name == "patient003_frame13.nii.gz"
    assert cases["patient003_ES"].label_path.name == "patient003_frame13_gt.nii.gz"
    assert cases["patient003_ED"].patient_id == cases["patient003_ES"].patient_id == "patient003"
    assert not DATASETS["acdc"].reorient


def test_brats_channel_order_timepoints_and_regions(tmp_path):
    root = fixtures.write_brats(tmp_path)
    cases = list_cases("brats", root)
    assert [p.name.rsplit("-", 1)[1] for p in cases[0].image_paths] == [
        "t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz", "t2f.nii.gz"]
    assert cases[0].patient_id == cases[1].patient_id == "BraTS-GLI-00000"
    raw = DATASETS["brats"].classes(root, "raw")
    assert raw.names == ("NETC", "SNFH", "ET") and raw.values == ((1,), (2,), (3,))
    regions = DATASETS["brats"].classes(root, "regions")
    assert regions.values == ((1, 2, 3), (1, 3), (3,))


def test_brats_raw_label_mode_masks(tmp_path):
    root = fixtures.write_brats(tmp_path, cases=((0, 0), (1, 0), (2, 0)))
    cfg = dict(format="brats", root=str(root), patch_size=32, cache_dir=str(tmp_path / "c"))
    regions = prepare_dataset(DataConfig(**cfg), progress=False)
    raw = prepare_dataset(DataConfig(**cfg, label_mode="raw"), progress=False)
    _, m_reg, _ = regions.arrays("train_dt")
    _, m_raw, _ = raw.arrays("train_dt")
    np.testing.assert_array_equal(m_reg[..., 0], m_raw.max(-1))  # WT = NETC | SNFH | ET
    np.testing.assert_array_equal(m_reg[..., 2], m_raw[..., 2])  # ET
    # the label values of each channel give the decision rule's label mode
    assert regions.class_values == ((1, 2, 3), (1, 3), (3,))
    assert raw.class_values == ((1,), (2,), (3,))
    assert LabelRule(regions.class_values).mode == "regions"
    assert LabelRule(raw.class_values).mode == "exclusive"


def test_kits_slices_first_volume_is_reoriented_to_ras(tmp_path):
    root = fixtures.write_kits(tmp_path, cases=(0,))
    case = list_cases("kits", root)[0]
    data, affine = load_nifti(case.image_paths[0], reorient=True)
    np.testing.assert_allclose(data, fixtures.volume(0, low=-1024.0, high=1500.0), rtol=1e-6)
    np.testing.assert_allclose(np.diag(affine)[:3], [1.5, 1.5, 4.0])
    raw, _ = load_nifti(case.image_paths[0], reorient=False)
    assert raw.shape == fixtures.SHAPE[::-1]  # stored slices-first


def test_kits_ignores_instances_folder(tmp_path):
    root = fixtures.write_kits(tmp_path, cases=(0, 1))
    assert [c.case_id for c in list_cases("kits", root)] == ["case_00000", "case_00001"]


def test_amos_modality_by_id_and_validation_cases(tmp_path):
    root = fixtures.write_amos(tmp_path)
    cases = {c.case_id: c for c in list_cases("amos", root)}
    assert cases["amos_0001"].modalities == ("CT",)
    assert cases["amos_0507"].modalities == ("MRI",)
    assert "amos_0009" in cases and cases["amos_0009"].label_path.parent.name == "labelsVa"
    classes = DATASETS["amos"].classes(root, "regions")
    assert classes.values[5] == (6,) and classes.names[5] == "liver" and len(classes.names) == 15


def test_nnunet_multichannel_and_case_modality(tmp_path):
    root = fixtures.write_nnunet(tmp_path, cases=("a", "b"), channels=("T1", "CT"),
                                 case_modality={"b": "CT"})
    cases = list_cases("nnunet", root)
    assert cases[0].modalities == ("T1", "CT")
    assert cases[1].modalities == ("CT", "CT")
    image, label, _ = load_case(cases[0].image_paths, cases[0].label_path, (0, 1, 2), True)
    assert image.shape == fixtures.SHAPE + (2,) and label.dtype == np.int16


def test_nnunet_region_labels(tmp_path):
    root = fixtures.write_nnunet(tmp_path, cases=("a",))
    meta = root / "dataset.json"
    meta.write_text(meta.read_text().replace('"lesion": 2', '"lesion": 2, "whole": [1, 2]'))
    classes = DATASETS["nnunet"].classes(root, "regions")
    assert classes.names == ("organ", "lesion", "whole") and classes.values[2] == (1, 2)
    assert DATASETS["nnunet"].classes(root, "raw").names == ("organ", "lesion")

"""Fixture writers: tiny volumes in the exact layouts of ACDC, BraTS 2023, KiTS23, AMOS22 and
nnU-Net v2 (file names and label values as the datasets ship them)."""

from __future__ import annotations

import json
import pathlib

import nibabel as nib
import numpy as np

SHAPE = (40, 36, 6)  # (x, y, z) in RAS voxel order
RAS = np.diag([1.5, 1.5, 4.0, 1.0])


def volume(seed: int, shape=SHAPE, low: float = 0.0, high: float = 500.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape).astype(np.float32)


def blob_label(values=(1,), shape=SHAPE, z=(2, 3, 4), offset=0) -> np.ndarray:
    """Nested boxes: the outer box has ``values[0]``, inner ones the next values."""
    label = np.zeros(shape, np.uint8)
    for i, v in enumerate(values):
        x0, y0 = 10 + offset + 2 * i, 8 + 2 * i
        label[x0: x0 + 12 - 4 * i, y0: y0 + 10 - 4 * i, list(z)] = v
    return label


def save(array: np.ndarray, path: pathlib.Path, affine=RAS) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_nnunet(root: pathlib.Path, cases=("case_a", "case_b", "case_c", "case_d", "case_e"),
                 channels=("T2",), case_modality=None, test_cases=()) -> pathlib.Path:
    """``Dataset999_Tiny`` with ``cases`` in imagesTr/labelsTr and ``test_cases`` in
    imagesTs/labelsTs (nnU-Net's names: ``CASE_0000.nii.gz`` and ``CASE.nii.gz``)."""
    ds = root / "Dataset999_Tiny"
    meta = {"channel_names": {str(i): c for i, c in enumerate(channels)},
            "labels": {"background": 0, "organ": 1, "lesion": 2},
            "numTraining": len(cases), "file_ending": ".nii.gz"}
    if case_modality:
        meta["case_modality"] = case_modality
    ds.mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps(meta))
    for k, case in enumerate(cases):
        for c in range(len(channels)):
            save(volume(10 * k + c), ds / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        save(blob_label((1, 2), offset=k), ds / "labelsTr" / f"{case}.nii.gz")
    for k, case in enumerate(test_cases, start=len(cases)):
        for c in range(len(channels)):
            save(volume(10 * k + c), ds / "imagesTs" / f"{case}_{c:04d}.nii.gz")
        save(blob_label((1, 2), offset=k % 8), ds / "labelsTs" / f"{case}.nii.gz")
    return ds


def write_acdc(root: pathlib.Path, patients=(1, 2, 3, 4, 5)) -> pathlib.Path:
    """``database/training/patientNNN/`` with Info.cfg, the two labelled frames, and the 4D file."""
    base = root / "database" / "training"
    for p in patients:
        folder = base / f"patient{p:03d}"
        folder.mkdir(parents=True)
        ed, es = 1, 10 + p
        (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 180.0\n"
                                         f"NbFrame: 30\nWeight: 80.0\n")
        for frame in (ed, es):
            save(volume(p * 100 + frame), folder / f"patient{p:03d}_frame{frame:02d}.nii.gz")
            save(blob_label((1, 2, 3)), folder / f"patient{p:03d}_frame{frame:02d}_gt.nii.gz")
        save(np.zeros(SHAPE + (2,), np.float32), folder / f"patient{p:03d}_4d.nii.gz")
    return root


def write_brats(root: pathlib.Path, cases=((0, 0), (0, 1), (2, 0), (3, 0), (5, 0))) -> pathlib.Path:
    """``BraTS-GLI-NNNNN-TTT/`` with t1n, t1c, t2w, t2f and seg; skull-stripped (zeros outside)."""
    base = root / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    for n, t in cases:
        name = f"BraTS-GLI-{n:05d}-{t:03d}"
        brain = np.zeros(SHAPE, bool)
        brain[5:35, 4:32, :] = True
        for i, seq in enumerate(("t1n", "t1c", "t2w", "t2f")):
            save(volume(n * 10 + t + i, low=100.0) * brain, base / name / f"{name}-{seq}.nii.gz")
        save(blob_label((2, 1, 3)), base / name / f"{name}-seg.nii.gz")
    return root


#: KiTS23 stores volumes slices-first; its affine maps voxel axis 0 to the (inverted) z axis.
KITS_AFFINE = np.array([[0.0, 0.0, -1.5, 0.0], [0.0, -1.5, 0.0, 0.0], [-4.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 1.0]])


def to_kits_order(ras: np.ndarray) -> np.ndarray:
    """The slices-first array that, with :data:`KITS_AFFINE`, shows ``ras`` (x, y, z)."""
    return np.ascontiguousarray(ras[::-1, ::-1, ::-1].transpose(2, 1, 0))


def write_kits(root: pathlib.Path, cases=(0, 1, 2, 3, 4)) -> pathlib.Path:
    base = root / "kits23" / "dataset"
    for k in cases:
        folder = base / f"case_{k:05d}"
        ct = volume(k, low=-1024.0, high=1500.0)
        save(to_kits_order(ct), folder / "imaging.nii.gz", KITS_AFFINE)
        save(to_kits_order(blob_label((1, 2, 3))), folder / "segmentation.nii.gz", KITS_AFFINE)
        save(to_kits_order(blob_label((1,))),
             folder / "instances" / "kidney_instance-1_annotation-1.nii.gz", KITS_AFFINE)
    return root


AMOS_ORGANS = ("spleen", "right kidney", "left kidney", "gall bladder", "esophagus", "liver",
               "stomach", "arota", "postcava", "pancreas", "right adrenal gland",
               "left adrenal gland", "duodenum", "bladder", "prostate/uterus")


def write_amos(root: pathlib.Path, train=(1, 5, 507, 508), val=(9,)) -> pathlib.Path:
    """AMOS22: dataset.json with ``{"0": "background", ...}`` labels; ids >= 500 are MRI."""
    base = root / "amos22"
    labels = {"0": "background"} | {str(i + 1): n for i, n in enumerate(AMOS_ORGANS)}
    entries = {"training": [], "validation": []}
    for split, ids in (("Tr", train), ("Va", val)):
        for i in ids:
            name = f"amos_{i:04d}.nii.gz"
            low = -1024.0 if i < 500 else 0.0
            save(volume(i, low=low, high=1000.0), base / f"images{split}" / name)
            save(blob_label((6, 1, 15)), base / f"labels{split}" / name)
            entries["training" if split == "Tr" else "validation"].append(
                {"image": f"./images{split}/{name}", "label": f"./labels{split}/{name}"})
    (base / "dataset.json").write_text(json.dumps({"name": "AMOS", "labels": labels} | entries))
    return base


WRITERS = {"nnunet": write_nnunet, "acdc": write_acdc, "brats": write_brats, "kits": write_kits,
           "amos": write_amos}

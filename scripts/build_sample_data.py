"""Rebuild the bundled sample ``data/sample/Dataset001_PyradiomicsSample`` from pyradiomics 3.0.1.

The pyradiomics source distribution (PyPI, BSD-3-Clause) ships five real scans with manual lesion
masks in ``data/<case>_image.nrrd`` / ``data/<case>_label.nrrd``: brain1, brain2 (MRI), breast1
(MRI), lung1, lung2 (CT). This script converts them into an nnU-Net v2 raw dataset:

* the NRRD "left-posterior-superior" voxel-to-world matrix becomes a RAS NIfTI affine
  (x and y negated), so nibabel sees the true orientation;
* each volume is cut to a band of slices around its lesion (``--margin`` slices either side) and an
  in-plane window of at most ``--window`` x ``--window`` voxels centred on the lesion (the affine's
  origin moves with the crop), which keeps the committed sample at about 2 MB;
* images stay int16, labels become uint8 (lesion = 1);
* ``dataset.json`` lists the single class and, per case, the modality (``case_modality``), which
  :mod:`iac_tf.data` uses to pick CT or MRI normalisation.

Usage (needs network once, and ``pip install pynrrd``)::

    pip download --no-binary :all: --no-deps --no-build-isolation pyradiomics==3.0.1 -d /tmp/pr
    python scripts/build_sample_data.py --sdist /tmp/pr/pyradiomics-3.0.1.tar.gz

Without ``--sdist`` the script runs that ``pip download`` itself into a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

CASES = {"brain1": "MRI", "brain2": "MRI", "breast1": "MRI", "lung1": "CT", "lung2": "CT"}
VERSION = "3.0.1"
DATASET = "Dataset001_PyradiomicsSample"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def nrrd_affine(header: dict) -> np.ndarray:
    """The RAS voxel-to-world affine of an NRRD header in LPS space."""
    space = header.get("space", "")
    if space not in ("left-posterior-superior", "LPS"):
        raise ValueError(f"unsupported NRRD space {space!r}")
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(header["space directions"], dtype=float).T
    affine[:3, 3] = np.asarray(header["space origin"], dtype=float)
    return LPS_TO_RAS @ affine


def crop_box(label: np.ndarray, window: int, margin: int) -> tuple[slice, slice, slice]:
    """In-plane window centred on the lesion and the lesion's slices +- margin."""
    idx = np.argwhere(label > 0)
    lo, hi = idx.min(0), idx.max(0)
    box = []
    for axis in (0, 1):
        size = min(window, label.shape[axis])
        centre = (lo[axis] + hi[axis]) // 2
        start = int(np.clip(centre - size // 2, 0, label.shape[axis] - size))
        box.append(slice(start, start + size))
    box.append(slice(int(max(0, lo[2] - margin)), int(min(label.shape[2], hi[2] + margin + 1))))
    return tuple(box)


def download_sdist(dest: pathlib.Path) -> pathlib.Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
         "--no-build-isolation", f"pyradiomics=={VERSION}", "-d", str(dest)],
        check=True,
    )
    return dest / f"pyradiomics-{VERSION}.tar.gz"


def build(sdist: pathlib.Path, out_root: pathlib.Path, window: int, margin: int) -> pathlib.Path:
    import nibabel as nib
    import nrrd

    sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.endswith((".nrrd", "LICENSE.txt"))
                       and "/data/baseline" not in m.name]
            tar.extractall(tmp, members=members, filter="data")
        src = pathlib.Path(tmp) / f"pyradiomics-{VERSION}"
        final = out_root / DATASET
        staging = out_root / (DATASET + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "imagesTr").mkdir(parents=True)
        (staging / "labelsTr").mkdir()
        rows = []
        for case, modality in CASES.items():
            image, header = nrrd.read(str(src / "data" / f"{case}_image.nrrd"))
            label, lheader = nrrd.read(str(src / "data" / f"{case}_label.nrrd"))
            affine = nrrd_affine(header)
            if image.shape != label.shape or not np.allclose(affine, nrrd_affine(lheader)):
                raise ValueError(f"{case}: image and label grids differ")
            box = crop_box(label, window, margin)
            start = np.array([box[0].start, box[1].start, box[2].start, 1.0])
            cropped = affine.copy()
            cropped[:3, 3] = (affine @ start)[:3]
            img = np.ascontiguousarray(image[box]).astype(np.int16)
            lab = (np.ascontiguousarray(label[box]) > 0).astype(np.uint8)
            for arr, path in ((img, staging / "imagesTr" / f"{case}_0000.nii.gz"),
                              (lab, staging / "labelsTr" / f"{case}.nii.gz")):
                nii = nib.Nifti1Image(arr, cropped)
                nii.set_qform(cropped, code=1)
                nii.set_sform(cropped, code=1)
                nib.save(nii, str(path))
            rows.append(f"| {case} | {modality} | {image.shape} | {img.shape} | "
                        f"{[(s.start, s.stop) for s in box]} | {int(lab.sum())} |")
        dataset = {
            "name": "PyradiomicsSample",
            "description": "Five real scans with manual lesion masks from the pyradiomics 3.0.1 "
                           "test data, cropped around the lesion (see PROVENANCE.md).",
            "licence": "BSD-3-Clause (pyradiomics, Copyright 2017 Harvard Medical School)",
            "channel_names": {"0": "image"},
            "case_modality": CASES,
            "labels": {"background": 0, "lesion": 1},
            "numTraining": len(CASES),
            "file_ending": ".nii.gz",
        }
        (staging / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
        shutil.copy(src / "LICENSE.txt", staging / "LICENSE")
        (staging / "PROVENANCE.md").write_text(
            f"# Provenance\n\nSource: pyradiomics {VERSION} source distribution from PyPI\n"
            f"(`pyradiomics-{VERSION}.tar.gz`, sha256 `{sha}`), files `data/<case>_image.nrrd`\n"
            f"and `data/<case>_label.nrrd`. Licence: BSD-3-Clause, see `LICENSE`.\n\n"
            f"Built by `scripts/build_sample_data.py --window {window} --margin {margin}`:\n"
            f"NRRD (LPS) converted to NIfTI with a RAS affine; each volume cut to an in-plane\n"
            f"window of at most {window}x{window} voxels centred on the lesion bounding box and\n"
            f"to the lesion's slices +-{margin}; images int16 as stored, labels uint8 "
            "(lesion=1).\n\n"
            "| case | modality | original shape | kept shape | kept voxel ranges "
            "| lesion voxels |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=pathlib.Path,
                        help="pyradiomics-3.0.1.tar.gz (else download)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("data/sample"))
    parser.add_argument("--window", type=int, default=192, help="in-plane window (voxels)")
    parser.add_argument("--margin", type=int, default=3, help="slices kept either side of lesion")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(pathlib.Path(tmp))
        args.out.mkdir(parents=True, exist_ok=True)
        final = build(sdist, args.out, args.window, args.margin)
    print(f"wrote {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of the dataset record by content (``iac_tf.data.fingerprint``).

Usage::

    python benchmarks/fingerprint.py [--data DATASET_DIR] [--synthetic N] [--repeats 3]

For the bundled sample (default) and, with ``--synthetic N``, a generated nnU-Net dataset of N CT
cases of 512 x 512 x 100 int16 voxels (noise over a smooth body, gzip level 1 as nibabel writes
it, in a temporary folder removed afterwards), prints the median seconds of:

* ``paths+sizes``: the first scheme (paths and sizes only, what a same-size edit slips past);
* ``first record``: every image and label file hashed (the first stage of a run; also what
  hashing the images on every check would cost);
* ``later check``: a rerun's check: labels and ``dataset.json`` hashed, images whose size and
  modification time match the record keep their hash;

with the bytes read and the rate. Files are in the page cache (just written or read by the
previous repeat): this is the CPU cost of SHA-256 plus reading from memory, not a cold disk.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time

import numpy as np

from iac_tf.config.data import DataConfig
from iac_tf.data.fingerprint import data_record, legacy_fingerprint
from iac_tf.machine import header

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "data" / "sample" / \
    "Dataset001_PyradiomicsSample"


def synthetic(root: pathlib.Path, cases: int, shape=(512, 512, 100)) -> pathlib.Path:
    """An nnU-Net dataset of ``cases`` CT-like int16 volumes and uint8 labels."""
    import nibabel as nib

    ds = root / "Dataset900_Synthetic"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1},
        "numTraining": cases, "file_ending": ".nii.gz"}))
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape),
                          indexing="ij", sparse=True)
    body = (x ** 2 + y ** 2 < 0.8).astype(np.float32)
    organ = ((x - 0.2) ** 2 + y ** 2 + z ** 2 < 0.1).astype(np.uint8)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    for k in range(cases):
        image = (body * 1000 - 1000 + rng.normal(0, 30, shape)).astype(np.int16)
        nib.save(nib.Nifti1Image(image, affine), str(ds / "imagesTr" / f"c{k:03d}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(organ, affine), str(ds / "labelsTr" / f"c{k:03d}.nii.gz"))
    return ds


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(ds: pathlib.Path, repeats: int) -> None:
    cfg = DataConfig(format="nnunet", root=str(ds), cache_dir=str(ds.parent / "cache"))
    files = [p for p in ds.rglob("*.nii.gz")]
    images = sum(p.stat().st_size for p in files if "images" in p.parent.name)
    labels = sum(p.stat().st_size for p in files if "labels" in p.parent.name)
    record = data_record(cfg)
    rows = [("paths+sizes", _median(lambda: legacy_fingerprint(cfg), repeats), 0),
            ("first record", _median(lambda: data_record(cfg), repeats), images + labels),
            ("later check", _median(lambda: data_record(cfg, record), repeats), labels)]
    print(f"{ds.name}: {len(files)} files, images {images / 1e6:.1f} MB, labels "
          f"{labels / 1e6:.2f} MB")
    for name, seconds, read in rows:
        rate = f"{read / 1e6 / seconds:8.0f} MB/s" if read > 1e7 and seconds else " " * 13
        print(f"  {name:<14}{seconds:9.4f} s  {read / 1e6:9.1f} MB hashed  {rate}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=SAMPLE)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(header(tensorflow=False), flush=True)  # SHA-256 and file reads: no TensorFlow
    measure(args.data, args.repeats)
    if args.synthetic:
        with tempfile.TemporaryDirectory(prefix="iac_fingerprint_") as tmp:
            t0 = time.perf_counter()
            ds = synthetic(pathlib.Path(tmp), args.synthetic)
            print(f"(generated in {time.perf_counter() - t0:.0f} s)")
            measure(ds, args.repeats)


if __name__ == "__main__":
    main()

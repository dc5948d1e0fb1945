"""Bad input and faults: each case through the ``iac`` CLI, table-driven.

Every row builds its fixture, runs one command and asserts the exit status, the file or key the
message names, that no traceback is printed, and that nothing is left behind (no temp files, no
run folder when the failure comes before training). Full disks are simulated with a patched
writer raising ``OSError(ENOSPC)`` / TensorFlow's ``ResourceExhaustedError`` (no root mounts).

Covers: iac_tf/diskspace.py, iac_tf/data/cache.py, iac_tf/data/prepare.py
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

from iac_tf.cli import main
from tests.data import fixtures
from tests.tiny import flexible_unet, tiny_unet, write_config


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    """The tiny nnU-Net dataset (5 cases, 2 classes: organ, lesion; 1 channel)."""
    return fixtures.write_nnunet(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> pathlib.Path:
    """One cache folder for the rows whose data is fine (built once, reused)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def unets(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Trained-U-Net files that do not fit the data, one per way of not fitting."""
    from iac_tf._keras import keras

    folder = tmp_path_factory.mktemp("unets")
    models = {"classes3": lambda: tiny_unet(32, f=4, classes=3),
              "channels2": lambda: tiny_unet(32, channels=2, f=4, classes=2),
              "fixed64": lambda: tiny_unet(64, f=4, classes=2),
              "good": lambda: flexible_unet(keras)}
    x = keras.Input((None, None, 1))
    models["noskip"] = lambda: keras.Model(x, keras.layers.Conv2D(2, 3, padding="same")(x))
    out = {}
    for name, build in models.items():
        out[name] = folder / f"{name}.keras"
        build().save(str(out[name]))
    return out


def run(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return rc, out, err


def temporaries(*folders) -> list[pathlib.Path]:
    found = []
    for folder in folders:
        folder = pathlib.Path(folder)
        if folder.exists():
            found += [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith("_temp")]
    return found


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------- 1, 7: the U-Net
UNET_CASES = [
    # (unet, patch, expected text)
    ("classes3", 32, "outputs 3 class(es) but the data"),
    ("channels2", 32, "takes 2 input channel(s) but the data"),
    ("fixed64", 32, "takes 64x64 inputs but data.patch_size is 32"),
    ("noskip", 32, "no skip connection found"),
    ("noskip", 32, "output activation is 'linear'"),
    ("good", 30, "does not run on 30x30x1 slices"),
]


def test_comparisons_check_the_pretrained_unet_first(unets, dataset, shared_cache, tmp_path, capsys):
    """`iac compare` runs the same pre-flight as the stages: nothing written on a bad U-Net."""
    cfg = write_config(tmp_path, dataset, shared_cache, unet__pretrained=str(unets["classes3"]),
                       data__patch_size=32)
    rc, _, err = run(["compare", cfg, "--set", "compare=[attention]"], capsys)
    assert rc == 2 and str(unets["classes3"]) in err and "outputs 3 class(es)" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("unet,patch,text", UNET_CASES)
def test_pretrained_unet_checked_before_the_run_folder(unet, patch, text, unets, dataset,
                                                       shared_cache, tmp_path, capsys):
    cfg = write_config(tmp_path, dataset, shared_cache, unet__pretrained=str(unets[unet]),
                       data__patch_size=patch)
    rc, _, err = run(["stage2", cfg], capsys)
    assert rc == 2 and str(unets[unet]) in err and text in err, err
    assert not (tmp_path / "runs").exists()


def test_good_pretrained_unet_passes_doctor(unets, dataset, shared_cache, tmp_path, capsys):
    cfg = write_config(tmp_path, dataset, shared_cache, unet__pretrained=str(unets["good"]))
    rc, out, _ = run(["doctor", cfg], capsys)
    assert rc == 0, out
    for row in ("output folder", "cache folder", "data", "cache space", "U-Net", "genotype",
                "output space", "GPU", "mixed precision", "oneDNN"):
        assert row in out
    assert ("oneDNN on (" in out) != ("oneDNN off (" in out)
    assert "2 skip connection(s)" in out and " FAIL " not in out
    assert not (tmp_path / "runs").exists()


def test_doctor_lists_every_problem_at_once(unets, dataset, shared_cache, tmp_path, capsys):
    geno = tmp_path / "geno.json"
    geno.write_bytes(bytes(range(256)))
    out_file = tmp_path / "out_is_a_file"
    out_file.write_text("x")
    cfg = write_config(tmp_path, dataset, shared_cache, unet__pretrained=str(unets["classes3"]),
                       stage3__genotype=str(geno), output_dir=str(out_file))
    rc, out, _ = run(["doctor", cfg], capsys)
    assert rc == 2
    fails = [line for line in out.splitlines() if "  FAIL  " in line]
    assert len(fails) == 3, out
    assert str(unets["classes3"]) in out and str(geno) in out and str(out_file) in out


# ---------------------------------------------------------------------------- 2: full disk
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_caching(dataset, tmp_path, capsys, monkeypatch):
    """A write failing with ENOSPC (h5py's dataset write patched): message with the folder and
    the space needed, the partial file removed, no crash."""
    import h5py

    calls = {"n": 0}
    real = h5py.Dataset.__setitem__

    def write(self, key, value):
        calls["n"] += 1
        if calls["n"] > 6:  # the first case goes in, then the disk is full
            _enospc()
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", write)
    cache = tmp_path / "cache"
    cfg = write_config(tmp_path, dataset, cache)
    rc, _, err = run(["data", "prepare", cfg], capsys)
    assert rc == 2 and f"{cache}: not enough free space for the slice cache (about" in err, err
    assert "data.cache_dir" in err
    assert not list(cache.glob("*.h5")) and not temporaries(cache)


def test_full_disk_before_caching(dataset, tmp_path, capsys, monkeypatch):
    """Less than the margin free: stop before HDF5 writes anything."""
    import iac_tf.data.cache as cache_lib

    monkeypatch.setattr(cache_lib, "free_bytes", lambda folder: 1000)
    cache = tmp_path / "cache"
    rc, _, err = run(["data", "prepare", write_config(tmp_path, dataset, cache)], capsys)
    assert rc == 2 and f"{cache}: not enough free space" in err
    assert not list(cache.glob("*.h5")) and not temporaries(cache)


@pytest.mark.parametrize("where", ["checkpoint", "best model"])
def test_full_disk_while_saving(where, dataset, shared_cache, tmp_path, capsys, monkeypatch):
    from iac_tf._keras import keras, tf

    if where == "checkpoint":
        def save(self, checkpoint_number=None, **kw):
            part = pathlib.Path(self.directory) / f"ckpt-{checkpoint_number}_temp"
            part.mkdir(parents=True)
            (part / "part-00000-of-00001.data-00000-of-00001.tempstate1").write_bytes(b"x")
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{part}/part-00000; No space left on device [Op:SaveV2]")
        monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
        text = "not enough free space for the checkpoint of epoch 1"
    else:
        def save(self, path, *a, **kw):
            pathlib.Path(path).write_bytes(b"partial")
            _enospc()
        monkeypatch.setattr(keras.Model, "save", save)
        text = "not enough free space for the best model of epoch 1"
    cfg = write_config(tmp_path, dataset, shared_cache)
    rc, _, err = run(["stage1", cfg], capsys)
    stage_dir = tmp_path / "runs" / "t" / "stage1"
    assert rc == 2 and f"{stage_dir}: {text}" in err and "output_dir" in err, err
    assert not temporaries(stage_dir)
    if where == "best model":  # the previous best (none here) is kept, no partial one
        assert not (stage_dir / "best_model.keras").exists()


# ---------------------------------------------------------------------------- 3: OS errors
def _read_only(folder: pathlib.Path, monkeypatch):
    """chmod 555; as root (which ignores it) the write probe is patched to refuse."""
    import iac_tf.diskspace as ds

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real = ds.probe_write
        monkeypatch.setattr(ds, "probe_write", lambda f: "Read-only file system"
                            if pathlib.Path(f) == folder else real(f))


@pytest.mark.parametrize("which", ["output", "cache"])
def test_read_only_folder(which, dataset, shared_cache, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    _read_only(ro, monkeypatch)
    try:
        if which == "output":
            cfg = write_config(tmp_path, dataset, shared_cache, output_dir=str(ro))
            rc, _, err = run(["stage1", cfg], capsys)
            assert "output_dir" in err
        else:
            cfg = write_config(tmp_path, dataset, ro)
            rc, _, err = run(["data", "prepare", cfg], capsys)
            assert "data.cache_dir" in err
        assert rc == 2 and f"{ro}: not writable" in err and "[Errno" not in err, err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_doctor_checks_where_the_lock_file_goes(dataset, shared_cache, tmp_path, capsys,
                                                monkeypatch):
    """A writable run folder in a read-only output_dir: the run's lock file cannot be made
    there, so doctor fails it as `iac run` would."""
    ro = tmp_path / "ro"
    (ro / "t").mkdir(parents=True)
    _read_only(ro, monkeypatch)
    try:
        cfg = write_config(tmp_path, dataset, shared_cache, output_dir=str(ro))
        rc, out, _ = run(["doctor", cfg], capsys)
        row = next(line for line in out.splitlines() if line.startswith("output folder"))
        assert rc == 2 and "FAIL" in row and f"{ro}: not writable" in row and "lock file" in row
        rc, _, err = run(["stage1", cfg], capsys)
        assert rc == 2 and str(ro) in err
    finally:
        ro.chmod(0o755)


def test_ctrl_c_outside_training_says_nothing_of_epochs(tmp_path, capsys, monkeypatch):
    import iac_tf.inference.api as api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "predict", interrupted)
    rc, _, err = run(["predict", tmp_path / "m.keras", tmp_path / "x.nii.gz", tmp_path / "o"],
                     capsys)
    assert rc == 130 and "epoch" not in err and "half-written" in err


def test_output_dir_is_a_file(dataset, shared_cache, tmp_path, capsys):
    out = tmp_path / "runs_file"
    out.write_text("not a folder")
    cfg = write_config(tmp_path, dataset, shared_cache, output_dir=str(out))
    rc, _, err = run(["stage1", cfg], capsys)
    assert rc == 2 and f"{out}: is a file" in err and "[Errno" not in err, err
    assert out.read_text() == "not a folder"


def test_truncated_cache_is_rebuilt(dataset, tmp_path, capsys):
    cache = tmp_path / "cache"
    cfg = write_config(tmp_path, dataset, cache)
    assert run(["data", "prepare", cfg], capsys)[0] == 0
    h5 = next(cache.glob("*.h5"))
    size = h5.stat().st_size
    with open(h5, "r+b") as fh:
        fh.truncate(size // 2)
    rc, out, err = run(["data", "prepare", cfg], capsys)
    assert rc == 0 and f"{h5}: unreadable cache file" in err and "rebuilding it" in err, err
    assert h5.stat().st_size == size and "cases: 5" in out


# ---------------------------------------------------------------------------- 4: dataset.json
DATASET_JSON_CASES = [
    ([{"labels": {"background": 0}}], "top level must be a JSON object"),
    ({"labels": {"background": 0, "organ": {"value": 1}}, "channel_names": {"0": "T2"}},
     "label 'organ' must be an integer or a list of integers"),
    ({"labels": {"background": 0, "organ": "one"}, "channel_names": {"0": "T2"}},
     "label 'organ' must be an integer"),
    ({"labels": {"background": 0, "organ": 1.5}, "channel_names": {"0": "T2"}},
     "label 'organ' must be an integer"),
]


@pytest.mark.parametrize("content,text", DATASET_JSON_CASES)
@pytest.mark.parametrize("command", ["check", "prepare"])
def test_malformed_dataset_json(content, text, command, tmp_path, capsys):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a", "b"))
    (ds / "dataset.json").write_text(json.dumps(content))
    cache = tmp_path / "cache"
    argv = (["data", "check", ds] if command == "check" else
            ["data", "prepare", write_config(tmp_path, ds, cache)])
    rc, out, err = run(argv, capsys)
    assert rc == 2 and str(ds / "dataset.json") in err + out and text in err + out, err + out
    assert not list(cache.glob("*.h5")) and not temporaries(cache)


# ---------------------------------------------------------------------------- 5: skip / unlabelled
def test_on_error_skip_skips_a_missing_channel(tmp_path, capsys):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    missing = ds / "imagesTr" / "case_b_0000.nii.gz"
    missing.unlink()
    cfg = write_config(tmp_path, ds, tmp_path / "cache", data__on_error="skip")
    rc, out, _ = run(["data", "prepare", cfg], capsys)
    assert rc == 0 and "skipped 1 case(s)" in out and str(missing) in out
    rc, out, err = run(["data", "check", ds], capsys)  # lists every case, then the problem
    assert rc == 2 and str(missing) in err
    assert all(f"case_{c} (patient" in err for c in "acde")


def test_image_without_label_is_listed(tmp_path, capsys):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    fixtures.save(fixtures.volume(9), ds / "imagesTr" / "case_z_0000.nii.gz")
    cfg = write_config(tmp_path, ds, tmp_path / "cache")
    rc, out, err = run(["data", "prepare", cfg], capsys)
    assert rc == 0 and "1 image(s) without a label are not used: case_z" in err + out
    rc, out, _ = run(["data", "check", ds], capsys)
    assert rc == 0 and "WARNING" in out and "case_z" in out


# ---------------------------------------------------------------------------- 6: temporaries, Ctrl-C
def test_stale_temporaries_of_dead_processes_are_removed(dataset, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = [cache / f".nnunet_x.{dead_pid()}.tmp.h5", cache / f"nnunet_y.h5.{dead_pid()}.tmp"]
    live = cache / f".nnunet_z.{os.getppid()}.tmp.h5"
    for p in (*stale, live):
        p.write_bytes(b"partial")
    rc, _, err = run(["data", "prepare", write_config(tmp_path, dataset, cache)], capsys)
    assert rc == 0 and all(not p.exists() and str(p) in err for p in stale)
    assert live.exists()


def test_ctrl_c_during_prepare(dataset, tmp_path, capsys, monkeypatch):
    import iac_tf.data.prepare as prep

    calls = {"n": 0}
    real = prep.preprocess_case

    def interrupted(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(prep, "preprocess_case", interrupted)
    cache = tmp_path / "cache"
    rc, _, err = run(["data", "prepare", write_config(tmp_path, dataset, cache)], capsys)
    assert rc == 130 and "data preparation" in err and "epoch" not in err
    assert not list(cache.glob("*.h5")) and not temporaries(cache)


# ---------------------------------------------------------------------------- 7: one-liners
def test_2d_image_is_not_called_corrupt(tmp_path, capsys):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    img = ds / "imagesTr" / "case_c_0000.nii.gz"
    fixtures.save(np.zeros((40, 36), np.float32), img)
    rc, _, err = run(["data", "check", ds], capsys)
    assert rc == 2 and f"{img}: expected a 3D volume, got shape (40, 36)" in err
    assert "corrupt" not in err


@pytest.mark.parametrize("what", ["config", "genotype", "folder as config"])
def test_unreadable_files_are_named(what, dataset, shared_cache, unets, tmp_path, capsys):
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    if what == "config":
        path, argv, text = binary, ["stage1", binary], "not a readable YAML text file"
    elif what == "folder as config":
        path, argv, text = tmp_path, ["stage1", tmp_path], "is a folder; give the config's YAML"
    else:
        cfg = write_config(tmp_path, dataset, shared_cache, unet__pretrained=str(unets["good"]),
                           stage3__genotype=str(binary))
        path, argv, text = binary, ["stage3", cfg], "cannot read genotype file"
    rc, _, err = run(argv, capsys)
    assert rc == 2 and f"{path}: {text}" in err, err
    assert not (tmp_path / "runs").exists()


def test_patch_size_checked_before_the_cache_is_built(dataset, tmp_path, capsys):
    cache = tmp_path / "cache"
    cfg = write_config(tmp_path, dataset, cache, data__patch_size=40)
    rc, _, err = run(["stage1", cfg], capsys)
    assert rc == 2 and "data.patch_size: 40 is not a multiple of 16" in err, err
    assert not cache.exists() and not (tmp_path / "runs").exists()


def test_unknown_layout_names_the_option(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(["data", "check", tmp_path / "empty"], capsys)
    assert rc == 2 and f"{tmp_path / 'empty'}: cannot tell the dataset layout; pass --format" in err

"""The one atomic writer: modes follow the umask (0644 / 0755 with 022), nothing half-written.

Covers: iac_tf/version.py
"""

import os
import stat

import pytest

from iac_tf import files, version


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def test_files_and_folders_are_world_readable_with_umask_022(tmp_path, umask):
    files.atomic_write_text(tmp_path / "a" / "x.txt", "x")
    files.atomic_write_json(tmp_path / "a" / "y.json", {"v": 1})
    with files.atomic_path(tmp_path / "model") as tmp:  # a SavedModel-like folder
        (tmp / "variables").mkdir(parents=True)
        (tmp / "variables" / "v.index").write_text("w")
    assert _mode(tmp_path / "a") == 0o755
    assert _mode(tmp_path / "a" / "x.txt") == 0o644 and _mode(tmp_path / "a" / "y.json") == 0o644
    assert _mode(tmp_path / "model") == 0o755 and _mode(tmp_path / "model" / "variables") == 0o755
    assert _mode(tmp_path / "model" / "variables" / "v.index") == 0o644
    assert _mode(tmp_path / files.MANIFEST) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [files.MANIFEST, "a", "model"]  # no temp


def test_a_stricter_umask_is_respected(tmp_path, umask):
    umask(0o077)
    files.atomic_write_text(tmp_path / "x.txt", "x")
    assert _mode(tmp_path / "x.txt") == 0o600


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.keras"
    files.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            assert tmp.suffix == ".keras"
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [files.MANIFEST, "m.keras"]


def test_replacing_a_folder(tmp_path):
    for content in ("one", "two"):
        with files.atomic_path(tmp_path / "d") as tmp:
            tmp.mkdir()
            (tmp / "f").write_text(content)
    assert (tmp_path / "d" / "f").read_text() == "two" and len(list(tmp_path.iterdir())) == 2


def test_code_version_without_git(monkeypatch, tmp_path):
    import iac_tf

    monkeypatch.setattr(version, "_git_describe", lambda src: "")
    monkeypatch.setenv(version.ENV_VAR, "abc1234")
    assert version.code_version() == f"{iac_tf.__version__}+abc1234"
    monkeypatch.delenv(version.ENV_VAR)
    pkg = tmp_path / "iac_tf"
    pkg.mkdir()
    (pkg / version.BUILD_FILE).write_text("def5678\n")
    monkeypatch.setattr(iac_tf, "__file__", str(pkg / "__init__.py"))
    assert version.code_version() == f"{iac_tf.__version__}+def5678"
    (pkg / version.BUILD_FILE).unlink()
    assert version.code_version() == iac_tf.__version__

"""``code_version``: the package version plus ``git describe`` in a clone, else
``$IAC_CODE_VERSION``, else ``iac_tf/_build_version.txt``, else the bare version."""

import shutil
import subprocess

import pytest

import iac_tf
from iac_tf import version

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t",
                           "-c", "commit.gpgsign=false", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the package's place: ``<tmp>/iac_tf/__init__.py``, no git, no variable."""
    pkg = tmp_path / "src" / "iac_tf"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""x"""\n')
    monkeypatch.setattr(iac_tf, "__file__", str(pkg / "__init__.py"))
    monkeypatch.delenv(version.ENV_VAR, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp
    return pkg


@needs_git
def test_in_a_clone_the_version_is_git_describe(package, monkeypatch):
    _git(package.parent, "init", "-q")
    _git(package.parent, "add", "-A")
    _git(package.parent, "commit", "-q", "-m", "first")
    sha = _git(package.parent, "rev-parse", "--short", "HEAD")
    monkeypatch.setenv(version.ENV_VAR, "from-the-environment")  # git comes first
    (package / version.BUILD_FILE).write_text("from-the-build\n")  # untracked: not dirty
    assert version.code_version() == f"{iac_tf.__version__}+{sha}"
    (package / "__init__.py").write_text('"""changed"""\n')
    assert version.code_version() == f"{iac_tf.__version__}+{sha}-dirty"
    _git(package.parent, "tag", "-a", "v9", "-m", "v9")
    assert version.code_version() == f"{iac_tf.__version__}+v9-dirty"


@needs_git
def test_this_checkout():
    """The package under test, imported from a clone, names the clone's commit."""
    src = version.pathlib.Path(iac_tf.__file__).resolve().parent
    if not (src.parent / ".git").exists():
        pytest.skip("the package under test is not in a git clone")
    described = _git(src, "describe", "--always", "--dirty")
    assert described and version.code_version() == f"{iac_tf.__version__}+{described}"


def test_outside_a_clone_the_environment_then_the_build_file(package, monkeypatch):
    assert version.code_version() == iac_tf.__version__  # nothing at all: the bare version
    (package / version.BUILD_FILE).write_text("  def5678\n")
    assert version.code_version() == f"{iac_tf.__version__}+def5678"
    monkeypatch.setenv(version.ENV_VAR, " abc1234 \n")
    assert version.code_version() == f"{iac_tf.__version__}+abc1234"  # the variable first
    monkeypatch.setenv(version.ENV_VAR, "   ")  # blank: as if unset
    assert version.code_version() == f"{iac_tf.__version__}+def5678"
    (package / version.BUILD_FILE).write_text("\n")  # empty: as if absent
    assert version.code_version() == iac_tf.__version__


@needs_git
def test_a_broken_clone_falls_back(package, monkeypatch):
    (package.parent / ".git").mkdir()  # looks like a clone, but git finds no repository
    assert version._git_describe(package) == ""
    monkeypatch.setenv(version.ENV_VAR, "abc1234")
    assert version.code_version() == f"{iac_tf.__version__}+abc1234"


def test_without_git_installed(package, monkeypatch):
    (package.parent / ".git").mkdir()
    monkeypatch.setenv("PATH", str(package))  # no git executable there
    assert version._git_describe(package) == ""
    (package / version.BUILD_FILE).write_text("def5678")
    assert version.code_version() == f"{iac_tf.__version__}+def5678"

"""The tests mirror the package: every module of ``iac_tf/`` has a test file that tests it.

The convention (read with ``ast``: nothing is imported, so this file needs about half a second):

* **Mirrored**: ``iac_tf/<sub>/<module>.py`` is tested by ``tests/<sub>/test_<module>.py``
  (``iac_tf/data/cache.py`` -> ``tests/data/test_cache.py``, ``iac_tf/locks.py`` ->
  ``tests/test_locks.py``); a package's ``iac_tf/<sub>/<pkg>/__init__.py`` by
  ``tests/<sub>/test_<pkg>.py`` (``iac_tf/config/__init__.py`` -> ``tests/test_config.py``;
  ``iac_tf/__init__.py`` -> ``tests/test_iac_tf.py``); leading underscores are dropped
  (``iac_tf/_keras.py`` -> ``tests/test_keras.py``).
  The mirrored test file imports its module (or a name from it), or is listed in
  :data:`MIRRORED_THROUGH_OTHERS` with the way it reaches the module.
* **Covered**: any other test file that tests a module names it on a line of its module
  docstring that starts with ``Covers:`` (not indented), paths from the repository root, comma
  separated; a long list may take several ``Covers:`` lines::

      Covers: iac_tf/data/cache.py, iac_tf/data/pipeline.py

  ``grep -rn "Covers:.*iac_tf/data/cache.py" tests/`` then finds the tests of a module. Every
  entry names a module that exists (a renamed module is caught here) and the file imports that
  module or a name from it (directly, or in Python code it hands to a subprocess as a string),
  so a ``Covers:`` line cannot name a module the file never touches. Name a module only where
  the file really tests its behaviour, not where it merely uses it.
* **Exempt**: a module without logic of its own, listed in :data:`EXEMPT` below with the
  reason. An exempt module defines no function or class and has no ``if``/``for``/``while``/
  ``try``: only imports, constants and ``__all__``.
"""

from __future__ import annotations

import ast
import functools
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iac_tf"
TESTS = ROOT / "tests"

#: Modules without logic of their own, each with the reason (paths from the repository root).
EXEMPT = {
    "iac_tf/primitives.py": "a tuple of operation names, pure data (tests/search/test_operations.py "
                            "checks that the OPS table agrees with it)",
    "iac_tf/comparisons/__init__.py": "re-exports the comparison modules",
    "iac_tf/evaluation/__init__.py": "re-exports metrics and stats",
    "iac_tf/implant/__init__.py": "re-exports the implant modules",
    "iac_tf/reporting/__init__.py": "a docstring only",
    "iac_tf/search/__init__.py": "re-exports the search-space modules",
    "iac_tf/unets/__init__.py": "re-exports the zoo and registers its layers (iac_tf/unets/layers.py)",
}

#: Mirrored test files that test their module through other modules (the ``iac`` command, a
#: caller), so they do not import it; each with that way.
MIRRORED_THROUGH_OTHERS = {
    "tests/data/test_unet_cases.py": "data.unet_train_cases through prepare_dataset and iac_tf.cli",
    "tests/reporting/test_report.py": "iac report through iac_tf.cli",
}


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


def package_modules() -> list[str]:
    return sorted(_rel(p) for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def all_test_files() -> list[pathlib.Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def mirror_of(module: str) -> str:
    """``iac_tf/a/b.py`` -> ``tests/a/test_b.py``; ``iac_tf/a/b/__init__.py`` -> ``tests/a/test_b.py``."""
    parts = pathlib.PurePosixPath(module).parts[1:]  # without "iac_tf"
    if parts[-1] == "__init__.py":
        parts = parts[:-1]
        if not parts:
            return "tests/test_iac_tf.py"
        *folders, name = parts
    else:
        *folders, name = parts
        name = name[:-3].lstrip("_")
    return pathlib.PurePosixPath("tests", *folders, f"test_{name}.py").as_posix()


@functools.cache
def _text(path: pathlib.Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def _parse(path: pathlib.Path) -> ast.Module:
    return ast.parse(_text(path), filename=str(path))


def _module_file(dotted: str) -> pathlib.Path | None:
    """The file of the module ``iac_tf.a.b`` (a module or a package), or None."""
    base = ROOT.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _absolute(node: ast.ImportFrom, module_file: pathlib.Path) -> str | None:
    """The dotted module of ``from ... import`` in ``module_file`` (relative imports resolved)."""
    if not node.level:
        return node.module
    package = list(module_file.relative_to(ROOT).with_suffix("").parts)[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


@functools.cache
def defining_module(dotted: str, name: str) -> str:
    """Where ``name``, imported from the module ``dotted``, is defined: follows re-exports
    (``from iac_tf.x.y import name`` in a package's ``__init__``) and lazy tables (a
    module-level ``{"name": "module"}`` dict that a ``__getattr__`` reads) to the module with
    the code; any other name counts as ``dotted``'s own."""
    path = _module_file(dotted)
    if path is None:
        return dotted
    defined = re.compile(rf"^(?:(?:async )?def|class) {re.escape(name)}\b|^{re.escape(name)} *[:=]", re.M)
    if defined.search(_text(path)):  # the common case, without parsing the module
        return dotted
    for node in _parse(path).body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, path)
            for alias in node.names:
                if (alias.asname or alias.name) == name and source and source.startswith("iac_tf"):
                    if _module_file(f"{source}.{alias.name}") is not None:
                        return f"{source}.{alias.name}"
                    return defining_module(source, alias.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            table = {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                     if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                     and isinstance(k.value, str) and isinstance(v.value, str)}
            target = table.get(name)
            if target is not None:
                target = target if "." in target else f"{dotted}.{target}"
                if _module_file(target) is not None:
                    return defining_module(target, name)
    return dotted


def _statements(body: list[ast.stmt]):
    """Every statement of ``body``, nested ones included (imports are statements)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, None) or [])


_CODE_IN_STRING = re.compile(r"[\"'][^\"'\n]*\b(?:from|import) iac_tf")


def _imports_in(tree: ast.Module, found: set[str], text: str = "") -> None:
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("iac_tf"))
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("iac_tf"):
            found.add(node.module)  # ``from iac_tf.x import name`` runs iac_tf.x
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if _module_file(submodule) else defining_module(node.module, alias.name))
    if not _CODE_IN_STRING.search(text):
        return
    for node in ast.walk(tree):  # Python code handed to a subprocess (``python -c "..."``)
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and ("import iac_tf" in node.value or "from iac_tf" in node.value)):
            try:
                code = ast.parse(node.value)
            except SyntaxError:
                continue
            _imports_in(code, found, node.value)


@functools.cache
def imported_modules(test_file: pathlib.Path) -> frozenset[str]:
    """The ``iac_tf`` modules ``test_file`` imports, as paths (``iac_tf/data/cache.py``)."""
    found: set[str] = set()
    _imports_in(_parse(test_file), found, _text(test_file))
    return frozenset(_rel(f) for f in map(_module_file, found) if f is not None)


def covers_lines(test_file: pathlib.Path) -> list[str]:
    """The entries of the ``Covers:`` lines of ``test_file``'s module docstring."""
    doc = ast.get_docstring(_parse(test_file), clean=False) or ""
    entries = []
    for line in doc.splitlines():
        if line.startswith("Covers:"):  # not indented: an indented example is not a claim
            entries += [e.strip() for e in line[len("Covers:"):].split(",") if e.strip()]
    return entries


def _covered() -> dict[str, list[str]]:
    covered: dict[str, list[str]] = {}
    for test_file in all_test_files():
        for entry in covers_lines(test_file):
            covered.setdefault(entry, []).append(_rel(test_file))
    return covered


def test_every_module_is_mirrored_covered_or_exempt():
    covered = _covered()
    missing = [m for m in package_modules()
               if m not in EXEMPT and m not in covered and not (ROOT / mirror_of(m)).is_file()]
    assert not missing, (
        "modules without a test: add tests/<sub>/test_<module>.py, or name the module on the "
        "'Covers:' line of the test file that tests it (see this file's docstring):\n  "
        + "\n  ".join(f"{m} (mirror: {mirror_of(m)})" for m in missing))


def test_every_covers_entry_names_an_existing_module():
    modules = set(package_modules())
    wrong = [f"{t}: {entry}" for entry, tests in _covered().items() for t in tests if entry not in modules]
    assert not wrong, ("'Covers:' entries that name no module of iac_tf/ (renamed or mistyped?):\n  "
                       + "\n  ".join(wrong))


def test_every_covering_file_imports_what_it_covers():
    lies = [f"{t}: {entry}" for entry, tests in _covered().items() for t in tests
            if (ROOT / entry).is_file() and entry not in imported_modules(ROOT / t)]
    assert not lies, ("test files that name a module on their 'Covers:' line but never import it "
                      "(nor a name from it):\n  " + "\n  ".join(lies))


def test_every_mirrored_file_imports_its_module():
    strays = []
    for module in package_modules():
        mirror = mirror_of(module)
        if not (ROOT / mirror).is_file():
            continue
        imports = module in imported_modules(ROOT / mirror)
        if not imports and mirror not in MIRRORED_THROUGH_OTHERS:
            strays.append(f"{mirror} does not import {module} (import it, or list it in "
                          "MIRRORED_THROUGH_OTHERS with the way it reaches the module)")
        elif imports and mirror in MIRRORED_THROUGH_OTHERS:
            strays.append(f"{mirror} imports {module} now: remove it from MIRRORED_THROUGH_OTHERS")
    mirrors = {mirror_of(m) for m in package_modules()}
    strays += [f"MIRRORED_THROUGH_OTHERS names {t}, which mirrors no module"
               for t in MIRRORED_THROUGH_OTHERS if t not in mirrors or not (ROOT / t).is_file()]
    assert not strays, "\n".join(strays)


def _has_logic(tree: ast.Module) -> bool:
    logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.While, ast.Try)
    return any(isinstance(node, logic) for node in ast.walk(tree))


def test_exempt_modules_exist_and_have_no_logic():
    for module, reason in EXEMPT.items():
        assert reason.strip(), module
        path = ROOT / module
        assert path.is_file(), f"EXEMPT names {module}, which does not exist"
        assert not _has_logic(_parse(path)), (
            f"{module} has a function, class or control flow: test it instead of exempting it")


def test_the_rules_themselves(tmp_path):
    assert mirror_of("iac_tf/data/cache.py") == "tests/data/test_cache.py"
    assert mirror_of("iac_tf/locks.py") == "tests/test_locks.py"
    assert mirror_of("iac_tf/_keras.py") == "tests/test_keras.py"
    assert mirror_of("iac_tf/config/__init__.py") == "tests/test_config.py"
    assert defining_module("iac_tf.data", "prepare_dataset") == "iac_tf.data.prepare"
    assert defining_module("iac_tf.data", "DataConfig") == "iac_tf.config.data"  # re-exported twice
    assert defining_module("iac_tf.genotype", "DiscreteCell") == "iac_tf.genotype.discrete_cell"
    assert defining_module("iac_tf.inference", "load_model") == "iac_tf.inference.model_source"
    assert _has_logic(ast.parse("def f():\n    pass\n"))
    assert not _has_logic(ast.parse('"""doc"""\nfrom x import y\nA = (1, 2)\n__all__ = ["A"]\n'))
    source = ('"""Tests.\n\nCovers: iac_tf/a.py, iac_tf/b/c.py\n    Covers: iac_tf/example.py\n"""\n'
              "import subprocess\n\n\ndef test():\n    from iac_tf.data import SPLITS\n"
              '    subprocess.run(["python", "-c", "from iac_tf.version import code_version"])\n')
    path = tmp_path / "test_x.py"
    path.write_text(source)
    assert covers_lines(path) == ["iac_tf/a.py", "iac_tf/b/c.py"]  # an indented line is no claim
    assert imported_modules(path) == {"iac_tf/data/__init__.py", "iac_tf/config/data.py",
                                      "iac_tf/version.py"}

"""The quick-start notebook, run in a Jupyter kernel as a user would run it.

* It runs top to bottom on a tiny setting injected after its settings cell (Stage I skipped with
  a one-skip U-Net as the given U-Net, one-level "bring your own U-Net", one epoch each; Stage I
  is covered by tests/test_cli.py), writes only under ``IAC_WORK`` (nothing into the repository)
  and shows no TensorFlow start-up line or library warning.
* Its stored Dice tables come from the current code: re-running its own cells for the stored
  settings reproduces the ``unet`` column of both tables (the part a test can afford: Stage I
  and the notebook's own U-Net take about a minute; Stages II and III take several more, see
  ``test_stored_unet_scores_are_what_the_code_gives``).
"""

import json
import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

from tests.tiny import tiny_unet

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"

#: What TensorFlow writes while it loads (C++ logging) and its Python loggers' records.
TF_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "cudart_stub", "cuInit",
            "oneDNN custom operations", "WARNING:tensorflow", "INFO:tensorflow", "WARNING:absl")

#: The largest difference allowed between a stored Dice and a fresh one: both are exact on the
#: machine that stored the outputs; another CPU's floating-point order may move a few voxels.
DICE_TOLERANCE = 0.03


def _cell(nb, marker: str) -> int:
    """Index of the one code cell whose source holds ``marker``."""
    found = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source]
    assert len(found) == 1, f"{marker!r} in {len(found)} code cells of {NOTEBOOK.name}"
    return found[0]


def _outputs(nb) -> str:
    return "".join(o.get("text", "") + json.dumps(o.get("data", {}))
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _execute(nb, work: pathlib.Path, monkeypatch, timeout: int = 900) -> None:
    """Run ``nb`` in a fresh kernel started from notebooks/, writing under ``work``, with
    TensorFlow's own log level unset (as in a user's shell)."""
    monkeypatch.setenv("IAC_WORK", str(work))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()


def _tree(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` (Git's folder and Python's bytecode caches left out) with its
    modification time and size."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__")]
        for name in names:
            path = pathlib.Path(folder, name)
            stat = path.lstat()
            files[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
    return files


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    unet = tiny_unet(size=32, channels=1, classes=1, f=4, levels=1)
    unet.save(tmp_path / "given_unet.keras")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tiny = {"data.patch_size": 32, "unet.pretrained": str(tmp_path / "given_unet.keras"),
            "stage2.epochs": 1, "stage2.warmup_epochs": 0, "stage2.batch_size": 16,
            "stage2.cell_channels": 4, "stage2.cell_steps": 2, "stage2.verbose": 0,
            "stage2.draw_genotypes": False,
            "stage3.epochs": 1, "stage3.batch_size": 16, "stage3.cell_channels": 4,
            "stage3.verbose": 0, "evaluation.unet_continued": False, "evaluation.tta": False}
    nb.cells.insert(_cell(nb, "settings = {") + 1, nbformat.v4.new_code_cell(
        f"settings.update({tiny!r})\n"
        "my_unet.update(levels=1, filters=4, epochs=1)\n"
        "from iac_tf._keras import tf\n"
        "tf.get_logger().warning('a TensorFlow warning')  # must not show"))
    work = tmp_path / "work"
    before = _tree(ROOT)
    _execute(nb, work, monkeypatch, timeout=600)
    outputs = _outputs(nb)

    assert "Stage I skipped: improving" in outputs
    assert outputs.count("| overall |") >= 2  # the Dice table of both runs is displayed
    assert "1 skip connection(s)" in outputs  # the doctor table of the notebook's U-Net
    assert "largest difference from the U-Net 0.0e+00" in outputs
    for run in ("notebook", "notebook_my_unet"):
        assert (work / "runs" / run / "evaluation" / "stats.json").is_file()
    assert (work / "my_unet.keras").is_file()
    assert list((work / "cache").glob("*.h5"))
    noise = [n for n in TF_NOISE + ("a TensorFlow warning",) if n in outputs]
    assert not noise, f"TensorFlow output in the notebook: {noise}"
    after = _tree(ROOT)
    written = sorted(p for p in after if before.get(p) != after[p])
    assert not written, f"the notebook wrote into the repository: {written[:10]}"


def test_stored_notebook_has_its_outputs():
    """The committed notebook carries the outputs of a real run, so it reads well on a code
    host: every code cell ran, in order, and shows something (the U-Net builder excepted), with
    no TensorFlow noise."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert all(c.outputs for c in code if "def small_unet" not in c.source)
    outputs = _outputs(nb)
    assert not [n for n in TF_NOISE if n in outputs]
    assert "Error" not in "".join(o.get("ename", "") for c in code for o in c.outputs)


def _stored_tables(nb) -> dict[str, dict[str, dict[str, float]]]:
    """``{run name: {model: {class: Dice}}}`` of the first table of each displayed
    ``dice_table.md`` (the per-case Dice on val_dt), with the ``n`` column as model ``n``."""
    tables = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown = [o for o in cell.outputs if "text/markdown" in o.get("data", {})]
        if not shown:
            continue
        run = "notebook_my_unet" if "mine.run_dir" in cell.source else "notebook"
        lines = shown[0]["data"]["text/markdown"].splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| class | n |"))
        header = [h.strip() for h in lines[start].strip("|").split("|")]
        table = {model: {} for model in header[1:]}
        for line in lines[start + 2:]:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            for model, value in zip(header[1:], cells[1:]):
                table[model][cells[0]] = float(value)
        tables[run] = table
    return tables


@pytest.mark.slow
def test_stored_unet_scores_are_what_the_code_gives(tmp_path, monkeypatch):
    """The stored Dice tables against the current code, for the stored settings: the notebook's
    own cells for Stage I and for its own U-Net run again (Stages II and III would take several
    more minutes on 2 cores, so the ``iac`` and ``unet_continued`` columns are not re-run), then
    both U-Nets are scored on val_dt with the functions the table uses. Each table must list the
    models the stored settings train, on as many val_dt cases as the splits hold, and its
    ``unet`` column must match the fresh score."""
    stored = nbformat.read(NOTEBOOK, as_version=4)
    tables = _stored_tables(stored)
    assert set(tables) == {"notebook", "notebook_my_unet"}
    keep = [_cell(stored, m) for m in ("settings = {", "pipeline.prepare(cfg)",
                                       "pipeline.run_stage1(cfg)", "def small_unet",
                                       "unet.fit(")]
    nb = nbformat.v4.new_notebook(cells=[stored.cells[i] for i in keep])
    for cell in nb.cells:
        cell.outputs, cell.execution_count = [], None
    nb.cells.append(nbformat.v4.new_code_cell("""
import json
from iac_tf.evaluation.report import case_scores, mean_dice
from iac_tf.models import load_unet
from iac_tf.pipeline.common import label_rule
from iac_tf.run_layout import trained_unet
fresh = {}
for run in (cfg, mine):
    prepared = pipeline.prepare(run)
    images, masks, ids = prepared.arrays(run.evaluation.split)
    scores = case_scores(load_unet(trained_unet(run)), images, masks, ids,
                         run.evaluation.batch_size, label_rule(run, prepared))
    models = ['iac'] + [f'iac_{m}' for m in run.stage3.extra_implant_modes]
    models += ['unet_continued'] if run.evaluation.unet_continued else []
    fresh[run.name] = {'unet': mean_dice(scores), 'cases': len(scores), 'models': models}
print('FRESH', json.dumps(fresh))"""))
    _execute(nb, tmp_path / "work", monkeypatch)
    line = next(line for line in nb.cells[-1].outputs[0]["text"].splitlines()
                if line.startswith("FRESH "))
    fresh = json.loads(line[len("FRESH "):])
    for run, table in tables.items():
        assert list(table) == ["n", "unet"] + fresh[run]["models"], run
        assert table["n"]["overall"] == fresh[run]["cases"], run
        assert abs(table["unet"]["overall"] - fresh[run]["unet"]) <= DICE_TOLERANCE, (
            f"{run}: stored unet Dice {table['unet']['overall']:.4f}, the code gives "
            f"{fresh[run]['unet']:.4f}: run the notebook again and store its outputs")
    # the one number Stage I prints about itself, stored and fresh
    pattern = re.compile(r"best val_dt soft Dice (\d\.\d{4}) at epoch (\d+)")
    stage1 = _cell(stored, "pipeline.run_stage1(cfg)")
    was = pattern.search("".join(o.get("text", "") for o in stored.cells[stage1].outputs))
    now = pattern.search("".join(o.get("text", "") for o in nb.cells[2].outputs))
    assert was and now and was.group(2) == now.group(2)
    assert abs(float(was.group(1)) - float(now.group(1))) <= DICE_TOLERANCE

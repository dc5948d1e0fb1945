"""The quick-start notebook runs top to bottom (in a Jupyter kernel, as a user would run it), on a
tiny setting injected after its settings cell: the notebook's "your own U-Net" path, with a
one-skip U-Net as the user's model (Stage II's supernet then has one cell, which keeps the test
short; Stage I is covered by tests/test_cli.py)."""

import json
import pathlib

import nbformat
from nbclient import NotebookClient

from tests.tiny import tiny_unet

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path):
    unet = tiny_unet(size=32, channels=1, classes=1, f=4, levels=1)
    unet.save(tmp_path / "my_unet.keras")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    settings_cell = [i for i, c in enumerate(nb.cells) if "settings = {" in c.source]
    assert len(settings_cell) == 1
    tiny = {"output_dir": str(tmp_path), "data.cache_dir": str(tmp_path / "cache"),
            "data.patch_size": 32, "unet.pretrained": str(tmp_path / "my_unet.keras"),
            "stage2.epochs": 1, "stage2.warmup_epochs": 0, "stage2.batch_size": 16,
            "stage2.cell_channels": 4, "stage2.cell_steps": 2, "stage2.verbose": 0,
            "stage2.draw_genotypes": False,
            "stage3.epochs": 1, "stage3.batch_size": 16, "stage3.cell_channels": 4,
            "stage3.verbose": 0, "stage3.export_savedmodel": False}
    nb.cells.insert(settings_cell[0] + 1,
                    nbformat.v4.new_code_cell(f"settings.update({tiny!r})"))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") + json.dumps(o.get("data", {}))
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Stage I skipped: improving" in outputs
    assert "| overall |" in outputs  # the final Dice table is displayed
    assert (tmp_path / "notebook" / "evaluation" / "stats.json").is_file()


def test_stored_notebook_has_its_outputs():
    """The committed notebook carries the outputs of a real run, so it reads well on a code host."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    assert all(c.outputs for c in code[1:])

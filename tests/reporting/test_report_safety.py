"""`iac report` and `iac grid` refuse what they must not do, before doing any work.

Small fake run folders (a few bytes each, no TensorFlow model): the report writes only a folder
it made itself, reads damaged run files as warnings, takes one run per setting and checks
--slices and --out first; the grid checks every setting's data.root before starting one.

Covers: iac_tf/diskspace.py
"""

import json
import pathlib

import pytest
import yaml

from iac_tf.cli import main
from iac_tf.files import REPORT_MARKER

HISTORY = "epoch,soft_dice,val_soft_dice,epoch_time_s\n1,0.80,0.70,30.0\n2,0.90,0.75,30.0\n"


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_run(root: pathlib.Path, name: str, dataset: str = "acdc", backbone: str = "base",
             unet: float = 0.5, iac: float = 0.6) -> pathlib.Path:
    """A finished run folder: Stage I, the search time, Stage III with a given genotype file and
    the evaluation table."""
    run = root / name
    cfg = {"data": {"format": "nnunet", "root": f"/data/{dataset}"}, "unet": {"backbone": backbone},
           "stage2": {"epochs": 1}, "stage3": {"genotype": "g.json"}, "compare": []}
    _write(run / "config.yaml", yaml.safe_dump(cfg))
    _write(run / "version.txt", "test\n")
    _write(run / "stage1" / "summary.json", json.dumps({"best_epoch": 2}))
    _write(run / "stage1" / "history.csv", HISTORY)
    _write(run / "stage2" / "search_time.json", json.dumps({"total_seconds": 60.0}))
    _write(run / "stage3" / "summary.json", json.dumps({"best_val_soft_dice": 0.7}))
    _write(run / "stage3" / "history.csv", HISTORY)
    _write(run / "evaluation" / "dice_per_case.csv",
           f"case,class,unet,iac\r\nc1,a,{unet},{iac}\r\nc2,a,{unet},{iac}\r\n")
    return run


def snapshot(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def report(capsys, *args) -> tuple[int, str, str]:
    rc = main(["report", *map(str, args), "--no-overlays"])
    out, err = capsys.readouterr()
    return rc, out, err


def refused(rc: int, err: str, *words: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iac: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "acdc_base")
    fake_run(root, "kits_base", dataset="kits", unet=0.4, iac=0.45)
    return root


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the report reads a run or draws a figure."""
    from iac_tf.reporting import report as report_mod

    def forbidden(*a, **k):
        raise AssertionError("the report did work before its checks")

    monkeypatch.setattr(report_mod, "read_run", forbidden)
    monkeypatch.setattr(report_mod, "_figures", forbidden)


# ------------------------------------------------------------------------------------- --out
def test_report_keeps_a_users_folder(runs, tmp_path, capsys):
    out = tmp_path / "mine"
    _write(out / "notes.txt", "my notes\n")
    before = snapshot(tmp_path)
    rc, _, err = report(capsys, runs, "--out", out)
    refused(rc, err, str(out), REPORT_MARKER, "--out")
    assert snapshot(tmp_path) == before


def test_out_is_checked_before_any_run_is_read(runs, tmp_path, capsys, no_work):
    _write(tmp_path / "mine" / "notes.txt", "my notes\n")
    rc, _, err = report(capsys, runs, "--out", tmp_path / "mine")
    refused(rc, err, str(tmp_path / "mine"))


@pytest.mark.parametrize("where", ["run", "runs", "above"])
def test_report_never_writes_over_a_run(runs, tmp_path, capsys, where):
    run = runs / "acdc_base"
    args = {"run": (run, run), "runs": (runs, runs), "above": (run, tmp_path)}[where]
    before = snapshot(tmp_path)
    rc, _, err = report(capsys, args[0], "--out", args[1])
    refused(rc, err, str(args[1]), "run folder", "--out")
    assert snapshot(tmp_path) == before


def test_report_replaces_only_its_own_report(runs, tmp_path, capsys):
    out = tmp_path / "report"
    rc, _, _ = report(capsys, runs, "--out", out)
    assert rc == 0 and (out / REPORT_MARKER).is_file() and (out / "report.md").is_file()
    first = (out / "report.md").read_bytes()
    (out / "report.md").write_text("hand-edited")  # no longer what the tool wrote: kept
    before = snapshot(tmp_path)
    rc, _, err = report(capsys, runs, "--out", out)
    refused(rc, err, str(out / "report.md"), "changed since")
    assert snapshot(tmp_path) == before
    (out / "report.md").write_bytes(first)
    rc, _, _ = report(capsys, runs, "--out", out)
    assert rc == 0 and (out / "report.md").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]  # no temporaries left


def test_a_second_report_keeps_the_files_the_user_added(runs, tmp_path, capsys):
    """The files a user adds to a report folder (notes, own figures) survive the next report;
    the earlier report's own files are replaced, or removed when the new one no longer has
    them."""
    out = tmp_path / "report"
    rc, _, _ = report(capsys, runs, "--out", out)
    assert rc == 0
    old_figure = next((out / "figures").glob("kits_base_*.png"))
    _write(out / "notes.md", "my notes\n")
    _write(out / "figures" / "mine.png", "my figure")
    rc, _, err = report(capsys, runs / "acdc_base", "--out", out)  # kits_base left out
    assert rc == 0, err
    assert (out / "notes.md").read_text() == "my notes\n"
    assert (out / "figures" / "mine.png").read_text() == "my figure"
    assert not old_figure.exists()  # the earlier report's figure of a run no longer reported
    assert "kits_base" not in (out / "report.md").read_text()
    # a user's file where the report writes one is refused before anything is moved
    _write(old_figure, "my own plot")
    before = snapshot(tmp_path)
    rc, _, err = report(capsys, runs, "--out", out)
    refused(rc, err, str(old_figure), "is not a report file written by this tool")
    assert snapshot(tmp_path) == before
    # and so is a file of the report that was replaced by another one
    (out / "figures" / "acdc_base_stage3_curves.png").unlink()
    _write(out / "figures" / "acdc_base_stage3_curves.png", "my own plot")
    rc, _, err = report(capsys, runs / "acdc_base", "--out", out)
    refused(rc, err, "acdc_base_stage3_curves.png", "changed since")


def test_report_checks_that_out_is_writable_first(runs, tmp_path, capsys, monkeypatch, no_work):
    from iac_tf import diskspace

    monkeypatch.setattr(diskspace, "probe_write", lambda folder: "permission denied")
    rc, _, err = report(capsys, runs, "--out", tmp_path / "report")
    refused(rc, err, str(tmp_path), "not writable")
    assert not (tmp_path / "report").exists()


def test_report_out_below_a_file_is_refused_first(runs, tmp_path, capsys, no_work):
    _write(tmp_path / "file", "x")
    rc, _, err = report(capsys, runs, "--out", tmp_path / "file" / "report")
    refused(rc, err, str(tmp_path / "file"), "is a file")


@pytest.mark.parametrize("slices", ["0", "-2", "two"])
def test_report_slices_must_be_positive(runs, tmp_path, capsys, slices):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(runs), "--out", str(tmp_path / "report"), "--slices", slices])
    assert exc.value.code == 2
    assert "--slices" in capsys.readouterr().err and not (tmp_path / "report").exists()


def test_build_report_refuses_non_positive_slices(runs, tmp_path):
    from iac_tf.reporting.report import build_report

    with pytest.raises(ValueError, match="positive"):
        build_report([runs], tmp_path / "report", overlays=False, n_slices=0, log=lambda m: None)
    assert not (tmp_path / "report").exists()


# ------------------------------------------------------------------------ one run per setting
def test_two_runs_of_one_setting_are_refused(runs, tmp_path, capsys):
    fake_run(runs, "acdc_base_again", unet=0.9, iac=0.1)
    rc, _, err = report(capsys, runs, "--out", tmp_path / "report")
    refused(rc, err, str(runs / "acdc_base"), str(runs / "acdc_base_again"), "one run folder per setting")
    assert not (tmp_path / "report").exists()
    rc, _, _ = report(capsys, runs / "acdc_base", runs / "kits_base", "--out", tmp_path / "report")
    assert rc == 0


def test_the_same_run_named_twice_counts_once(runs, tmp_path, capsys):
    rc, _, _ = report(capsys, runs, runs / "acdc_base", "--out", tmp_path / "report")
    assert rc == 0
    md = (tmp_path / "report" / "report.md").read_text()
    runs_table = md.split("## Runs", 1)[1].split("\n## ", 1)[0]
    assert runs_table.count("| acdc_base |") == 1


# ---------------------------------------------------------------------------- damaged files
DAMAGE = {
    "history cut off": ("stage1/history.csv", HISTORY[:-12], "stage1/history.csv: ends in the middle"),
    "history short row": ("stage1/history.csv", HISTORY + "3,0.9\n", "stage1/history.csv: line 4 has 2"),
    "summary not JSON": ("stage1/summary.json", '{"best_epoch": ', "stage1/summary.json: not valid JSON"),
    "stage3 summary cut off": ("stage3/summary.json", '{"best_val_soft',
                               "stage3/summary.json: not valid JSON"),
    "history not a number": ("stage3/history.csv", HISTORY.replace("30.0\n2", "slow\n2"),
                             "stage3/history.csv: epoch 1, epoch_time_s: 'slow' is not a number"),
    "evaluation cut off": ("evaluation/dice_per_case.csv", "case,class,unet,iac\r\nc1,a,0.5,0.",
                           "evaluation/dice_per_case.csv: ends in the middle of a line"),
    "evaluation wrong columns": ("evaluation/dice_per_case.csv", "patient,label,unet,iac\r\nc1,a,0.5,0.6\r\n",
                                 "evaluation/dice_per_case.csv: no column case, class"),
    "evaluation not a number": ("evaluation/dice_per_case.csv", "case,class,unet,iac\r\nc1,a,0.5,x\r\n",
                                "evaluation/dice_per_case.csv: line 2, column iac: 'x' is not a number"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_are_warnings_in_the_console_and_the_report(runs, tmp_path, capsys, damage):
    file, text, warning = DAMAGE[damage]
    (runs / "acdc_base" / file).write_text(text)
    out = tmp_path / "report"
    rc, stdout, _ = report(capsys, runs, "--out", out)
    assert rc == 0
    assert any("warning: acdc_base: " + warning in line for line in stdout.splitlines()), stdout
    md = (out / "report.md").read_text()
    warnings = md.split("## Warnings", 1)[1].split("\n## ", 1)[0]
    assert f"- acdc_base: {warning}" in warnings
    assert "kits_base" not in warnings
    assert "<h2 id=warnings>Warnings</h2>" in (out / "report.html").read_text()
    runs_table = md.split("## Runs", 1)[1].split("\n## ", 1)[0]
    state = next(line for line in runs_table.splitlines() if line.startswith("| acdc_base |"))
    # a run with a damaged record is not finished: the table says which part
    assert "| partial |" in state and "| finished |" not in state
    if file.startswith("evaluation"):  # no scores
        assert "evaluation (unreadable" in state
    else:
        assert f"{file.rsplit('/', 1)[0]} (unreadable {file})" in state


def test_damaged_figure_inputs_are_skipped_figures(runs, tmp_path, capsys):
    run = runs / "acdc_base"
    _write(run / "stage2" / "arch" / "epoch_001.json", "{not json")
    _write(run / "stage2" / "genotypes" / "epoch_001.json", "{}")
    rc, _, _ = report(capsys, runs, "--out", tmp_path / "report")
    assert rc == 0
    md = (tmp_path / "report" / "report.md").read_text()
    skipped = md.split("### Figures not drawn", 1)[1]
    assert "acdc_base: alpha/beta evolution: " in skipped and "arch/epoch_001.json" in skipped
    assert "acdc_base: genotype diagrams: " in skipped and "genotypes/epoch_001.json" in skipped


def test_an_undamaged_report_has_no_warnings(runs, tmp_path, capsys):
    rc, stdout, _ = report(capsys, runs, "--out", tmp_path / "report")
    assert rc == 0 and "warning" not in stdout
    assert "## Warnings" not in (tmp_path / "report" / "report.md").read_text()


# ------------------------------------------------------------------------------- grid checks

"""`iac report` over small real runs made here, and `iac grid --dry-run`.

Runs (32x32 slices, 1-2 epochs per stage; Stage II runs once, the other runs reuse its genotype):
  sample_base   the bundled sample, base U-Net: `iac run` with the genotype-epoch sweep [1, 2] and
                the nested comparison (finished)
  sample_vgg16  the sample, vgg16 U-Net: Stage I, Stage III with sample_base's genotype (finished)
  tiny_base     a second dataset (nnU-Net fixture), base U-Net: Stage I, Stage III with that
                genotype, the nested comparison (finished)
  unfinished    the second dataset, vgg16 U-Net, Stage I only (deliberately unfinished; a setting
                of its own: the report takes one run per dataset x backbone setting)
"""

import csv
import pathlib
import re

import pytest

from iac_tf.cli import main
from tests.data.fixtures import write_nnunet

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "experiments" / "sample.yaml"

TINY = {
    "data.patch_size": 32, "stage1.epochs": 1, "stage1.batch_size": 16, "stage1.verbose": 0,
    "stage2.epochs": 2, "stage2.warmup_epochs": 0, "stage2.batch_size": 16,
    "stage2.cell_channels": 4, "stage2.cell_steps": 2, "stage2.verbose": 0,
    "stage2.draw_genotypes": True,
    "stage3.epochs": 1, "stage3.batch_size": 16, "stage3.cell_channels": 4, "stage3.verbose": 0,
    "unet.options": "{base_filters: 4}",
    "stage3.extra_implant_modes": "[]", "evaluation.unet_continued": "false",  # sample.yaml's extras
    "compare": "[]",  # sample.yaml trains the attention gate; the runs below set their own
}


def _args(tmp, name, **extra):
    sets = {**TINY, "name": name, "output_dir": str(tmp / "runs"), "data.cache_dir": str(tmp / "cache"),
            **extra}
    out = []
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    request.addfinalizer(mp.undo)
    base = _args(tmp, "sample_base", **{"stage3.genotype_epochs": "[1, 2]", "compare": "[nested]"})
    assert main(["run", str(SAMPLE)] + base) == 0
    genotype = tmp / "runs" / "sample_base" / "stage2" / "genotypes" / "epoch_002.json"
    vgg = _args(tmp, "sample_vgg16", **{"unet.backbone": "vgg16", "unet.options": "{}",
                                        "unet.decoder_filters": "[8, 8, 4, 4, 4]",
                                        "stage3.genotype": str(genotype)})
    for stage in ("stage1", "stage3"):
        assert main([stage, str(SAMPLE)] + vgg) == 0
    ds = write_nnunet(tmp / "data")
    other = _args(tmp, "tiny_base", **{"data.root": str(ds), "data.label_mode": "raw",
                                       "stage3.genotype": str(genotype), "compare": "[nested]"})
    for stage in ("stage1", "stage3", "compare"):
        assert main([stage, str(SAMPLE)] + other) == 0
    unfinished = _args(tmp, "unfinished", **{"data.root": str(ds), "data.label_mode": "raw",
                                             "unet.backbone": "vgg16", "unet.options": "{}",
                                             "unet.decoder_filters": "[8, 8, 4, 4, 4]"})
    assert main(["stage1", str(SAMPLE)] + unfinished) == 0
    return tmp


def _table(md: str, title_start: str) -> list[list[str]]:
    block = md.split(f"## {title_start}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", r)[1:-1]] for r in rows[2:]]


def test_report_from_real_runs(runs, capsys):
    out = runs / "report"
    run_dirs = [str(runs / "runs" / n) for n in ("sample_base", "sample_vgg16", "tiny_base", "unfinished")]
    assert main(["report", *run_dirs, str(runs / "runs" / "never_run"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    for title in ("Runs", "Table I:", "Table II:", "Table III:", "Table IV:", "Table V:", "Table VI:",
                  "Section V-C"):
        assert f"## {title}" in md, title
    for key in ("runs", "table_i", "table_ii", "table_iii", "table_iv", "table_v", "table_vi", "statistics"):
        assert list(csv.reader(open(out / "tables" / f"{key}.csv")))[1:], key

    status = {r[0]: r for r in _table(md, "Runs")}
    assert status["sample_base"][3] == status["sample_vgg16"][3] == status["tiny_base"][3] == "finished"
    assert status["unfinished"][3] == "partial"
    assert "stage3" in status["unfinished"][4] and "evaluation" in status["unfinished"][4]
    assert status["never_run"][3] == "not started"

    # every cell where the runs have data is filled
    t1 = {r[0]: r[1:] for r in _table(md, "Table I:")}
    assert set(t1) == {"base", "vgg16"}
    header = md.split("## Table I:", 1)[1].splitlines()[2]
    assert "Dataset001_PyradiomicsSample train_dt" in header and "Dataset999_Tiny val_dt" in header
    assert all(re.fullmatch(r"\d\.\d{3}", c) for c in t1["base"])
    t2 = _table(md, "Table II:")
    assert [r[0] for r in t2] == ["Dataset001_PyradiomicsSample", "Dataset999_Tiny", "overall"]
    assert all(re.match(r"[+-]\d\.\d{3} \(", r[1]) for r in t2[::2])  # two runs: mean (variance)
    t3 = _table(md, "Table III:")
    assert all(re.fullmatch(r"\d+\.\d{4}", r[5]) for r in t3)   # Stage III hours of every dataset
    assert re.fullmatch(r"\d+\.\d{4}", t3[0][3])                # Stage II hours of the searched one
    assert re.fullmatch(r"(\d+)/\1", t3[0][2])                   # searched all its planned epochs
    assert "literature" in md.split("## Table III:", 1)[1].split("\n## ")[0]
    for title in ("Table IV:", "Table V:"):
        for row in _table(md, title):
            assert re.match(r"\d\.\d{3} \(", row[2]) and re.match(r"\d\.\d{3} \(", row[3]), row
    header2 = md.split("## Table II:", 1)[1].splitlines()[2]
    assert "nested" in header2 and "iac" in header2
    assert re.match(r"[+-]\d\.\d{3} \(", t2[0][header2.split("|").index(" nested ") - 1])
    for title in ("Table IV:", "Table V:"):
        rows = {r[0]: r for r in _table(md, title)}
        assert re.match(r"\d\.\d{3} \(", rows["overall"][4])  # nested: two runs have it
    t6 = {r[2]: r for r in _table(md, "Table VI:")}
    assert md.split("## Table VI:", 1)[1].splitlines()[2].count("EP ") == 2
    assert all(re.fullmatch(r"\d\.\d{3}", c) for c in t6["sample_base"][3:])  # U-Net, EP 1, EP 2, IAC
    assert all(re.fullmatch(r"\d\.\d{3}", c) for r in t6.values() for c in (r[3], r[-1]))
    per_class = _table(md, "Dice and HD95 per class")  # every finished run, its classes
    assert {r[0] for r in per_class} == {"sample_base", "sample_vgg16", "tiny_base"}
    assert all(re.fullmatch(r"\d\.\d{3}", r[4]) and re.fullmatch(r"\d+\.\d{2}", r[5]) for r in per_class)
    assert "## Paired tests within each run" not in md  # three settings: the statistics over them
    stats = {r[0]: r for r in _table(md, "Section V-C")}
    assert stats["iac"][1] == "3" and stats["nested"][1] == "2"
    assert all(c != "n/a" for c in stats["iac"])

    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "src='figures/" not in html
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "sample_base_stage3_curves.png" in figures and "sample_base_arch.png" in figures
    assert "sample_base_overlays.png" in figures
    assert any("genotype" in f or "epoch_002" in f for f in figures)
    assert "never_run" in capsys.readouterr().out



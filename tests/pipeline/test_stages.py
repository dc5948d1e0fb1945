"""`iac run`'s stage plan (``iac_tf.pipeline.stages``): which stages run and which are skipped,
with the reason on the console, without training anything."""

from __future__ import annotations

import logging
import pathlib

import pytest

from iac_tf.config.experiment import load_experiment
from iac_tf.pipeline import stages

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _cfg(tmp_path, **sets):
    sets = {"output_dir": str(tmp_path), "name": "run", **sets}
    return load_experiment(ROOT / "experiments" / "sample.yaml", sets)


def _no_checks_no_writes(monkeypatch):
    """``run_all`` without its checks, records and evaluation: only the order of the stages."""
    for name in ("check_stages", "write_run_records", "record_stage", "record_machine",
                 "seed_everything", "run_evaluation", "label_rule"):
        monkeypatch.setattr(stages, name, lambda *a, **k: None)
    monkeypatch.setattr(stages, "checked_data", lambda c: {})
    monkeypatch.setattr(stages, "early_data_check", lambda c: None)
    monkeypatch.setattr(stages, "_preflight", lambda c, plan: "prepared")


def test_nothing_skipped_by_default(tmp_path):
    assert stages.skipped_stages(_cfg(tmp_path)) == {}


def test_given_unet_and_genotype_skip_stages_one_and_two(tmp_path):
    geno = tmp_path / "g.json"
    skipped = stages.skipped_stages(_cfg(tmp_path, **{"unet.pretrained": str(tmp_path / "u.keras"),
                                                      "stage3.genotype": str(geno)}))
    assert sorted(skipped) == [1, 2]
    assert "unet.pretrained" in skipped[1] and str(geno) in skipped[2]


def test_a_comparison_only_run_ignores_the_genotype(tmp_path):
    cfg = _cfg(tmp_path, **{"method": "attention", "stage3.genotype": str(tmp_path / "g.json")})
    assert stages.skipped_stages(cfg) == {}


def test_a_given_unet_is_scored_before_stage_three_when_the_search_is_skipped(tmp_path,
                                                                             monkeypatch):
    cfg = _cfg(tmp_path, **{"unet.pretrained": str(tmp_path / "u.keras"),
                            "stage3.genotype": str(tmp_path / "g.json")})
    ran = []
    _no_checks_no_writes(monkeypatch)
    monkeypatch.setattr(stages, "_compare", lambda c, p: None)
    monkeypatch.setattr(stages, "score_given_unet", lambda c, p: ran.append("score"))
    monkeypatch.setattr(stages, "_stage3", lambda c, p: ran.append(3))
    stages.run_all.__wrapped__(cfg)
    assert ran == ["score", 3]


@pytest.mark.parametrize("given", [False, True])
def test_run_all_searches_only_without_a_given_genotype(tmp_path, monkeypatch, caplog, given):
    sets = {"stage3.genotype": str(tmp_path / "g.json")} if given else {}
    cfg = _cfg(tmp_path, **sets)
    ran = []
    _no_checks_no_writes(monkeypatch)
    monkeypatch.setattr(stages, "_compare", lambda c, p: ran.append("compare"))
    for n in (1, 2):
        monkeypatch.setattr(stages, f"_stage{n}", lambda c, p, n=n: ran.append(n))
    monkeypatch.setattr(stages, "_stage3", lambda c, p: ran.append(3))
    with caplog.at_level(logging.INFO, logger="iac_tf"):
        stages.run_all.__wrapped__(cfg)
    assert ran == ([1, 3, "compare"] if given else [1, 2, 3, "compare"])
    assert ("Stage II: skipped: stage3.genotype is set" in caplog.text) is given

"""Read run folders (the layout of :mod:`iac_tf.run_layout`) into records for the report.

A run is *finished* when every part its config asks for is on disk: Stage I's summary (unless
``unet.pretrained``), Stage II's search time and last genotype, Stage III's summary (one per
genotype epoch with a sweep), each comparison's summary, and an evaluation table with a column
for the U-Net, the IAC and every comparison. Whatever is absent is named in
:attr:`RunStatus.missing`, so the report can list it instead of dropping the run.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
import re

import numpy as np
import yaml

DICE_CSV = pathlib.Path("evaluation") / "dice_per_case.csv"
EPOCH_COLUMN = re.compile(r"^iac_epoch_(\d+)$")
NOT_MODELS = {"case", "class", "gain"}
# column names of the slice-level soft Dice, current first (older runs wrote "dice"/"val_dice")
TRAIN_DICE = ("soft_dice", "dice")
VAL_DICE = ("val_soft_dice", "val_dice")
BEST_VAL = ("best_val_soft_dice", "best_val_dice")


def first(row: dict, keys: tuple[str, ...]):
    """The value of the first of ``keys`` present in ``row`` (None if none is)."""
    for k in keys:
        if k in row:
            return row[k]
    return None


@dataclasses.dataclass
class RunStatus:
    run_dir: pathlib.Path
    missing: list[str]
    exists: bool

    @property
    def finished(self) -> bool:
        return self.exists and not self.missing

    @property
    def state(self) -> str:
        if not self.exists:
            return "not started"
        return "finished" if not self.missing else "partial"


def _read_config(run_dir: pathlib.Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def run_status(run_dir, cfg: dict | None = None) -> RunStatus:
    """What a run still lacks, judged against ``cfg`` (default: the run's own config.yaml)."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        return RunStatus(run_dir, ["run folder"], exists=False)
    cfg = cfg if cfg is not None else _read_config(run_dir)
    missing = []
    if not (run_dir / "config.yaml").exists():
        missing.append("config.yaml")
    if not (cfg.get("unet") or {}).get("pretrained") and not (run_dir / "stage1" / "summary.json").exists():
        missing.append("stage1")
    s2 = cfg.get("stage2") or {}
    s3 = cfg.get("stage3") or {}
    last = int(s2.get("epochs", 200))
    method = str(cfg.get("method") or "iac")  # a comparison-only run (method: nested) has no IAC
    methods = list(dict.fromkeys(([method] if method != "iac" else [])
                                 + [str(m) for m in (cfg.get("compare") or [])]))
    searched = (run_dir / "stage2" / "search_time.json").exists() and (
        run_dir / "stage2" / "genotypes" / f"epoch_{last:03d}.json").exists()
    if method == "iac" and not s3.get("genotype") and not searched:
        missing.append("stage2")  # not needed when stage3.genotype names a genotype file
    for ep in (s3.get("genotype_epochs") or []) if method == "iac" else []:
        if not (run_dir / "stage3" / f"epoch_{int(ep):03d}" / "summary.json").exists():
            missing.append(f"stage3/epoch_{int(ep):03d}")
    if method == "iac" and not s3.get("genotype_epochs") and not (run_dir / "stage3" / "summary.json").exists():
        missing.append("stage3")
    for m in methods:
        if not (run_dir / "compare" / m / "summary.json").exists():
            missing.append(f"compare/{m}")
    columns = _csv_columns(run_dir / DICE_CSV)
    if columns is None:
        missing.append("evaluation")
    else:
        wanted = ["unet"] + (["iac"] if method == "iac" else []) + methods
        missing += [f"evaluation column {c}" for c in wanted if c not in columns]
    return RunStatus(run_dir, missing, exists=True)


def _csv_columns(path: pathlib.Path) -> list[str] | None:
    if not path.exists():
        return None
    with path.open(newline="") as fh:
        return next(csv.reader(fh), [])


@dataclasses.dataclass
class RunRecord:
    """One run as the report sees it.

    ``scores[model]``: mean over val cases of the case's mean Dice over classes (the number of
    ``stats.json``'s ``overall``); ``case_scores[model]``: those per-case values.
    """

    run_dir: pathlib.Path
    name: str
    dataset: str
    backbone: str
    version: str
    status: RunStatus
    config: dict
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    case_scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    epoch_scores: dict[int, float] = dataclasses.field(default_factory=dict)
    epoch_score_source: str = ""
    train_dice: float = math.nan
    val_soft_dice: float = math.nan
    stage2_seconds: float = math.nan
    stage3_seconds: float = math.nan
    device: str = "not recorded"

    @property
    def methods(self) -> list[str]:
        """Models compared with the U-Net in this run (IAC first), sweep columns excluded."""
        names = [m for m in self.scores if m != "unet" and not EPOCH_COLUMN.match(m)]
        return sorted(names, key=lambda m: (m != "iac", m))


def case_scores(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Per-case mean Dice over classes (NaN classes skipped) for every model column."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    models = [c for c in rows[0] if c not in NOT_MODELS]
    cases: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        per = cases.setdefault(r["case"], {m: [] for m in models})
        for m in models:
            per[m].append(_float(r.get(m)))
    out = {}
    for m in models:
        vals = []
        for per in cases.values():
            v = np.array(per[m], dtype=float)
            vals.append(float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan)
        out[m] = np.array(vals)
    return out


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _history(path: pathlib.Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _history_seconds(path: pathlib.Path) -> float:
    rows = _history(path)
    return float(sum(_float(r.get("epoch_time_s")) for r in rows)) if rows else math.nan


def stage3_dirs(run_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Stage III folders: ``{"iac": stage3}`` and/or ``{"epoch_025": stage3/epoch_025, ...}``."""
    out = {}
    s3 = run_dir / "stage3"
    if (s3 / "history.csv").exists():
        out["iac"] = s3
    for d in sorted(s3.glob("epoch_*")):
        if d.is_dir():
            out[d.name] = d
    return out


def read_run(run_dir) -> RunRecord:
    run_dir = pathlib.Path(run_dir)
    cfg = _read_config(run_dir)
    grid = _json(run_dir / "grid.json")
    data = cfg.get("data") or {}
    dataset = grid.get("dataset") or (
        pathlib.Path(str(data.get("root", ""))).name if data.get("format") in (None, "nnunet", "npz")
        else str(data.get("format")))
    version_file = run_dir / "version.txt"
    rec = RunRecord(
        run_dir=run_dir, name=run_dir.name, dataset=dataset or "?",
        backbone=grid.get("backbone") or (cfg.get("unet") or {}).get("backbone", "?"),
        version=version_file.read_text().strip() if version_file.exists() else "not recorded",
        status=run_status(run_dir, cfg), config=cfg, device=grid.get("device", "not recorded"),
    )
    if (run_dir / DICE_CSV).exists():
        rec.case_scores = case_scores(run_dir / DICE_CSV)
        rec.scores = {m: float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan
                      for m, v in rec.case_scores.items()}
    for m, v in rec.scores.items():
        hit = EPOCH_COLUMN.match(m)
        if hit:
            rec.epoch_scores[int(hit.group(1))] = v
            rec.epoch_score_source = "per-case Dice (evaluation)"
    if not rec.epoch_scores:  # a sweep without evaluation columns: Stage III's own val Dice
        for key, d in stage3_dirs(run_dir).items():
            if key.startswith("epoch_") and (d / "summary.json").exists():
                rec.epoch_scores[int(key[6:])] = _float(first(_json(d / "summary.json"), BEST_VAL))
                rec.epoch_score_source = "Stage III best val_dt slice Dice (no evaluation column)"
    s1 = _json(run_dir / "stage1" / "summary.json")
    if s1:
        best = s1.get("best_epoch")
        for r in _history(run_dir / "stage1" / "history.csv"):
            if str(r.get("epoch")) == str(best):
                rec.train_dice = _float(first(r, TRAIN_DICE))
                rec.val_soft_dice = _float(first(r, VAL_DICE))
    search = _json(run_dir / "stage2" / "search_time.json")
    if search:
        rec.stage2_seconds = _float(search.get("total_seconds"))
    s3_secs = [_history_seconds(d / "history.csv") for d in stage3_dirs(run_dir).values()]
    s3_secs = [s for s in s3_secs if not math.isnan(s)]
    if s3_secs:
        rec.stage3_seconds = float(sum(s3_secs))
    return rec


def expand_run_dirs(paths) -> list[pathlib.Path]:
    """Run folders from the given paths: a folder with ``config.yaml`` (or a path that does not
    exist: it is reported missing) is a run; a folder without one holding run folders is a
    collection of runs (e.g. ``runs/``)."""
    out = []
    for p in map(pathlib.Path, paths):
        if p.is_dir() and not (p / "config.yaml").exists():
            children = sorted(c for c in p.iterdir() if c.is_dir() and (c / "config.yaml").exists())
            if children:
                out += children
                continue
        out.append(p)
    return out

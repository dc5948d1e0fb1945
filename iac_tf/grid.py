"""The experiment grid (paper Section V): dataset x backbone settings from one grid YAML.

A grid file (``experiments/paper/grid.yaml``)::

    base: base.yaml                     # shared hyper-parameters (an experiment YAML fragment)
    name: "{dataset}_{backbone}"        # run folder name of a setting
    datasets: {acdc: ../data/acdc.yaml, ...}   # dataset key -> data config
    backbones: [base, vgg16, ...]
    overrides: {"brats": {...}, "brats/convnext_base": {...}, "*/vgg16": {...}}

A setting's config is ``base <- data config <- overrides[dataset] <- overrides[*/backbone] <-
overrides[dataset/backbone] <- --set``; paths inside the files are relative to the file that
names them. ``iac grid`` (:func:`run_grid`) runs every unfinished setting as its own ``iac run``
process (a fresh TensorFlow per setting, GPU memory released in between), skipping finished runs;
``--dry-run`` prints the plan with the estimated work.

Before any setting runs (and in the dry run) every setting is checked (:func:`problems`): its
merged config must be valid, and a setting still to run needs a ``data.root`` that exists and
is not the ``/path/to/...`` placeholder of the example data configs. One invalid setting means
no setting is started.

On a cluster (``docs/cluster.md``): ``--shard K/N`` runs the K-th of N disjoint shards
(:func:`shard`; a Slurm array or a Kubernetes indexed Job, no coordinator), and ``--take-next``
makes any number of workers share one grid on a shared file system: each setting runs under a
claim lock, so no two workers ever run one setting, and a dead worker's setting is resumed by
the next pass of another.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import yaml

from iac_tf.config import ConfigError, from_dict, load_yaml
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.files import atomic_write_json, atomic_write_text
from iac_tf.locks import LockedError, folder_lock
from iac_tf.run_layout import RunLayout, UnreadableRecord, run_status
from iac_tf.run_records import STAGES, show_value, stage_differences
from iac_tf.unets import BACKBONES


@dataclasses.dataclass(frozen=True)
class Setting:
    """One cell of the grid: a dataset x backbone pair and its merged experiment config."""

    dataset: str
    backbone: str
    name: str
    config: dict
    data_file: pathlib.Path | None = None  # the data config the grid names for the dataset

    @property
    def run_dir(self) -> pathlib.Path:
        return pathlib.Path(self.config.get("output_dir", "runs")) / self.name


@dataclasses.dataclass(frozen=True)
class Grid:
    path: pathlib.Path
    base: dict
    name: str
    datasets: dict[str, dict]
    backbones: tuple[str, ...]
    overrides: dict[str, dict]
    dataset_files: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: ``over`` wins; lists and scalars are replaced, not merged."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_paths(cfg: dict, folder: pathlib.Path) -> dict:
    """Make the relative file paths of a config fragment relative to the file's folder."""
    data = cfg.get("data")
    if isinstance(data, dict) and isinstance(data.get("root"), str) and not data["root"].startswith("/path/to"):
        root = pathlib.Path(data["root"])
        if not root.is_absolute() and (folder / root).exists():
            data["root"] = str((folder / root).resolve())
    return cfg


def load_grid(path: str | pathlib.Path) -> Grid:
    path = pathlib.Path(path)
    raw = load_yaml(path)
    unknown = set(raw) - {"base", "name", "datasets", "backbones", "overrides"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}")
    for key in ("datasets", "backbones"):
        if not raw.get(key):
            raise ConfigError(f"{path}: '{key}' is required and must not be empty")
    if not isinstance(raw["datasets"], dict):
        raise ConfigError(f"{path}: datasets must map a dataset key to its data config file")
    base = _resolve_paths(load_yaml(path.parent / raw["base"]), path.parent) if raw.get("base") else {}
    datasets, files = {}, {}
    for key, file in raw["datasets"].items():
        file = path.parent / file
        datasets[str(key)] = _resolve_paths(load_yaml(file), file.parent)
        files[str(key)] = file.resolve()
    bad = [b for b in raw["backbones"] if b not in BACKBONES]
    if bad:
        raise ConfigError(f"{path}: backbones: unknown {bad}; choose from {list(BACKBONES)}")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: overrides must be a mapping")
    return Grid(path, base, raw.get("name", "{dataset}_{backbone}"), datasets,
                tuple(raw["backbones"]), overrides, files)


def settings(grid: Grid, dataset: str | None = None, backbone: str | None = None,
             sets: dict[str, Any] | None = None) -> list[Setting]:
    """The grid's settings (all, one dataset, one backbone or one cell), configs merged."""
    if dataset is not None and dataset not in grid.datasets:
        raise ConfigError(f"{grid.path}: no dataset {dataset!r}; the grid has {list(grid.datasets)}")
    if backbone is not None and backbone not in grid.backbones:
        raise ConfigError(f"{grid.path}: no backbone {backbone!r}; the grid has {list(grid.backbones)}")
    out = []
    for ds, data_cfg in grid.datasets.items():
        for bb in grid.backbones:
            name = setting_name(grid, ds, bb)
            cfg = merge(grid.base, data_cfg)
            for key in (ds, f"*/{bb}", f"{ds}/{bb}"):
                cfg = merge(cfg, grid.overrides.get(key, {}))
            cfg = merge(cfg, {"name": name, "unet": {"backbone": bb}})
            for dotted, value in (sets or {}).items():
                node = cfg
                *parents, last = dotted.split(".")
                for key in parents:
                    node = node.setdefault(key, {})
                node[last] = value
            out.append(Setting(ds, bb, name, cfg, grid.dataset_files.get(ds)))
    check_distinct(grid, out)
    return [s for s in out if dataset in (None, s.dataset) and backbone in (None, s.backbone)]


#: The fields a grid's ``name`` template may use.
NAME_FIELDS = ("dataset", "backbone")


def setting_name(grid: Grid, dataset: str, backbone: str) -> str:
    """The run folder name of a setting: the grid's ``name`` template filled in."""
    try:
        name = grid.name.format(dataset=dataset, backbone=backbone)
    except KeyError as exc:
        raise ConfigError(f"{grid.path}: name: {grid.name!r} uses the unknown field {{{exc.args[0]}}}; "
                          f"a name may use {', '.join('{' + f + '}' for f in NAME_FIELDS)}") from None
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{grid.path}: name: {grid.name!r} is not a valid name template "
                          f"({exc}); e.g. \"{{dataset}}_{{backbone}}\"") from None
    return name


def check_distinct(grid: Grid, items: list[Setting]) -> None:
    """Raise :class:`ConfigError` if two settings of the grid would write one run folder (a
    ``name`` template without ``{dataset}`` or ``{backbone}``, or an ``output_dir`` override),
    naming them: one of them would be dropped or mixed into the other's run."""
    seen: dict[pathlib.Path, Setting] = {}
    for s in items:
        key = pathlib.Path(os.path.abspath(s.run_dir))
        if key in seen:
            other = seen[key]
            raise ConfigError(
                f"{grid.path}: the settings {other.dataset}/{other.backbone} and "
                f"{s.dataset}/{s.backbone} both map to the run folder {s.run_dir} (name: "
                f"{grid.name!r}); give each setting its own folder, e.g. name: "
                "\"{dataset}_{backbone}\". No setting was started")
        seen[key] = s


def estimated_epochs(cfg: dict, run_dir: str | os.PathLike = ".") -> dict[str, int]:
    """Passes over the training data each stage of a setting costs: the epochs of every part
    its run trains (:meth:`~iac_tf.run_layout.RunLayout.parts`, with the config's epochs and
    defaults) that is not finished yet. A Stage II epoch is one pass over train_search_dt and
    one over val_search_dt, each half of train_dt; Stage III counts each genotype epoch of a
    sweep and each extra implant mode; ``compare`` the budget-matched ``unet_continued`` (if
    ``evaluation.unet_continued``) and the comparison methods."""
    layout = RunLayout(run_dir)
    out = dict.fromkeys(("stage1", "stage2", "stage3", "compare"), 0)
    for part in layout.parts(cfg):
        try:
            done = layout.part_done(part)
        except UnreadableRecord:
            done = False  # to be trained again once the record is restored or cleared
        if not done:
            out[part.kind] += part.epochs
    return out


def plan(items: list[Setting]) -> str:
    """The dry-run text: one line per setting with its status and estimated work."""
    lines = [f"{'setting':<28}{'status':<13}{'S-I':>5}{'S-II':>6}{'S-III':>7}{'cmp':>6}  missing / run folder"]
    total = dict.fromkeys(("stage1", "stage2", "stage3", "compare"), 0)
    todo = 0
    for s in items:
        status = run_status(s.run_dir, s.config)
        work = estimated_epochs(s.config, s.run_dir) if not status.finished else dict.fromkeys(total, 0)
        if not status.finished:
            todo += 1
        for k in total:
            total[k] += work[k]
        note = ", ".join(status.missing[:4]) + (" ..." if len(status.missing) > 4 else "")
        lines.append(f"{s.name:<28}{status.state:<13}{work['stage1']:>5}{work['stage2']:>6}"
                     f"{work['stage3']:>7}{work['compare']:>6}  {note or s.run_dir}")
    lines.append(f"{len(items)} settings, {todo} to run; estimated work in epochs: Stage I "
                 f"{total['stage1']}, Stage II {total['stage2']} (search epochs), Stage III "
                 f"{total['stage3']}, comparisons {total['compare']}.")
    lines.append("For scale (paper, Table III, RTX 3090 Ti): Stage II + III take about 0.5 h (ACDC), "
                 "5 h (AMOS), 11 h (BraTS), 4.5 h (KiTS) per backbone.")
    return "\n".join(lines)


#: ``data.root`` of the example data configs (experiments/data/*.yaml): not a user's data.
PLACEHOLDER_ROOT = "/path/to"


def data_root_problem(s: Setting) -> str:
    """What is wrong with the ``data.root`` of a setting still to run (``""``: nothing; a
    finished setting needs no data)."""
    root = (s.config.get("data") or {}).get("root")
    if not isinstance(root, str) or run_status(s.run_dir, s.config).finished:
        return ""  # a missing or mistyped root is the config check's to report
    where = f"edit data.root in {s.data_file}" if s.data_file else "set data.root in the data config"
    hint = f"pass --data-root DIR (with --dataset {s.dataset} for this dataset only) or {where}"
    if root.startswith(PLACEHOLDER_ROOT):
        return f"data.root: {root} is the example placeholder, not a dataset; {hint}"
    if not pathlib.Path(root).expanduser().exists():
        return f"data.root: {root} does not exist; {hint}"
    return ""


def problems(items: list[Setting]) -> list[str]:
    """One line per invalid setting, ``NAME: KEY: problem``: the merged config (unknown keys,
    types, values) and, for a setting still to run, its ``data.root`` (:func:`data_root_problem`)."""
    out = []
    for s in items:
        try:
            cfg = from_dict(ExperimentConfig, copy.deepcopy(s.config))
        except (ConfigError, ValueError, TypeError) as exc:
            out.append(f"{s.name}: {exc}")
            continue
        problem = data_root_problem(s) or record_problem(s, cfg)
        if problem:
            out.append(f"{s.name}: {problem}")
    return out


def record_problem(s: Setting, cfg: ExperimentConfig) -> str:
    """What keeps ``iac run`` from using the setting's existing run folder with this config:
    its stage records hold another config (the keys named, as ``iac run`` names them), so the
    run's results are not this setting's, finished or not. ``""``: nothing."""
    diffs = []
    for stage in STAGES:
        for key, (old, new) in (stage_differences(cfg, stage) or {}).items():
            item = f"{key}: {show_value(old)} -> {show_value(new)}"
            if item not in diffs:
                diffs.append(item)
    if not diffs:
        return ""
    return (f"its run folder {s.run_dir} holds results of another config (recorded -> now: "
            f"{'; '.join(diffs)}); no run used these values. Start new runs (--set "
            f"name=... or another grid name) or run that setting with `iac run CONFIG "
            "--restart stageN`")


def validate(items: list[Setting]) -> None:
    """Raise :class:`ConfigError` naming the first invalid setting (:func:`problems`) before
    anything runs."""
    found = problems(items)
    if found:
        more = (f" (and {len(found) - 1} more invalid setting(s); `iac grid GRID --dry-run` lists "
                "them)" if len(found) > 1 else "")
        raise ConfigError(f"grid setting {found[0]}{more}. No setting was started")


def gpu_name() -> str:
    """The GPU(s) of this machine as ``nvidia-smi`` names them, or ``"none (CPU)"``."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return "none (CPU)"
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return ", ".join(sorted(set(n.strip() for n in out if n.strip()))) or "none (CPU)"


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``."""
    try:
        k, n = (int(v) for v in spec.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ConfigError(f"--shard: expected K/N with 1 <= K <= N (e.g. 3/8), got {spec!r}")
    return k, n


def shard(items: list[Setting], spec: str) -> list[Setting]:
    """The K-th of N disjoint shards of the settings (``spec`` ``"K/N"``, 1-based K): every N-th
    setting in the grid's order starting at the K-th, so each shard gets a mix of datasets. The
    same grid file and filters give every worker the same partition, with no coordinator
    (a Slurm array task: ``--shard ${SLURM_ARRAY_TASK_ID}/N``)."""
    k, n = parse_shard(spec)
    return items[k - 1::n]


def claim_path(s: Setting) -> pathlib.Path:
    """The lock file a grid worker holds while it runs setting ``s`` (beside the run folder)."""
    return s.run_dir.parent / f".{s.name}.grid-claim"


def _run_setting(s: Setting, device: str, extra_args: tuple[str, ...]) -> int:
    """``python -m iac_tf.cli run CONFIG`` of one setting (a fresh TensorFlow per setting, GPU
    memory released in between); its merged config goes to ``output_dir/.grid/NAME.yaml``."""
    cfg_path = s.run_dir.parent / ".grid" / f"{s.name}.yaml"
    atomic_write_text(cfg_path, yaml.safe_dump(s.config, sort_keys=False))
    layout = RunLayout(s.run_dir)
    with layout.lock():  # released before `iac run` takes it
        layout.claim()
        atomic_write_json(layout.grid_record, {"dataset": s.dataset, "backbone": s.backbone,
                                               "grid": str(cfg_path), "device": device})
    return subprocess.call([sys.executable, "-m", "iac_tf.cli", "run", str(cfg_path), *extra_args])


def run_grid(items: list[Setting], extra_args: tuple[str, ...] = (),
             log: Callable[[str], None] | None = None,
             take_next: bool = False,
             runner: Callable[[Setting], int] | None = None,
             finished: Callable[[Setting], bool] | None = None) -> list[tuple[str, int]]:
    """Run each unfinished setting (resuming a partial run, skipping a finished one). Returns
    ``(name, exit status)`` per setting this process ran.

    A setting is run only under its claim (:func:`claim_path`, a lock released however the
    worker ends), so any number of ``iac grid`` processes on one shared file system never run
    one setting at once: a setting claimed by a live worker, or whose run a live ``iac run``
    holds, is skipped. ``take_next``: after a pass, pass over the settings again until one
    starts nothing, so N workers share one grid dynamically and a setting whose worker died is
    resumed by the next; a setting that failed in this worker is not retried by it.
    ``runner`` / ``finished``: how a setting is run and judged finished (default: an ``iac
    run`` process; :meth:`~iac_tf.run_layout.RunLayout.status`). ``log``: where each line about
    a setting goes (default: the ``iac_tf.grid`` logger at INFO)."""
    log = log or logging.getLogger(__name__).info
    validate(items)
    for s in items:  # a user's own folder is never made a run folder
        RunLayout(s.run_dir).check_ours()
    device = gpu_name()
    runner = runner or (lambda s: _run_setting(s, device, extra_args))
    finished = finished or (lambda s: run_status(s.run_dir, s.config).finished)
    results: list[tuple[str, int]] = []
    tried: set[str] = set()
    while True:
        started = 0
        for k, s in enumerate(items, 1):
            where = f"[grid] {k}/{len(items)} {s.name}"
            if s.name in tried:
                continue
            if finished(s):
                log(f"{where}: finished, skipped")
                tried.add(s.name)
                continue
            try:
                with folder_lock(claim_path(s), f"grid setting {s.name}"):
                    if finished(s):  # finished by the worker that held the claim before us
                        continue
                    holder = RunLayout(s.run_dir).lock_holder()
                    if holder is not None:
                        log(f"{where}: being run by {holder}, skipped")
                        continue
                    log(f"{where}: {run_status(s.run_dir, s.config).state} -> iac run")
                    tried.add(s.name)
                    started += 1
                    rc = runner(s)
            except LockedError as exc:
                log(f"{where}: claimed by another grid worker, skipped ({str(exc).split(';')[0]})")
                continue
            results.append((s.name, rc))
            if rc != 0:
                log(f"[grid] {s.name}: iac run exited with status {rc}; continuing with the next "
                    "setting")
        if not take_next or not started:
            return results

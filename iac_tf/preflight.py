"""Pre-flight checks: everything that can be checked before the first epoch, so a bad input fails
in seconds with a message naming the file or key, not after hours inside a Keras traceback.

Each check returns a :class:`Check` row (``ok`` / ``warn`` / ``fail`` / ``skip``).
``iac doctor CONFIG`` prints all of them as a table (:func:`doctor`); the pipeline runs the ones
a stage needs through :func:`checked_prepare` *before* the run folder or any training step
exists, and stops with :class:`PreflightError` listing every failure at once.

The U-Net checks (``unet.pretrained`` or Stage I's model) are: the file loads; one 4D input;
a fixed input size equals ``data.patch_size``; the model runs on a ``patch_size`` slice; the
output is one sigmoid per class (the stages train with Dice, eq. (5)) or a softmax over
background + classes (Dice of the classes + cross-entropy, :mod:`iac_tf.losses`); at least one
skip connection is found by :func:`iac_tf.implant.find_skip_connections` (IAC cells are
implanted there); input channels and output classes match the prepared data (a softmax:
one more channel than classes, and classes that exclude each other). ``iac doctor``
also warns when a given U-Net comes without the list of cases it was trained on
(:func:`training_cases_check`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

from iac_tf._keras import onednn_enabled, onednn_status, tf
from iac_tf.data import check_dataset
from iac_tf.data.cache import slice_bytes
from iac_tf.data.check import DataShape, data_shape
from iac_tf.config.data import TEST_SPLIT, resolve_paths
from iac_tf.data.prepare import cached_path, case_lists
from iac_tf.data.splits import split_patients
from iac_tf.diskspace import MARGIN_BYTES, check_writable_folder, free_bytes, human
from iac_tf.errors import UserError
from iac_tf.genotype import Genotype
from iac_tf.labels import label_mode
from iac_tf.models import UNetInfo, inspect_unet, match_data, stage1_params
from iac_tf.run_unet import checked_source
from iac_tf.unets.registry import get_backbone
from iac_tf.run_layout import RunLayout, trained_unet

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TRAINING_CASES = "U-Net's training cases"


@dataclasses.dataclass(frozen=True)
class Check:
    """One row of the pre-flight table."""

    name: str
    status: str
    detail: str


class PreflightError(UserError):
    """One or more pre-flight checks failed; the message lists each (with its file or key)."""

    def __init__(self, failures: list[Check]):
        self.failures = failures
        if len(failures) == 1:
            msg = failures[0].detail
        else:
            msg = f"{len(failures)} problems found before starting:\n" + "\n".join(
                f"  - {c.name}: {c.detail}" for c in failures)
        super().__init__(msg)


# ---------------------------------------------------------------------------- rows
def _row(name: str, fn: Callable[[], str | tuple[str, str]]) -> Check:
    """Run ``fn``; its return is the detail (``ok``) or ``(status, detail)``; an exception is
    a ``fail`` row with the exception's message."""
    try:
        out = fn()
    except OSError as exc:  # our own OSErrors carry the whole message (no "[Errno N]")
        plain = exc.filename is None and exc.strerror
        return Check(name, FAIL, exc.strerror if plain else str(exc))
    except Exception as exc:  # noqa: BLE001 - every check reports, none aborts the table
        return Check(name, FAIL, str(exc))
    return Check(name, *out) if isinstance(out, tuple) else Check(name, OK, out)


def folder_checks(cfg) -> list[Check]:
    """Output and cache folders: exist or can be made, are folders, are writable."""
    def output():
        run_dir = pathlib.Path(cfg.run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise NotADirectoryError(f"{run_dir}: is a file, not a run folder (set output_dir "
                                     "or name)")
        check_writable_folder(run_dir, "the run folder", "output_dir")
        # the run's lock file goes beside the run folder, into output_dir itself
        check_writable_folder(run_dir.parent, "the run's lock file", "output_dir")
        return f"{run_dir} writable"

    def cache():
        _, cache_dir = resolve_paths(cfg.data)
        check_writable_folder(cache_dir, "the slice cache", "data.cache_dir")
        return f"{cache_dir} writable"

    return [_row("output folder", output), _row("cache folder", cache)]


def stage1_checks(cfg) -> list[Check]:
    """The U-Net Stage I builds: the backbone exists and ``data.patch_size`` suits it."""
    def backbone():
        red = get_backbone(cfg.unet.backbone).reduction
        if cfg.data.patch_size % red:
            raise ValueError(f"data.patch_size: {cfg.data.patch_size} is not a multiple of "
                             f"{red}, the downsampling of backbone {cfg.unet.backbone!r} "
                             f"(unet.backbone); use e.g. {max(red, cfg.data.patch_size // red * red)}")
        return f"{cfg.unet.backbone}: patch {cfg.data.patch_size} is a multiple of {red}"
    return [_row("U-Net (Stage I)", backbone)]


def stage1_output_check(cfg, data: DataShape | None) -> Check | None:
    """``unet.output: softmax`` for Stage I's U-Net: the dataset's classes must exclude each
    other (a softmax gives each voxel one class). ``None`` (no row) for ``sigmoid``."""
    if cfg.unet.output != "softmax" or cfg.unet.pretrained:
        return None
    if data is None or not data.class_values:
        return Check("U-Net output", OK, "softmax over background + classes")
    if label_mode(data.class_values) == "regions":
        regions = ", ".join(f"{n}={list(v)}" for n, v in zip(data.class_names, data.class_values))
        return Check("U-Net output", FAIL,
                     f"unet.output: softmax gives each voxel one class, but the classes of "
                     f"{cfg.data.root} are nested regions ({regions}); use unet.output: sigmoid "
                     "or the dataset's exclusive labels (data.label_mode: raw)")
    return Check("U-Net output", OK, f"softmax over background + {data.classes} classes")


def unet_check(path, cfg, data: DataShape | None = None) -> tuple[Check, UNetInfo | None]:
    info, problems = inspect_unet(path, cfg.data.patch_size)
    if info is not None and data is not None:
        problems += match_data(info, data, cfg.data.root)
    if problems:
        return Check("U-Net", FAIL, "; ".join(problems)), info
    return Check("U-Net", OK, f"{path}: {info.in_channels} ch -> {info.classes} class(es), "
                 f"{info.skips} skip connection(s), output: {info.describe_output()}, "
                 f"{info.params:,} parameters"), info


def training_cases_check(cfg) -> Check | None:
    """Whether the splits know which cases the U-Net was trained on: a warning for a given
    U-Net (``unet.pretrained``) without ``data.splits_file`` / ``data.unet_train_cases`` (the
    splits may then hold cases it saw); with them, the list checked against the dataset and the
    held-out patients counted per split (a failure names unknown ids or too few held-out
    patients). ``None`` (no row) when neither is set."""
    d = cfg.data
    if not d.gives_unet_train_cases:
        if not cfg.unet.pretrained:
            return None
        return Check(TRAINING_CASES, WARN,
                     f"unet.pretrained is set, but not which cases it was trained on "
                     f"(data.splits_file + data.fold, or data.unet_train_cases): val_dt, "
                     f"val_search_dt and {TEST_SPLIT} may hold cases the U-Net saw, so the "
                     f"epoch selection and the scores on them are optimistic")

    def count():
        lists = case_lists(d)
        patients = [c.patient_id for c in lists.train]
        split = split_patients(patients, d.seed, d.val_fraction, d.search_fraction,
                               sorted(lists.seen), lists.unet.source)
        test = len({c.patient_id for c in lists.test})
        detail = (f"{len(lists.unet.cases)} case(s) of {len(lists.seen)} patient(s) from "
                  f"{lists.unet.source} stay in train_dt; patients it has not seen: val_dt "
                  f"{len(split['val_dt'])}, val_search_dt {len(split['val_search_dt'])}, "
                  f"{TEST_SPLIT} {test}")
        if not cfg.unet.pretrained:
            return WARN, (detail + "; but unet.pretrained is not set: Stage I trains a new "
                          "U-Net on train_dt, val_search_dt's patients included")
        return detail
    return _row(TRAINING_CASES, count)


def genotype_check(path) -> Check:
    def load():
        Genotype.from_json(pathlib.Path(path))
        return f"{path}"
    return _row("genotype", load)


def gpu_checks(cfg) -> list[Check]:
    """GPU visibility, and whether ``mixed_precision`` (any stage) has a GPU that runs float16
    fast (compute capability >= 7.0)."""
    gpus = tf.config.list_physical_devices("GPU")
    caps = []
    for gpu in gpus:
        try:
            caps.append(tf.config.experimental.get_device_details(gpu).get("compute_capability"))
        except Exception:  # noqa: BLE001
            caps.append(None)
    rows = [Check("GPU", OK, f"{len(gpus)} visible: " + ", ".join(g.name for g in gpus))
            if gpus else Check("GPU", WARN, "no GPU visible to TensorFlow: training runs on "
                               "the CPU (slow for real datasets)")]
    mixed = [f"stage{i}.mixed_precision" for i in (1, 2, 3)
             if getattr(getattr(cfg, f"stage{i}"), "mixed_precision", False)]
    if not mixed:
        rows.append(Check("mixed precision", OK, "off (float32)"))
    elif not gpus:
        rows.append(Check("mixed precision", WARN, f"{', '.join(mixed)} set but no GPU: "
                          "float16 on the CPU is slower than float32"))
    elif not any(c and c >= (7, 0) for c in caps):
        rows.append(Check("mixed precision", WARN, f"{', '.join(mixed)} set but no GPU has "
                          f"compute capability >= 7.0 (found {caps}): little or no speed-up"))
    else:
        rows.append(Check("mixed precision", OK, f"{', '.join(mixed)} on a GPU with compute "
                          f"capability {max(c for c in caps if c)}"))
    rows.append(onednn_check())
    return rows


def onednn_check() -> Check:
    """Which CPU kernels TensorFlow runs: oneDNN on (fast on every x86-64 kind) or off (Eigen:
    the search cells are several times slower)."""
    detail = onednn_status()
    return Check("oneDNN", OK if onednn_enabled() else WARN,
                 detail if onednn_enabled() else detail + ": the search and Stage III train "
                 "several times slower on the CPU; unset TF_ENABLE_ONEDNN_OPTS to let iac_tf "
                 "turn it on")


# ---------------------------------------------------------------------------- pipeline
def _raise_failures(rows: list[Check]) -> None:
    failures = [r for r in rows if r.status == FAIL]
    if failures:
        raise PreflightError(failures)


def checked_prepare(cfg, stage: int, prepare: Callable, unet_path=None, genotype_path=None):
    """Run the checks of ``stage`` (1, 2 or 3), prepare the data, check the U-Net against it,
    and return the prepared data. Nothing is written to the run folder; raises
    :class:`PreflightError` listing every failure (the data cache may have been built)."""
    rows = folder_checks(cfg)
    if stage == 1:
        rows += stage1_checks(cfg)
    if genotype_path is not None:  # one path, or a list (a genotype-epoch sweep)
        paths = genotype_path if isinstance(genotype_path, (list, tuple)) else [genotype_path]
        rows += [genotype_check(p) for p in paths]
    info = None
    if unet_path is not None:
        row, info = unet_check(unet_path, cfg)
        rows.append(row)
        rows.append(output_space_check(cfg, info.params if info is not None else 0))
    elif stage == 1:
        try:
            shape = data_shape(cfg)[0]
        except Exception:  # noqa: BLE001 - the data preparation below names the problem
            shape = None
        rows.append(output_space_check(cfg, stage1_params(cfg, shape)))
        output_row = stage1_output_check(cfg, shape)
        if output_row is not None:
            rows.append(output_row)
    _raise_failures(rows)
    prepared = prepare(cfg)
    if info is not None:
        data = DataShape(prepared.in_channels, prepared.num_classes, prepared.patch_size,
                         tuple(prepared.class_names),
                         tuple(tuple(v) for v in getattr(prepared, "class_values", ())))
        problems = match_data(info, data, str(prepared.cache_path))
        if problems:
            raise PreflightError([Check("U-Net", FAIL, "; ".join(problems))])
    return prepared


# ---------------------------------------------------------------------------- doctor
def _data_rows(cfg) -> tuple[list[Check], DataShape | None]:
    """Every case read and checked (as ``iac data check``), plus the cache size estimate."""
    d = cfg.data
    root, cache_dir = resolve_paths(d)
    try:
        report = check_dataset(root, format=d.format, raise_on_error=False)
    except Exception as exc:  # noqa: BLE001
        return [Check("data", FAIL, str(exc))], None
    if report.problems:
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        status = WARN if d.on_error == "skip" and report.rows else FAIL
        data_row = Check("data", status, f"{len(report.problems)} problem(s): "
                         + "; ".join(report.problems[:3]) + more
                         + (" (data.on_error: skip skips them)" if status == WARN else ""))
    elif report.warnings:
        data_row = Check("data", WARN, f"{len(report.rows)} case(s) OK; " + "; ".join(report.warnings))
    else:
        data_row = Check("data", OK, f"{root}: {len(report.rows)} case(s), classes "
                         f"{list(report.class_names)}")
    try:
        shape, slices = data_shape(cfg, count_slices=True)
    except Exception:  # noqa: BLE001 - already reported by the data row
        return [data_row], None
    needed = slices * slice_bytes(d.patch_size, shape.channels, shape.classes)
    free = free_bytes(cache_dir)
    status = OK if free >= needed + MARGIN_BYTES or _cache_built(cfg) else FAIL
    space = Check("cache space", status, f"{cache_dir}: {human(free)} free, the cache needs at "
                  f"most {human(needed)} (uncompressed, every slice)"
                  + ("" if status == OK else "; it does not fit: free space there or set "
                     "data.cache_dir"))
    return [data_row, space], shape


def _cache_built(cfg) -> bool:
    """The slice cache of ``cfg.data`` exists already (so it needs no space)."""
    try:
        path = cached_path(cfg.data)
    except Exception:  # noqa: BLE001 - unreadable data: the data row reports it
        return False
    return path is not None and path.is_file()


def doctor(cfg) -> list[Check]:
    """Every check of an experiment config, as table rows (nothing is written)."""
    rows = folder_checks(cfg)
    data_rows, shape = _data_rows(cfg)
    rows += data_rows
    info = None
    if not cfg.unet.pretrained:
        rows += stage1_checks(cfg)
        output_row = stage1_output_check(cfg, shape)
        if output_row is not None:
            rows.append(output_row)
    path = trained_unet(cfg)
    if cfg.unet.pretrained:
        try:  # the run's own copy when the run has one (the file named may be gone)
            path = checked_source(RunLayout.of(cfg), cfg.unet.pretrained)
        except UserError as exc:
            rows.append(Check("U-Net", FAIL, str(exc)))
            path = None
    if path is not None and (cfg.unet.pretrained or path.exists()):
        row, info = unet_check(path, cfg, shape)
        rows.append(row)
    elif cfg.unet.pretrained is None:
        rows.append(Check("U-Net", SKIP, "unet.pretrained not set: Stage I trains it"))
    cases_row = training_cases_check(cfg)
    if cases_row is not None:
        rows.append(cases_row)
    if cfg.stage3.genotype:
        rows.append(genotype_check(cfg.stage3.genotype))
    else:
        found = RunLayout.of(cfg).genotype_files()
        rows.append(genotype_check(found[-1]) if found else
                    Check("genotype", SKIP, "stage3.genotype not set: Stage II writes it"))
    params = info.params if info is not None else stage1_params(cfg, shape)
    rows.append(output_space_check(cfg, params))
    rows += gpu_checks(cfg)
    return rows


def output_space_check(cfg, params: int) -> Check:
    """Free space for the run's outputs: 3 stages x (best model + SavedModel + 2 checkpoints x
    (weights + 2 Adam slots)) of a ``params``-parameter U-Net (2M if unknown) + 50 MiB of logs.
    Too little is a failure: the run would stop at its first checkpoint."""
    needed = 3 * 8 * 4 * (params or 2_000_000) + 50 * 1024**2
    free = free_bytes(cfg.run_dir)
    size = f"a {params:,}-parameter U-Net" if params else "a 2M-parameter U-Net (assumed)"
    if free < needed:
        return Check("output space", FAIL,
                     f"{cfg.run_dir}: {human(free)} free, about {human(needed)} needed for the "
                     f"models and checkpoints of {size}; free space there or set output_dir")
    return Check("output space", OK, f"{cfg.run_dir}: {human(free)} free, about {human(needed)} "
                 f"needed (models and checkpoints of {size})")


def format_table(rows: list[Check]) -> str:
    """The rows as a fixed-width table, then a one-line verdict."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.name:<{width}}  {r.status.upper():<6}  {r.detail}" for r in rows]
    fails = sum(r.status == FAIL for r in rows)
    warns = sum(r.status == WARN for r in rows)
    lines.append(f"{fails} failure(s), {warns} warning(s)" if fails or warns else "all checks passed")
    return "\n".join(lines)

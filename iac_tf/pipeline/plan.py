"""The run plan: what one command will do, decided once from the config and the command before
anything runs.

``iac stage1|stage2|stage3|compare|evaluate|run`` each build one :class:`RunPlan`
(:func:`build_plan`): the steps it runs and the ones it skips (with the reason), the units each
step trains and whether they are finished already, what each step reads and writes (paths of
:class:`~iac_tf.run_layout.RunLayout`), the stage records the config must match, the pre-flight
checks made before anything is written, and what ``--restart stageN`` removes and keeps
(:func:`iac_tf.run_records.restart_plan`). Every command is its plan executed by one function
(:func:`iac_tf.pipeline.stages.execute`); ``--plan`` prints it (:func:`format_plan`) and writes
nothing. Building a plan reads the run folder only (no lock, no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import pathlib

from iac_tf.config import ConfigError
from iac_tf.config.experiment import ExperimentConfig
from iac_tf.run_layout import CONFIG, DATA_RECORD, RunLayout, VERSION, trained_unet
from iac_tf.run_records import STAGE_NAMES, restart_plan

#: the commands that are a plan: ``iac <command> CONFIG``
COMMANDS = ("stage1", "stage2", "stage3", "compare", "evaluate", "run")

NO_COMPARISONS = "no comparison method configured (set `compare: [attention, ...]`)"


@dataclasses.dataclass(frozen=True)
class Unit:
    """One trained result of a step: its name (``models.json``), its folder, and whether it is
    finished already (then skipped; after ``--restart`` removes its folder it is not)."""

    name: str
    folder: pathlib.Path
    finished: bool


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a command.

    Args:
        kind: ``stage1``, ``stage2``, ``score_unet`` (a given U-Net scored on val_dt when no
            search does it), ``stage3``, ``compare`` or ``evaluate`` (a row of
            :data:`iac_tf.pipeline.stages.STEPS`).
        title: how the console names it.
        skipped: why it does not run, else ``None``.
        record: the stage whose record (``stageN/config.yaml``) is written before it runs.
        seeds: the step is one unit that is seeded at its start here (Stage II's search); the
            steps that train :class:`~iac_tf.pipeline.units.TrainingUnit` s seed each unit at
            its start (:func:`~iac_tf.pipeline.units.train_unit`).
        units: what it trains.
        reads / writes: its inputs and outputs.
    """

    kind: str
    title: str
    skipped: str | None = None
    record: int | None = None
    seeds: bool = False
    units: tuple[Unit, ...] = ()
    reads: tuple[pathlib.Path, ...] = ()
    writes: tuple[pathlib.Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class Preflight:
    """The checks before anything is written (:func:`iac_tf.preflight.checked_prepare`), then
    the data preparation: folders; with ``stage`` 1 Stage I's (backbone, data shape, output
    space); with ``unet`` the trained U-Net against the data; ``genotypes``: the genotype files
    Stage III reads (:func:`stage3_units`), checked before it trains; ``missing``: why they
    cannot be found (the command stops with it once the stage records and the dataset passed,
    before the other checks)."""

    stage: int
    unet: bool = False
    genotypes: tuple[pathlib.Path, ...] = ()
    missing: str | None = None

    def describe(self) -> str:
        parts = ["folders"]
        if self.stage == 1:
            parts.append("Stage I's backbone, data and output space")
        if self.unet:
            parts.append("the trained U-Net against the data")
        if self.genotypes:
            parts.append("the genotypes Stage III trains")
        if self.missing:
            parts.append(f"the genotypes Stage III trains (missing: {self.missing.rstrip('.')})")
        return ", ".join(parts) + ", then the data preparation"


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What one command does, in order: ``checked_stages`` (the stage records this config must
    match), the dataset check (``checks_data``), ``preflight`` (``None``: no pre-flight, no data
    preparation up front), then, if ``writes_records``, ``--restart`` deletes ``removes``
    (``keeps`` survive) and the run records are written; then ``steps``."""

    command: str
    run_dir: pathlib.Path
    restart: int | None
    checked_stages: tuple[int, ...]
    checks_data: bool
    preflight: Preflight | None
    writes_records: bool
    removes: tuple[pathlib.Path, ...]
    keeps: tuple[pathlib.Path, ...]
    steps: tuple[Step, ...]

    def step(self, kind: str) -> Step | None:
        return next((s for s in self.steps if s.kind == kind), None)

    @property
    def runs(self) -> tuple[str, ...]:
        """The kinds of the steps that run."""
        return tuple(s.kind for s in self.steps if s.skipped is None)


# ---------------------------------------------------------------------------- decisions
def used_stages(cfg: ExperimentConfig, stage: int) -> tuple[int, ...]:
    """The stage folders whose results stage ``stage`` reads (and the stage itself)."""
    return tuple(s for s in range(1, stage + 1)
                 if not (s == 1 < stage and cfg.unet.pretrained)
                 and not (s == 2 < stage and cfg.stage3.genotype))


def refuse_restart_of_inputs(cfg: ExperimentConfig, stage: int, restart: int | None,
                             command: str) -> None:
    """``iac stageN --restart stageR`` with R < N would delete results stage N reads."""
    if restart is not None and restart < stage and restart in used_stages(cfg, stage):
        raise ConfigError(
            f"--restart stage{restart} would delete the {STAGE_NAMES[restart]} results that "
            f"{command} needs. Nothing was changed. Run every stage again from there with "
            f"`iac run CONFIG --restart stage{restart}`")


def skipped_stages(cfg: ExperimentConfig) -> dict[int, str]:
    """The stages ``iac run`` does not run, with the reason: Stage I when ``unet.pretrained``
    names the U-Net, Stage II when ``stage3.genotype`` names the genotype Stage III trains."""
    skipped = {}
    if cfg.unet.pretrained:
        skipped[1] = f"unet.pretrained is set: the U-Net is {cfg.unet.pretrained}"
    if cfg.method == "iac" and cfg.stage3.genotype:
        skipped[2] = (f"stage3.genotype is set: Stage III trains the genotype "
                      f"{cfg.stage3.genotype}, no search")
    return skipped


def stage3_genotype_path(cfg: ExperimentConfig) -> pathlib.Path:
    """``stage3.genotype`` if set, else Stage II's genotype of ``stage3.genotype_epoch`` (default:
    the last epoch searched)."""
    if cfg.stage3.genotype:
        return pathlib.Path(cfg.stage3.genotype)
    layout = RunLayout.of(cfg)
    if cfg.stage3.genotype_epoch is not None:
        path = layout.genotype(cfg.stage3.genotype_epoch)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no genotype for stage3.genotype_epoch="
                                    f"{cfg.stage3.genotype_epoch}")
        return path
    paths = layout.genotype_files()
    if not paths:
        raise FileNotFoundError(f"{layout.genotypes}: no genotypes. Run Stage II first or set "
                                "stage3.genotype.")
    return paths[-1]


def stage3_units(cfg: ExperimentConfig) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
    """The Stage III trainings of a run as ``(model name, genotype path, folder)``: one into
    ``stage3/`` (name ``iac``), or with ``stage3.genotype_epochs`` one per epoch into
    ``stage3/epoch_XXX/`` (name ``iac_epoch_XXX``); then one per ``stage3.extra_implant_modes``
    into ``compare/iac_<mode>/``. Every genotype must exist (checked here, before anything is
    trained)."""
    epochs, layout = cfg.stage3.genotype_epochs, RunLayout.of(cfg)
    missing = [e for e in epochs or () if not layout.genotype(e).exists()]
    if missing:
        stopped = (f"; the search stopped at epoch {len(layout.genotype_files())} "
                   "(stage2.stop_when_stable): list only epochs it reached"
                   if layout.search_done(cfg.stage2.epochs) else "")
        raise FileNotFoundError(f"stage3.genotype_epochs: no Stage II genotype for epoch(s) "
                                f"{missing} in {layout.genotypes}{stopped}; nothing was trained")
    genotypes = [layout.genotype(e) for e in epochs] if epochs else [stage3_genotype_path(cfg)]
    main = genotypes[0] if len(genotypes) == 1 else stage3_genotype_path(cfg)
    genotypes += [main] * len(cfg.stage3.extra_implant_modes)
    models = layout.stage3_models(epochs or (), cfg.stage3.extra_implant_modes)
    return [(m.name, genotype, m.folder) for m, genotype in zip(models, genotypes, strict=True)]


def _genotype_check(cfg: ExperimentConfig) -> dict:
    """The pre-flight's share of Stage III: the genotype files it trains (:func:`stage3_units`),
    each once, or why they cannot be found."""
    try:
        return {"genotypes": tuple(dict.fromkeys(g for _, g, _ in stage3_units(cfg)))}
    except FileNotFoundError as exc:
        return {"missing": str(exc)}


def build_plan(cfg: ExperimentConfig, command: str, restart: int | None = None,
               evaluate: bool = True) -> RunPlan:
    """The plan of ``iac <command> CONFIG [--restart stage<restart>]`` (``evaluate``: whether
    ``stage3`` and ``compare`` end with the evaluation). Refuses a ``--restart`` that deletes
    what the command reads, and a run folder that is not the tool's or whose records are cut
    off (:meth:`~iac_tf.run_layout.RunLayout.check_readable`: the plan reads them); reads, never
    writes."""
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {COMMANDS}, got {command!r}")
    if restart is not None and command == "evaluate":
        raise ConfigError("iac evaluate: --restart is not an option of the evaluation")
    stage = {"stage1": 1, "stage2": 2, "stage3": 3}.get(command)
    if stage is not None:
        refuse_restart_of_inputs(cfg, stage, restart, f"`iac {command}`")
    elif command == "compare":  # reads Stage I's U-Net
        refuse_restart_of_inputs(cfg, 2, restart, "`iac compare`")
    layout, unet = RunLayout.of(cfg), trained_unet(cfg)
    layout.check_ours()
    if command != "evaluate":
        layout.check_readable()
    removes, keeps = restart_plan(cfg, restart) if restart is not None else ([], [])
    state = _State(cfg, layout, unet, tuple(removes))
    last = 3 if (stage == 3 or (command in ("run", "evaluate") and cfg.method == "iac")) else 1
    checked = tuple(s for s in used_stages(cfg, stage or last) if restart is None or s < restart)
    active = command != "compare" or bool(cfg.comparisons)
    if command == "evaluate":
        steps = [_evaluate(state)]
    elif command == "run":
        steps = _run_steps(state)
    elif command == "compare":
        steps = [_compare(state)] + ([_evaluate(state)] if evaluate and active else [])
    else:
        steps = [(_stage1, _stage2, _stage3)[stage - 1](state)]
        steps += [_evaluate(state)] if stage == 3 and evaluate else []
    preflight = None
    if command == "run":
        preflight = _run_preflight(state)
    elif stage is not None or (command == "compare" and active):
        preflight = Preflight(stage or 3, unet=stage != 1,
                              **(_genotype_check(cfg) if stage == 3 else {}))
    return RunPlan(command, cfg.run_dir, restart, checked,
                   checks_data=active, preflight=preflight,
                   writes_records=active and command != "evaluate",
                   removes=tuple(removes), keeps=tuple(keeps), steps=tuple(steps))


@dataclasses.dataclass(frozen=True)
class _State:
    """What the plan decides from: the config, its run folder, the U-Net Stages II/III read
    (:func:`~iac_tf.run_layout.trained_unet`), and what the folder holds now, after
    ``--restart`` removed ``removed``."""

    cfg: ExperimentConfig
    layout: RunLayout
    unet: pathlib.Path
    removed: tuple[pathlib.Path, ...]

    def gone(self, folder: pathlib.Path) -> bool:
        return any(folder == r or r in folder.parents for r in self.removed)

    def unit(self, name: str, folder: pathlib.Path, epochs: int, export: bool = False) -> Unit:
        finished = not self.gone(folder) and self.layout.trained(folder, epochs, export) is not None
        return Unit(name, folder, finished)

    def searched(self) -> bool:
        return (not self.gone(self.layout.stage(2))
                and self.layout.search_done(self.cfg.stage2.epochs))


def _stage1(state: _State) -> Step:
    folder, cfg = state.layout.stage(1), state.cfg
    return Step("stage1", STAGE_NAMES[1], record=1,
                units=(state.unit("unet", folder, cfg.stage1.epochs),),
                reads=(pathlib.Path(cfg.data.root),), writes=(folder,))


def _stage2(state: _State) -> Step:
    folder = state.layout.stage(2)
    return Step("stage2", STAGE_NAMES[2], record=2, seeds=True,
                units=(Unit("search", folder, state.searched()),),
                reads=(state.unet,), writes=(folder,))


def _stage3(state: _State) -> Step:
    layout, s3 = state.layout, state.cfg.stage3
    units = [state.unit(m.name, m.folder, s3.epochs, s3.export_savedmodel and m.iac)
             for m in layout.stage3_models(s3.genotype_epochs or (), s3.extra_implant_modes,
                                           state.cfg.evaluation.unet_continued)]
    genotypes = pathlib.Path(s3.genotype) if s3.genotype else layout.genotypes
    return Step("stage3", STAGE_NAMES[3], record=3, units=tuple(units),
                reads=(state.unet, genotypes),
                writes=(layout.stage(3), *(u.folder for u in units[1:]
                                           if u.folder.parent == layout.compare_root)))


def _compare(state: _State) -> Step:
    units = tuple(state.unit(m, state.layout.compare(m), state.cfg.stage3.epochs)
                  for m in state.cfg.comparisons)
    return Step("compare", "comparisons", skipped=None if units else NO_COMPARISONS,
                units=units, reads=(state.unet,), writes=tuple(u.folder for u in units))


def _evaluate(state: _State) -> Step:
    return Step("evaluate", "evaluation", reads=(state.layout.models_index, state.unet),
                writes=(state.layout.evaluation,))


def _run_steps(state: _State) -> list[Step]:
    """``iac run``: Stages I (unless ``unet.pretrained``), II and III (if ``method`` is
    ``iac``; Stage II unless ``stage3.genotype``; a given U-Net is scored before Stage III when
    no search does it), the comparisons, the evaluation."""
    cfg = state.cfg
    skipped = skipped_stages(cfg)
    makers = {1: _stage1, 2: _stage2, 3: _stage3}
    steps = []
    for stage in (1, 2, 3) if cfg.method == "iac" else (1,):
        if stage == 3 and 2 in skipped and cfg.unet.pretrained:
            steps.append(Step("score_unet", "the given U-Net", reads=(state.unet,),
                              writes=(state.layout.unet_score,)))
        step = makers[stage](state)
        steps.append(dataclasses.replace(step, skipped=skipped.get(stage)))
    return steps + [_compare(state), _evaluate(state)]


def _run_preflight(state: _State) -> Preflight:
    """``iac run``'s one pre-flight: Stage I's checks when it will train the U-Net, else the
    trained U-Net against the data (and the genotypes Stage III will read when Stage II will
    not write them)."""
    cfg = state.cfg
    if not cfg.unet.pretrained and not state.unit("unet", state.layout.stage(1),
                                                  cfg.stage1.epochs).finished:
        return Preflight(1)
    iac = cfg.method == "iac"
    searches = iac and not cfg.stage3.genotype and not state.searched()
    return Preflight(2 if searches else 3, unet=True,
                     **(_genotype_check(cfg) if iac and not searches else {}))


# ---------------------------------------------------------------------------- --plan
def format_plan(plan: RunPlan) -> str:
    """The plan as the console shows it (``iac <command> CONFIG --plan``)."""
    root = plan.run_dir

    def rel(path: pathlib.Path) -> str:
        try:
            return str(path.relative_to(root)) + ("/" if not path.suffix else "")
        except ValueError:
            return str(path)

    restart = f" --restart stage{plan.restart}" if plan.restart is not None else ""
    lines = [f"plan of `iac {plan.command}{restart}` for {root} (nothing has run or been "
             "written):"]
    checks = ["the run folder is this tool's"]
    if plan.checked_stages:
        checks.append("the config against the records of "
                      + ", ".join(STAGE_NAMES[s] for s in plan.checked_stages))
    if plan.checks_data:
        checks.append("the dataset against the run's record")
    if plan.preflight is not None:
        checks.append(plan.preflight.describe())
    lines.append("checks first: " + "; ".join(checks))
    if plan.restart is not None:
        lines.append(f"--restart stage{plan.restart} removes: "
                     + (", ".join(rel(p) for p in plan.removes) or "nothing")
                     + "; keeps: " + (", ".join(rel(p) for p in plan.keeps) or "nothing"))
    if plan.writes_records:
        lines.append(f"records: {CONFIG}, {VERSION}, {DATA_RECORD}"
                     f", stageN/{CONFIG} before each stage")
    lines.append("steps:")
    for i, step in enumerate(plan.steps, 1):
        if step.skipped is not None:
            lines.append(f"  {i}. {step.title}: skipped: {step.skipped}")
            continue
        lines.append(f"  {i}. {step.title}: reads {', '.join(rel(p) for p in step.reads)}; "
                     f"writes {', '.join(rel(p) for p in step.writes) or 'nothing'}")
        for unit in step.units:
            state = "finished, skipped" if unit.finished else "trains (resumes if interrupted)"
            lines.append(f"       {unit.name} -> {rel(unit.folder)}: {state}")
    return "\n".join(lines)

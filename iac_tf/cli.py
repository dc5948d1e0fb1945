"""``iac``: a thin command line over :mod:`iac_tf.pipeline` and :mod:`iac_tf.data`.

    iac run CONFIG.yaml                 Stages I, II and III, then the evaluation
    iac stage1|stage2|stage3 CONFIG.yaml
    iac compare CONFIG.yaml             train the comparison methods (`compare:`), then evaluate
    iac evaluate CONFIG.yaml            per-case Dice table + statistics: U-Net vs every model
    iac data prepare CONFIG.yaml        build the slice cache and splits, print a summary
    iac data check DATASET_DIR          validate a dataset folder
    iac doctor CONFIG.yaml              every pre-flight check (data, U-Net, genotype, folders,
                                        free space, GPU) as a table; exit 2 if one fails
    iac predict MODEL INPUT... OUTPUT   NIfTI scans in, label NIfTIs out (see iac_tf/inference)
    iac export MODEL OUT                TF-Serving SavedModel OUT/1/ (signature serving_default)
    iac evaluate-folder GT PRED         Dice, IoU, precision, recall, NSD, HD95 per case and class
    iac report RUN_DIR... --out DIR     the paper's tables, statistics and figures over runs
    iac grid GRID.yaml [--dry-run]      run the dataset x backbone grid (experiments/paper/)
    iac adopt RUN_DIR                   mark a run folder written before runs were marked

``--set KEY=VALUE`` (repeatable) overrides a config value, e.g. ``--set stage1.epochs=2``.
``--restart stageN`` clears that stage's folder and every later one before running.
``--plan`` prints what the command would do (steps, skipped ones and why, units, checks, what
``--restart`` removes and keeps) and exits before anything runs or is written.
``--verbose`` shows TensorFlow's start-up and library messages (hidden by default).

Commands are rows of :data:`COMMANDS` (name -> :class:`Command`); a command's handler imports
what it needs, so ``iac --help`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Callable

import yaml

from iac_tf.config import ConfigError, parse_yaml
from iac_tf.console import log_to_console
from iac_tf.errors import PrepareInterrupted, UserError
from iac_tf.inference import cli as inference_cli


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"iac: --set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = parse_yaml(value)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", "") or exc).split())
            raise ConfigError(f"--set {item}: the value is not valid YAML ({problem}); quote "
                              "it, e.g. --set 'stage3.genotype_epochs=[25, 50]'") from None
    return out


def _restart_stage(value: str) -> int:
    if value not in ("stage1", "stage2", "stage3"):
        raise argparse.ArgumentTypeError(f"expected stage1, stage2 or stage3, got {value!r}")
    return int(value[-1])


def _config_args(parser: argparse.ArgumentParser, restart: bool = False,
                 plan: bool = False) -> None:
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    if restart:
        parser.add_argument("--restart", type=_restart_stage, metavar="stageN",
                            help="delete the results of stage N and every later stage, then run")
    if plan:
        parser.add_argument("--plan", action="store_true",
                            help="print the plan (steps, skipped ones and why, units, checks, "
                                 "what --restart removes and keeps) and exit; nothing runs or "
                                 "is written")


def _print_plan(args, command: str) -> int:
    """``--plan``: the command's run plan (:mod:`iac_tf.pipeline.plan`), nothing run."""
    from iac_tf.pipeline.plan import build_plan, format_plan

    print(format_plan(build_plan(_load(args), command, getattr(args, "restart", None))))
    return 0


def _load(args):
    from iac_tf.config.experiment import load_experiment

    return load_experiment(args.config, _parse_sets(args.set))


def _stage(function: str, command: str) -> Callable[[argparse.Namespace], int]:
    def handler(args) -> int:
        if args.plan:
            return _print_plan(args, command)
        from iac_tf import pipeline

        getattr(pipeline, function)(_load(args), restart=args.restart)
        return 0

    return handler


def _evaluate(args) -> int:
    if args.plan:
        return _print_plan(args, "evaluate")
    from iac_tf import pipeline

    pipeline.evaluate(_load(args))  # prints the table it writes
    return 0


def _data_prepare(args) -> int:
    from iac_tf import pipeline

    print(pipeline.prepare(_load(args)).summary())
    return 0


def _doctor(args) -> int:
    from iac_tf.preflight import FAIL, doctor, format_table

    rows = doctor(_load(args))
    print(format_table(rows))
    return 2 if any(r.status == FAIL for r in rows) else 0


def _os_message(exc: OSError) -> str:
    """``PATH: reason`` of an OS error (``[Errno N]`` dropped)."""
    if exc.filename is not None and exc.strerror:
        other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{other}: {exc.strerror}"
    return exc.strerror if exc.strerror and exc.errno is not None else str(exc)


def _data_check(args) -> int:
    from iac_tf.data import check_dataset

    print(check_dataset(args.dataset_dir, format=args.format))
    return 0


def _data_check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_dir")
    parser.add_argument("--format", default=None, help="dataset format (default: detected)")


def _report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folders (or folders of runs, e.g. runs/); absent ones are listed as "
                             "missing; one run per dataset x backbone setting")
    parser.add_argument("--out", required=True,
                        help="output folder (report.md, report.html, tables/, figures/): new, empty or "
                             "a report written before by iac report (it is replaced whole)")
    parser.add_argument("--no-overlays", action="store_true",
                        help="skip the image overlays (no data or models loaded)")
    parser.add_argument("--slices", type=inference_cli.positive_int, default=3,
                        help="val_dt slices per overlay figure, at least 1 (default 3)")


def _report(args) -> int:
    from iac_tf.reporting.report import build_report

    build_report(args.run_dirs, args.out, overlays=not args.no_overlays, n_slices=args.slices)
    return 0


def _adopt_args(parser: argparse.ArgumentParser) -> None:
    from iac_tf.run_layout import CONFIG, OLD_RUN_FILES

    parser.add_argument("run_dir", help="a run folder written before runs were marked "
                        f"({CONFIG} beside {' or '.join(OLD_RUN_FILES)})")


def _adopt(args) -> int:
    from iac_tf.run_layout import RunLayout

    listed = RunLayout(args.run_dir).adopt()
    print(f"{args.run_dir}: adopted as a run of this tool ({len(listed)} files listed as its own)")
    return 0


def _grid_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grid", help="grid YAML (e.g. experiments/paper/grid.yaml)")
    parser.add_argument("--dataset", help="only this dataset (a key of the grid's datasets)")
    parser.add_argument("--backbone", help="only this backbone")
    parser.add_argument("--data-root", help="data.root of the selected dataset(s) (e.g. /data/ACDC)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan, the estimated work and the check of every setting only")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value in every setting")
    parser.add_argument("--shard", metavar="K/N",
                        help="only the K-th of N disjoint shards of the settings (1-based; e.g. a "
                             "Slurm array task: --shard ${SLURM_ARRAY_TASK_ID}/N)")
    parser.add_argument("--take-next", action="store_true",
                        help="keep taking the next setting no other worker has claimed until none "
                             "is left (N workers share one grid on a shared file system)")


def _grid(args) -> int:
    from iac_tf import grid as grid_lib

    sets = _parse_sets(args.set)
    if args.data_root:
        sets["data.root"] = args.data_root
    items = grid_lib.settings(grid_lib.load_grid(args.grid), args.dataset, args.backbone, sets)
    if args.shard is not None:  # --shard "" is a mistake, not "every setting"
        items = grid_lib.shard(items, args.shard)
        print(f"shard {args.shard}: {len(items)} setting(s)", flush=True)
    print(grid_lib.plan(items), flush=True)
    problems = grid_lib.problems(items)
    for problem in problems:
        print(f"config check: {problem}")
    if problems:
        print(f"iac: error: {len(problems)} of {len(items)} grid setting(s) not valid (listed above); "
              + ("fix them before running the grid" if args.dry_run else "no setting was started"),
              file=sys.stderr)
        return 2
    if args.dry_run:
        print("config check: every setting's config is valid and every setting to run has its data.root")
        return 0
    failed = [name for name, rc in grid_lib.run_grid(items, take_next=args.take_next) if rc != 0]
    if failed:
        print(f"iac: error: {len(failed)} setting(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``iac`` subcommand: its help line, its arguments and its handler (``args -> exit
    status``; it imports what it needs)."""

    help: str
    handler: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _config_args
    tensorflow: bool = True  # the handler needs TensorFlow (imported quietly first)


COMMANDS: dict[str, Command] = {
    "run": Command("run Stages I, II and III and the evaluation", _stage("run_all", "run"),
                   lambda p: _config_args(p, restart=True, plan=True)),
    "stage1": Command("Stage I: train the reference U-Net", _stage("run_stage1", "stage1"),
                      lambda p: _config_args(p, restart=True, plan=True)),
    "stage2": Command("Stage II: search the IAC architecture", _stage("run_stage2", "stage2"),
                      lambda p: _config_args(p, restart=True, plan=True)),
    "stage3": Command("Stage III: train the discrete IAC in the U-Net, export, evaluate",
                      _stage("run_stage3", "stage3"),
                      lambda p: _config_args(p, restart=True, plan=True)),
    "compare": Command("train the comparison methods of `compare:` on the frozen U-Net, evaluate",
                       _stage("run_compare", "compare"),
                       lambda p: _config_args(p, restart=True, plan=True)),
    "evaluate": Command("per-case Dice table and statistics: U-Net vs every trained model",
                        _evaluate, lambda p: _config_args(p, plan=True)),
    # whole scans (handlers and arguments in iac_tf/inference/cli.py, no TF at import)
    "predict": Command("predict label NIfTIs of NIfTI scans", inference_cli.predict,
                       inference_cli.predict_args),
    "export": Command("TF-Serving SavedModel OUT/1/ (signature serving_default)",
                      inference_cli.export, inference_cli.export_args),
    "evaluate-folder": Command("Dice, IoU, precision, recall, NSD, HD95 of label NIfTIs: GT PRED",
                               inference_cli.evaluate_folder, inference_cli.evaluate_folder_args,
                               tensorflow=False),
    "report": Command("the paper's tables, statistics and figures over runs", _report, _report_args),
    "grid": Command("run the dataset x backbone grid, skipping finished runs", _grid, _grid_args),
    "adopt": Command("mark a run folder written before runs were marked as a run of this tool",
                     _adopt, _adopt_args, tensorflow=False),
    "doctor": Command("check data, U-Net, genotype, folders, free space and GPU; print a table",
                      _doctor),
}

#: Commands that train and resume from their last finished epoch after an interruption.
TRAINING_COMMANDS = ("run", "stage1", "stage2", "stage3", "compare", "grid")

#: ``iac data ...`` subcommands
DATA_COMMANDS: dict[str, Command] = {
    "prepare": Command("build the slice cache and splits", _data_prepare),
    "check": Command("validate a dataset folder", _data_check, _data_check_args, tensorflow=False),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iac", description="Implantable Adaptive Cells for trained U-Nets")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and library messages (hidden by default)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        _add_command(sub, name, command)
    data = sub.add_parser("data", help="data preparation and checks")
    dsub = data.add_subparsers(dest="data_command", required=True)
    for name, command in DATA_COMMANDS.items():
        _add_command(dsub, name, command)
    return parser


def _add_command(sub, name: str, command: Command) -> None:
    parser = sub.add_parser(name, help=command.help)
    command.add_arguments(parser)
    # also accepted after the command (iac run CONFIG --verbose)
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)


def quiet_tensorflow(verbose: bool) -> None:
    """Hide TensorFlow's library warnings ("compiled metrics have yet to be built", ...) and its
    C++ info/warning lines unless ``verbose`` (an explicit ``TF_CPP_MIN_LOG_LEVEL`` is
    respected). Must run before TensorFlow is imported."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices with the process' stderr (file descriptor 2)
    sent to a temporary file: TF 2.21 writes its start-up lines (oneDNN notices, "Could not find
    cuda drivers", cuInit errors on CPU machines) before its logging is set up, ignoring
    ``TF_CPP_MIN_LOG_LEVEL``. If the import fails, what it wrote is shown. Afterwards the
    library loggers are quietened again: in an interactive session (Jupyter, ``python -i``)
    TensorFlow sets its logger to INFO on stdout while it loads."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            from iac_tf._keras import tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    quiet_tensorflow(verbose=False)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    log_to_console()
    if args.command == "data":
        command = DATA_COMMANDS[args.data_command]
    else:
        command = COMMANDS[args.command]
    try:
        # --plan builds and prints the plan only (no TensorFlow)
        if command.tensorflow and not args.verbose and not getattr(args, "plan", False):
            import_tensorflow_quietly()
        return command.handler(args)
    except UserError as exc:  # the project's own errors; anything else is a bug: traceback
        print(f"iac: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # missing / read-only / full disk / not a folder: name the path
        print(f"iac: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except PrepareInterrupted:
        print("iac: interrupted during data preparation; the partial cache file was removed. "
              "Rerun the same command to prepare the data again.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if args.command in TRAINING_COMMANDS:
            print("iac: interrupted; rerun the same command to resume from the last finished "
                  "epoch", file=sys.stderr)
        else:
            print("iac: interrupted; files are written whole, so none is half-written; rerun "
                  "the same command to write the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

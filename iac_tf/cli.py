"""``iac``: a thin command line over :mod:`iac_tf.pipeline` and :mod:`iac_tf.data`.

    iac run CONFIG.yaml                 Stages I, II and III, then the evaluation
    iac stage1|stage2|stage3 CONFIG.yaml
    iac evaluate CONFIG.yaml            per-case Dice table + statistics of U-Net vs IAC U-Net
    iac data prepare CONFIG.yaml        build the slice cache and splits, print a summary
    iac data check DATASET_DIR          validate a dataset folder
    iac doctor CONFIG.yaml              every pre-flight check (data, U-Net, genotype, folders,
                                        free space, GPU) as a table; exit 2 if one fails

``--set KEY=VALUE`` (repeatable) overrides a config value, e.g. ``--set stage1.epochs=2``.
``--restart stageN`` clears that stage's folder and every later one before running.
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


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"iac: --set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _restart_stage(value: str) -> int:
    if value not in ("stage1", "stage2", "stage3"):
        raise argparse.ArgumentTypeError(f"expected stage1, stage2 or stage3, got {value!r}")
    return int(value[-1])


def _config_args(parser: argparse.ArgumentParser, restart: bool = False) -> None:
    parser.add_argument("config", help="experiment YAML")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    if restart:
        parser.add_argument("--restart", type=_restart_stage, metavar="stageN",
                            help="delete the results of stage N and every later stage, then run")


def _load(args):
    from iac_tf.experiment import load_experiment

    return load_experiment(args.config, _parse_sets(args.set))


def _stage(function: str) -> Callable[[argparse.Namespace], int]:
    def handler(args) -> int:
        from iac_tf import pipeline

        getattr(pipeline, function)(_load(args), restart=args.restart)
        return 0

    return handler


def _evaluate(args) -> int:
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


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``iac`` subcommand: its help line, its arguments and its handler (``args -> exit
    status``; it imports what it needs)."""

    help: str
    handler: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _config_args


COMMANDS: dict[str, Command] = {
    "run": Command("run Stages I, II and III and the evaluation", _stage("run_all"),
                   lambda p: _config_args(p, restart=True)),
    "stage1": Command("Stage I: train the reference U-Net", _stage("run_stage1"),
                      lambda p: _config_args(p, restart=True)),
    "stage2": Command("Stage II: search the IAC architecture", _stage("run_stage2"),
                      lambda p: _config_args(p, restart=True)),
    "stage3": Command("Stage III: train the discrete IAC in the U-Net, export, evaluate",
                      _stage("run_stage3"), lambda p: _config_args(p, restart=True)),
    "evaluate": Command("per-case Dice table and statistics: U-Net vs IAC U-Net", _evaluate),
    "doctor": Command("check data, U-Net, genotype, folders, free space and GPU; print a table",
                      _doctor),
}

#: ``iac data ...`` subcommands
DATA_COMMANDS: dict[str, Command] = {
    "prepare": Command("build the slice cache and splits", _data_prepare),
    "check": Command("validate a dataset folder", _data_check, _data_check_args),
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
    """Hide TensorFlow's start-up noise (cuInit errors on CPU machines, oneDNN notices) and its
    library warnings ("compiled metrics have yet to be built", ...) unless ``verbose``. Must run
    before TensorFlow is imported; an explicit ``TF_CPP_MIN_LOG_LEVEL`` is respected."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    if args.command == "data":
        command = DATA_COMMANDS[args.data_command]
    else:
        command = COMMANDS[args.command]
    from iac_tf.config import ConfigError
    from iac_tf.data.config import PrepareInterrupted

    try:
        return command.handler(args)
    except (ConfigError, ValueError) as exc:
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
        print("iac: interrupted; rerun the same command to resume from the last finished epoch",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

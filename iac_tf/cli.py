"""``iac``: a thin command line over :mod:`iac_tf.pipeline` and :mod:`iac_tf.data`.

    iac run CONFIG.yaml                 Stages I, II and III, then the evaluation
    iac stage1|stage2|stage3 CONFIG.yaml
    iac evaluate CONFIG.yaml            Dice table + statistics of U-Net vs IAC U-Net
    iac data prepare CONFIG.yaml        build the slice cache and splits, print a summary
    iac data check DATASET_DIR          validate a dataset folder
    iac doctor CONFIG.yaml              every pre-flight check (data, U-Net, genotype, folders,
                                        free space, GPU) as a table; exit 2 if one fails

``--set KEY=VALUE`` (repeatable) overrides a config value, e.g. ``--set stage1.epochs=2``.
"""

from __future__ import annotations

import argparse
import sys

import yaml


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"iac: --set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _os_message(exc: OSError) -> str:
    """``PATH: reason`` of an OS error (``[Errno N]`` dropped)."""
    if exc.filename is not None and exc.strerror:
        other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{other}: {exc.strerror}"
    return exc.strerror if exc.strerror and exc.errno is not None else str(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iac", description="Implantable Adaptive Cells for trained U-Nets")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("run", "run Stages I, II and III and the evaluation"),
        ("stage1", "Stage I: train the reference U-Net"),
        ("stage2", "Stage II: search the IAC architecture"),
        ("stage3", "Stage III: train the discrete IAC in the U-Net, export, evaluate"),
        ("evaluate", "Dice table and statistics: U-Net vs IAC U-Net"),
        ("doctor", "check data, U-Net, genotype, folders, free space and GPU; print a table"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("config", help="experiment YAML")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    data = sub.add_parser("data", help="data preparation and checks")
    dsub = data.add_subparsers(dest="data_command", required=True)
    prep = dsub.add_parser("prepare", help="build the slice cache and splits")
    prep.add_argument("config", help="experiment YAML (its data: section is used)")
    prep.add_argument("--set", action="append", metavar="KEY=VALUE")
    check = dsub.add_parser("check", help="validate a dataset folder")
    check.add_argument("dataset_dir")
    check.add_argument("--format", default=None, help="dataset format (default: detected)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from iac_tf.config import ConfigError
    from iac_tf.data.config import PrepareInterrupted

    try:
        if args.command == "data" and args.data_command == "check":
            from iac_tf.data import check_dataset

            print(check_dataset(args.dataset_dir, format=args.format))
            return 0
        from iac_tf import pipeline
        from iac_tf.experiment import load_experiment

        cfg = load_experiment(args.config, _parse_sets(args.set))
        if args.command == "data":
            print(pipeline.prepare(cfg).summary())
        elif args.command == "run":
            pipeline.run_all(cfg)
        elif args.command == "stage1":
            pipeline.run_stage1(cfg)
        elif args.command == "stage2":
            pipeline.run_stage2(cfg)
        elif args.command == "stage3":
            pipeline.run_stage3(cfg)
        elif args.command == "evaluate":
            pipeline.evaluate(cfg)
        elif args.command == "doctor":
            from iac_tf.preflight import FAIL, doctor, format_table

            rows = doctor(cfg)
            print(format_table(rows))
            return 2 if any(r.status == FAIL for r in rows) else 0
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

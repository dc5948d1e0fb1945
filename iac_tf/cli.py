"""``iac``: a thin command line over :mod:`iac_tf.pipeline` and :mod:`iac_tf.data`.

    iac run CONFIG.yaml                 Stages I, II and III, then the evaluation
    iac stage1|stage2|stage3 CONFIG.yaml
    iac evaluate CONFIG.yaml            Dice table + statistics of U-Net vs IAC U-Net
    iac data prepare CONFIG.yaml        build the slice cache and splits, print a summary
    iac data check DATASET_DIR          validate a dataset folder
    iac report RUN_DIR... --out DIR     the paper's tables, statistics and figures over runs
    iac grid GRID.yaml [--dry-run]      run the dataset x backbone grid (experiments/paper/)

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iac", description="Implantable Adaptive Cells for trained U-Nets")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [
        ("run", "run Stages I, II and III and the evaluation"),
        ("stage1", "Stage I: train the reference U-Net"),
        ("stage2", "Stage II: search the IAC architecture"),
        ("stage3", "Stage III: train the discrete IAC in the U-Net, export, evaluate"),
        ("evaluate", "Dice table and statistics: U-Net vs IAC U-Net"),
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
    _add_report_grid(sub)
    return parser


def _add_report_grid(sub) -> None:
    rep = sub.add_parser("report", help="tables, statistics and figures over finished runs")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                     help="run folders (or folders of runs, e.g. runs/); absent ones are listed as missing")
    rep.add_argument("--out", required=True, help="output folder (report.md, report.html, tables/, figures/)")
    rep.add_argument("--no-overlays", action="store_true", help="skip the image overlays (no data or models loaded)")
    rep.add_argument("--slices", type=int, default=3, help="val_dt slices per overlay figure (default 3)")
    grid = sub.add_parser("grid", help="run the dataset x backbone grid, skipping finished runs")
    grid.add_argument("grid", help="grid YAML (e.g. experiments/paper/grid.yaml)")
    grid.add_argument("--dataset", help="only this dataset (a key of the grid's datasets)")
    grid.add_argument("--backbone", help="only this backbone")
    grid.add_argument("--data-root", help="data.root of the selected dataset(s) (e.g. /data/ACDC)")
    grid.add_argument("--dry-run", action="store_true", help="print the plan and the estimated work only")
    grid.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value in every setting")


def _report_grid(args) -> int:
    from iac_tf.config import ConfigError

    if args.command == "report":
        from iac_tf.reporting.report import build_report

        build_report(args.run_dirs, args.out, overlays=not args.no_overlays, n_slices=args.slices)
        return 0
    from iac_tf import grid as grid_lib

    sets = _parse_sets(args.set)
    if args.data_root:
        sets["data.root"] = args.data_root
    items = grid_lib.settings(grid_lib.load_grid(args.grid), args.dataset, args.backbone, sets)
    print(grid_lib.plan(items), flush=True)
    if args.dry_run:
        try:
            grid_lib.validate(items)
            print("config check: every setting's config is valid")
        except ConfigError as exc:
            print(f"config check: {exc}")
        return 0
    failed = [name for name, rc in grid_lib.run_grid(items) if rc != 0]
    if failed:
        print(f"iac: error: {len(failed)} setting(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from iac_tf.config import ConfigError

    try:
        if args.command == "data" and args.data_command == "check":
            from iac_tf.data import check_dataset

            print(check_dataset(args.dataset_dir, format=args.format))
            return 0
        if args.command in ("report", "grid"):
            return _report_grid(args)
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
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"iac: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iac: interrupted; rerun the same command to resume from the last finished epoch",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

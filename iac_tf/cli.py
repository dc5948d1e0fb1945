"""``iac``: a thin command line over :mod:`iac_tf.pipeline` and :mod:`iac_tf.data`.

    iac run CONFIG.yaml                 Stages I, II and III, then the evaluation
    iac stage1|stage2|stage3 CONFIG.yaml
    iac evaluate CONFIG.yaml            Dice table + statistics of U-Net vs IAC U-Net
    iac data prepare CONFIG.yaml        build the slice cache and splits, print a summary
    iac data check DATASET_DIR          validate a dataset folder
    iac predict MODEL INPUT... OUTPUT   NIfTI scans in, label NIfTIs out (see iac_tf/inference)
    iac export MODEL OUT                TF-Serving SavedModel OUT/1/ (signature serving_default)
    iac evaluate-folder PRED_DIR GT_DIR Dice and HD95 (mm) per case and class of label NIfTIs

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
    _add_inference_parsers(sub)
    return parser


def _add_inference_parsers(sub) -> None:
    """``predict``, ``export`` and ``evaluate-folder`` (run by :func:`iac_tf.inference.cli.run_inference_command`)."""
    pred = sub.add_parser("predict", help="predict label NIfTIs of NIfTI scans")
    pred.add_argument("model", help="run folder, .keras/.h5 file or SavedModel folder")
    pred.add_argument("inputs", nargs="+", metavar="INPUT",
                      help="a NIfTI volume, the channel files of one case, or an imagesTs folder")
    pred.add_argument("output", help="output folder (or a .nii.gz file for one case)")
    pred.add_argument("--stage", type=int, choices=(1, 3), default=3,
                      help="3: the IAC U-Net (default), 1: the U-Net")
    pred.add_argument("--method", default=None, help="a model name of the run's models.json")
    pred.add_argument("--save-probabilities", action="store_true",
                      help="also write CASE_probabilities.nii.gz (X, Y, Z, classes)")
    pred.add_argument("--config", default=None, help="run config.yaml (default: the run's)")
    pred.add_argument("--modality", action="append", default=None,
                      help="channel modality (CT or an MRI name), overrides dataset.json")
    pred.add_argument("--batch-size", type=int, default=32)
    exp = sub.add_parser("export", help="TF-Serving SavedModel with signature serving_default")
    exp.add_argument("model", help="run folder, .keras/.h5 file or SavedModel folder")
    exp.add_argument("out", help="export folder (the model goes to OUT/1/)")
    exp.add_argument("--stage", type=int, choices=(1, 3), default=3)
    exp.add_argument("--method", default=None)
    exp.add_argument("--config", default=None)
    ev = sub.add_parser("evaluate-folder", help="Dice and HD95 of label NIfTIs vs ground truth")
    ev.add_argument("pred_dir")
    ev.add_argument("gt_dir")
    ev.add_argument("--dataset-json", default=None, help="score its (overlapping) regions")
    ev.add_argument("--out", default=None, help="where the CSV/JSON go (default: PRED_DIR)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from iac_tf.config import ConfigError

    try:
        if args.command == "data" and args.data_command == "check":
            from iac_tf.data import check_dataset

            print(check_dataset(args.dataset_dir, format=args.format))
            return 0
        if args.command in ("predict", "export", "evaluate-folder"):
            from iac_tf.inference.cli import run_inference_command

            return run_inference_command(args)
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

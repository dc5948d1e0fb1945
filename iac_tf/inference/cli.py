"""``iac predict | export | evaluate-folder``: arguments and handlers over
:mod:`iac_tf.inference.api` and :mod:`iac_tf.evaluation.volumetric` (rows of
:data:`iac_tf.cli.COMMANDS`). Handlers import what they need: no TensorFlow at import."""

from __future__ import annotations

import argparse
import pathlib
import time


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer (1 or more)")
    return value


def step_size(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1] (a fraction of the window)")
    return value


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, .keras/.h5 file or SavedModel folder")


def _selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", type=int, choices=(1, 3), default=None,
                        help="3: the IAC U-Net (default), 1: the U-Net (not with --method)")
    from iac_tf.run_layout import CONFIG, MODELS_INDEX

    parser.add_argument("--method", default=None, help=f"a model name of the run's {MODELS_INDEX}")
    parser.add_argument("--config", default=None, help=f"run {CONFIG} (default: the run's)")


def predict_args(parser: argparse.ArgumentParser) -> None:
    _model_args(parser)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="a NIfTI volume, the channel files of one case, or an imagesTs folder")
    parser.add_argument("output", help="output folder (or a .nii.gz file for one case); existing "
                        "files are replaced only if they are earlier predictions of this tool")
    _selection_args(parser)
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write CASE_probabilities.nii.gz (X, Y, Z, classes; a softmax "
                        "model's background first)")
    parser.add_argument("--modality", action="append", default=None,
                        help="channel modality (CT or an MRI name), overrides dataset.json")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="windows per model call (default 32)")
    parser.add_argument("--step-size", type=step_size, default=0.5,
                        help="largest step between sliding windows as a fraction of the window, "
                        "in (0, 1] (default 0.5, as nnU-Net; smaller: more overlap, slower)")
    parser.add_argument("--no-tta", "--disable-tta", dest="tta", action="store_false",
                        help="no mirroring test-time augmentation (default: on, as nnU-Net: "
                        "each window also mirrored along both in-plane axes, 4x the model calls)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="where the model runs (default auto: a GPU when TensorFlow sees one)")


def export_args(parser: argparse.ArgumentParser) -> None:
    _model_args(parser)
    parser.add_argument("out", help="export folder: new, empty or an earlier export; the model "
                        "goes to the next version OUT/N/ (OUT/1/ in a new folder)")
    _selection_args(parser)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not a distance >= 0")
    return value


def evaluate_folder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt_pos", nargs="?", metavar="GT",
                        help="ground-truth folder (CASE.nii.gz); nnU-Net's order: GT PRED")
    parser.add_argument("pred_pos", nargs="?", metavar="PRED",
                        help="prediction folder; given by position it must hold predictions of "
                        "iac predict (use --pred for other tools' predictions)")
    parser.add_argument("--gt", default=None, help="ground-truth folder (instead of GT)")
    parser.add_argument("--pred", default=None, help="prediction folder (instead of PRED)")
    parser.add_argument("--dataset-json", default=None, help="class names and (overlapping) "
                        "regions (default: a dataset.json in GT or beside it)")
    parser.add_argument("--nsd-tolerance", type=non_negative_float, default=1.0, metavar="MM",
                        help="tolerance of the normalised surface Dice in mm (default 1.0)")
    parser.add_argument("--out", default=None, help="where the CSV/JSON go (default: PRED; "
                        "never inside GT)")


def predict(args) -> int:
    from iac_tf.inference.api import predict as run_predict
    from iac_tf.inference.predict import format_summary

    summary = run_predict(args.model, args.inputs, args.output, stage=args.stage,
                          method=args.method, config=args.config, modality=args.modality,
                          save_probabilities=args.save_probabilities,
                          batch_size=args.batch_size, step_size=args.step_size, tta=args.tta,
                          device=args.device)
    print(format_summary(summary))
    print(f"labels written to {pathlib.Path(args.output)} (mirroring "
          f"{'on' if args.tta else 'off'}, step size {args.step_size:g}, Gaussian blending, "
          f"device {args.device})")
    return 0


def export(args) -> int:
    from iac_tf.inference.api import export as run_export

    check = run_export(args.model, args.out, stage=args.stage, method=args.method,
                       config=args.config)
    out = pathlib.Path(args.out)
    served = out / str(check["version"])
    print(f"exported {served} (signature serving_default: image -> probabilities, labels); "
          f"reloaded with tf.saved_model.load: max |difference| to the Keras model "
          f"{check['max_abs_difference']:.2e}, labels equal; preprocessing the caller must "
          f"apply: {check.get('recipe', out / 'preprocessing.json')}, as code: "
          f"iac_tf.inference.client.predict_nifti(scan, {str(out)!r}); TF Serving now serves "
          f"version {check['version']}: {served}")
    return 0


def evaluate_folder_roles(args) -> tuple[str, str, bool]:
    """``(gt, pred, pred_by_position)`` of the arguments: each folder given once, by position
    (``GT PRED``) or by ``--gt`` / ``--pred``."""
    from iac_tf.errors import UserError

    positional = [p for p in (args.gt_pos, args.pred_pos) if p is not None]
    if args.gt is not None and args.pred is not None and not positional:
        return args.gt, args.pred, False
    if args.gt is None and args.pred is None and len(positional) == 2:
        return args.gt_pos, args.pred_pos, True
    if args.gt is None and args.pred is not None and len(positional) == 1:
        return args.gt_pos, args.pred, False
    raise UserError("evaluate-folder: give the ground-truth and the prediction folder once each, "
                    "as GT PRED (nnU-Net's order) or as --gt GT --pred PRED")


def evaluate_folder(args) -> int:
    from iac_tf.evaluation.volumetric import evaluate_folder as run_evaluate, format_summary
    from iac_tf.run_layout import VOLUMETRIC_CSV, VOLUMETRIC_SUMMARY

    t0 = time.perf_counter()
    gt, pred, by_position = evaluate_folder_roles(args)
    summary = run_evaluate(gt=gt, pred=pred, dataset_json=args.dataset_json, out=args.out,
                           nsd_tolerance=args.nsd_tolerance, pred_by_position=by_position)
    out = pathlib.Path(args.out or pred)
    print(format_summary(summary))
    print(f"{out / VOLUMETRIC_CSV}, {out / VOLUMETRIC_SUMMARY} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0

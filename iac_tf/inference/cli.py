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


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder, .keras/.h5 file or SavedModel folder")


def _selection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", type=int, choices=(1, 3), default=None,
                        help="3: the IAC U-Net (default), 1: the U-Net (not with --method)")
    parser.add_argument("--method", default=None, help="a model name of the run's models.json")
    parser.add_argument("--config", default=None, help="run config.yaml (default: the run's)")


def predict_args(parser: argparse.ArgumentParser) -> None:
    _model_args(parser)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="a NIfTI volume, the channel files of one case, or an imagesTs folder")
    parser.add_argument("output", help="output folder (or a .nii.gz file for one case); existing "
                        "files are replaced only if they are earlier predictions of this tool")
    _selection_args(parser)
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write CASE_probabilities.nii.gz (X, Y, Z, classes)")
    parser.add_argument("--modality", action="append", default=None,
                        help="channel modality (CT or an MRI name), overrides dataset.json")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="slices per model call (default 32)")


def export_args(parser: argparse.ArgumentParser) -> None:
    _model_args(parser)
    parser.add_argument("out", help="export folder: new, empty or an earlier export; the model "
                        "goes to the next version OUT/N/ (OUT/1/ in a new folder)")
    _selection_args(parser)


def evaluate_folder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir")
    parser.add_argument("gt_dir")
    parser.add_argument("--dataset-json", default=None, help="score its (overlapping) regions")
    parser.add_argument("--out", default=None, help="where the CSV/JSON go (default: PRED_DIR)")


def predict(args) -> int:
    from iac_tf.inference.api import predict as run_predict
    from iac_tf.inference.predict import format_summary

    summary = run_predict(args.model, args.inputs, args.output, stage=args.stage,
                          method=args.method, config=args.config, modality=args.modality,
                          save_probabilities=args.save_probabilities,
                          batch_size=args.batch_size)
    print(format_summary(summary))
    print(f"labels written to {pathlib.Path(args.output)}")
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
          f"apply: {check.get('recipe', out / 'preprocessing.json')}; TF Serving now serves version "
          f"{check['version']}: {served}")
    return 0


def evaluate_folder(args) -> int:
    from iac_tf.evaluation.volumetric import evaluate_folder as run_evaluate, format_summary

    t0 = time.perf_counter()
    summary = run_evaluate(args.pred_dir, args.gt_dir, args.dataset_json, args.out)
    out = pathlib.Path(args.out or args.pred_dir)
    print(format_summary(summary))
    print(f"{out / 'volumetric_per_case.csv'}, {out / 'volumetric_summary.json'} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0

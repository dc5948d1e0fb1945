"""The arguments of ``iac predict | export | evaluate-folder`` (:mod:`iac_tf.inference.cli`):
the value types refuse what they cannot use, naming it; the two folders of ``evaluate-folder``
are each given once. The commands themselves run in ``tests/inference/test_predict.py`` and
``tests/inference/test_refusals.py``."""

import argparse
import types

import pytest

from iac_tf.errors import UserError
from iac_tf.inference.cli import (evaluate_folder_roles, export_args, non_negative_float,
                                  positive_int, predict_args, step_size)


def test_value_types():
    assert positive_int("3") == 3 and step_size("1") == 1.0 and step_size("0.25") == 0.25
    assert non_negative_float("0") == 0.0 and non_negative_float("2.5") == 2.5
    for parse, text, message in [(positive_int, "0", "0 is not a positive integer"),
                                 (positive_int, "-2", "-2 is not a positive integer"),
                                 (positive_int, "2.5", "'2.5' is not an integer"),
                                 (step_size, "0", "0.0 is not in (0, 1]"),
                                 (step_size, "1.5", "1.5 is not in (0, 1]"),
                                 (step_size, "half", "'half' is not a number"),
                                 (non_negative_float, "-1", "-1.0 is not a distance >= 0"),
                                 (non_negative_float, "inf", "inf is not a distance >= 0"),
                                 (non_negative_float, "nan", "nan is not a distance >= 0")]:
        with pytest.raises(argparse.ArgumentTypeError) as err:
            parse(text)
        assert str(err.value).startswith(message), (text, str(err.value))


def test_predict_and_export_arguments():
    parser = argparse.ArgumentParser()
    predict_args(parser)
    args = parser.parse_args(["run", "a_0000.nii.gz", "a_0001.nii.gz", "out"])
    assert args.inputs == ["a_0000.nii.gz", "a_0001.nii.gz"] and args.output == "out"
    assert (args.batch_size, args.step_size, args.tta, args.device) == (32, 0.5, True, "auto")
    args = parser.parse_args(["run", "in", "out", "--disable-tta", "--stage", "1",
                              "--modality", "T2", "--modality", "ADC"])
    assert not args.tta and args.stage == 1 and args.modality == ["T2", "ADC"]
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "in", "out", "--stage", "2"])
    parser = argparse.ArgumentParser()
    export_args(parser)
    args = parser.parse_args(["run", "serving", "--method", "attention"])
    assert (args.model, args.out, args.method, args.stage) == ("run", "serving", "attention", None)


def _roles(gt_pos=None, pred_pos=None, gt=None, pred=None):
    return evaluate_folder_roles(types.SimpleNamespace(gt_pos=gt_pos, pred_pos=pred_pos, gt=gt,
                                                       pred=pred))


def test_evaluate_folder_roles():
    assert _roles("G", "P") == ("G", "P", True)  # nnU-Net's order: GT PRED
    assert _roles(gt="G", pred="P") == ("G", "P", False)
    assert _roles("G", pred="P") == ("G", "P", False)
    for bad in [dict(gt_pos="G"), dict(gt_pos="G", pred_pos="P", gt="X"), dict(gt="G"), {},
                dict(gt_pos="G", gt="X", pred="P")]:
        with pytest.raises(UserError, match="give the ground-truth and the prediction folder once"):
            _roles(**bad)

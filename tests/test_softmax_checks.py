"""A softmax U-Net (background + N classes) through the checks: every way a Keras model ends in a
softmax is recognised, ``iac doctor`` names the output it found, and a softmax with the wrong
channel count or on nested regions is refused naming the file and the counts / the dataset."""

from __future__ import annotations

import json

import pytest

from iac_tf._keras import keras, tf
from iac_tf.cli import main
from iac_tf.data import prepare_dataset
from iac_tf.data.check import DataShape
from iac_tf.config.experiment import load_experiment
from iac_tf.models import inspect_unet, match_data
from iac_tf.preflight import FAIL, OK, PreflightError, checked_prepare, doctor
from tests.data import fixtures
from tests.tiny import tiny_unet, write_config

EXCLUSIVE = DataShape(1, 2, 32, ("organ", "lesion"), ((1,), (2,)))


def with_head(head: str) -> keras.Model:
    """The tiny U-Net's body with a 3-channel head ending in ``head``'s softmax."""
    body = tiny_unet(32, f=4, classes=2)
    x = body.get_layer("head").input
    if head == "conv":
        out = keras.layers.Conv2D(3, 1, activation="softmax", name="out")(x)
    elif head == "activation_layer":
        out = keras.layers.Activation("softmax")(keras.layers.Conv2D(3, 1, name="out")(x))
    elif head == "softmax_layer":
        out = keras.layers.Softmax(axis=-1)(keras.layers.Conv2D(3, 1, name="out")(x))
    elif head == "tf_op":
        out = tf.nn.softmax(keras.layers.Conv2D(3, 1, name="out")(x), axis=-1)
    elif head == "softmax_over_width":
        out = keras.layers.Softmax(axis=2)(keras.layers.Conv2D(3, 1, name="out")(x))
    else:
        raise ValueError(head)
    return keras.Model(body.input, out)


@pytest.mark.parametrize("head", ["conv", "activation_layer", "softmax_layer", "tf_op"])
def test_every_softmax_head_is_recognised(tmp_path, head):
    path = tmp_path / f"{head}.keras"
    with_head(head).save(path)
    info, problems = inspect_unet(path, 32)
    assert problems == []
    assert (info.output, info.classes, info.out_channels, info.skips) == ("softmax", 2, 3, 2)
    assert info.describe_output() == "softmax over background + 2 classes"
    assert match_data(info, EXCLUSIVE, "data") == []


def test_the_tiny_softmax_unet_of_the_tests_is_one(tmp_path):
    for separate in (False, True):
        path = tmp_path / f"tiny_{separate}.keras"
        tiny_unet(32, f=4, classes=2, activation="softmax", separate=separate).save(path)
        info, problems = inspect_unet(path, 32)
        assert problems == [] and info.output == "softmax" and info.out_channels == 3


def test_a_sigmoid_unet_is_still_one_sigmoid_per_class(tmp_path):
    path = tmp_path / "sigmoid.keras"
    tiny_unet(32, f=4, classes=2).save(path)
    info, problems = inspect_unet(path, 32)
    assert problems == [] and (info.output, info.classes, info.out_channels) == ("sigmoid", 2, 2)
    assert info.describe_output() == "sigmoid, one per class"
    # N + 1 sigmoid channels are not a softmax: the class count is wrong
    wrong = match_data(info, DataShape(1, 1, 32, ("organ",), ((1,),)), "data")
    assert len(wrong) == 1 and "outputs 2 class(es)" in wrong[0]


def test_a_softmax_over_another_axis_is_refused(tmp_path):
    path = tmp_path / "width.keras"
    with_head("softmax_over_width").save(path)
    _, problems = inspect_unet(path, 32)
    assert len(problems) == 1 and str(path) in problems[0] and "softmax(axis=2)" in problems[0]


def test_a_softmax_with_the_wrong_channel_count_is_refused_naming_both_counts(tmp_path):
    path = tmp_path / "three.keras"
    tiny_unet(32, f=4, classes=2, activation="softmax").save(path)  # 3 outputs
    info, _ = inspect_unet(path, 32)
    three = DataShape(1, 3, 32, ("a", "b", "c"), ((1,), (2,), (3,)))
    problems = match_data(info, three, "DATASET")
    assert len(problems) == 1
    assert str(path) in problems[0] and "softmax has 3 output channels" in problems[0]
    assert "has 3 class(es)" in problems[0] and "needs 4 (background + classes)" in problems[0]
    # 2 outputs for 2 classes: a softmax cannot be told apart from N sigmoids by the count,
    # so it is refused as a softmax without background
    path2 = tmp_path / "two.keras"
    tiny_unet(32, f=4, classes=1, activation="softmax").save(path2)
    info2, _ = inspect_unet(path2, 32)
    problems = match_data(info2, EXCLUSIVE, "DATASET")
    assert len(problems) == 1 and "softmax has 2 output channels" in problems[0]
    assert "needs 3" in problems[0]
    # a softmax over one channel: refused by the inspection itself
    one = tmp_path / "one.keras"
    inp = keras.Input((32, 32, 1))
    keras.Model(inp, keras.layers.Conv2D(1, 1, activation="softmax")(inp)).save(one)
    _, problems = inspect_unet(one, 32)
    assert any(str(one) in p and "softmax over 1 output channel" in p for p in problems)


def test_a_softmax_on_nested_regions_is_refused_naming_the_dataset(tmp_path):
    path = tmp_path / "soft.keras"
    tiny_unet(32, f=4, classes=2, activation="softmax").save(path)
    info, _ = inspect_unet(path, 32)
    nested = DataShape(1, 2, 32, ("whole", "core"), ((1, 2), (2,)))
    problems = match_data(info, nested, "BraTS-like")
    assert len(problems) == 1
    assert str(path) in problems[0] and "BraTS-like" in problems[0]
    assert "nested regions" in problems[0] and "whole=[1, 2]" in problems[0]


def nested_dataset(root):
    """The fixture dataset with its labels as nested regions (whole = 1 or 2, core = 2)."""
    ds = fixtures.write_nnunet(root)
    meta = json.loads((ds / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    meta["regions_class_order"] = [1, 2]
    (ds / "dataset.json").write_text(json.dumps(meta))
    return ds


@pytest.fixture(scope="module")
def softmax_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("softmax") / "softmax.keras"
    tiny_unet(32, f=4, classes=2, activation="softmax").save(path)
    return path


def test_checked_prepare_refuses_a_softmax_on_nested_regions(tmp_path, softmax_file):
    ds = nested_dataset(tmp_path / "raw")
    cfg = load_experiment(write_config(tmp_path, ds, tmp_path / "cache",
                                       unet__pretrained=str(softmax_file)))
    with pytest.raises(PreflightError) as err:
        checked_prepare(cfg, 2, lambda c: prepare_dataset(c.data, progress=False),
                        unet_path=softmax_file)
    text = str(err.value)
    assert str(softmax_file) in text and "nested regions" in text and "whole=[1, 2]" in text
    assert not cfg.run_dir.exists()


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_doctor_names_the_output_it_found(tmp_path, softmax_file, capsys, kind):
    ds = fixtures.write_nnunet(tmp_path / "raw")
    unet = softmax_file
    if kind == "sigmoid":
        unet = tmp_path / "sigmoid.keras"
        tiny_unet(32, f=4, classes=2).save(unet)
    config = write_config(tmp_path, ds, tmp_path / "cache", unet__pretrained=str(unet))
    rows = {r.name: r for r in doctor(load_experiment(config))}
    want = ("output: softmax over background + 2 classes" if kind == "softmax"
            else "output: sigmoid, one per class")
    assert rows["U-Net"].status == OK and want in rows["U-Net"].detail
    main(["doctor", str(config)])
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("U-Net ")]
    assert len(line) == 1 and want in line[0]


def test_doctor_refuses_a_softmax_on_nested_regions(tmp_path, softmax_file):
    ds = nested_dataset(tmp_path / "raw")
    cfg = load_experiment(write_config(tmp_path, ds, tmp_path / "cache",
                                       unet__pretrained=str(softmax_file)))
    rows = {r.name: r for r in doctor(cfg)}
    assert rows["U-Net"].status == FAIL and "nested regions" in rows["U-Net"].detail


def test_doctor_checks_a_softmax_zoo_unet_against_the_classes(tmp_path):
    """``unet.output: softmax`` (Stage I): one row, a failure on nested regions."""
    exclusive = fixtures.write_nnunet(tmp_path / "a")
    cfg = load_experiment(write_config(tmp_path / "a", exclusive, tmp_path / "cache_a",
                                       unet__output="softmax"))
    rows = {r.name: r for r in doctor(cfg)}
    assert rows["U-Net output"].status == OK
    assert rows["U-Net output"].detail == "softmax over background + 2 classes"
    nested = nested_dataset(tmp_path / "b")
    cfg = load_experiment(write_config(tmp_path / "b", nested, tmp_path / "cache_b",
                                       unet__output="softmax"))
    rows = {r.name: r for r in doctor(cfg)}
    assert rows["U-Net output"].status == FAIL and str(nested) in rows["U-Net output"].detail
    sigmoid = load_experiment(write_config(tmp_path / "a", exclusive, tmp_path / "cache_a"))
    assert "U-Net output" not in {r.name for r in doctor(sigmoid)}

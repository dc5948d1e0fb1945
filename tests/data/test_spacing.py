"""``data.spacing``: a target in-plane spacing in mm, resampled from each volume's header spacing
in training and inference (NumPy references on an anisotropic volume), inverted by predict, part
of the cache's identity and refused next to ``zoom``.

Covers: iac_tf/inference/volume.py, iac_tf/data/preprocessing.py
"""

import dataclasses
import pathlib

import nibabel as nib
import numpy as np
import pytest

from iac_tf.config import ConfigError, from_dict
from iac_tf.data import DataConfig, prepare_dataset
from iac_tf.data import preprocess as pp
from iac_tf.data.prepare import cached_path
from iac_tf.inference import LoadedModel, Preprocessing, predict_cases
from iac_tf.inference.tiling import keras_predictor
from iac_tf.inference.volume import to_slices
from iac_tf.run_layout import RunLayout
from tests.data import fixtures

#: 0.5 mm along x, 1 mm along y, 3 mm slices: a 1 mm target halves x and keeps y
ANISO = np.diag([0.5, 1.0, 3.0, 1.0])


def pair_mean(a: np.ndarray) -> np.ndarray:
    """Linear resampling by 0.5 along axis 0 with voxel edges aligned: the mean of each pair."""
    return a.reshape(a.shape[0] // 2, 2, *a.shape[1:]).mean(axis=1)


def upsample2(a: np.ndarray, axis: int) -> np.ndarray:
    """Linear resampling by 2 along ``axis``, edges aligned, edge values repeated: output j sits
    at input coordinate j/2 - 1/4."""
    a = np.moveaxis(a, axis, 0)
    left = np.concatenate([a[:1], a[:-1]])
    right = np.concatenate([a[1:], a[-1:]])
    out = np.empty((2 * a.shape[0],) + a.shape[1:], np.float64)
    out[0::2] = 0.75 * a + 0.25 * left
    out[1::2] = 0.75 * a + 0.25 * right
    return np.moveaxis(out, 0, axis)


def test_factors_come_from_the_header_spacing():
    assert pp.in_plane_spacing(ANISO) == (0.5, 1.0)
    assert pp.zoom_factors(spacing=(1.0, 1.0), voxel_spacing=(0.5, 1.0)) == (0.5, 1.0)
    assert pp.zoom_factors(spacing=(0.5, 0.5), voxel_spacing=(0.5, 1.0)) == (1.0, 2.0)
    assert pp.zoom_factors(zoom=0.25) == (0.25, 0.25)  # no spacing: the voxel factor
    # a spacing equal up to float rounding keeps the grid exactly
    assert pp.zoom_factors(spacing=(0.7, 0.7), voxel_spacing=(0.7 + 1e-9, 0.7)) == (1.0, 1.0)
    # a rotated affine: the column lengths are the voxel sizes
    rot = np.array([[0.0, -2.0, 0.0, 0.0], [0.8, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0],
                    [0.0, 0.0, 0.0, 1.0]])
    assert pp.in_plane_spacing(rot) == pytest.approx((0.8, 2.0))


def test_resampled_shape_and_values_equal_numpy():
    image = fixtures.volume(1, shape=(40, 30, 3))[..., None]
    label = np.repeat(fixtures.blob_label((1,), shape=(20, 30, 3), z=(0, 2)), 2, axis=0)
    factors = pp.zoom_factors(spacing=(1.0, 1.0), voxel_spacing=pp.in_plane_spacing(ANISO))
    img, lab = pp.zoom_in_plane(image, label, factors)
    assert img.shape == (20, 30, 3, 1) and lab.shape == (20, 30, 3)
    np.testing.assert_allclose(img, pair_mean(image), rtol=1e-5)
    np.testing.assert_array_equal(lab, label[::2])
    finer = pp.zoom_factors(spacing=(0.5, 0.5), voxel_spacing=pp.in_plane_spacing(ANISO))
    img, _ = pp.zoom_in_plane(image, label, finer)
    assert img.shape == (40, 60, 3, 1)
    np.testing.assert_allclose(img, upsample2(image, axis=1), rtol=1e-5)


def test_training_slices_equal_numpy_resampling_then_crop():
    """preprocess_case with the factors of a 0.5 x 1 mm volume and a 1 mm target: a 42 x 12
    volume becomes 21 x 12, centred in a 24 x 24 patch, the rest filled with the minimum."""
    image = fixtures.volume(2, shape=(42, 12, 3))[..., None]
    label = np.repeat(fixtures.blob_label((1,), shape=(21, 12, 3), z=(0, 2)), 2, axis=0)
    factors = pp.zoom_factors(spacing=(1.0, 1.0), voxel_spacing=pp.in_plane_spacing(ANISO))
    images, masks, keep = pp.preprocess_case(image, label, [(1,)], ("T2",), patch_size=24,
                                             crop="center", zoom=factors,
                                             empty_slice_fraction=1.0)
    assert images.shape == (3, 24, 24, 1) and list(keep) == [0, 1, 2]
    stats = pp.intensity_stats(image[..., 0], "MRI")
    ref = np.full((24, 24, 3), image.min(), np.float64)
    ref[2:23, 6:18] = pair_mean(image[..., 0])  # window starts 4 voxels (2 resampled) before x=0
    ref_norm = pp.apply_stats(ref, stats)
    np.testing.assert_allclose(images[..., 0], np.moveaxis(ref_norm, 2, 0), rtol=1e-5, atol=1e-5)
    ref_mask = np.zeros((24, 24, 3), np.uint8)
    ref_mask[2:23, 6:18] = label[::2]
    np.testing.assert_array_equal(masks[..., 0], np.moveaxis(ref_mask, 2, 0))


def test_config_spacing_or_zoom_never_both():
    cfg = DataConfig(format="nnunet", root="x", spacing=0.8)
    assert cfg.spacing == (0.8, 0.8)
    assert from_dict(DataConfig, {"format": "nnunet", "root": "x", "spacing": [0.7, 0.9]},
                     "data").spacing == (0.7, 0.9)
    with pytest.raises(ConfigError, match="zoom .* or spacing .* not both"):
        from_dict(DataConfig, {"format": "nnunet", "root": "x", "spacing": 1.0, "zoom": 0.5},
                  "data")
    for bad in (0.0, [1.0, 2.0, 3.0], -1.0, "1mm"):
        with pytest.raises(ConfigError, match="spacing"):
            from_dict(DataConfig, {"format": "nnunet", "root": "x", "spacing": bad}, "data")
    with pytest.raises(ValueError, match="npz"):
        DataConfig(format="npz", root="x.npz", spacing=1.0)
    # without spacing the cache key hashes exactly the keys of earlier versions
    assert "spacing" not in DataConfig(format="nnunet", root="x").content_dict()
    assert cfg.content_dict()["spacing"] == (0.8, 0.8)


def test_a_changed_spacing_builds_another_cache(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a", "b", "c"))  # 1.5 mm in-plane
    base = DataConfig(format="nnunet", root=str(ds), cache_dir=str(tmp_path / "cache"),
                      patch_size=16, empty_slice_fraction=1.0)
    paths = {cached_path(dataclasses.replace(base, spacing=s)) for s in (None, (1.5, 1.5),
                                                                         (3.0, 3.0))}
    assert len(paths) == 3
    coarse = prepare_dataset(dataclasses.replace(base, spacing=(3.0, 3.0)), progress=False)
    same = prepare_dataset(base, progress=False)
    assert coarse.cache_path != same.cache_path
    # 3 mm from 1.5 mm halves the grid: the 12 x 10 box of label 1 around the 8 x 6 box of
    # label 2 becomes 6 x 5 around 4 x 3 voxels
    _, masks, _ = coarse.arrays("train_dt")
    assert masks.sum(axis=(1, 2)).max(axis=0).tolist() == [6 * 5 - 4 * 3, 4 * 3]
    _, masks, _ = same.arrays("train_dt")
    assert masks.sum(axis=(1, 2)).max(axis=0).tolist() == [12 * 10 - 8 * 6, 8 * 6]


def threshold_model(patch):
    """Conv 1x1 (weight 1, bias 0) + sigmoid: label 1 exactly where the normalised image > 0."""
    from iac_tf._keras import keras

    inp = keras.Input((patch, patch, 1))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    return LoadedModel(pathlib.Path("threshold"), keras_predictor(model), (patch, patch, 1), 1)


def spacing_prep(spacing):
    return Preprocessing(patch_size=32, zoom=1.0, reorient=True, nonzero=False, ct_window=(),
                         ct_percentiles=(0.5, 99.5), class_names=("fg",), classes=((1,),),
                         modalities=("CT",), spacing=spacing)


def test_predict_resamples_like_training_and_returns_the_original_grid(tmp_path):
    image = np.full((80, 50, 3), -800.0, np.float32)
    image[10:30, 20:40] = 300.0
    image[50:70, 0:12] = 300.0
    path = fixtures.save(image, tmp_path / "ct_0000.nii.gz", ANISO)
    prep = spacing_prep((1.0, 1.0))
    # inference resamples as training does: 80 x 50 at 0.5 x 1 mm -> 40 x 50 at 1 mm
    slices, _ = to_slices(image[..., None], ("CT",), prep, affine=ANISO)
    assert slices.shape == (3, 40, 50, 1)
    ref = pp.apply_stats(pair_mean(image), pp.intensity_stats(image, "CT"))
    np.testing.assert_allclose(slices[..., 0], np.moveaxis(ref, 2, 0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="affine"):
        to_slices(image[..., None], ("CT",), prep)
    summary = predict_cases(threshold_model(32), [path], tmp_path / "out", prep, progress=False)
    out = nib.load(summary[0]["path"])
    labels = np.asarray(out.dataobj)
    assert labels.shape == image.shape and np.allclose(out.affine, ANISO)
    # the model's probabilities at 1 mm, resampled linearly back onto the 0.5 mm grid
    probs = upsample2(1.0 / (1.0 + np.exp(-ref)), axis=0)
    np.testing.assert_array_equal(labels, probs > 0.5)
    assert labels[20, 30, 1] == 1 and labels[60, 5, 1] == 1 and labels[40, 45, 1] == 0


def test_the_spacing_is_recorded_for_inference(tmp_path):
    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a", "b"))
    cfg = DataConfig(format="nnunet", root=str(ds), spacing=(1.0, 2.0))
    prep = Preprocessing.from_data_config(cfg)
    assert prep.spacing == (1.0, 2.0)
    record = dataclasses.asdict(prep)
    assert Preprocessing.from_record(record).spacing == (1.0, 2.0)
    assert prep.zoom_factors(fixtures.RAS) == (1.5, 0.75)
    # a record of earlier versions (no spacing key) applies its zoom
    del record["spacing"]
    assert Preprocessing.from_record(record).zoom_factors() == (1.0, 1.0)


def test_a_restart_records_the_new_spacing_that_predict_reads(tmp_path):
    """The run's dataset record (what ``iac predict`` applies) follows a restart with another
    spacing; without a restart it keeps what the run was trained with."""
    from iac_tf.data.fingerprint import data_record
    from iac_tf.config.experiment import ExperimentConfig
    from iac_tf.pipeline.common import CheckedData, write_run_records

    ds = fixtures.write_nnunet(tmp_path / "raw", cases=("a", "b"))
    data = DataConfig(format="nnunet", root=str(ds), cache_dir=str(tmp_path / "cache"))
    cfg = dataclasses.replace(ExperimentConfig(data=data), name="run", output_dir=str(tmp_path))
    new = dataclasses.replace(cfg, data=dataclasses.replace(data, spacing=(3.0, 3.0)))

    def checked(c, first):
        return CheckedData(data_record(c.data, training_cases=True), write=first)

    def recorded():
        return Preprocessing.from_record(RunLayout.of(cfg).read_data_record()["preprocessing"]).spacing

    with RunLayout.of(cfg).lock():
        write_run_records(cfg, None, checked(cfg, True))
        write_run_records(new, None, checked(new, False))
        assert recorded() is None
        write_run_records(new, 1, checked(new, False))
    assert recorded() == (3.0, 3.0)

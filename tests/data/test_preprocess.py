"""NumPy references with exact values for the 3D -> 2D preprocessing."""

import numpy as np
import pytest

from iac_tf.data import preprocess as pp


def test_normalise_mri_zscore_exact():
    vol = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    out = pp.normalise_mri(vol)
    np.testing.assert_allclose(out.ravel(), (np.arange(1, 5) - 2.5) / np.sqrt(1.25), rtol=1e-6)
    assert out.dtype == np.float32


def test_normalise_mri_nonzero_region_only():
    vol = np.array([[[0.0, 2.0], [4.0, 0.0]]])
    out = pp.normalise_mri(vol, nonzero=True)
    np.testing.assert_allclose(out.ravel(), [0.0, -1.0, 1.0, 0.0], atol=1e-6)


def test_normalise_ct_window_then_zscore():
    vol = np.array([[[-1000.0, -100.0], [100.0, 2000.0]]])
    out = pp.normalise_ct(vol, window=(-200.0, 200.0))
    clipped = np.array([-200.0, -100.0, 100.0, 200.0])
    np.testing.assert_allclose(out.ravel(), (clipped - clipped.mean()) / clipped.std(), rtol=1e-6)


def test_normalise_ct_percentiles_clip_outliers():
    vol = np.concatenate([np.linspace(-100, 100, 998), [-3000.0, 5000.0]]).reshape(10, 10, 10)
    out = pp.normalise_ct(vol, percentiles=(0.5, 99.5))
    low, high = np.percentile(vol, (0.5, 99.5))
    ref = np.clip(vol, low, high)
    np.testing.assert_allclose(out, (ref - ref.mean()) / ref.std(), rtol=1e-5, atol=1e-6)
    assert out.max() < 2.0  # the 5000 HU outlier no longer dominates


def test_labels_to_channels_brats_regions():
    label = np.array([0, 1, 2, 3])
    out = pp.labels_to_channels(label, [(1, 2, 3), (1, 3), (3,)])
    np.testing.assert_array_equal(out, [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    assert out.dtype == np.uint8


def test_crop_centre_uses_first_non_empty_mask():
    label = np.zeros((10, 12, 3), bool)
    label[2:4, 6:10, 1] = True
    body = np.ones((10, 12, 3), bool)
    assert pp.crop_centre((10, 12), label, body) == (3, 8)
    assert pp.crop_centre((10, 12), np.zeros_like(label), body) == (5, 6)
    assert pp.crop_centre((10, 12), None, None) == (5, 6)


def test_crop_or_pad_exact_with_fill():
    arr = np.arange(16).reshape(4, 4)
    out = pp.crop_or_pad(arr, (0, 0), 4, fill=-1)
    np.testing.assert_array_equal(out, [[-1, -1, -1, -1], [-1, -1, -1, -1],
                                        [-1, -1, 0, 1], [-1, -1, 4, 5]])
    np.testing.assert_array_equal(pp.crop_or_pad(arr, (2, 2), 2, 0), [[5, 6], [9, 10]])


@pytest.mark.parametrize("fraction, expected", [(0.0, [2, 3]), (0.5, [0, 2, 3, 4, 7]),
                                                (1.0, list(range(8)))])
def test_select_slices(fraction, expected):
    has = np.zeros(8, bool)
    has[[2, 3]] = True
    np.testing.assert_array_equal(pp.select_slices(has, fraction), expected)


def test_zoom_in_plane_halves_grid_and_keeps_labels_binary():
    image = np.ones((8, 8, 2, 1), np.float32)
    label = np.zeros((8, 8, 2, 1), np.uint8)
    label[2:6, 2:6] = 1
    img, lab = pp.zoom_in_plane(image, label, 0.5)
    assert img.shape == (4, 4, 2, 1) and lab.shape == (4, 4, 2, 1)
    assert set(np.unique(lab)) == {0, 1} and lab.sum() == 2 * 4


def test_preprocess_case_keeps_whole_lesion_in_crop():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (60, 50, 7, 1)).astype(np.float32)
    label = np.zeros((60, 50, 7), np.int16)
    label[40:52, 5:15, 3:5] = 1  # off-centre lesion
    images, masks, keep = pp.preprocess_case(image, label, [(1,)], ["MRI"], patch_size=16,
                                             empty_slice_fraction=0.0)
    np.testing.assert_array_equal(keep, [3, 4])
    assert images.shape == (2, 16, 16, 1) and masks.shape == (2, 16, 16, 1)
    assert masks.sum() == (label > 0).sum()  # nothing of the lesion cropped away
    expected = (image[..., 0] - image.mean()) / image.std()
    np.testing.assert_allclose(images[0, ..., 0], expected[38:54, 2:18, 3], rtol=1e-4, atol=1e-4)


def test_preprocess_case_pads_small_volume_and_dispatches_ct():
    image = np.full((6, 6, 2, 1), -1000.0, np.float32)
    image[2:4, 2:4] = 500.0
    label = np.zeros((6, 6, 2), np.int16)
    label[2:4, 2:4, 0] = 1
    images, masks, keep = pp.preprocess_case(image, label, [(1,)], ["CT"], patch_size=8,
                                             ct_window=(-100.0, 100.0), empty_slice_fraction=1.0)
    assert images.shape == (2, 8, 8, 1) and list(keep) == [0, 1]
    assert masks[0].sum() == 4 and masks[1].sum() == 0
    assert np.isclose(images.min(), images[0, 0, 0, 0])  # padding = background value
    assert images.max() > 0 > images.min()


def test_preprocess_case_zoom_crops_then_resamples():
    image = np.tile(np.arange(64, dtype=np.float32)[:, None, None, None], (1, 64, 3, 1))
    label = np.zeros((64, 64, 3), np.int16)
    label[20:36, 28:44, 1] = 1  # 16x16 lesion
    images, masks, keep = pp.preprocess_case(image, label, [(1,)], ["MRI"], patch_size=16,
                                             zoom=0.5, empty_slice_fraction=0.0)
    assert images.shape == (1, 16, 16, 1) and list(keep) == [1]
    assert masks.sum() == 64  # 16x16 at half resolution, nothing cut off
    ramp = images[0, :, 0, 0]
    assert np.all(np.diff(ramp) > 0)  # still the x ramp, at twice the voxel step
    np.testing.assert_allclose(np.diff(ramp), 2 / image.std(), rtol=1e-3)


def test_statistics_of_large_volume_use_fixed_stride_sample():
    vol = np.random.default_rng(0).normal(50, 10, (128, 128, 80)).astype(np.float32)
    low, high, mean, std = pp.intensity_stats(vol, "MRI")
    assert (low, high) == (-np.inf, np.inf)
    assert abs(mean - vol.mean()) < 0.1 and abs(std - vol.std()) < 0.1
    assert pp.intensity_stats(vol, "MRI") == (low, high, mean, std)  # deterministic

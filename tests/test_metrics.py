"""Tests of medmat.metrics: hand-worked values, properties, and calibration on Brain-growth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medmat.errors import MedmatError
from medmat.metrics import (
    adapted_dice,
    connectivity_error,
    ged,
    gradient_error,
    matting_metrics,
    mse,
    quantize_alpha,
    region_mask,
    sad,
    table_iv_metrics,
)
from medmat.metrics.tables import mean_std_cell
from medmat.metrics.matting import (
    connectivity_thresholds,
    gaussian_derivative_kernel,
    gradient_magnitude,
    largest_component,
)
from tiny_configs import load_benchmark


# --- quantisation -------------------------------------------------------------------------------


def test_quantize_truncates_like_an_8bit_png():
    # 0.999 * 255 = 254.745 -> 254 (truncated, rounding would give 255); 0.5 * 255 = 127.5 -> 127.
    alpha = np.array([[0.999, 0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(quantize_alpha(alpha), [[254, 127], [0, 255]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_keeps_every_8bit_level(dtype):
    # A matte that came from uint8 k / 255 must come back as k, not k - 1, despite truncation.
    levels = np.arange(256).reshape(16, 16)
    np.testing.assert_array_equal(quantize_alpha((levels / 255).astype(dtype)), levels)


def test_quantize_uses_uint8_as_is_and_refuses_other_integers():
    alpha = np.array([[3, 250]], dtype=np.uint8)
    assert quantize_alpha(alpha) is alpha
    with pytest.raises(MedmatError, match="int64"):
        quantize_alpha(np.array([[0, 1]], dtype=np.int64))


# --- SAD and MSE --------------------------------------------------------------------------------

# 4x4 example. Ground truth is 0 everywhere; the unknown region is the five pixels where the
# trimap is exactly 128 (127 and 129 are resampling noise and do not count).
TRIMAP_4x4 = np.array(
    [
        [0, 127, 128, 255],
        [0, 128, 128, 129],
        [0, 128, 128, 255],
        [0, 0, 255, 255],
    ],
    dtype=np.uint8,
)
PRED_4x4 = np.array(
    [
        [51, 255, 51, 255],
        [0, 102, 51, 255],
        [0, 0, 255, 255],
        [0, 0, 255, 255],
    ],
    dtype=np.uint8,
)
GT_4x4 = np.zeros((4, 4), dtype=np.uint8)


def test_sad_and_mse_by_hand():
    region = region_mask(TRIMAP_4x4)
    assert region.sum() == 5
    # Unknown pixels of the prediction, row by row: 51 | 102, 51 | 0, 255 -> 0.2 | 0.4, 0.2 | 0, 1.
    # SAD = (0.2 + 0.4 + 0.2 + 0 + 1) / 1000 = 1.8e-3; MSE = (0.04 + 0.16 + 0.04 + 0 + 1) / 5.
    assert sad(PRED_4x4, GT_4x4, region) == pytest.approx(1.8e-3)
    assert mse(PRED_4x4, GT_4x4, region) == pytest.approx(1.24 / 5)


def test_truncation_shows_in_sad():
    # 0.999 is read as 254/255, so against a ground truth of 1 every pixel is 1/255 off.
    pred = np.full((4, 4), 0.999)
    gt = np.ones((4, 4))
    whole = region_mask(region="whole", shape=(4, 4))
    assert sad(pred, gt, whole) == pytest.approx(16 / 255 / 1000)
    assert mse(pred, gt, whole) == pytest.approx((1 / 255) ** 2)


# --- region -------------------------------------------------------------------------------------


def test_region_mask_variants():
    np.testing.assert_array_equal(region_mask(TRIMAP_4x4, "whole"), np.ones((4, 4), bool))
    given = np.eye(4, dtype=bool)
    assert region_mask(TRIMAP_4x4, given) is given


def test_table_iv_metrics_score_the_unknown_band_and_the_whole_image():
    gt = np.zeros((6, 6))
    pred = np.zeros((6, 6))
    pred[0, 0] = 102 / 255  # outside the unknown band (values on the 8-bit grid the metrics quantise to)
    pred[3, 3] = 51 / 255  # inside it
    trimap = np.zeros((6, 6), np.uint8)
    trimap[2:4] = 128
    metrics = table_iv_metrics(pred, gt, trimap)
    assert metrics["region_name"] == "unknown"
    assert metrics["region"]["SAD"] == pytest.approx(0.2 / 1000) and metrics["region"]["MSE"] == pytest.approx(0.2**2 / 12)
    assert metrics["whole"]["SAD"] == pytest.approx(0.6 / 1000) and metrics["whole"]["MSE"] == pytest.approx((0.04 + 0.16) / 36)
    without = table_iv_metrics(pred, gt, None)  # no trimap: the whole image is the region
    assert without["region_name"] == "whole" and without["region"] == without["whole"] == metrics["whole"]
    assert table_iv_metrics(pred, gt, np.zeros((6, 6), np.uint8))["region"] is None  # empty band: nothing to score
    assert table_iv_metrics(pred, gt, trimap, "whole")["region"] == metrics["whole"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"trimap": None, "region": "unknown"}, "needs a trimap"),
        ({"trimap": TRIMAP_4x4, "region": np.ones((3, 4), bool)}, "shape"),
        ({"trimap": TRIMAP_4x4 / 255.0, "region": "unknown"}, "uint8"),
        ({"trimap": TRIMAP_4x4, "region": "border"}, "unknown region"),
    ],
)
def test_region_mask_errors(kwargs, message):
    with pytest.raises(MedmatError, match=message):
        region_mask(**kwargs)


@pytest.mark.parametrize(
    "pred, message",
    [
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), 1.2), r"\[0, 1\]"),
        (np.zeros((4, 5)), "shape"),
    ],
)
def test_matting_metrics_refuses_bad_predictions(pred, message):
    with pytest.raises(MedmatError, match=message):
        matting_metrics(pred, GT_4x4, region_mask(TRIMAP_4x4))


def test_matting_metrics_refuses_an_empty_region():
    with pytest.raises(MedmatError, match="empty"):
        matting_metrics(PRED_4x4, GT_4x4, np.zeros((4, 4), bool))


# --- gradient -----------------------------------------------------------------------------------


def test_gaussian_derivative_kernel_shape_and_norm():
    kernel = gaussian_derivative_kernel(1.4)
    # half-size ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01))) = ceil(3.62) = 4
    assert kernel.shape == (9, 9)
    assert np.sum(kernel**2) == pytest.approx(1.0)  # divided by its L2 norm, as gaussgradient.m
    np.testing.assert_allclose(kernel, -kernel[:, ::-1])  # odd along x: a derivative
    np.testing.assert_allclose(kernel, kernel[::-1, :])  # even along y: a smoothing


def test_gradient_magnitude_is_a_replicate_border_convolution():
    # Independent evaluation of imfilter(image, h, 'replicate', 'conv'): pad by repeating the edge,
    # then sum image(y - u, x - v) * h(u, v) over the kernel.
    rng = np.random.default_rng(0)
    image = rng.random((12, 10))
    image[0, 0], image[-1, -1] = 0.0, 1.0  # spans [0, 1], so min-max normalisation is the identity
    kernel = gaussian_derivative_kernel(1.4)
    half = kernel.shape[0] // 2
    padded = np.pad(image, half, mode="edge")
    flipped = kernel[::-1, ::-1]
    expected_x = np.zeros_like(image)
    expected_y = np.zeros_like(image)
    for row in range(image.shape[0]):
        for col in range(image.shape[1]):
            window = padded[row : row + 2 * half + 1, col : col + 2 * half + 1]
            expected_x[row, col] = np.sum(window * flipped)
            expected_y[row, col] = np.sum(window * flipped.T)
    np.testing.assert_allclose(gradient_magnitude(image), np.hypot(expected_x, expected_y), atol=1e-12)


def test_gradient_error_zero_for_identical_positive_for_blurred():
    edge = np.zeros((32, 32))
    edge[:, 16:] = 1.0
    whole = region_mask(region="whole", shape=edge.shape)
    assert gradient_error(edge, edge, whole) == 0.0
    blurred = ndimage.gaussian_filter(edge, 3.0)
    assert gradient_error(blurred, edge, whole) > 1e-3


def test_gradient_error_min_max_normalises_each_matte():
    # DIM applies mat2gray first: a half-contrast copy of the ground truth (0 / 127 after
    # truncation) normalises to the same 0 / 1 step and has no gradient error, though its SAD does.
    edge = np.zeros((16, 16))
    edge[:, 8:] = 1.0
    whole = region_mask(region="whole", shape=edge.shape)
    assert gradient_error(0.5 * edge, edge, whole) == 0.0
    assert sad(0.5 * edge, edge, whole) > 0
    constant = np.full((16, 16), 0.3)
    assert gradient_error(constant, constant, whole) == 0.0


# --- connectivity -------------------------------------------------------------------------------


def test_largest_component_uses_4_connectivity():
    mask = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=bool)
    # With 8-connectivity all five pixels join through the diagonal (0,1)-(1,2).
    expected = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(largest_component(mask), expected)
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_connectivity_thresholds_are_exact():
    thresholds = connectivity_thresholds(0.1)
    assert len(thresholds) == 11 and thresholds[0] == 0 and thresholds[-1] == 1
    assert 153 / 255 >= thresholds[6]  # 0.6 passes 0.6, as with MATLAB's 0:0.1:1


def test_connectivity_error_of_a_step_row_by_hand():
    # One row, prediction 0.8 0.8 0.4 0.8, ground truth 1 everywhere.
    # t <= 0.4: all four pixels form one component. t = 0.5 .. 0.8: {0, 1} is the largest
    # component ({3} is alone), so pixels 2 and 3 leave it at t = 0.5 -> level 0.4. t = 0.9: no
    # prediction pixel passes, pixels 0 and 1 leave -> level 0.8. level = 0.8 0.8 0.4 0.4.
    # pred: d = 0 0 0 0.4   -> phi = 1 1 1 0.6   (d < 0.15 counts as connected)
    # gt:   d = .2 .2 .6 .6 -> phi = .8 .8 .4 .4
    # |phi_pred - phi_gt| = 0.2 0.2 0.6 0.2, sum 1.2 -> Conn = 1.2e-3 over the row.
    pred = np.array([[204, 204, 102, 204]], dtype=np.uint8)
    gt = np.full((1, 4), 255, dtype=np.uint8)
    assert connectivity_error(pred, gt, np.ones((1, 4), bool)) == pytest.approx(1.2e-3)
    assert connectivity_error(pred, gt, np.array([[False, False, False, True]])) == pytest.approx(0.2e-3)
    assert connectivity_error(gt, gt, np.ones((1, 4), bool)) == 0.0


# --- GED and adapted Dice -----------------------------------------------------------------------

# One-row masks: A = {0, 1}, B = {1, 2}, C = {3}. IoU(A, B) = 1/3, Dice(A, B) = 1/2.
A = np.array([[True, True, False, False]])
B = np.array([[False, True, True, False]])
C = np.array([[False, False, False, True]])
EMPTY = np.zeros((1, 4), bool)


def stack(*masks):
    return np.stack(masks)


def test_ged_by_hand():
    assert ged(stack(A, B), stack(A, B)) == 0.0
    # Single masks: D^2 = 2 d(A, B) = 2 (1 - 1/3).
    assert ged(stack(A), stack(B)) == pytest.approx(4 / 3)
    # Predictions {A, B}, labels {A, A}: E d(S, Y) = (0 + 0 + 2/3 + 2/3) / 4 = 1/3,
    # E d(S, S') over the 4 ordered pairs = (0 + 2/3 + 2/3 + 0) / 4 = 1/3, E d(Y, Y') = 0,
    # so D^2 = 2/3 - 1/3 = 1/3 (leaving out the self-pairs would give 0).
    assert ged(stack(A, B), stack(A, A)) == pytest.approx(1 / 3)


def test_ged_empty_masks_agree():
    assert ged(stack(EMPTY), stack(EMPTY)) == 0.0
    assert ged(stack(EMPTY), stack(A)) == pytest.approx(2.0)


def test_adapted_dice_by_hand():
    # A finds itself (1); C overlaps neither label (0): mean 0.5.
    assert adapted_dice(stack(A, C), stack(A, B)) == pytest.approx(0.5)
    # B against {A}: 2 * 1 / (2 + 2) = 0.5.
    assert adapted_dice(stack(B), stack(A)) == pytest.approx(0.5)
    assert adapted_dice(stack(EMPTY), stack(EMPTY, A)) == 1.0


def test_segmentation_metrics_refuse_bad_masks():
    with pytest.raises(MedmatError, match="boolean"):
        ged(stack(A).astype(np.uint8), stack(B))
    with pytest.raises(MedmatError, match="label masks"):
        adapted_dice(stack(A), np.zeros((2, 1, 5), bool))


# --- calibration on Brain-growth ----------------------------------------------------------------


def _calibration_script():
    return load_benchmark("check_metrics_brain_growth")


@pytest.mark.parametrize("row", ["mean of masks", "closed-form"])
def test_brain_growth_matches_independent_measurements(shared_data, row):
    # Means over the 39 cases, region trimap == 128; references measured independently
    # (see benchmarks/check_metrics_brain_growth.py). The closed-form row takes ~1 s once
    # pymatting's numba cache is warm.
    script = _calibration_script()
    measured = script.brain_growth_rows(shared_data, rows=(row,))[row]
    for name, reference in script.REFERENCE[row].items():
        assert measured[name] == pytest.approx(reference, rel=script.TOLERANCE), name


def test_mean_std_cell_leaves_out_what_is_not_finite():
    assert mean_std_cell([1.0, 3.0]) == "2.0000 ± 1.0000"
    assert mean_std_cell([1.0, float("nan"), 3.0, None, float("inf")]) == "2.0000 ± 1.0000"
    assert mean_std_cell([float("nan")]) == "—" and mean_std_cell([]) == "—"

"""Alpha-matte errors of the Deep Image Matting protocol: SAD, MSE, Grad and Conn.

The Medical Matting paper (Wang et al., 2023, Table IV) evaluates with the Deep Image Matting
(DIM, Xu et al., 2017) evaluation code, and so does medmat, convention for convention:

- Both mattes are first quantised to uint8, the way a matte saved as an 8-bit PNG is: a float
  matte ``a`` in [0, 1] becomes ``(a * 255).astype(np.uint8)`` (truncated, not rounded), a uint8
  matte is used as it is. Every metric then works on ``value / 255``.
- Errors are summed over a region, by default the trimap's unknown pixels ``trimap == 128``
  exactly (the DIM convention; pixels a resampled trimap left at 127 or 129 do not count).
- SAD, Grad and Conn are reported divided by 1000 (as in the papers' tables); MSE is the mean
  over the region, unscaled.

Gradient error follows DIM's ``compute_gradient_loss.m``: each matte is min-max normalised
(MATLAB ``mat2gray``), differentiated with ``gaussgradient.m`` (first derivative of a 2-D
Gaussian, sigma 1.4, the kernel divided by its L2 norm ``sqrt(sum(hx.^2))``, applied as a
convolution with replicated borders: ``imfilter(..., 'replicate', 'conv')``, which is
``scipy.ndimage.convolve(..., mode="nearest")`` in the widely used Python ports of the same code).

Connectivity error follows ``compute_connectivity_error.m``: the largest 4-connected foreground
component of both mattes thresholded at 0.1, 0.2, ..., 1.0 (``bwconncomp(..., 4)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from medmat.errors import MedmatError
from medmat.io.checks import check_unit_range

GRADIENT_SIGMA = 1.4
CONNECTIVITY_STEP = 0.1
# DIM counts a pixel as disconnected only when it lies this far above the threshold at which it
# left the largest component.
CONNECTIVITY_MIN_DISTANCE = 0.15
# Truncation of the kernel support in gaussgradient.m: where the Gaussian falls below this.
_GAUSS_KERNEL_EPSILON = 1e-2

REGIONS = ("unknown", "whole")


def quantize_alpha(alpha: np.ndarray, what: str = "alpha") -> np.ndarray:
    """Quantise a matte to 8 bits the way DIM evaluation sees it.

    Args:
        alpha: (H, W) matte, float in [0, 1] (or bool), or uint8 in 0..255.
        what: name used in error messages ("prediction", "ground truth").

    Returns:
        uint8 (H, W): ``(alpha * 255).astype(np.uint8)`` for float input (truncated: 0.999 becomes
        254), the input itself for uint8.

    Raises:
        MedmatError: not 2-D, NaN/infinite, outside [0, 1], or an integer dtype other than uint8
            (a {0, 1} integer mask would otherwise be read as a nearly black 0..255 matte).
    """
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise MedmatError(f"{what} must be a 2-D (H, W) matte, got shape {alpha.shape}")
    if alpha.dtype == np.uint8:
        return alpha
    if np.issubdtype(alpha.dtype, np.integer):
        raise MedmatError(f"{what} has dtype {alpha.dtype}: give a float matte in [0, 1] or uint8 in 0..255")
    check_unit_range(alpha, what, "")
    return (alpha.astype(np.float64) * 255).astype(np.uint8)


def region_mask(
    trimap: np.ndarray | None = None,
    region: str | np.ndarray = "unknown",
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """The pixels an error is summed over.

    Args:
        trimap: uint8 (H, W) trimap, 0 background / 128 unknown / 255 foreground; needed for
            ``region="unknown"``.
        region: ``"unknown"`` for ``trimap == 128`` exactly (DIM), ``"whole"`` for every pixel,
            or a bool (H, W) mask used as given.
        shape: (H, W) of the image, for ``"whole"`` or a mask when no trimap is given.

    Returns:
        bool (H, W).

    Raises:
        MedmatError: ``"unknown"`` without a trimap, a non-integer trimap, an unknown region
            name, or a mask whose shape differs from the trimap's or ``shape``.
    """
    expected = _region_shape(trimap, shape)
    if isinstance(region, str):
        if region == "unknown":
            if trimap is None:
                raise MedmatError('region "unknown" needs a trimap (pixels == 128); give one or use region "whole"')
            return np.asarray(trimap) == 128
        if region == "whole":
            if expected is None:
                raise MedmatError('region "whole" needs a trimap or the image shape')
            return np.ones(expected, dtype=bool)
        raise MedmatError(f"unknown region {region!r}: use one of {', '.join(REGIONS)} or a bool mask")
    mask = np.asarray(region)
    if mask.dtype != bool:
        raise MedmatError(f"region mask must be boolean, got {mask.dtype}")
    if expected is not None and mask.shape != expected:
        raise MedmatError(f"region mask has shape {mask.shape} but the image is {expected}")
    return mask


def _region_shape(trimap: np.ndarray | None, shape: tuple[int, int] | None) -> tuple[int, ...] | None:
    if trimap is None:
        return None if shape is None else tuple(shape)
    trimap = np.asarray(trimap)
    if trimap.ndim != 2:
        raise MedmatError(f"trimap must be 2-D (H, W), got shape {trimap.shape}")
    if not np.issubdtype(trimap.dtype, np.integer):
        # A [0, 1] float trimap would silently give an empty "== 128" region.
        raise MedmatError(f"trimap must be integer 0 / 128 / 255 (uint8), got {trimap.dtype}")
    if shape is not None and tuple(shape) != trimap.shape:
        raise MedmatError(f"trimap has shape {trimap.shape} but the image is {tuple(shape)}")
    return trimap.shape


def _unit_mattes(pred, gt, region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check and quantise a prediction / ground-truth / region triple; return floats in [0, 1]."""
    pred = quantize_alpha(pred, "prediction")
    gt = quantize_alpha(gt, "ground truth")
    if pred.shape != gt.shape:
        raise MedmatError(f"prediction has shape {pred.shape} but the ground truth is {gt.shape}")
    region = region_mask(None, region, gt.shape)
    if not region.any():
        raise MedmatError("the evaluation region is empty (no trimap pixel equals 128?)")
    return pred / 255.0, gt / 255.0, region


def sad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    """Sum of absolute differences over the region, divided by 1000.

    Args:
        pred, gt: (H, W) mattes, float in [0, 1] or uint8 (quantised as in :func:`quantize_alpha`).
        region: bool (H, W), e.g. from :func:`region_mask`.
    """
    return _sad(*_unit_mattes(pred, gt, region))


def mse(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    """Mean squared difference over the region (not scaled). Arguments as :func:`sad`."""
    return _mse(*_unit_mattes(pred, gt, region))


def gradient_error(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, sigma: float = GRADIENT_SIGMA) -> float:
    """Sum over the region of (|grad pred| - |grad gt|)^2, divided by 1000 (DIM "Grad").

    Args:
        pred, gt, region: as :func:`sad`.
        sigma: standard deviation of the derivative-of-Gaussian filter (DIM: 1.4).
    """
    return _gradient_error(*_unit_mattes(pred, gt, region), sigma=sigma)


def connectivity_error(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, step: float = CONNECTIVITY_STEP) -> float:
    """DIM connectivity error over the region, divided by 1000 ("Conn").

    Args:
        pred, gt, region: as :func:`sad`.
        step: threshold step; thresholds are step, 2 step, ..., 1.
    """
    return _connectivity_error(*_unit_mattes(pred, gt, region), step=step)


def matting_metrics(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """All four DIM errors of one matte.

    Args:
        pred: predicted (H, W) matte, float in [0, 1] or uint8.
        gt: ground-truth (H, W) matte, float in [0, 1] or uint8.
        region: bool (H, W) evaluation region, e.g. ``region_mask(trimap)``.

    Returns:
        ``{"SAD", "MSE", "Grad", "Conn"}`` as floats (SAD, Grad, Conn divided by 1000).

    Raises:
        MedmatError: NaN, values outside [0, 1], differing shapes, or an empty region.
    """
    pred, gt, region = _unit_mattes(pred, gt, region)
    return {
        "SAD": _sad(pred, gt, region),
        "MSE": _mse(pred, gt, region),
        "Grad": _gradient_error(pred, gt, region),
        "Conn": _connectivity_error(pred, gt, region),
    }


def table_iv_metrics(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None, region: str = "unknown") -> dict:
    """The errors of one matte the way medmat's tables report them: on a region and on the whole image.

    Args:
        pred: predicted (H, W) matte, float in [0, 1] or uint8.
        gt: ground-truth (H, W) matte, float in [0, 1] or uint8.
        trimap: uint8 (H, W) trimap of the case, or None.
        region: "unknown" (Table IV: ``trimap == 128``) or "whole"; a case without a trimap is
            scored on the whole image.

    Returns:
        ``{"region_name", "region": matting_metrics on the region, or None when the region is
        empty (a trimap without unknown pixels leaves nothing to score), "whole": matting_metrics
        on every pixel}``.
    """
    region_name = region if trimap is not None else "whole"
    shape = np.shape(gt)
    mask = region_mask(trimap, region_name, shape)
    return {
        "region_name": region_name,
        "region": matting_metrics(pred, gt, mask) if mask.any() else None,
        "whole": matting_metrics(pred, gt, region_mask(None, "whole", shape)),
    }



def mean_table_iv_metrics(records: Sequence[Mapping], scalars: Sequence[str] | None = None) -> dict:
    """Means over cases of :func:`table_iv_metrics`-style records.

    Args:
        records: one dict per case with "region" and "whole" (metric dicts, or None) and scalars.
        scalars: the scalar keys to average; None = every number (not bool) of the first record.

    Returns:
        ``{"region": {metric: mean}, "whole": {...}, scalar: mean, ...}``: a group's means skip the
        cases whose group is None (None when every case's is); a scalar's mean skips None values
        (None when every case's is).
    """
    summary = {}
    for group in ("region", "whole"):
        dicts = [record[group] for record in records if record.get(group) is not None]
        summary[group] = {name: float(np.mean([d[name] for d in dicts])) for name in dicts[0]} if dicts else None
    if scalars is None:
        scalars = [key for key, value in records[0].items()
                   if key not in summary and isinstance(value, (int, float)) and not isinstance(value, bool)]
    for name in scalars:
        values = [record[name] for record in records if record.get(name) is not None]
        summary[name] = float(np.mean(values)) if values else None
    return summary

def _sad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    return float(np.abs(pred - gt)[region].sum() / 1000)


def _mse(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    return float(((pred - gt) ** 2)[region].mean())


def gaussian_derivative_kernel(sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    """The x-derivative kernel of DIM's ``gaussgradient.m``.

    ``hx[i, j] = G(i - h) * G'(j - h)`` for the 1-D Gaussian G of the given sigma, with half-size
    ``h = ceil(sigma * sqrt(-2 log(sqrt(2 pi) * sigma * 0.01)))`` (4 for sigma 1.4), divided by
    its L2 norm. The y kernel is its transpose.

    Returns:
        float64 (2h+1, 2h+1).
    """
    halfsize = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * _GAUSS_KERNEL_EPSILON))))
    offsets = np.arange(-halfsize, halfsize + 1, dtype=np.float64)
    gauss = np.exp(-(offsets**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    gauss_derivative = -offsets * gauss / sigma**2
    kernel = np.outer(gauss, gauss_derivative)
    return kernel / np.sqrt(np.sum(kernel**2))


def gradient_magnitude(image: np.ndarray, sigma: float = GRADIENT_SIGMA) -> np.ndarray:
    """Derivative-of-Gaussian gradient magnitude of a min-max normalised image.

    Args:
        image: float (H, W).
        sigma: as :func:`gaussian_derivative_kernel`.

    Returns:
        float64 (H, W); zero for a constant image.
    """
    image = _min_max_normalise(image)
    kernel_x = gaussian_derivative_kernel(sigma)
    gradient_x = ndimage.convolve(image, kernel_x, mode="nearest")
    gradient_y = ndimage.convolve(image, kernel_x.T, mode="nearest")
    return np.sqrt(gradient_x**2 + gradient_y**2)


def _min_max_normalise(image: np.ndarray) -> np.ndarray:
    # MATLAB mat2gray; for a matte spanning 0..1 this is the identity.
    image = np.asarray(image, dtype=np.float64)
    low, high = image.min(), image.max()
    if high == low:
        return np.zeros_like(image)
    return (image - low) / (high - low)


def _gradient_error(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, sigma: float = GRADIENT_SIGMA) -> float:
    error = (gradient_magnitude(pred, sigma) - gradient_magnitude(gt, sigma)) ** 2
    return float(error[region].sum() / 1000)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a bool (H, W) mask (all False when it has none).

    Ties go to the component met first in row-major order.
    """
    labels, count = ndimage.label(mask)  # the default structure is 4-connectivity in 2-D
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]  # label 0 is the background, never a component
    return labels == 1 + int(np.argmax(sizes))


def connectivity_thresholds(step: float = CONNECTIVITY_STEP) -> np.ndarray:
    """Thresholds 0, step, ..., 1 as exact decimals (0.6, not 0.6000000000000001).

    MATLAB's ``0:step:1`` gives 0.6 exactly, so a pixel of 153/255 = 0.6 passes the 0.6 threshold
    there; ``np.arange`` would drop it.
    """
    if not 0 < step <= 1:
        raise MedmatError(f"connectivity step must be in (0, 1], got {step}")
    count = int(np.floor(1 / step + 1e-9))
    return np.round(np.arange(count + 1) * step, 10)


def _connectivity_error(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, step: float = CONNECTIVITY_STEP) -> float:
    thresholds = connectivity_thresholds(step)
    # The level of each pixel: the last threshold at which it still belonged to the largest
    # component of both mattes; 1 for pixels that never left it.
    level = np.ones_like(pred)
    dropped = np.zeros(pred.shape, dtype=bool)
    for previous, threshold in zip(thresholds[:-1], thresholds[1:]):
        component = largest_component((pred >= threshold) & (gt >= threshold))
        newly_dropped = ~dropped & ~component
        level[newly_dropped] = previous
        dropped |= newly_dropped
    pred_phi = _connectivity_degree(pred, level)
    gt_phi = _connectivity_degree(gt, level)
    return float(np.abs(pred_phi - gt_phi)[region].sum() / 1000)


def _connectivity_degree(alpha: np.ndarray, level: np.ndarray) -> np.ndarray:
    distance = alpha - level
    return 1 - distance * (distance >= CONNECTIVITY_MIN_DISTANCE)

"""The ceiling of one coherent correction: the best global logit offset (and temperature) of a matte.

If a user could tell the tool one number per case, "the border lies this much further out", the
best it could do is shift the logit of the whole predicted alpha by the one offset ``b`` that
minimises the error: ``alpha' = sigmoid(logit(alpha) + b)``; with a second number, a temperature
too: ``alpha' = sigmoid(a logit(alpha) + b)``. Both are found here with the ground truth (an
oracle, not a method) on the Table IV region, and say how much of a case's error is one coherent
bias of the band, which is what one well-spread answer of :mod:`medmat.interaction.fusion` can
remove.

The search minimises the region's sum of absolute differences of the unquantised mattes over a
grid (``b`` in [-10, 10] by 0.05; ``a`` on 49 log-spaced values in [0.1, 10]), then refines the
best grid point (Brent's method for ``b``, Nelder-Mead for ``(a, b)``); the reported errors are
:func:`~medmat.metrics.table_iv_metrics` of the corrected matte, as every table scores.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from medmat.data.probe_maps import PROBE_LEVELS, quantised_map
from medmat.interaction.fusion import PRIOR_EPS, logit, sigmoid
from medmat.interaction.users import ERROR_THRESHOLD, error_map
from medmat.metrics import table_iv_metrics
from medmat.metrics.matting import region_mask

#: The offsets and inverse temperatures searched before refinement.
OFFSET_GRID = np.arange(-10.0, 10.0 + 1e-9, 0.05)
SCALE_GRID = np.exp(np.linspace(np.log(0.1), np.log(10.0), 49))


def corrected_alpha(alpha: np.ndarray, offset: float, scale: float = 1.0) -> np.ndarray:
    """``sigmoid(scale logit(alpha) + offset)``, float32 (H, W) in [0, 1] (alpha clamped to [1e-6, 1 - 1e-6] first)."""
    return sigmoid(scale * logit(alpha, PRIOR_EPS) + offset).astype(np.float32)


def _region_sad(logits: np.ndarray, truth: np.ndarray, offsets: np.ndarray, scale: float) -> np.ndarray:
    """SAD of ``sigmoid(scale logits + offset)`` against ``truth`` (1-D region pixels) for every offset."""
    return np.abs(sigmoid(scale * logits[None, :] + offsets[:, None]) - truth[None, :]).sum(axis=1)


def best_offset(alpha: np.ndarray, alpha_gt: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """``(offset, scale)`` pairs minimising the region's SAD: returns ``(b, 1.0)`` for the offset alone."""
    logits, truth = logit(alpha, PRIOR_EPS)[region], np.asarray(alpha_gt, np.float64)[region]
    grid = _region_sad(logits, truth, OFFSET_GRID, 1.0)
    start = float(OFFSET_GRID[int(np.argmin(grid))])
    refined = optimize.minimize_scalar(lambda b: float(_region_sad(logits, truth, np.array([b]), 1.0)[0]),
                                       bounds=(start - 0.05, start + 0.05), method="bounded")
    return (float(refined.x), 1.0) if refined.fun <= grid.min() else (start, 1.0)


def best_offset_and_scale(alpha: np.ndarray, alpha_gt: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """``(offset b, scale a)`` minimising the region's SAD of ``sigmoid(a logit(alpha) + b)``."""
    logits, truth = logit(alpha, PRIOR_EPS)[region], np.asarray(alpha_gt, np.float64)[region]
    best = (np.inf, 0.0, 1.0)
    for scale in SCALE_GRID:
        values = _region_sad(logits, truth, OFFSET_GRID, scale)
        index = int(np.argmin(values))
        if values[index] < best[0]:
            best = (float(values[index]), float(OFFSET_GRID[index]), float(scale))

    def objective(x):
        return float(_region_sad(logits, truth, np.array([x[0]]), np.exp(x[1]))[0])

    refined = optimize.minimize(objective, x0=[best[1], np.log(best[2])], method="Nelder-Mead",
                                options={"xatol": 1e-3, "fatol": 1e-6})
    if refined.fun <= best[0]:
        return float(refined.x[0]), float(np.exp(refined.x[1]))
    return best[1], best[2]


def search_region(prediction: dict, trimap: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): where the oracles search: the Table IV region of ``prediction`` (a
    :func:`~medmat.metrics.table_iv_metrics` result), or the whole image when it has none."""
    if prediction["region"] is not None and prediction["region_name"] != "whole":
        return region_mask(trimap, "unknown")
    return region_mask(None, "whole", shape)


def offset_ceiling(alpha: np.ndarray, alpha_gt: np.ndarray, trimap: np.ndarray | None, region: str = "unknown") -> dict:
    """The ceiling of one case.

    Args:
        alpha: predicted (H, W) alpha in [0, 1].
        alpha_gt: ground truth (H, W) in [0, 1].
        trimap: uint8 (H, W) trimap (its ``== 128`` pixels are the Table IV region), or None (whole image).
        region: "unknown" or "whole", as :func:`~medmat.metrics.table_iv_metrics`.

    Returns:
        ``{"prediction": table_iv_metrics, "offset": {"offset", "scale": 1, "metrics"},
        "offset_temperature": {"offset", "scale", "metrics"}}`` (the temperature is ``1 / scale``);
        the search runs on the region (the whole image when the region is empty).
    """
    prediction = table_iv_metrics(np.clip(alpha, 0.0, 1.0), alpha_gt, trimap, region)
    mask = search_region(prediction, trimap, np.shape(alpha_gt))
    group = "region" if prediction["region"] is not None else "whole"
    result = {"prediction": prediction}
    for name, search in (("offset", best_offset), ("offset_temperature", best_offset_and_scale)):
        offset, scale = search(alpha, alpha_gt, mask)
        metrics = table_iv_metrics(corrected_alpha(alpha, offset, scale), alpha_gt, trimap, region)
        # The search minimises the unquantised error; the tables score 8-bit mattes, on which no
        # correction can be the best one (an offset of 0 is a correction too).
        if metrics[group]["SAD"] > prediction[group]["SAD"]:
            offset, scale, metrics = 0.0, 1.0, prediction
        result[name] = {"offset": offset, "scale": scale, "metrics": metrics}
    return result


def largest_error_regions(alpha: np.ndarray, alpha_gt: np.ndarray, mask: np.ndarray, count: int,
                          threshold: float = ERROR_THRESHOLD) -> list[np.ndarray]:
    """The ``count`` error regions of largest summed error, largest first.

    Args:
        alpha, alpha_gt: (H, W) mattes in [0, 1].
        mask: bool (H, W), where errors count (the band).
        count: how many regions at most.
        threshold: a pixel is wrong when its absolute error exceeds this (the simulated user's).

    Returns:
        bool (H, W) masks of 4-connected wrong pixels (fewer than ``count`` when fewer exist).
    """
    error = error_map(alpha, alpha_gt, mask)
    labels, found = ndimage.label(error > threshold)
    if found == 0:
        return []
    sums = ndimage.sum(error, labels, index=np.arange(1, found + 1))
    return [labels == index + 1 for index in np.argsort(-sums, kind="stable")[:count]]


def region_oracles(alpha: np.ndarray, alpha_gt: np.ndarray, trimap: np.ndarray | None, region: str = "unknown",
                   counts=(1, 3, 5), levels=PROBE_LEVELS,
                   global_correction: tuple[float, float] | None = None) -> dict:
    """What k answers could do at most on one case (module docstring: three oracles).

    Args:
        alpha: predicted (H, W) alpha in [0, 1].
        alpha_gt: ground truth (H, W) in [0, 1].
        trimap: uint8 (H, W) or None, as :func:`offset_ceiling`.
        region: "unknown" or "whole".
        counts: the numbers of answers k (increasing, at least 1).
        levels: the answers a user may give.
        global_correction: ``(offset, scale)`` of the global correction "global_then_pasted" starts
            from, as :func:`offset_ceiling` found it (its "offset_temperature"); searched here when None.

    Returns:
        ``{"region_offset_temperature" | "pasted_levels" | "global_then_pasted": {str(k):
        table_iv_metrics of the corrected matte}}``.
    """
    counts = sorted(int(k) for k in counts)
    if not counts or counts[0] < 1:
        raise ValueError(f"counts must be whole numbers of at least 1, got {counts!r}")
    alpha = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, 1.0)
    truth = np.asarray(alpha_gt, dtype=np.float64)
    prediction = table_iv_metrics(alpha, truth, trimap, region)
    mask = search_region(prediction, trimap, truth.shape)
    pasted_truth = quantised_map(truth, levels)
    offset, scale = global_correction if global_correction is not None else best_offset_and_scale(alpha, truth, mask)
    globally = np.where(mask, corrected_alpha(alpha, offset, scale), alpha)

    def corrections(start: np.ndarray, fix) -> dict:
        regions = largest_error_regions(start, truth, mask, counts[-1])
        corrected, result = start.copy(), {}
        for k in range(1, counts[-1] + 1):
            if k <= len(regions):
                corrected[regions[k - 1]] = fix(regions[k - 1])
            if k in counts:
                result[str(k)] = table_iv_metrics(corrected, truth, trimap, region)
        return result

    def own_offset_and_temperature(pixels: np.ndarray) -> np.ndarray:
        region_offset, region_scale = best_offset_and_scale(alpha, truth, pixels)
        return corrected_alpha(alpha, region_offset, region_scale)[pixels]

    return {
        "region_offset_temperature": corrections(alpha, own_offset_and_temperature),
        "pasted_levels": corrections(alpha, lambda pixels: pasted_truth[pixels]),
        "global_then_pasted": corrections(globally, lambda pixels: pasted_truth[pixels]),
    }

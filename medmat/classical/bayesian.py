"""Bayesian matting (Chuang, Curless, Salesin, Szeliski, CVPR 2001).

"A Bayesian Approach to Digital Matting" estimates, for each unknown pixel with colour C, the
foreground colour F, background colour B and opacity α that maximise
``L(C | F, B, α) + L(F) + L(B)`` with

- ``L(C | F, B, α) = -||C - αF - (1-α)B||² / σ_C²`` (camera noise σ_C = 0.01 on [0, 1] colours),
- ``L(F) = -(F - F̄)ᵀ Σ_F⁻¹ (F - F̄) / 2`` and the same for B: oriented Gaussians fitted to
  nearby foreground (background) colours.

What is implemented, following the paper:

- **onion-peel order**: unknown pixels are solved in order of their distance to the known
  region (Euclidean distance transform; raster order within a distance), so each pixel can
  use the F, B and α already estimated nearer the known region;
- **weighted samples**: in an N x N window (N = 25) around the pixel, every known or already
  solved pixel q gives a foreground sample F_q with weight ``α_q² g_q`` and a background
  sample B_q with weight ``(1 - α_q)² g_q``, g a Gaussian falloff with σ = 8;
- **clustering**: each side's samples are split into clusters with Orchard and Bouman's
  algorithm (split the cluster whose weighted covariance has the largest eigenvalue along its
  eigenvector, at the weighted mean, until that eigenvalue is below ``cluster_variance``);
  each cluster gives F̄ (or B̄) and Σ;
- **MAP solve**: for every pair of foreground and background clusters, alternate the 6x6 linear
  solve for F and B at fixed α (the paper's equation 9) and
  ``α = (C - B)·(F - B) / ||F - B||²`` (equation 10), starting from the mean α of the window,
  until the log-likelihood changes by less than ``tolerance``; the pair with the highest
  log-likelihood wins.

Simplifications (documented choices, not in the paper):

- a window with fewer than ``min_samples`` (10) samples on a side is doubled (and its falloff
  σ with it) until it has them or covers the image; the paper does not say what to do there;
- at most ``max_clusters`` (5) clusters per side and ``max_iterations`` (50) iterations per
  pair bound the work; F and B are clipped to [0, 1] and α to [0, 1] after each step;
- each cluster covariance gets ``covariance_regularization`` (1e-5) added to its diagonal, so
  that flat regions and grey images (rank-1 colour covariances) stay invertible.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

from medmat.classical.trimap import (
    check_matting_inputs,
    known_alpha,
    require_positive,
    restore_known_alpha,
)
from medmat.data.trimap import trimap_regions

WINDOW = 25
FALLOFF_SIGMA = 8.0
MIN_SAMPLES = 10
CAMERA_SIGMA = 0.01
CLUSTER_VARIANCE = 0.05
MAX_CLUSTERS = 5
MAX_ITERATIONS = 50
TOLERANCE = 1e-6
COVARIANCE_REGULARIZATION = 1e-5
_POWER_ITERATIONS = 30


def estimate_alpha_bayes(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    window: int = WINDOW,
    falloff_sigma: float = FALLOFF_SIGMA,
    min_samples: int = MIN_SAMPLES,
    camera_sigma: float = CAMERA_SIGMA,
    cluster_variance: float = CLUSTER_VARIANCE,
    max_clusters: int = MAX_CLUSTERS,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
    covariance_regularization: float = COVARIANCE_REGULARIZATION,
) -> np.ndarray:
    """Bayesian matting.

    Args:
        image: (H, W) or (H, W, 3) float in [0, 1].
        trimap: (H, W) uint8 or float in [0, 1] (see :func:`~medmat.data.trimap.trimap_regions`).
        window: side N of the sample window (radius N // 2, at least 1).
        falloff_sigma: σ of the Gaussian falloff of sample weights, in pixels.
        min_samples: samples wanted on each side before the window stops growing.
        camera_sigma: σ_C, the camera noise on [0, 1] colours.
        cluster_variance: Orchard-Bouman stops splitting below this largest eigenvalue.
        max_clusters: at most this many clusters per side.
        max_iterations, tolerance: stopping rule of the alternating F, B / α solve.
        covariance_regularization: added to the diagonal of each cluster covariance.

    Returns:
        float64 (H, W) alpha in [0, 1]; known pixels are exactly 0 or 1.
    """
    image, trimap = check_matting_inputs(image, trimap, "Bayesian matting")
    require_positive(
        "Bayesian matting", window=window, falloff_sigma=falloff_sigma, min_samples=min_samples,
        camera_sigma=camera_sigma, cluster_variance=cluster_variance, max_clusters=max_clusters,
        max_iterations=max_iterations, covariance_regularization=covariance_regularization,
    )
    foreground, background, unknown = trimap_regions(trimap)
    if not unknown.any():
        return known_alpha(trimap)
    alpha = foreground.astype(np.float64)
    foreground_colors = np.where(foreground[:, :, None], image, 0.0)
    background_colors = np.where(background[:, :, None], image, 0.0)
    rows, columns = onion_peel_order(unknown)
    # A window narrower than 3 px would never grow (its radius would stay 0).
    radius = max(int(window) // 2, 1)
    _solve_in_order(
        image, alpha, foreground_colors, background_colors, ~unknown, rows, columns, radius,
        float(falloff_sigma), int(min_samples), float(camera_sigma), float(cluster_variance),
        int(max_clusters), int(max_iterations), float(tolerance), float(covariance_regularization),
    )
    return restore_known_alpha(alpha, trimap)


def onion_peel_order(unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unknown pixels ordered from the known region inward.

    Args:
        unknown: bool (H, W) with at least one known (False) pixel.

    Returns:
        ``(rows, columns)``, int64 (U,) each: unknown pixels sorted by Euclidean distance to the
        nearest known pixel, raster order among equal distances.
    """
    distance = ndimage.distance_transform_edt(unknown)
    rows, columns = np.nonzero(unknown)
    order = np.argsort(distance[rows, columns], kind="stable")
    return rows[order].astype(np.int64), columns[order].astype(np.int64)


@njit(cache=True, nogil=True)
def _solve_in_order(
    image, alpha, foreground_colors, background_colors, solved, rows, columns, radius, falloff_sigma,
    min_samples, camera_sigma, cluster_variance, max_clusters, max_iterations, tolerance, regularization,
):  # pragma: no cover - numba
    height, width = alpha.shape
    for n in range(rows.shape[0]):
        y, x = rows[n], columns[n]
        r, sigma = radius, falloff_sigma
        while True:
            fg_samples, fg_weights, bg_samples, bg_weights, mean_alpha = _gather_samples(
                alpha, foreground_colors, background_colors, solved, y, x, r, sigma
            )
            covers_image = r >= max(height, width)
            if (fg_weights.size >= min_samples and bg_weights.size >= min_samples) or covers_image:
                break
            r, sigma = 2 * r, 2 * sigma
        fg_means, fg_inverses = _orchard_bouman(fg_samples, fg_weights, cluster_variance, max_clusters, regularization)
        bg_means, bg_inverses = _orchard_bouman(bg_samples, bg_weights, cluster_variance, max_clusters, regularization)
        color = image[y, x]
        best = -np.inf
        for i in range(fg_means.shape[0]):
            for j in range(bg_means.shape[0]):
                f, b, a, likelihood = _maximise_pair(
                    color, fg_means[i], fg_inverses[i], bg_means[j], bg_inverses[j],
                    mean_alpha, camera_sigma, max_iterations, tolerance,
                )
                if likelihood > best:
                    best = likelihood
                    alpha[y, x] = a
                    foreground_colors[y, x] = f
                    background_colors[y, x] = b
        solved[y, x] = True


@njit(cache=True, nogil=True)
def _gather_samples(alpha, foreground_colors, background_colors, solved, y, x, radius, sigma):  # pragma: no cover
    height, width = alpha.shape
    top, bottom = max(y - radius, 0), min(y + radius + 1, height)
    left, right = max(x - radius, 0), min(x + radius + 1, width)
    capacity = (bottom - top) * (right - left)
    fg_samples = np.empty((capacity, 3))
    bg_samples = np.empty((capacity, 3))
    fg_weights = np.empty(capacity)
    bg_weights = np.empty(capacity)
    n_fg, n_bg, alpha_sum, n_solved = 0, 0, 0.0, 0
    for v in range(top, bottom):
        for u in range(left, right):
            if not solved[v, u]:
                continue
            a = alpha[v, u]
            alpha_sum += a
            n_solved += 1
            falloff = np.exp(-((v - y) ** 2 + (u - x) ** 2) / (2.0 * sigma * sigma))
            fg_weight = a * a * falloff
            bg_weight = (1.0 - a) * (1.0 - a) * falloff
            if fg_weight > 0.0:
                fg_samples[n_fg] = foreground_colors[v, u]
                fg_weights[n_fg] = fg_weight
                n_fg += 1
            if bg_weight > 0.0:
                bg_samples[n_bg] = background_colors[v, u]
                bg_weights[n_bg] = bg_weight
                n_bg += 1
    mean_alpha = alpha_sum / n_solved if n_solved > 0 else 0.5
    return fg_samples[:n_fg], fg_weights[:n_fg], bg_samples[:n_bg], bg_weights[:n_bg], mean_alpha


@njit(cache=True, nogil=True)
def _weighted_gaussian(samples, weights, labels, cluster):  # pragma: no cover - numba
    total = 0.0
    mean = np.zeros(3)
    for k in range(samples.shape[0]):
        if labels[k] == cluster:
            total += weights[k]
            for i in range(3):
                mean[i] += weights[k] * samples[k, i]
    mean /= total
    covariance = np.zeros((3, 3))
    for k in range(samples.shape[0]):
        if labels[k] == cluster:
            for i in range(3):
                for j in range(3):
                    covariance[i, j] += weights[k] * (samples[k, i] - mean[i]) * (samples[k, j] - mean[j])
    return mean, covariance / total


@njit(cache=True, nogil=True)
def _orchard_bouman(samples, weights, cluster_variance, max_clusters, regularization):  # pragma: no cover - numba
    n = samples.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    n_clusters = 1
    while n_clusters < max_clusters:
        # Split the cluster with the largest principal variance, at its mean along that axis.
        widest, widest_variance = -1, cluster_variance
        widest_axis, widest_mean = np.zeros(3), np.zeros(3)
        for c in range(n_clusters):
            mean, covariance = _weighted_gaussian(samples, weights, labels, c)
            variance, axis = _principal_axis(covariance)
            if variance > widest_variance:
                widest, widest_variance = c, variance
                widest_axis, widest_mean = axis, mean
        if widest < 0:
            break
        threshold = _dot(widest_axis, widest_mean)
        moved = 0
        for k in range(n):
            if labels[k] == widest and _dot(widest_axis, samples[k]) > threshold:
                labels[k] = n_clusters
                moved += 1
        if moved == 0:
            break
        n_clusters += 1
    means = np.empty((n_clusters, 3))
    inverses = np.empty((n_clusters, 3, 3))
    for c in range(n_clusters):
        mean, covariance = _weighted_gaussian(samples, weights, labels, c)
        means[c] = mean
        for i in range(3):
            covariance[i, i] += regularization
        inverses[c] = _inverse_3x3(covariance)
    return means, inverses


@njit(cache=True, nogil=True)
def _principal_axis(covariance):  # pragma: no cover - numba
    # Power iteration from the covariance's longest column (which lies in its range). Here and
    # below, plain loops instead of np.linalg / np.dot / @ keep numba's BLAS and LAPACK bindings,
    # and their long first compilation, out of this module.
    axis = np.zeros(3)
    longest = -1.0
    for j in range(3):
        length = covariance[0, j] ** 2 + covariance[1, j] ** 2 + covariance[2, j] ** 2
        if length > longest:
            longest = length
            axis[:] = covariance[:, j]
    if longest <= 0.0:
        return 0.0, np.array([1.0, 0.0, 0.0])
    axis /= np.sqrt(longest)
    for _ in range(_POWER_ITERATIONS):
        axis = _matvec(covariance, axis)
        axis /= np.sqrt(_dot(axis, axis))
    return _dot(axis, _matvec(covariance, axis)), axis


@njit(cache=True, nogil=True)
def _inverse_3x3(matrix):  # pragma: no cover - numba
    inverse = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            # Cofactor of (j, i): the adjugate is the transposed cofactor matrix.
            r0, r1 = (j + 1) % 3, (j + 2) % 3
            c0, c1 = (i + 1) % 3, (i + 2) % 3
            inverse[i, j] = matrix[r0, c0] * matrix[r1, c1] - matrix[r0, c1] * matrix[r1, c0]
    determinant = matrix[0, 0] * inverse[0, 0] + matrix[0, 1] * inverse[1, 0] + matrix[0, 2] * inverse[2, 0]
    return inverse / determinant


@njit(cache=True, nogil=True)
def _maximise_pair(color, fg_mean, fg_inverse, bg_mean, bg_inverse, alpha, camera_sigma, max_iterations, tolerance):  # pragma: no cover
    inverse_noise = 1.0 / (camera_sigma * camera_sigma)
    fg_prior = _matvec(fg_inverse, fg_mean)
    bg_prior = _matvec(bg_inverse, bg_mean)
    system = np.empty((6, 6))
    solution = np.empty(6)
    f, b = fg_mean.copy(), bg_mean.copy()
    previous = -np.inf
    likelihood = -np.inf
    for _ in range(max_iterations):
        # Equation 9: F and B at fixed alpha.
        beta = 1.0 - alpha
        for i in range(3):
            for j in range(3):
                system[i, j] = fg_inverse[i, j]
                system[i + 3, j + 3] = bg_inverse[i, j]
                system[i, j + 3] = 0.0
                system[i + 3, j] = 0.0
            system[i, i] += alpha * alpha * inverse_noise
            system[i + 3, i + 3] += beta * beta * inverse_noise
            system[i, i + 3] = alpha * beta * inverse_noise
            system[i + 3, i] = alpha * beta * inverse_noise
            solution[i] = fg_prior[i] + color[i] * alpha * inverse_noise
            solution[i + 3] = bg_prior[i] + color[i] * beta * inverse_noise
        _cholesky_solve(system, solution)
        for i in range(3):
            f[i] = min(max(solution[i], 0.0), 1.0)
            b[i] = min(max(solution[i + 3], 0.0), 1.0)
        # Equation 10: alpha at fixed F and B.
        separation = f - b
        squared = _dot(separation, separation)
        if squared > 1e-12:
            alpha = min(max(_dot(color - b, separation) / squared, 0.0), 1.0)
        residual = color - alpha * f - (1.0 - alpha) * b
        fg_offset, bg_offset = f - fg_mean, b - bg_mean
        likelihood = (
            -_dot(residual, residual) * inverse_noise
            - 0.5 * _dot(fg_offset, _matvec(fg_inverse, fg_offset))
            - 0.5 * _dot(bg_offset, _matvec(bg_inverse, bg_offset))
        )
        if abs(likelihood - previous) <= tolerance:
            break
        previous = likelihood
    return f, b, alpha, likelihood


@njit(cache=True, nogil=True)
def _cholesky_solve(matrix, rhs):  # pragma: no cover - numba
    # In place: matrix becomes its Cholesky factor, rhs the solution. The 6x6 systems are
    # symmetric positive definite (inverse covariances plus a positive semi-definite term).
    n = matrix.shape[0]
    for j in range(n):
        for k in range(j):
            matrix[j, j] -= matrix[j, k] * matrix[j, k]
        matrix[j, j] = np.sqrt(matrix[j, j])
        for i in range(j + 1, n):
            for k in range(j):
                matrix[i, j] -= matrix[i, k] * matrix[j, k]
            matrix[i, j] /= matrix[j, j]
    for i in range(n):
        for k in range(i):
            rhs[i] -= matrix[i, k] * rhs[k]
        rhs[i] /= matrix[i, i]
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            rhs[i] -= matrix[k, i] * rhs[k]
        rhs[i] /= matrix[i, i]


@njit(cache=True, nogil=True)
def _dot(a, b):  # pragma: no cover - numba
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True, nogil=True)
def _matvec(matrix, vector):  # pragma: no cover - numba
    result = np.empty(3)
    for i in range(3):
        result[i] = matrix[i, 0] * vector[0] + matrix[i, 1] * vector[1] + matrix[i, 2] * vector[2]
    return result

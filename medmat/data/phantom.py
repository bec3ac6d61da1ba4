"""Synthetic lesion phantoms with a known alpha matte and several simulated annotators.

The phantom is the embedded default dataset (``make demo``, fast tests): it needs no download,
takes a few milliseconds per case, and has a true alpha, which no real medical set has.

A phantom case is built as in the matting equation ``I = alpha * F + (1 - alpha) * B``:

- the lesion is a blob whose radius is smoothly perturbed in polar coordinates, sometimes the
  union of two lobes;
- ``alpha`` ramps from 1 inside to 0 outside across a transition zone whose width varies along
  the border and whose ramp is modulated by smooth noise, so the zone is textured, not a ring;
- ``F`` and ``B`` are textured intensities (smooth noise), and Gaussian noise is added;
- each of ``K`` annotators thresholds a slightly jittered alpha at a level of their own in
  [0.25, 0.75]; they agree wherever alpha is exactly 0 or 1, so they disagree only in the
  transition zone, as the annotators of the Medical Matting datasets do.

Determinism: every random number comes from ``np.random.default_rng(seed)``, and after the draws
only IEEE-exact elementwise arithmetic (+, -, *, /, sqrt, min, max) is used: no trigonometric
functions, library filters or BLAS, whose last bits differ between machines. The same seed gives
bit-identical arrays everywhere (for a given numpy version, which fixes the generator's stream).
"""

from __future__ import annotations

import numpy as np

from medmat.data.sample import Sample
from medmat.data.validate import validate_sample

# Radius perturbation: harmonics 2..5 of the polar angle, amplitude falling as 1/k so the
# outline stays smooth and star-shaped (the total stays below 0.3 of the radius).
HARMONICS = (2, 3, 4, 5)
HARMONIC_AMPLITUDE = 0.12
# Transition-zone width in pixels at size 128 (scaled with the image size).
ZONE_WIDTH_RANGE = (3.0, 14.0)
# Smooth-noise amplitude added to the ramp coordinate; below 0.5 so the zone keeps a certain
# core (alpha = 1) and a certain background (alpha = 0).
ZONE_TEXTURE = 0.3
ANNOTATOR_LEVEL_RANGE = (0.25, 0.75)
# Annotator boundary jitter in pixels: a global offset plus a smooth elastic displacement.
ANNOTATOR_OFFSET = 0.75
ANNOTATOR_ELASTIC = 0.75


def smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """A smooth random field: uniform control points on a coarse grid, cubic B-spline upsampled.

    Args:
        rng: the random generator (draws ``(n + 3)**2`` uniforms, ``n = ceil(size / cell)``).
        size: the field is ``size`` x ``size``.
        cell: spacing of the control points in pixels; features are about this large.

    Returns:
        float64 (size, size), scaled so its largest magnitude is exactly 1 (range [-1, 1]).
    """
    cells = max(1, int(np.ceil(size / cell)))
    control = rng.uniform(-1.0, 1.0, size=(cells + 3, cells + 3))
    start, weights = _bspline_weights(size, cells)
    # Separable: interpolate along columns, then along rows, as explicit weighted sums.
    along_columns = sum(weights[j][None, :] * control[:, start + j] for j in range(4))
    field = sum(weights[i][:, None] * along_columns[start + i, :] for i in range(4))
    return field / np.max(np.abs(field))


def _bspline_weights(size: int, cells: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """First control index and the four cubic B-spline weights for each of ``size`` pixels."""
    position = (np.arange(size) + 0.5) * (cells / size)
    start = np.floor(position).astype(int)
    t = position - start
    weights = [
        (1.0 - t) ** 3 / 6.0,
        (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0,
        (-3.0 * t**3 + 3.0 * t**2 + 3.0 * t + 1.0) / 6.0,
        t**3 / 6.0,
    ]
    return start, weights


def lobe_distance(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray,
                  centre: tuple[float, float], radius: float) -> np.ndarray:
    """Signed radial distance (pixels) to a blob with a smoothly perturbed radius.

    The blob is ``rho < radius * (1 + sum_k p_k cos(k theta) + q_k sin(k theta))``; the
    harmonics come from the complex powers of ``(cos theta, sin theta) = (dx, dy) / rho``, so
    no trigonometric function is evaluated.

    Returns:
        float64 like ``rows``: negative inside, positive outside, ``rho - r(theta)``.
    """
    d_row, d_col = rows - centre[0], cols - centre[1]
    rho = np.sqrt(d_row * d_row + d_col * d_col)
    safe_rho = np.maximum(rho, 1e-12)
    cos_theta, sin_theta = d_col / safe_rho, d_row / safe_rho
    cos_k, sin_k = np.ones_like(rho), np.zeros_like(rho)
    perturbation = np.zeros_like(rho)
    for k in range(1, max(HARMONICS) + 1):
        cos_k, sin_k = cos_k * cos_theta - sin_k * sin_theta, sin_k * cos_theta + cos_k * sin_theta
        if k in HARMONICS:
            p, q = rng.uniform(-1.0, 1.0, size=2) * (HARMONIC_AMPLITUDE / k)
            perturbation = perturbation + p * cos_k + q * sin_k
    return rho - radius * (1.0 + perturbation)


def soft_alpha(distance: np.ndarray, zone_width: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Alpha from a signed distance: a smoothstep ramp of local width, modulated by texture.

    Args:
        distance: signed distance in pixels (negative inside the lesion).
        zone_width: positive width of the ramp in pixels, per pixel.
        texture: smooth noise in [-1, 1], shifts the ramp by up to ``ZONE_TEXTURE``.

    Returns:
        float64 in [0, 1]; exactly 1 where ``distance <= -(0.5 + ZONE_TEXTURE) * zone_width``
        and exactly 0 where ``distance >= (0.5 + ZONE_TEXTURE) * zone_width``.
    """
    ramp = np.clip(0.5 - distance / zone_width + ZONE_TEXTURE * texture, 0.0, 1.0)
    return ramp * ramp * (3.0 - 2.0 * ramp)


def bilinear_sample(field: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample a 2-D field at fractional (rows, cols), clamping to the border. Returns float64."""
    height, width = field.shape
    rows = np.clip(rows, 0.0, height - 1.0)
    cols = np.clip(cols, 0.0, width - 1.0)
    row0 = np.minimum(np.floor(rows).astype(int), height - 2)
    col0 = np.minimum(np.floor(cols).astype(int), width - 2)
    t_row, t_col = rows - row0, cols - col0
    top = field[row0, col0] * (1.0 - t_col) + field[row0, col0 + 1] * t_col
    bottom = field[row0 + 1, col0] * (1.0 - t_col) + field[row0 + 1, col0 + 1] * t_col
    return top * (1.0 - t_row) + bottom * t_row


def annotator_masks(rng: np.random.Generator, alpha: np.ndarray, n_annotators: int) -> tuple[np.ndarray, np.ndarray]:
    """Simulated annotators: each thresholds a jittered copy of ``alpha`` at their own level.

    The jitter (a sub-pixel offset plus a smooth displacement of under a pixel) moves each
    annotator's boundary a little, as a hand-drawn contour does. Where the true alpha is exactly
    0 or 1 the tissue is unambiguous and every annotator agrees with it.

    Returns:
        masks: bool (K, H, W); levels: float64 (K,), the annotators' thresholds.
    """
    size = alpha.shape[0]
    rows, cols = np.indices(alpha.shape, dtype=np.float64)
    certain_foreground, certain_background = alpha == 1.0, alpha == 0.0
    levels = rng.uniform(*ANNOTATOR_LEVEL_RANGE, size=n_annotators)
    masks = np.empty((n_annotators, *alpha.shape), dtype=bool)
    for k in range(n_annotators):
        offset = rng.uniform(-ANNOTATOR_OFFSET, ANNOTATOR_OFFSET, size=2)
        shift_rows = offset[0] + ANNOTATOR_ELASTIC * smooth_noise(rng, size, size / 4)
        shift_cols = offset[1] + ANNOTATOR_ELASTIC * smooth_noise(rng, size, size / 4)
        jittered = bilinear_sample(alpha, rows + shift_rows, cols + shift_cols)
        masks[k] = ((jittered > levels[k]) & ~certain_background) | certain_foreground
    return masks, levels


def make_phantom(seed: int, size: int = 128, n_annotators: int = 4) -> Sample:
    """One synthetic lesion with its true alpha matte and ``n_annotators`` binary masks.

    Args:
        seed: the case's seed; the case id is ``phantom-{seed:03d}``.
        size: the image is ``size`` x ``size`` (at least 16).
        n_annotators: number of simulated annotators K (at least 1).

    Returns:
        A validated :class:`Sample`: image float32 (1, size, size) in [0, 1], masks bool
        (K, size, size), alpha float32 (size, size) in [0, 1], group = id,
        source ``phantom(seed=...)``, meta ``annotator_levels`` (the K thresholds).
    """
    if size < 16 or n_annotators < 1:
        raise ValueError(f"phantom needs size >= 16 and n_annotators >= 1, got {size}, {n_annotators}")
    rng = np.random.default_rng(seed)
    scale = size / 128.0
    rows, cols = np.indices((size, size), dtype=np.float64)

    centre = tuple(size / 2.0 + rng.uniform(-0.08, 0.08, size=2) * size)
    radius = rng.uniform(0.14, 0.22) * size
    distance = lobe_distance(rng, rows, cols, centre, radius)
    if rng.random() < 0.5:
        # A second, smaller lobe overlapping the first: the union of two blobs.
        direction = rng.normal(size=2)
        direction = direction / np.sqrt(direction[0] * direction[0] + direction[1] * direction[1])
        second_centre = tuple(np.asarray(centre) + direction * radius * rng.uniform(0.6, 1.0))
        second = lobe_distance(rng, rows, cols, second_centre, radius * rng.uniform(0.5, 0.8))
        distance = np.minimum(distance, second)

    low_width, high_width = (w * scale for w in ZONE_WIDTH_RANGE)
    zone_width = low_width + (high_width - low_width) * 0.5 * (smooth_noise(rng, size, size / 4) + 1.0)
    alpha = soft_alpha(distance, zone_width, smooth_noise(rng, size, 6.0 * scale))

    foreground = rng.uniform(0.6, 0.8) + 0.12 * smooth_noise(rng, size, 8.0 * scale)
    background = rng.uniform(0.15, 0.35) + 0.10 * smooth_noise(rng, size, 12.0 * scale)
    noise_level = rng.uniform(0.01, 0.04)
    image = alpha * foreground + (1.0 - alpha) * background + noise_level * rng.standard_normal((size, size))
    image = np.clip(image, 0.0, 1.0)

    masks, levels = annotator_masks(rng, alpha, n_annotators)
    case_id = f"phantom-{seed:03d}"
    sample = Sample(
        id=case_id,
        image=image[None].astype(np.float32),
        masks=masks,
        alpha=alpha.astype(np.float32),
        group=case_id,
        source=f"phantom(seed={seed})",
        meta={"annotator_levels": levels.tolist()},
    )
    return validate_sample(sample, require_alpha=True)


def make_phantom_dataset(n_cases: int = 16, size: int = 128, n_annotators: int = 4, seed: int = 0) -> list[Sample]:
    """``n_cases`` phantoms with the consecutive seeds ``seed, seed + 1, ...``.

    A case is identified by its seed alone (``phantom-007`` is ``make_phantom(7)`` in every
    dataset that holds it), so datasets with seeds ``s`` and ``s + n_cases`` are disjoint.

    Returns:
        list of ``n_cases`` validated samples, ids ``phantom-{seed:03d}`` onwards.
    """
    if n_cases < 1:
        raise ValueError(f"n_cases must be at least 1, got {n_cases}")
    return [make_phantom(seed + index, size=size, n_annotators=n_annotators) for index in range(n_cases)]

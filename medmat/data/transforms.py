"""Dictionary transforms over named numpy arrays (MONAI style) and Eq. 3 pseudo masks.

A data dict maps names to arrays whose last two axes are the image plane:

- ``image`` float32 (C, H, W), ``alpha`` float32 (H, W), ``uncertainty`` float (H, W), and a
  base model's held-out prediction ``held_out_base_alpha`` / ``held_out_base_uncertainty`` (H, W):
  continuous, resampled bilinearly and kept within their input range;
- ``masks`` bool (K, H, W), ``pseudo_mask`` bool (H, W), ``trimap`` uint8 (H, W): labels,
  resampled by nearest neighbour so they stay bool / keep their exact label values.

The interpolation follows the dtype (bool and integer arrays: nearest; floating: bilinear), so
any other (…, H, W) array listed in ``keys`` is handled the same way. Other entries (an id, a
spacing) pass through unchanged. Every transform applies ONE geometric change to every present
spatial key, takes an explicit ``np.random.Generator``, and returns a new dict of new arrays:
the input is never modified.

The default parameters are those of the Medical Matting authors' code (Wang et al. 2023, the
paper cites only "flip, rotation, and elastic transformation [Simard 2003]"): a horizontal and a
vertical flip each with probability 0.5, a rotation uniform in [-180, 180] degrees, and an
elastic deformation with alpha = 2 W, sigma = 0.15 W and a random affine of 0.05 W, W being the
image width, each applied to every training sample. :class:`RandomIntensityd` (brightness and
gamma, off unless asked for: ``data.intensity_scale`` / ``data.intensity_gamma``) is medmat's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from medmat.errors import MedmatError

#: A base model's prediction of a case by a fold model that did not train on it (cross-fitting).
HELD_OUT_BASE_KEYS = ("held_out_base_alpha", "held_out_base_uncertainty")
SPATIAL_KEYS = ("image", "masks", "alpha", "trimap", "pseudo_mask", "uncertainty", *HELD_OUT_BASE_KEYS)


def present_keys(data: dict, keys: Sequence[str]) -> list[str]:
    """The names in ``keys`` that ``data`` holds as arrays."""
    return [key for key in keys if isinstance(data.get(key), np.ndarray)]


def spatial_shape(data: dict, keys: Sequence[str]) -> tuple[int, int]:
    """(H, W) shared by every present spatial array; ValueError when they disagree or none is there."""
    shapes = {key: data[key].shape[-2:] for key in present_keys(data, keys)}
    if not shapes:
        raise ValueError(f"no spatial array among {list(keys)} in the data dict")
    if len(set(shapes.values())) > 1:
        raise ValueError(f"spatial arrays disagree in size: {shapes}")
    return tuple(next(iter(shapes.values())))


def copied(data: dict, keys: Sequence[str]) -> dict:
    """A new dict with fresh copies of the spatial arrays (other values are shared)."""
    out = dict(data)
    for key in present_keys(data, keys):
        out[key] = data[key].copy()
    return out


def is_label(array: np.ndarray) -> bool:
    """Labels (bool, integer) are resampled by nearest neighbour, never blended."""
    return array.dtype == bool or np.issubdtype(array.dtype, np.integer)


def resample(array: np.ndarray, rows: np.ndarray, cols: np.ndarray, padding_mode: str) -> np.ndarray:
    """Sample every (H, W) plane of ``array`` at the source coordinates (rows, cols).

    Args:
        array: (..., H, W) of any numeric or bool dtype.
        rows, cols: float (H, W), the source position of each output pixel.
        padding_mode: scipy ``map_coordinates`` mode for positions outside the image;
            "grid-constant" fills 0 (background for alpha, masks and trimaps) and, unlike
            "constant", still interpolates up to the border, so a position a rounding error
            outside the image keeps the border pixel.

    Returns:
        Same shape and dtype as ``array``. Labels are sampled by nearest neighbour; floating
        arrays bilinearly, then clipped to the input's range (and 0, the fill value), so a
        matte stays in [0, 1] whatever rounding does.
    """
    label = is_label(array)
    planes = array.reshape(-1, *array.shape[-2:])
    working = planes.astype(np.uint8) if array.dtype == bool else planes
    order = 0 if label else 1
    out = np.stack([
        map_coordinates(plane, (rows, cols), order=order, mode=padding_mode, cval=0) for plane in working
    ])
    if array.dtype == bool:
        out = out.astype(bool)
    elif not label and array.size:
        out = np.clip(out, min(float(array.min()), 0.0), max(float(array.max()), 0.0))
    return out.reshape(array.shape).astype(array.dtype, copy=False)


def warp(data: dict, keys: Sequence[str], rows: np.ndarray, cols: np.ndarray, padding_mode: str) -> dict:
    """Resample every present spatial key at the same source coordinates; a new dict."""
    out = dict(data)
    for key in present_keys(data, keys):
        out[key] = resample(data[key], rows, cols, padding_mode)
    return out


def rotation_coordinates(shape: tuple[int, int], degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Source (rows, cols) of a rotation by ``degrees`` counter-clockwise about the image centre.

    Counter-clockwise as displayed (row axis pointing down), like ``np.rot90`` and PIL's
    ``Image.rotate``: rotating a square image by 90 degrees equals ``np.rot90``.
    """
    height, width = shape
    centre_row, centre_col = (height - 1) / 2.0, (width - 1) / 2.0
    rows, cols = np.indices(shape, dtype=np.float64)
    y, x = rows - centre_row, cols - centre_col
    theta = np.deg2rad(degrees)
    cos_theta, sin_theta = np.cos(theta), np.sin(theta)
    source_cols = centre_col + x * cos_theta - y * sin_theta
    source_rows = centre_row + x * sin_theta + y * cos_theta
    return source_rows, source_cols


def elastic_displacement(rng: np.random.Generator, shape: tuple[int, int], alpha: float, sigma: float) -> np.ndarray:
    """Simard et al. (2003) displacement: uniform [-1, 1] noise, Gaussian-smoothed, times alpha.

    Returns:
        float64 (2, H, W): (row, column) displacement in pixels.
    """
    noise = rng.uniform(-1.0, 1.0, size=(2, *shape))
    return np.stack([gaussian_filter(plane, sigma, mode="reflect") * alpha for plane in noise])


def random_affine(rng: np.random.Generator, shape: tuple[int, int], magnitude: float) -> np.ndarray:
    """Random affine map (2, 3) on (row, col, 1) moving three anchor points by up to ``magnitude`` px.

    As in the authors' elastic transform: the anchors are the centre plus/minus a third of the
    smaller side, each moved by a uniform offset in [-magnitude, magnitude] per axis.
    """
    centre = np.array(shape, dtype=np.float64) // 2
    reach = min(shape) // 3
    anchors = np.array([centre + reach, [centre[0] + reach, centre[1] - reach], centre - reach])
    moved = anchors + rng.uniform(-magnitude, magnitude, size=anchors.shape)
    # Solve moved = [anchors, 1] @ M.T for the 2x3 matrix M.
    homogeneous = np.hstack([anchors, np.ones((3, 1))])
    return np.linalg.solve(homogeneous, moved).T


class RandomFlipd:
    """Flip the image plane along each listed axis independently with probability ``prob``.

    Args:
        prob: probability of flipping, drawn separately for each axis.
        axes: spatial axes, 0 = rows (upside down), 1 = columns (left-right mirror).
        keys: the spatial keys to flip (those present are flipped).
    """

    def __init__(self, prob: float = 0.5, axes: Sequence[int] = (0, 1), keys: Sequence[str] = SPATIAL_KEYS):
        self.prob, self.axes, self.keys = prob, tuple(axes), tuple(keys)

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        spatial_shape(data, self.keys)
        flipped_axes = tuple(axis - 2 for axis in self.axes if rng.random() < self.prob)
        out = copied(data, self.keys)
        if flipped_axes:
            for key in present_keys(data, self.keys):
                out[key] = np.ascontiguousarray(np.flip(data[key], axis=flipped_axes))
        return out


class RandomRotated:
    """Rotate by an angle uniform in [-max_degrees, max_degrees], with probability ``prob``.

    Args:
        max_degrees: largest rotation; 180 (the authors' setting) gives any orientation.
        prob: probability of rotating at all.
        padding_mode: fill outside the rotated image ("grid-constant": zeros, as the authors'
            PIL rotation does; background for alpha, masks and trimap).
        keys: the spatial keys to rotate.
    """

    def __init__(self, max_degrees: float = 180.0, prob: float = 1.0, padding_mode: str = "grid-constant",
                 keys: Sequence[str] = SPATIAL_KEYS):
        self.max_degrees, self.prob, self.padding_mode, self.keys = max_degrees, prob, padding_mode, tuple(keys)

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        shape = spatial_shape(data, self.keys)
        if rng.random() >= self.prob:
            return copied(data, self.keys)
        degrees = rng.uniform(-self.max_degrees, self.max_degrees)
        return rotate(data, degrees, self.keys, self.padding_mode, shape)


def rotate(data: dict, degrees: float, keys: Sequence[str] = SPATIAL_KEYS, padding_mode: str = "grid-constant",
           shape: tuple[int, int] | None = None) -> dict:
    """Rotate every present spatial key by ``degrees`` counter-clockwise; a new dict."""
    shape = shape or spatial_shape(data, keys)
    rows, cols = rotation_coordinates(shape, degrees)
    return warp(data, keys, rows, cols, padding_mode)


class RandomElasticd:
    """Elastic deformation (Simard et al. 2003) preceded by a small random affine map.

    Sizes are fractions of the image width W, as in the authors' code, so one setting fits
    every image size: displacement = Gaussian(sigma * W)-smoothed uniform noise times alpha * W,
    and the affine map moves three anchor points by up to ``affine * W`` pixels. Both are
    composed into one resampling (the authors resample twice).

    Args:
        alpha: displacement scale, fraction of W (authors: 2.0, i.e. 256 px at W = 128; the
            smoothing shrinks it to a per-axis standard deviation of
            ``alpha / (2 sigma sqrt(3 pi))``, about 2 px at W = 128).
        sigma: smoothing of the displacement, fraction of W (authors: 0.15).
        affine: largest anchor shift of the random affine map, fraction of W (authors: 0.05;
            0 disables it).
        prob: probability of deforming at all.
        padding_mode: scipy mode outside the image ("reflect", as the authors).
        keys: the spatial keys to deform.
    """

    def __init__(self, alpha: float = 2.0, sigma: float = 0.15, affine: float = 0.05, prob: float = 1.0,
                 padding_mode: str = "reflect", keys: Sequence[str] = SPATIAL_KEYS):
        self.alpha, self.sigma, self.affine, self.prob = alpha, sigma, affine, prob
        self.padding_mode, self.keys = padding_mode, tuple(keys)

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        shape = spatial_shape(data, self.keys)
        if rng.random() >= self.prob:
            return copied(data, self.keys)
        width = shape[1]
        affine = random_affine(rng, shape, self.affine * width)
        displacement = elastic_displacement(rng, shape, self.alpha * width, self.sigma * width)
        rows, cols = np.indices(shape, dtype=np.float64)
        # Output pixel p reads the affinely warped image at p + d(p), which reads the input at
        # inverse_affine(p + d(p)).
        displaced = np.stack([rows + displacement[0], cols + displacement[1], np.ones(shape)])
        inverse = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))
        source = np.tensordot(inverse[:2], displaced, axes=1)
        return warp(data, self.keys, source[0], source[1], self.padding_mode)


def change_intensity(image: np.ndarray, scale: float, gamma: float) -> np.ndarray:
    """``clip(scale * image ** gamma, 0, 1)`` in the image's dtype: float (..., H, W) in [0, 1]."""
    return np.clip(scale * np.power(np.clip(image, 0.0, 1.0), gamma), 0.0, 1.0).astype(image.dtype)


class RandomIntensityd:
    """Scan-to-scan intensity change: ``clip(scale * image ** gamma, 0, 1)``, one draw per item.

    MRI and CT intensities shift between scanners and protocols (a darker scan in Brain-growth is
    the case every fold model missed most often); geometric augmentation does not show a model
    such a scan. ``scale`` and ``gamma`` are each drawn uniformly from their ranges and applied to
    every channel of the listed keys (a colour image or a 2.5-D stack brightens as one); labels are
    untouched. With both ranges (1, 1) the transform is the identity and draws nothing.

    Args:
        scale: (low, high) > 0, the brightness factor (0.75: a quarter darker).
        gamma: (low, high) > 0, the exponent (> 1 darkens the mid-tones, < 1 lifts them).
        prob: probability of changing an item at all.
        keys: the intensity keys, float arrays in [0, 1].
    """

    def __init__(self, scale: Sequence[float] = (1.0, 1.0), gamma: Sequence[float] = (1.0, 1.0), prob: float = 1.0,
                 keys: Sequence[str] = ("image",)):
        for name, bounds in (("scale", scale), ("gamma", gamma)):
            if len(bounds) != 2 or not 0.0 < bounds[0] <= bounds[1]:
                raise MedmatError(f"intensity {name} must be (low, high) with 0 < low <= high, got {list(bounds)}")
        self.scale, self.gamma = (float(scale[0]), float(scale[1])), (float(gamma[0]), float(gamma[1]))
        self.prob, self.keys = prob, tuple(keys)

    def is_identity(self) -> bool:
        """True when neither range moves the image (then nothing is drawn)."""
        return self.scale == (1.0, 1.0) and self.gamma == (1.0, 1.0)

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        out = dict(data)
        if self.is_identity() or rng.random() >= self.prob:
            return out
        scale, gamma = rng.uniform(*self.scale), rng.uniform(*self.gamma)
        for key in present_keys(data, self.keys):
            out[key] = change_intensity(data[key], scale, gamma)
        return out


class Composed:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        for transform in self.transforms:
            data = transform(data, rng)
        return data


def paper_augmentations(intensity: RandomIntensityd | None = None) -> Composed:
    """The Medical Matting training augmentations: flips, any rotation, elastic deformation.

    ``intensity``: an intensity change applied after them (not the paper's); None or an identity
    adds no step and draws nothing, so a run without it draws exactly as before it existed.
    """
    steps = [
        RandomFlipd(prob=0.5, axes=(0, 1)),
        RandomRotated(max_degrees=180.0, prob=1.0),
        RandomElasticd(alpha=2.0, sigma=0.15, affine=0.05, prob=1.0),
    ]
    if intensity is not None and not intensity.is_identity():
        steps.append(intensity)
    return Composed(steps)


def pseudo_mask(alpha: np.ndarray, rng: np.random.Generator, low: float = 0.2, high: float = 0.7) -> np.ndarray:
    """A pseudo binary mask from random thresholding of the alpha matte (Medical Matting, Eq. 3).

    ``tau ~ U[low, high) * max(alpha)`` and the mask is ``alpha >= tau``: Eq. 3 sets a pixel to
    1 when ``alpha_gt(x) >= tau`` (and the authors' code zeroes only ``alpha < tau``). The
    authors' code draws tau on the 0..255 grid between ``min + low * (max - min)`` and
    ``min + high * (max - min)``; with a matte whose minimum is 0, as every matte with some
    background, that is the paper's range.

    Args:
        alpha: float (H, W) in [0, 1].
        rng: draws one uniform.
        low, high: range of tau as fractions of ``max(alpha)``.

    Returns:
        bool (H, W). An all-zero matte gives an empty mask (there is no lesion to threshold).
    """
    peak = float(np.max(alpha))
    tau = rng.uniform(low, high) * peak
    if peak <= 0.0:
        return np.zeros(alpha.shape, dtype=bool)
    return alpha >= tau


class PseudoMaskd:
    """Add ``pseudo_mask`` (bool H, W) drawn by :func:`pseudo_mask` from ``alpha``."""

    def __init__(self, low: float = 0.2, high: float = 0.7, source_key: str = "alpha", output_key: str = "pseudo_mask"):
        self.low, self.high, self.source_key, self.output_key = low, high, source_key, output_key

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        out = dict(data)
        out[self.output_key] = pseudo_mask(data[self.source_key], rng, self.low, self.high)
        return out


class AlphaDrawnMapd:
    """Base of the dict transforms that add a map drawn at random from the ground-truth alpha
    (dugMatting's user maps, the probe maps): ``transform(data, rng) -> data`` returns a new dict
    holding ``data[output_key] = self.draw(data[alpha_key], rng)``; the input is not modified.

    Subclasses set :attr:`what` (the map's name in messages) and implement :meth:`draw`.
    """

    what = "map"

    def __init__(self, alpha_key: str = "alpha", output_key: str = "map"):
        self.alpha_key, self.output_key = alpha_key, output_key

    def draw(self, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The map for the (H, W) ``alpha``."""
        raise NotImplementedError

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        if data.get(self.alpha_key) is None:
            raise MedmatError(f"cannot draw a {self.what}: the case has no {self.alpha_key!r}")
        out = dict(data)
        out[self.output_key] = self.draw(data[self.alpha_key], rng)
        return out

"""Trimap regions and the input checks every classical matting method runs first.

A trimap marks each pixel as background (0), foreground (255) or unknown (128). Released trimaps
are not always that clean: the Brain-growth trimaps of the Medical Matting release were
resampled and carry every grey level in between. medmat reads every trimap one way, the way
pymatting does, so that all methods (pymatting's and medmat's own) solve for the same pixels:

- a uint8 trimap is read as ``t / 255``, a float trimap as given (it must lie in [0, 1]);
- ``t <= 0.1`` is background, ``t >= 0.9`` is foreground, anything in between is unknown.

A resampled 0/255 edge pixel therefore becomes unknown rather than being forced to either side.
"""

from __future__ import annotations

import numpy as np

from medmat.data.validate import check_unit_range
from medmat.errors import MedmatError

#: Trimap values (in [0, 1]) at or below which a pixel is background; pymatting's ``trimap_split``.
BACKGROUND_THRESHOLD = 0.1
#: Trimap values (in [0, 1]) at or above which a pixel is foreground; pymatting's ``trimap_split``.
FOREGROUND_THRESHOLD = 0.9

# The smallest image the 3x3 local windows of the matting Laplacians can handle.
_MIN_SIDE = 3


def trimap_in_unit_range(trimap: np.ndarray, source: str = "") -> np.ndarray:
    """Read a trimap as float64 in [0, 1].

    Args:
        trimap: (H, W) uint8 (0..255, read as ``t / 255``) or float (already in [0, 1]).
        source: what the trimap came from, named in error messages.

    Returns:
        float64 (H, W) in [0, 1].

    Raises:
        MedmatError: another dtype, NaN, or float values outside [0, 1].
    """
    trimap = np.asarray(trimap)
    if trimap.dtype == np.uint8:
        return trimap / 255.0
    if not np.issubdtype(trimap.dtype, np.floating):
        raise MedmatError(f"trimap must be uint8 (0..255) or float in [0, 1], got {trimap.dtype}", source or None)
    check_unit_range(trimap, "trimap", source or None)
    return trimap.astype(np.float64)


def trimap_regions(trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a trimap into foreground, background and unknown pixels.

    Args:
        trimap: (H, W) uint8 (0..255) or float in [0, 1]; intermediate values are allowed.

    Returns:
        ``(foreground, background, unknown)``, three bool (H, W) masks that partition the image:
        foreground where ``t >= 0.9``, background where ``t <= 0.1``, unknown elsewhere, with
        ``t`` the trimap in [0, 1].
    """
    trimap = trimap_in_unit_range(trimap)
    foreground = trimap >= FOREGROUND_THRESHOLD
    background = trimap <= BACKGROUND_THRESHOLD
    return foreground, background, ~(foreground | background)


def known_alpha(trimap: np.ndarray) -> np.ndarray:
    """The alpha the trimap fixes: 1 on foreground, 0 on background and on unknown pixels.

    Args:
        trimap: (H, W) uint8 or float in [0, 1].

    Returns:
        float64 (H, W) in {0, 1}.
    """
    foreground, _, _ = trimap_regions(trimap)
    return foreground.astype(np.float64)


def restore_known_alpha(alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Clip an estimated matte to [0, 1] and set the trimap's known pixels to exactly 0 or 1.

    Solvers that weight the known pixels softly (KNN, LBDM) or clip late leave known pixels a
    little off; every method returns the trimap's values there.

    Args:
        alpha: (H, W) estimated matte, any float.
        trimap: (H, W) uint8 or float in [0, 1], the same size.

    Returns:
        float64 (H, W) in [0, 1].
    """
    foreground, background, _ = trimap_regions(trimap)
    alpha = np.clip(np.asarray(alpha, dtype=np.float64).reshape(foreground.shape), 0.0, 1.0)
    alpha[foreground] = 1.0
    alpha[background] = 0.0
    return alpha


def check_matting_inputs(
    image: np.ndarray, trimap: np.ndarray, source: str = "", require_both_labels: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise the inputs of a classical matting method.

    Args:
        image: (H, W) grey or (H, W, C) with C in {1, 3}, float in [0, 1]. Grey images are
            repeated to three channels: every method here is a colour method.
        trimap: (H, W) uint8 (0..255) or float in [0, 1], read as :func:`trimap_regions` says.
        source: the method or file the inputs are for, named in error messages.
        require_both_labels: refuse a trimap without foreground or without background (every
            method needs both to propagate from); False skips that check only.

    Returns:
        ``(image, trimap)``: float64 (H, W, 3) in [0, 1] and float64 (H, W) in [0, 1]. A trimap
        without unknown pixels is returned as it is (the matte is then the trimap itself).

    Raises:
        MedmatError: wrong dimensions, channels or dtype, an image smaller than 3x3, image and
            trimap of different sizes, NaN or values outside [0, 1], or a trimap without any
            foreground or without any background pixel.
    """
    where = source or None
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise MedmatError(f"image must be (H, W) grey or (H, W, 3) colour, got shape {image.shape}", where)
    if not np.issubdtype(image.dtype, np.floating):
        raise MedmatError(f"image must be float in [0, 1], got {image.dtype} (divide 8-bit images by 255)", where)
    if min(image.shape[:2]) < _MIN_SIDE:
        raise MedmatError(f"image is too small for matting: {image.shape[0]}x{image.shape[1]}", where)
    check_unit_range(image, "image", where)

    trimap = np.asarray(trimap)
    if trimap.shape != image.shape[:2]:
        raise MedmatError(f"trimap has shape {trimap.shape} but the image is {image.shape[0]}x{image.shape[1]}", where)
    trimap = trimap_in_unit_range(trimap, source)
    foreground, background, _ = trimap_regions(trimap)
    if require_both_labels and not foreground.any():
        raise MedmatError(
            f"trimap has no foreground pixel (value >= {FOREGROUND_THRESHOLD:g} of full scale): "
            "matting needs known foreground and background to propagate from",
            where,
        )
    if require_both_labels and not background.any():
        raise MedmatError(
            f"trimap has no background pixel (value <= {BACKGROUND_THRESHOLD:g} of full scale): "
            "matting needs known foreground and background to propagate from",
            where,
        )
    image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    return image.astype(np.float64), trimap


def require_positive(source: str, **options: float) -> None:
    """Raise :class:`MedmatError` naming ``source`` and the option unless every value is > 0.

    Matting options can come from a configuration file, so a zero window or a negative weight
    is a user error, not a programming one.
    """
    for name, value in options.items():
        if not value > 0:
            raise MedmatError(f"option {name} must be positive, got {value!r}", source or None)

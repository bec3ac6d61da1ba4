"""The input checks every classical matting method runs first, and the known pixels of its matte.

Trimaps are read by the rule of :mod:`medmat.data.trimap` (:func:`~medmat.data.trimap.trimap_regions`:
``t <= 0.1`` background, ``t >= 0.9`` foreground, unknown in between, with ``t`` the trimap in
[0, 1]), the way pymatting reads them, so that all methods (pymatting's and medmat's own) solve
for the same pixels. What is here is specific to the classical solvers: the alpha a trimap fixes,
and the checks of an (image, trimap) pair and of the solvers' options.
"""

from __future__ import annotations

import numpy as np

from medmat.data.trimap import (
    BACKGROUND_THRESHOLD,
    FOREGROUND_THRESHOLD,
    trimap_in_unit_range,
    trimap_regions,
)
from medmat.errors import MedmatError
from medmat.io.checks import check_unit_range

# The smallest image the 3x3 local windows of the matting Laplacians can handle.
_MIN_SIDE = 3


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
        trimap: (H, W) uint8 (0..255) or float in [0, 1], read as
            :func:`~medmat.data.trimap.trimap_regions` says.
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

"""Trimaps from several annotators' masks (Medical Matting §II.A).

A pixel is foreground or background only where every annotator gave it the same label; the
pixels where they disagree are unknown, and the unknown region is then dilated so that the
blurred border each annotator placed slightly differently is left to the matting solver.
The trimaps are in medmat's canonical encoding (:mod:`medmat.data.trimap`: uint8 0 / 128 / 255).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medmat.data.trimap import BACKGROUND, FOREGROUND, UNKNOWN
from medmat.errors import MedmatError

#: Default dilation radius in pixels. On the released Brain-growth trimaps a 1-pixel dilation
#: of the disagreement region (3x3 square element) reproduces the authors' unknown region best
#: (mean IoU 0.89, against 0.47 undilated and 0.79 at radius 2); measured by
#: ``benchmarks/label_trimap_radius.py``.
DEFAULT_DILATION_RADIUS = 1


def disagreement_region(masks: np.ndarray) -> np.ndarray:
    """Pixels where the annotators disagree: bool (K,H,W) -> bool (H,W)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise MedmatError(f"need annotator masks of shape (K, H, W) with K >= 1, got {masks.shape}")
    return masks.any(axis=0) & ~masks.all(axis=0)


def trimap_from_masks(masks: np.ndarray, dilation_radius: int = DEFAULT_DILATION_RADIUS) -> np.ndarray:
    """Build a trimap from annotators' masks.

    Args:
        masks: bool (K,H,W), one binary mask per annotator, K >= 1.
        dilation_radius: pixels by which the disagreement region grows (square element, so a
            radius r adds a (2r+1)x(2r+1) neighbourhood); 0 keeps it as is.

    Returns:
        uint8 (H,W) with 0 = background (no annotator marked it), 255 = foreground (all did),
        128 = unknown (they disagree, or within ``dilation_radius`` of a disagreement).
    """
    if dilation_radius < 0:
        raise MedmatError(f"dilation radius must be >= 0, got {dilation_radius}")
    masks = np.asarray(masks, dtype=bool)
    unknown = disagreement_region(masks)
    if dilation_radius > 0 and unknown.any():
        element = np.ones((2 * dilation_radius + 1,) * 2, dtype=bool)
        unknown = ndimage.binary_dilation(unknown, structure=element)
    trimap = np.where(masks.all(axis=0), FOREGROUND, BACKGROUND).astype(np.uint8)
    trimap[unknown] = UNKNOWN
    return trimap

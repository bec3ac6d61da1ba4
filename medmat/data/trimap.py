"""Trimaps: the one encoding medmat stores, the one rule it reads them by, and the converters.

A trimap marks each pixel of an image as background, foreground or unknown (the pixels a matting
method solves for). medmat meets four encodings of it; this module is where they meet, and it
loads no matting solver (numpy and torch only), so every layer may import it.

- **Canonical, uint8 0 / 128 / 255** (:data:`BACKGROUND`, :data:`UNKNOWN`, :data:`FOREGROUND`):
  what trimap files and :attr:`medmat.data.sample.Sample.trimap` hold, as in the released
  Brain-growth trimaps and the Deep Image Matting code. Released trimaps are not always that
  clean: the Brain-growth trimaps of the Medical Matting release were resampled and carry every
  grey level in between.
- **Float in [0, 1]**: any trimap read as a fraction of full scale (:func:`trimap_in_unit_range`).
- **Levels 0 / 0.5 / 1**, float32: the model input (``batch["trimap"]``, :func:`trimap_levels`).
- **Classes 0 / 1 / 2** (:data:`BACKGROUND_CLASS`, :data:`UNKNOWN_CLASS`,
  :data:`FOREGROUND_CLASS`), int64 tensors, and their one-hot code: what trimap-based networks
  read and predict (:func:`trimap_classes`, :func:`one_hot_trimap`).

The reading rule, the same for every method (pymatting's ``trimap_split``), so that all of them
(pymatting's, medmat's classical methods, the networks) see the same regions:

- a uint8 trimap is read as ``t / 255``, a float trimap as given (it must lie in [0, 1]);
- ``t <= 0.1`` is background, ``t >= 0.9`` is foreground, anything in between is unknown.

A resampled 0/255 edge pixel therefore becomes unknown rather than being forced to either side.
"""

from __future__ import annotations

import numpy as np
import torch

from medmat.errors import MedmatError
from medmat.io.checks import check_unit_range

#: Canonical trimap values (uint8), as in the released Brain-growth trimaps and the Deep Image
#: Matting code.
BACKGROUND, UNKNOWN, FOREGROUND = 0, 128, 255

#: Trimap values (in [0, 1]) at or below which a pixel is background; pymatting's ``trimap_split``.
BACKGROUND_THRESHOLD = 0.1
#: Trimap values (in [0, 1]) at or above which a pixel is foreground; pymatting's ``trimap_split``.
FOREGROUND_THRESHOLD = 0.9

#: Class indices of a trimap, in the order of its levels 0, 0.5, 1 (channel order of the one-hot code).
BACKGROUND_CLASS, UNKNOWN_CLASS, FOREGROUND_CLASS = 0, 1, 2
NUM_TRIMAP_CLASSES = 3


# --- numpy: the reading rule ---------------------------------------------------------------------


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


# --- numpy: converters ---------------------------------------------------------------------------


def standard_trimap(trimap: np.ndarray) -> np.ndarray:
    """Any trimap as the canonical encoding.

    Args:
        trimap: (H, W) uint8 0..255 or float in [0, 1]; resampled grey levels allowed, read by
            :func:`trimap_regions`.

    Returns:
        A new uint8 (H, W) with values 0 / 128 / 255 only.
    """
    foreground, background, _ = trimap_regions(trimap)
    out = np.full(foreground.shape, UNKNOWN, dtype=np.uint8)
    out[background] = BACKGROUND
    out[foreground] = FOREGROUND
    return out


def trimap_levels(trimap: np.ndarray) -> np.ndarray:
    """Trimap (H,W), uint8 or float in [0,1] -> float32 (H,W) in {0, 0.5, 1} (background, unknown, foreground).

    The model input encoding. Intermediate values of resampled trimaps are read by
    :func:`trimap_regions`.
    """
    foreground, _, unknown = trimap_regions(trimap)
    return (foreground + 0.5 * unknown).astype(np.float32)


def alpha_trimap(alpha: np.ndarray) -> np.ndarray:
    """The optimal trimap of a numpy alpha (Eq. 2 of AdaMatting and of the TCP paper).

    The trimap that training trimaps start from; :func:`optimal_trimap_classes` is the same
    rule on tensors.

    Args:
        alpha: float (H, W) in [0, 1].

    Returns:
        uint8 (H, W): 0 where alpha == 0, 255 where alpha == 1, 128 where 0 < alpha < 1.
    """
    alpha = np.asarray(alpha)
    trimap = np.full(alpha.shape, UNKNOWN, dtype=np.uint8)
    trimap[alpha <= 0] = BACKGROUND
    trimap[alpha >= 1] = FOREGROUND
    return trimap


# --- tensors: the networks' encodings ------------------------------------------------------------


def trimap_classes(trimap: torch.Tensor) -> torch.Tensor:
    """Class index of every pixel of a batch trimap.

    Args:
        trimap: float (B, 1, H, W) in [0, 1]; the engine's levels are 0 / 0.5 / 1.

    Returns:
        int64 (B, H, W): 0 background (t <= 0.1), 2 foreground (t >= 0.9), 1 unknown otherwise.
    """
    if trimap.dim() != 4 or trimap.shape[1] != 1:
        raise ValueError(f"trimap must be (B, 1, H, W), got {tuple(trimap.shape)}")
    levels = trimap[:, 0]
    classes = torch.full_like(levels, UNKNOWN_CLASS, dtype=torch.long)
    classes[levels <= BACKGROUND_THRESHOLD] = BACKGROUND_CLASS
    classes[levels >= FOREGROUND_THRESHOLD] = FOREGROUND_CLASS
    return classes


def one_hot_trimap(trimap: torch.Tensor) -> torch.Tensor:
    """One-hot code of a batch trimap, the network input of AdaMatting and of the TCP model.

    Args:
        trimap: float (B, 1, H, W) in [0, 1].

    Returns:
        float (B, 3, H, W) in {0, 1}, channels (background, unknown, foreground), one 1 per pixel.
    """
    one_hot = torch.nn.functional.one_hot(trimap_classes(trimap), NUM_TRIMAP_CLASSES)
    return one_hot.permute(0, 3, 1, 2).to(trimap.dtype)


def optimal_trimap_classes(alpha: torch.Tensor) -> torch.Tensor:
    """AdaMatting's optimal trimap T_opt of a ground-truth alpha (Eq. 2), as class indices.

    Args:
        alpha: float (B, 1, H, W) in [0, 1].

    Returns:
        int64 (B, H, W): 0 where alpha == 0, 2 where alpha == 1, 1 (unknown) where 0 < alpha < 1.
        Exact comparisons: alphas stored as 8-bit (k / 255) hit 0 and 1 exactly.
    """
    if alpha.dim() != 4 or alpha.shape[1] != 1:
        raise ValueError(f"alpha must be (B, 1, H, W), got {tuple(alpha.shape)}")
    levels = alpha[:, 0]
    classes = torch.full_like(levels, UNKNOWN_CLASS, dtype=torch.long)
    classes[levels <= 0] = BACKGROUND_CLASS
    classes[levels >= 1] = FOREGROUND_CLASS
    return classes


def fill_known_regions(alpha: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Set alpha to 1 on a trimap's foreground and to 0 on its background.

    AdaMatting and the TCP model predict alpha for the unknown pixels only and take the known
    ones from the (input or adapted) trimap.

    Args:
        alpha: float (B, 1, H, W) in [0, 1].
        classes: int64 (B, H, W) trimap classes (:func:`trimap_classes`).

    Returns:
        float (B, 1, H, W) in [0, 1]; differentiable in ``alpha`` on the unknown pixels.
    """
    classes = classes[:, None]
    filled = torch.where(classes == FOREGROUND_CLASS, torch.ones_like(alpha), alpha)
    return torch.where(classes == BACKGROUND_CLASS, torch.zeros_like(alpha), filled)

"""Algorithm 1 of dugMatting: the patches proposed to the user, by their epistemic uncertainty.

The epistemic map (H, W) is divided into a grid of non-overlapping ``patch_size`` x
``patch_size`` patches (the paper's K x K grid: K = H / patch_size; the authors' commented
release code uses K = 16, i.e. 32-pixel patches of 512-pixel crops); a patch's uncertainty is the
mean over its pixels (border patches of sizes that do not divide H or W are smaller and averaged
over their own pixels); the proposals are the top N patches among those whose uncertainty is
above the threshold t (``{u_p | u_p > t}``). Patches the user has already labelled in every pixel
are not proposed again: the user has answered them (Algorithm 1 is stated for one round; this is
how medmat runs it round after round).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Patch(NamedTuple):
    """A proposed patch: its rows ``top:top + height``, columns ``left:left + width``, and its mean uncertainty."""

    top: int
    left: int
    height: int
    width: int
    uncertainty: float

    @property
    def window(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the patch in the image."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def _check_map(epistemic: np.ndarray) -> np.ndarray:
    epistemic = np.asarray(epistemic, dtype=np.float64)
    if epistemic.ndim != 2:
        raise ValueError(f"the epistemic map must be (H, W), got shape {epistemic.shape}")
    if not np.all(np.isfinite(epistemic)):
        raise ValueError("the epistemic map holds NaN or infinite values")
    return epistemic


def patch_uncertainty(epistemic: np.ndarray, patch_size: int) -> np.ndarray:
    """Mean of the map over each patch of the grid (Algorithm 1's u_p).

    Args:
        epistemic: float (H, W), finite.
        patch_size: side of the patches in pixels (>= 1).

    Returns:
        float64 (ceil(H / patch_size), ceil(W / patch_size)); entry (i, j) averages rows
        ``i * patch_size ...`` and columns ``j * patch_size ...`` (fewer at the bottom and right).
    """
    epistemic = _check_map(epistemic)
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    height, width = epistemic.shape
    rows, cols = math.ceil(height / patch_size), math.ceil(width / patch_size)
    # NaN padding fills the grid to whole patches; nanmean ignores it.
    padded = np.full((rows * patch_size, cols * patch_size), np.nan)
    padded[:height, :width] = epistemic
    blocks = padded.reshape(rows, patch_size, cols, patch_size)
    return np.nanmean(blocks, axis=(1, 3))


def propose_patches(
    epistemic: np.ndarray,
    num_proposals: int,
    patch_size: int,
    threshold: float = 0.0,
    labelled: np.ndarray | None = None,
) -> list[Patch]:
    """The top ``num_proposals`` patches by mean epistemic uncertainty above ``threshold``.

    Args:
        epistemic: float (H, W) epistemic uncertainty Var[μ] (finite, >= 0).
        num_proposals: N (>= 0).
        patch_size: side of the grid's patches in pixels.
        threshold: t; a patch is eligible when its mean is strictly greater.
        labelled: optional bool (H, W), pixels the user has labelled; a patch labelled in every
            pixel is not proposed.

    Returns:
        Up to N :class:`Patch` es, highest uncertainty first (ties: row-major grid order); fewer
        when fewer patches are eligible.
    """
    if num_proposals < 0:
        raise ValueError(f"num_proposals must be >= 0, got {num_proposals}")
    means = patch_uncertainty(epistemic, patch_size)
    height, width = np.shape(epistemic)
    order = np.argsort(-means, axis=None, kind="stable")
    proposals: list[Patch] = []
    for flat in order:
        if len(proposals) == num_proposals:
            break
        row, col = divmod(int(flat), means.shape[1])
        value = float(means[row, col])
        if not value > threshold:
            break  # sorted: no later patch is above the threshold either
        top, left = row * patch_size, col * patch_size
        patch = Patch(top, left, min(patch_size, height - top), min(patch_size, width - left), value)
        if labelled is not None and np.all(labelled[patch.window]):
            continue
        proposals.append(patch)
    return proposals

"""Random training trimaps for trimap-guided deep matting, and the coarse trimaps of robustness tests.

Shared by AdaMatting (Cai et al., ICCV 2019) and the Textural Compensate Path model (Liu et al.,
2021), and usable by any other trimap-based network. Every trimap here is numpy uint8
0 / 128 / 255, medmat's canonical encoding (:mod:`medmat.data.trimap`, which also holds the
converters to the networks' encodings and Eq. 2 of a ground-truth alpha,
:func:`~medmat.data.trimap.alpha_trimap`):

- training trimaps: :func:`widen_unknown` (random erosion of the foreground and the background,
  the "random erode and dilate" of Deep Image Matting that both papers train with),
  :func:`noisy_trimap` (the TCP paper's n extra random morphological steps on the unknown region,
  §3.3), and the dict transform :class:`RandomTrimapd` in the style of :mod:`medmat.data.transforms`;
- test trimaps: :func:`dilate_unknown` grows the unknown band by a fixed number of pixels, the
  coarse trimaps of AdaMatting's robustness test (Table 4).

Kernel sizes of the transform are fractions of the image width, as the elastic deformation's
are: the papers' pixel sizes (erosion kernels up to 30x30, noise erosion up to 10x10) were set
for 320-pixel training crops, so the defaults are ``30 / 320`` and ``10 / 320`` of the width,
i.e. 12 and 4 pixels on the 128-pixel Brain-growth and LIDC images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medmat.data.trimap import BACKGROUND, FOREGROUND, UNKNOWN, alpha_trimap, standard_trimap
from medmat.errors import MedmatError
from medmat.labels.trimap import trimap_from_masks

#: The papers' kernel sizes in pixels, over the 320-pixel training crops they were set for.
PAPER_CROP_SIZE = 320
DEFAULT_MAX_KERNEL = 30 / PAPER_CROP_SIZE
DEFAULT_MAX_NOISE_DILATION = 30 / PAPER_CROP_SIZE
DEFAULT_MAX_NOISE_EROSION = 10 / PAPER_CROP_SIZE

#: Where :class:`RandomTrimapd` takes the trimap it widens from.
TRIMAP_SOURCES = ("alpha", "masks", "trimap")


def erode(mask: np.ndarray, kernel: int) -> np.ndarray:
    """Binary erosion by a ``kernel`` x ``kernel`` square; bool (H, W) -> bool (H, W), a subset of ``mask``.

    The image border replicates the edge pixels, so a region touching the border does not
    shrink away from it (the background around a lesion is not eroded by the frame).
    ``kernel`` 1 returns a copy.
    """
    if kernel <= 1:
        return np.array(mask, dtype=bool, copy=True)
    return ndimage.minimum_filter(np.asarray(mask, dtype=np.uint8), size=kernel, mode="nearest").astype(bool)


def dilate(mask: np.ndarray, kernel: int) -> np.ndarray:
    """Binary dilation by a ``kernel`` x ``kernel`` square; bool (H, W) -> bool (H, W), a superset of ``mask``."""
    if kernel <= 1:
        return np.array(mask, dtype=bool, copy=True)
    return ndimage.maximum_filter(np.asarray(mask, dtype=np.uint8), size=kernel, mode="nearest").astype(bool)


def dilate_unknown(trimap: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a trimap's unknown band by ``pixels`` into its foreground and its background.

    The coarser user trimaps of AdaMatting's robustness test (Table 4, "D-n"): every known pixel
    within ``pixels`` of an unknown pixel becomes unknown. Distances are chessboard distances
    (a ``2 pixels + 1`` square element, :func:`dilate`), as medmat's other trimap dilations
    (:func:`medmat.labels.trimap.trimap_from_masks`). A trimap without unknown pixels has no band
    to grow and is returned as it is.

    Args:
        trimap: (H, W) trimap, uint8 0..255 or float in [0, 1] (resampled grey levels allowed,
            read by :func:`~medmat.data.trimap.standard_trimap`).
        pixels: how far the band grows, >= 0; 0 returns
            :func:`~medmat.data.trimap.standard_trimap` of the input.

    Returns:
        A new uint8 (H, W) 0 / 128 / 255 trimap whose foreground and background are subsets of
        the input's.

    Raises:
        MedmatError: a negative ``pixels``.
    """
    if pixels < 0:
        raise MedmatError(f"the unknown band can only grow: pixels must be >= 0, got {pixels}")
    dilated = standard_trimap(trimap)
    dilated[dilate(dilated == UNKNOWN, 2 * int(pixels) + 1)] = UNKNOWN
    return dilated


def random_kernel(rng: np.random.Generator, max_kernel: int) -> int:
    """A kernel side drawn uniformly from 1 .. ``max_kernel`` (1 when ``max_kernel`` < 1)."""
    return int(rng.integers(1, max(int(max_kernel), 1) + 1))


def widen_unknown(trimap: np.ndarray, rng: np.random.Generator, max_kernel: int) -> np.ndarray:
    """Random erosion of the foreground and of the background; what they lose becomes unknown.

    The Deep Image Matting generator both papers train with (AdaMatting §4.1, TCP §3.3): the
    foreground and the background are eroded by square kernels whose sides are drawn
    independently from 1 .. ``max_kernel`` pixels, so the known regions only shrink and the
    unknown band around the lesion only grows.

    Args:
        trimap: uint8 (H, W) with values 0 / 128 / 255.
        rng: draws the two kernel sizes.
        max_kernel: largest kernel side in pixels (1 leaves the trimap as it is).

    Returns:
        A new uint8 (H, W) 0 / 128 / 255 trimap whose foreground and background are subsets of
        the input's.
    """
    foreground = erode(trimap == FOREGROUND, random_kernel(rng, max_kernel))
    background = erode(trimap == BACKGROUND, random_kernel(rng, max_kernel))
    widened = np.full(trimap.shape, UNKNOWN, dtype=np.uint8)
    widened[foreground] = FOREGROUND
    widened[background] = BACKGROUND
    return widened


def nearest_known_labels(trimap: np.ndarray) -> np.ndarray:
    """Every pixel labelled as its nearest known (foreground or background) pixel; uint8 (H, W).

    Known pixels keep their label; a trimap without known pixels is returned unchanged.
    """
    unknown = trimap == UNKNOWN
    if unknown.all() or not unknown.any():
        return trimap.copy()
    _, (rows, cols) = ndimage.distance_transform_edt(unknown, return_indices=True)
    return trimap[rows, cols]


def noisy_trimap(
    trimap: np.ndarray,
    rng: np.random.Generator,
    max_steps: int = 3,
    max_iterations: int = 3,
    max_dilation: int = 30,
    max_erosion: int = 10,
) -> np.ndarray:
    """The TCP paper's noisy trimap (§3.3): n random morphological steps on the unknown region.

    ``n`` is drawn from 0 .. ``max_steps``; each step is, with equal chance, a ``p``-iteration
    dilation (kernel side 1 .. ``max_dilation``) or a ``p``-iteration erosion (side
    1 .. ``max_erosion``) of the unknown region, ``p`` drawn from 0 .. ``max_iterations``.
    Dilation turns known pixels unknown; pixels that erosion removes from the unknown region
    take the label of their nearest known pixel, so the foreground / background boundary moves
    as a user's coarse trimap would, and may then claim pixels whose alpha is neither 0 nor 1.

    Args:
        trimap: uint8 (H, W) 0 / 128 / 255 (the semantic path's trimap).
        rng: draws n, and every step's operation, p and kernel.
        max_steps, max_iterations: the papers' 3 and 3.
        max_dilation, max_erosion: largest kernel sides in pixels (papers: 30 and 10).

    Returns:
        A new uint8 (H, W) 0 / 128 / 255 trimap.
    """
    noisy = trimap.copy()
    for _ in range(int(rng.integers(0, max_steps + 1))):
        grow = bool(rng.random() < 0.5)
        iterations = int(rng.integers(0, max_iterations + 1))
        kernel = random_kernel(rng, max_dilation if grow else max_erosion)
        unknown = noisy == UNKNOWN
        for _ in range(iterations):
            unknown = dilate(unknown, kernel) if grow else erode(unknown, kernel)
        if grow:
            noisy[unknown] = UNKNOWN
        else:
            labels = nearest_known_labels(noisy)
            noisy = np.where(unknown, UNKNOWN, labels).astype(np.uint8)
    return noisy


def pixels_of_width(fraction: float, width: int) -> int:
    """A length given as a fraction of the image width, in whole pixels (at least 1)."""
    return max(int(round(fraction * width)), 1)


class RandomTrimapd:
    """Add a training trimap drawn from the ground truth (and optionally the TCP's noisy one).

    ``data[output_key]`` becomes a uint8 (H, W) 0 / 128 / 255 trimap: the source trimap with
    its foreground and background randomly eroded (:func:`widen_unknown`). With ``noisy_key``,
    ``data[noisy_key]`` gets that trimap after :func:`noisy_trimap`, the TCP input of §3.3.

    Sources:
        "alpha": Eq. 2 of the ground-truth ``alpha`` (:func:`~medmat.data.trimap.alpha_trimap`:
            foreground only where alpha == 1);
        "masks": the annotators' ``masks`` (:func:`medmat.labels.trimap.trimap_from_masks`
            without dilation: foreground where all agree, unknown where they disagree);
        "trimap": the case's own ``trimap`` (e.g. given trimaps), made 0 / 128 / 255 first.

    Args:
        source: one of :data:`TRIMAP_SOURCES`.
        max_kernel: largest erosion kernel side, fraction of the image width (papers: 30 px).
        noisy_key: key of the noisy trimap; None to skip it.
        noise_steps, noise_iterations: n and p of §3.3 (at most 3 each).
        max_noise_dilation, max_noise_erosion: largest noise kernel sides, fractions of the width
            (papers: 30 px and 10 px).
        output_key: key of the trimap (overwrites a given trimap).
    """

    def __init__(
        self,
        source: str = "alpha",
        max_kernel: float = DEFAULT_MAX_KERNEL,
        noisy_key: str | None = None,
        noise_steps: int = 3,
        noise_iterations: int = 3,
        max_noise_dilation: float = DEFAULT_MAX_NOISE_DILATION,
        max_noise_erosion: float = DEFAULT_MAX_NOISE_EROSION,
        output_key: str = "trimap",
    ):
        if source not in TRIMAP_SOURCES:
            raise MedmatError(f"trimap source must be one of {', '.join(TRIMAP_SOURCES)}, got {source!r}")
        for name, value in {"max_kernel": max_kernel, "max_noise_dilation": max_noise_dilation,
                            "max_noise_erosion": max_noise_erosion}.items():
            if not value >= 0:
                raise MedmatError(f"trimap option {name} must be >= 0, got {value}")
        self.source, self.max_kernel, self.noisy_key, self.output_key = source, max_kernel, noisy_key, output_key
        self.noise_steps, self.noise_iterations = int(noise_steps), int(noise_iterations)
        self.max_noise_dilation, self.max_noise_erosion = max_noise_dilation, max_noise_erosion

    def source_trimap(self, data: dict) -> np.ndarray:
        """The uint8 0 / 128 / 255 trimap of ``self.source`` before any random change."""
        if self.source not in data or data[self.source] is None:
            raise MedmatError(f"cannot generate a training trimap from {self.source!r}: the case has none")
        if self.source == "alpha":
            return alpha_trimap(data["alpha"])
        if self.source == "masks":
            return trimap_from_masks(data["masks"], dilation_radius=0)
        return standard_trimap(data["trimap"])

    def __call__(self, data: dict, rng: np.random.Generator) -> dict:
        out = dict(data)
        base = self.source_trimap(data)
        width = base.shape[-1]
        trimap = widen_unknown(base, rng, pixels_of_width(self.max_kernel, width))
        out[self.output_key] = trimap
        if self.noisy_key is not None:
            out[self.noisy_key] = noisy_trimap(
                trimap,
                rng,
                self.noise_steps,
                self.noise_iterations,
                pixels_of_width(self.max_noise_dilation, width),
                pixels_of_width(self.max_noise_erosion, width),
            )
        return out


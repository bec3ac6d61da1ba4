"""Alpha-matte labels from several annotators (Medical Matting §II.A).

The annotators' masks give a trimap (:func:`medmat.labels.trimap.trimap_from_masks`); a
classical matting solver (Information-Flow by default, as the Medical Matting authors used)
then fills the unknown region from the image.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from medmat.classical import estimate_alpha
from medmat.data.sample import Sample
from medmat.data.trimap import BACKGROUND, FOREGROUND, UNKNOWN
from medmat.labels.trimap import DEFAULT_DILATION_RADIUS, trimap_from_masks


def matting_image(image: np.ndarray) -> np.ndarray:
    """Sample image float32 (C,H,W) -> the classical methods' layout: (H,W) grey or (H,W,C)."""
    return image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)


def alpha_label(
    image: np.ndarray,
    masks: np.ndarray,
    method: str = "if",
    dilation_radius: int = DEFAULT_DILATION_RADIUS,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """One alpha label from an image and its annotators' masks.

    Args:
        image: float32 (C,H,W) in [0,1].
        masks: bool (K,H,W), K >= 1.
        method: a name from :data:`medmat.classical.CLASSICAL_METHODS`.
        dilation_radius: see :func:`trimap_from_masks`.

    Returns:
        (alpha float32 (H,W) in [0,1], trimap uint8 (H,W) in {0,128,255}). Where the trimap
        has no unknown pixel, or lacks foreground or background (a solver has nothing to
        propagate from), the alpha is the mean of the masks instead of a solver's output.
    """
    trimap = trimap_from_masks(masks, dilation_radius)
    has_unknown = bool((trimap == UNKNOWN).any())
    has_both = bool((trimap == BACKGROUND).any() and (trimap == FOREGROUND).any())
    if not (has_unknown and has_both):
        return masks.mean(axis=0, dtype=np.float32), trimap
    alpha = estimate_alpha(method, matting_image(image), trimap, **options)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32), trimap


def build_alpha_labels(
    samples: Iterable[Sample],
    method: str = "if",
    dilation_radius: int = DEFAULT_DILATION_RADIUS,
    progress: bool = True,
    **options,
) -> tuple[list[Sample], list[float]]:
    """Label every sample: returns copies with ``alpha`` and ``trimap`` set, and the seconds each took."""
    samples = list(samples)
    labelled, seconds = [], []
    for sample in tqdm(samples, desc=f"labels ({method})", unit="image", disable=not progress):
        start = time.perf_counter()
        alpha, trimap = alpha_label(sample.image, sample.masks, method, dilation_radius, **options)
        seconds.append(time.perf_counter() - start)
        meta = dict(sample.meta, label_method=method, dilation_radius=dilation_radius)
        labelled.append(dataclasses.replace(sample, alpha=alpha, trimap=trimap, meta=meta))
    return labelled, seconds

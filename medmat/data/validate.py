"""Validation in one place: every reader and every CLI entry point calls :func:`validate_sample`.

Raises :class:`~medmat.errors.MedmatError` with a one-line message naming the file and the
problem; it never repairs data silently.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from medmat.data.sample import Sample
from medmat.errors import MedmatError
from medmat.io.checks import check_unit_range


def _where(sample: Sample) -> str:
    return sample.source or sample.id


def validate_sample(sample: Sample, require_masks: bool = True, require_alpha: bool = False) -> Sample:
    """Check one sample's shapes, dtypes and ranges; return it unchanged when valid.

    Args:
        sample: the sample to check.
        require_masks: at least one annotator mask must be present.
        require_alpha: an alpha matte must be present.
    """
    where = _where(sample)
    image = sample.image
    if not isinstance(image, np.ndarray) or image.ndim != 3:
        raise MedmatError(f"image must be an array of shape (C, H, W), got {getattr(image, 'shape', type(image))}", where)
    # A 2.5-D stack (medmat.engine.volumes) holds a grey slice and its k neighbours on each side.
    context = sample.meta.get("context_slices", 0)
    if image.shape[0] not in ((1 + 2 * context,) if context else (1, 3)):
        raise MedmatError(f"image must have {1 + 2 * context if context else '1 or 3'} channels, got {image.shape[0]}", where)
    if min(image.shape[1:]) < 2:
        raise MedmatError(f"image is too small: {image.shape[1]}x{image.shape[2]}", where)
    check_unit_range(image, "image", where)
    height, width = image.shape[1:]

    masks = sample.masks
    if not isinstance(masks, np.ndarray) or masks.ndim != 3:
        raise MedmatError(f"masks must be an array of shape (K, H, W), got {getattr(masks, 'shape', type(masks))}", where)
    if masks.dtype != bool:
        raise MedmatError(f"masks must be boolean, got {masks.dtype}", where)
    if require_masks and masks.shape[0] == 0:
        raise MedmatError("case has no annotator masks", where)
    if masks.shape[0] and masks.shape[1:] != (height, width):
        raise MedmatError(f"masks have shape {masks.shape[1]}x{masks.shape[2]} but the image is {height}x{width}", where)

    if sample.alpha is not None:
        alpha = sample.alpha
        if alpha.shape != (height, width):
            raise MedmatError(f"alpha has shape {alpha.shape} but the image is {height}x{width}", where)
        check_unit_range(alpha, "alpha", where)
    elif require_alpha:
        raise MedmatError("case has no alpha matte", where)

    if sample.trimap is not None:
        trimap = sample.trimap
        if trimap.shape != (height, width):
            raise MedmatError(f"trimap has shape {trimap.shape} but the image is {height}x{width}", where)
        if trimap.dtype != np.uint8:
            raise MedmatError(f"trimap must be uint8 (0 / 128 / 255), got {trimap.dtype}", where)
    return sample


def validate_dataset(samples: Iterable[Sample], source: str, **options) -> list[Sample]:
    """Validate every sample; refuse an empty dataset and duplicate ids."""
    checked = [validate_sample(sample, **options) for sample in samples]
    if not checked:
        raise MedmatError("dataset is empty: no cases found", source)
    seen = set()
    for sample in checked:
        if sample.id in seen:
            raise MedmatError(f"duplicate case id {sample.id!r}", source)
        seen.add(sample.id)
    return checked

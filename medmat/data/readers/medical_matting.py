"""The Medical Matting release (Wang et al., 2023): a pickled dict of cases.

Layout (``brain_growth_alpha.pkl``, alone or inside a ``.zip``)::

    {"case01": {"series_uid": str,
                "image": uint8 (H, W) or (H, W, 3),
                "masks": [K arrays uint8 (H, W) in {0, 1}],
                "alpha": uint8 (H, W) in 0..255},
     ...}

The file is read only through :func:`medmat.data.safe_pickle.safe_load`, which refuses anything
but numpy arrays and plain containers before it can run. The LIDC and ISIC releases of the same
authors used the same layout.
"""

from __future__ import annotations

import os

import numpy as np

from medmat.data.readers import natural_key
from medmat.data.readers.trimaps import read_trimaps
from medmat.data.safe_pickle import safe_load
from medmat.data.sample import Sample
from medmat.data.validate import validate_dataset
from medmat.errors import MedmatError
from medmat.io.checks import binary_masks_from_array
from medmat.io.images import channels_first, scale_to_unit


def read_medical_matting(path: str | os.PathLike, trimaps: str | os.PathLike | None = None) -> list[Sample]:
    """Read a Medical Matting release.

    Args:
        path: the ``.pkl``, or a ``.zip`` holding exactly one.
        trimaps: optional folder or zip of ``<case>.png`` trimaps (see
            :func:`medmat.data.readers.trimaps.read_trimaps`), attached to the samples.

    Returns:
        Validated samples sorted by case key (``case01`` ... ``case39``): id = the key; image
        float32 (C, H, W) = uint8 / 255; masks bool (K, H, W); alpha float32 (H, W) = uint8 / 255
        (None when a case has none); ``meta["series_uid"]``; ``source`` = ``<path>:<key>`` so
        that errors name the file and the case.
    """
    path = os.fspath(path)
    release = safe_load(path)
    if not isinstance(release, dict):
        raise MedmatError(f"expected a dict of cases, found a {type(release).__name__}", path)
    bad_keys = [key for key in release if not isinstance(key, str)]
    if bad_keys:
        raise MedmatError(f"case keys must be strings, found {bad_keys[0]!r}", path)
    samples = [case_sample(release[key], key, path) for key in sorted(release, key=natural_key)]
    if trimaps is not None and samples:
        by_id = read_trimaps(trimaps, [sample.id for sample in samples])
        for sample in samples:
            sample.trimap = by_id[sample.id]
    return validate_dataset(samples, path)


def case_sample(case: dict, key: str, path: str) -> Sample:
    """One case of the release dict -> :class:`Sample` (not yet validated)."""
    where = f"{path}:{key}"
    if not isinstance(case, dict):
        raise MedmatError(f"case is a {type(case).__name__}, expected a dict with 'image' and 'masks'", where)
    for needed in ("image", "masks"):
        if needed not in case:
            raise MedmatError(f"case has no {needed!r} entry (keys: {', '.join(map(str, case))})", where)
    image = scale_to_unit(channels_first(_array(case["image"], "image", where), where), "image", where)
    masks = _annotator_masks(case["masks"], image.shape[1:], where)
    alpha = case.get("alpha")
    if alpha is not None:
        alpha = scale_to_unit(_array(alpha, "alpha", where), "alpha", where)
    meta = {"series_uid": str(case["series_uid"])} if "series_uid" in case else {}
    return Sample(id=key, image=image, masks=masks, alpha=alpha, source=where, meta=meta)


def _array(value, what: str, where: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise MedmatError(f"{what} is a {type(value).__name__}, expected a numpy array", where)
    return value


def _annotator_masks(masks, shape: tuple[int, int], where: str) -> np.ndarray:
    """The release's list of K (H, W) masks -> bool (K, H, W); every mask must be (H, W)."""
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        masks = list(masks)
    if not isinstance(masks, (list, tuple)):
        raise MedmatError(f"'masks' is a {type(masks).__name__}, expected a list of arrays", where)
    for index, mask in enumerate(masks):
        mask = _array(mask, f"mask of annotator {index}", where)
        if mask.shape != tuple(shape):
            raise MedmatError(
                f"mask of annotator {index} has shape {mask.shape} but the image is {shape[0]}x{shape[1]}", where
            )
    if not masks:
        return np.zeros((0, *shape), dtype=bool)
    return binary_masks_from_array(np.stack(masks), where)

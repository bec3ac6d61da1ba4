"""Generic array checks shared by the file readers (:mod:`medmat.io.images`) and the sample
validation (:mod:`medmat.data.validate`).

They live in the io layer, the lowest one, so that readers can refuse bad values without
importing the data layer above them. Each raises :class:`~medmat.errors.MedmatError` with a
one-line message naming ``where``; none repairs data silently.
"""

from __future__ import annotations

import numpy as np

from medmat.errors import MedmatError


def check_unit_range(array: np.ndarray, what: str, where: str) -> None:
    """Raise unless ``array`` is finite and within [0, 1].

    Args:
        array: any shape; bool, or a numeric dtype.
        what: the array's name in the message ("image", "alpha", "trimap").
        where: the file or case named in the message (None or "" names none).

    Raises:
        MedmatError: a non-numeric dtype, an empty array, NaN or infinity, or a value outside
            [0, 1]. Bool arrays pass whatever their values.
    """
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise MedmatError(f"{what} has non-numeric dtype {array.dtype}", where)
    if array.size == 0:
        raise MedmatError(f"{what} is empty", where)
    if array.dtype != bool:
        if not np.all(np.isfinite(array)):
            raise MedmatError(f"{what} contains NaN or infinite values", where)
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise MedmatError(f"{what} values must lie in [0, 1], found [{low:g}, {high:g}]", where)


def binary_masks_from_array(masks: np.ndarray, where: str) -> np.ndarray:
    """Turn annotator masks stored as {0,1}, {0,255} or bool into bool (K, H, W).

    Args:
        masks: (K, H, W) (any shape is kept) bool, or numbers all in {0, 1} or all in {0, 255}.
        where: the file or case named in error messages.

    Returns:
        bool, same shape: the input itself when already bool, else ``masks != 0``.

    Raises:
        MedmatError: any other value (a grey level, NaN, a negative number) is an error, not a
            threshold.
    """
    masks = np.asarray(masks)
    if masks.dtype == bool:
        return masks
    if not np.issubdtype(masks.dtype, np.number):
        raise MedmatError(f"masks have non-numeric dtype {masks.dtype}", where)
    if np.issubdtype(masks.dtype, np.floating) and not np.all(np.isfinite(masks)):
        raise MedmatError("masks contain NaN or infinite values", where)
    values = np.unique(masks)
    if np.all(np.isin(values, (0, 1))):
        return masks.astype(bool)
    if np.all(np.isin(values, (0, 255))):
        return masks == 255
    shown = ", ".join(f"{v:g}" for v in values[:6])
    raise MedmatError(f"mask values must be {{0,1}} or {{0,255}}, found {shown}{' ...' if values.size > 6 else ''}", where)

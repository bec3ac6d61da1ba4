"""Trimap-based classical matting: closed-form, KNN, learning-based, Information-Flow, Bayesian.

Every method has the signature ``estimate_alpha_<name>(image, trimap, **options)``:

- ``image``: (H, W) grey or (H, W, 3) colour, float in [0, 1] (grey is repeated to 3 channels);
- ``trimap``: (H, W) uint8 (0 / 128 / 255) or float in [0, 1], read by
  :func:`~medmat.data.trimap.trimap_regions` (``<= 0.1`` background, ``>= 0.9``
  foreground, unknown in between);
- returns float64 (H, W) alpha in [0, 1] whose known pixels equal the trimap's 0 / 1.

Inputs are checked by :func:`~medmat.classical.trimap.check_matting_inputs`, which raises
:class:`~medmat.errors.MedmatError` for a bad shape, NaN, values out of range, or a trimap
without foreground or without background.
"""

from __future__ import annotations

import numpy as np

from medmat.classical.bayesian import estimate_alpha_bayes
from medmat.classical.information_flow import estimate_alpha_if
from medmat.classical.pymatting_methods import estimate_alpha_cf, estimate_alpha_knn, estimate_alpha_lbdm
from medmat.classical.trimap import check_matting_inputs
from medmat.data.trimap import trimap_in_unit_range, trimap_regions
from medmat.errors import MedmatError

#: Method name -> estimator, in the order tables list them.
CLASSICAL_METHODS = {
    "cf": estimate_alpha_cf,
    "knn": estimate_alpha_knn,
    "lbdm": estimate_alpha_lbdm,
    "if": estimate_alpha_if,
    "bayes": estimate_alpha_bayes,
}

#: Method name -> the name tables and figures print.
METHOD_NAMES = {
    "cf": "Closed-form",
    "knn": "KNN",
    "lbdm": "LBDM",
    "if": "Information-Flow",
    "bayes": "Bayesian",
}


def estimate_alpha(
    method: str, image: np.ndarray, trimap: np.ndarray, one_sided: str = "error", **options
) -> np.ndarray:
    """Run the classical matting method called ``method`` (a key of :data:`CLASSICAL_METHODS`).

    Args:
        method: "cf", "knn", "lbdm", "if" or "bayes".
        image: (H, W) or (H, W, 3) float in [0, 1].
        trimap: (H, W) uint8 or float in [0, 1].
        one_sided: what to do with a trimap that has unknown pixels but only one known label
            (no foreground, or no background): "error" raises, as the methods do; "constant"
            returns that label everywhere, which is the exact minimiser of every Laplacian
            method here (a constraint of one value leaves the constant in the Laplacian's null
            space) and the only estimate a sampling method can make. Dataset evaluations use it
            so a case is scored rather than dropped (e.g. LIDC slices without a consensus core).
        **options: passed to the method.

    Returns:
        float64 (H, W) alpha in [0, 1]; known pixels are exactly 0 or 1.

    Raises:
        MedmatError: an unknown method name (the message lists the known ones), or bad inputs.
    """
    try:
        estimator = CLASSICAL_METHODS[method]
    except (KeyError, TypeError):
        raise MedmatError(f"unknown matting method {method!r}: use one of {', '.join(CLASSICAL_METHODS)}") from None
    if one_sided not in ("error", "constant"):
        raise ValueError(f"one_sided must be 'error' or 'constant', got {one_sided!r}")
    if one_sided == "constant":
        # Checked first, so a bad input is reported with the method's name whatever its labels.
        _, checked_trimap = check_matting_inputs(image, trimap, METHOD_NAMES[method], require_both_labels=False)
        label = one_sided_label(checked_trimap)
        if label is not None:
            return np.full(checked_trimap.shape, label, dtype=np.float64)
    return estimator(image, trimap, **options)


def one_sided_label(trimap: np.ndarray) -> float | None:
    """0.0 or 1.0 when the (H, W) trimap has unknown pixels and one known label only, else None."""
    foreground, background, unknown = trimap_regions(trimap_in_unit_range(np.asarray(trimap)))
    if not unknown.any() or foreground.any() == background.any():
        return None
    return 1.0 if foreground.any() else 0.0


__all__ = [
    "CLASSICAL_METHODS",
    "METHOD_NAMES",
    "check_matting_inputs",
    "estimate_alpha",
    "estimate_alpha_bayes",
    "estimate_alpha_cf",
    "estimate_alpha_if",
    "estimate_alpha_knn",
    "estimate_alpha_lbdm",
    "one_sided_label",
]

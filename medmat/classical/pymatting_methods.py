"""Closed-form, KNN and learning-based matting through pymatting 1.1.16.

Each wrapper checks its inputs with :func:`~medmat.classical.trimap.check_matting_inputs`, calls
pymatting with pymatting's own defaults (any option given is passed on unchanged: e.g.
``laplacian_kwargs={"epsilon": 1e-6}``, ``cg_kwargs={"maxiter": 2000}``, ``preconditioner``),
and returns a float64 (H, W) matte in [0, 1] whose known pixels equal the trimap's 0 / 1.
"""

from __future__ import annotations

import numpy as np
import pymatting

from medmat.classical.trimap import check_matting_inputs, known_alpha, restore_known_alpha
from medmat.data.trimap import trimap_regions


#: What every wrapper's docstring says of its arguments and result.
_SIGNATURE_DOC = """

    Args:
        image: (H, W) or (H, W, 3) float in [0, 1].
        trimap: (H, W) uint8 or float in [0, 1] (see :func:`~medmat.data.trimap.trimap_regions`).
        **options: passed to pymatting (``laplacian_kwargs``, ``cg_kwargs``, ``preconditioner``).

    Returns:
        float64 (H, W) alpha in [0, 1]; known pixels are exactly 0 or 1.
    """


def _pymatting_method(estimator, name: str, reference: str):
    """The medmat wrapper ``estimate_alpha_<x>(image, trimap, **options)`` of one pymatting solver."""

    def estimate_alpha(image: np.ndarray, trimap: np.ndarray, **options) -> np.ndarray:
        image, trimap = check_matting_inputs(image, trimap, name)
        _, _, unknown = trimap_regions(trimap)
        if not unknown.any():
            # pymatting's solvers do not expect an empty system; the matte is the trimap.
            return known_alpha(trimap)
        return restore_known_alpha(estimator(image, trimap, **options), trimap)

    estimate_alpha.__name__ = estimate_alpha.__qualname__ = estimator.__name__
    estimate_alpha.__doc__ = f"{name[0].upper()}{name[1:]} ({reference}) via ``pymatting.{estimator.__name__}``." + _SIGNATURE_DOC
    return estimate_alpha


estimate_alpha_cf = _pymatting_method(pymatting.estimate_alpha_cf, "closed-form matting", "Levin, Lischinski, Weiss, TPAMI 2008")
estimate_alpha_knn = _pymatting_method(pymatting.estimate_alpha_knn, "KNN matting", "Chen, Li, Tang, TPAMI 2013")
estimate_alpha_lbdm = _pymatting_method(
    pymatting.estimate_alpha_lbdm, "learning-based matting", "Zheng, Kambhamettu, ICCV 2009"
)

"""Closed-form, KNN and learning-based matting through pymatting 1.1.16.

Each wrapper checks its inputs with :func:`~medmat.classical.trimap.check_matting_inputs`, calls
pymatting with pymatting's own defaults (any option given is passed on unchanged: e.g.
``laplacian_kwargs={"epsilon": 1e-6}``, ``cg_kwargs={"maxiter": 2000}``, ``preconditioner``),
and returns a float64 (H, W) matte in [0, 1] whose known pixels equal the trimap's 0 / 1.
"""

from __future__ import annotations

import numpy as np
import pymatting

from medmat.classical.trimap import check_matting_inputs, known_alpha, restore_known_alpha, trimap_regions


def _run_pymatting(estimator, name: str, image: np.ndarray, trimap: np.ndarray, options: dict) -> np.ndarray:
    image, trimap = check_matting_inputs(image, trimap, name)
    _, _, unknown = trimap_regions(trimap)
    if not unknown.any():
        # pymatting's solvers do not expect an empty system; the matte is the trimap.
        return known_alpha(trimap)
    return restore_known_alpha(estimator(image, trimap, **options), trimap)


def estimate_alpha_cf(image: np.ndarray, trimap: np.ndarray, **options) -> np.ndarray:
    """Closed-form matting (Levin, Lischinski, Weiss, TPAMI 2008) via ``pymatting.estimate_alpha_cf``.

    Args:
        image: (H, W) or (H, W, 3) float in [0, 1].
        trimap: (H, W) uint8 or float in [0, 1] (see :func:`~medmat.classical.trimap.trimap_regions`).
        **options: passed to pymatting (``laplacian_kwargs``, ``cg_kwargs``, ``preconditioner``).

    Returns:
        float64 (H, W) alpha in [0, 1]; known pixels are exactly 0 or 1.
    """
    return _run_pymatting(pymatting.estimate_alpha_cf, "closed-form matting", image, trimap, options)


def estimate_alpha_knn(image: np.ndarray, trimap: np.ndarray, **options) -> np.ndarray:
    """KNN matting (Chen, Li, Tang, TPAMI 2013) via ``pymatting.estimate_alpha_knn``.

    Args:
        image: (H, W) or (H, W, 3) float in [0, 1].
        trimap: (H, W) uint8 or float in [0, 1].
        **options: passed to pymatting (``laplacian_kwargs``, ``cg_kwargs``, ``preconditioner``).

    Returns:
        float64 (H, W) alpha in [0, 1]; known pixels are exactly 0 or 1.
    """
    return _run_pymatting(pymatting.estimate_alpha_knn, "KNN matting", image, trimap, options)


def estimate_alpha_lbdm(image: np.ndarray, trimap: np.ndarray, **options) -> np.ndarray:
    """Learning-based digital matting (Zheng, Kambhamettu, ICCV 2009) via ``pymatting.estimate_alpha_lbdm``.

    Args:
        image: (H, W) or (H, W, 3) float in [0, 1].
        trimap: (H, W) uint8 or float in [0, 1].
        **options: passed to pymatting (``laplacian_kwargs``, ``cg_kwargs``, ``preconditioner``).

    Returns:
        float64 (H, W) alpha in [0, 1]; known pixels are exactly 0 or 1.
    """
    return _run_pymatting(pymatting.estimate_alpha_lbdm, "learning-based matting", image, trimap, options)

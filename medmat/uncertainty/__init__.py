"""Uncertainty maps: entropy of sampled masks (Medical Matting Eq. 4) and of alpha mattes (Eq. 2)."""

from medmat.uncertainty.entropy import EPS, MAX_ENTROPY, lesion_uncertainty, uncertainty_map

__all__ = ["EPS", "MAX_ENTROPY", "lesion_uncertainty", "uncertainty_map"]

"""Training losses. Importing this package imports every module in it, so that every criterion
registers with :mod:`medmat.losses.registry`; build one with ``build_criterion({"name": ..., ...})``.
"""

from medmat.losses.gradient import sobel_gradients
from medmat.losses.medical_matting import (
    MedicalMattingLoss,
    alpha_gradient_loss,
    alpha_l1_loss,
    mask_cross_entropy,
)
from medmat.losses.registry import build_criterion, list_criteria, register_criterion
from medmat.losses.weighting import (
    NoWeighting,
    OrderedAdaptiveWeighting,
    OscillationAttenuationWeighting,
    UncertaintyWeighting,
    build_weighting,
)
from medmat.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "MedicalMattingLoss",
    "NoWeighting",
    "OrderedAdaptiveWeighting",
    "OscillationAttenuationWeighting",
    "UncertaintyWeighting",
    "alpha_gradient_loss",
    "alpha_l1_loss",
    "build_criterion",
    "build_weighting",
    "list_criteria",
    "mask_cross_entropy",
    "register_criterion",
    "sobel_gradients",
]

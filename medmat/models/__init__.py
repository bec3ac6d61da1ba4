"""Networks. Importing this package registers every model with :mod:`medmat.models.registry`.

A model is an ``nn.Module`` whose ``forward(batch: dict[str, Tensor]) -> dict[str, Tensor]``
follows the engine contract (inputs "image", and in training "pseudo_mask", "alpha", "masks";
outputs always "alpha" (B, 1, H, W) in [0, 1]); it may add ``predict(image, num_samples)``.
Add new model files to the imports below so that they register.
"""

from medmat.models import medical_matting, prob_unet  # noqa: F401  (registration side effects)
from medmat.models import adamatting, textural_compensate  # noqa: F401  (registration side effects)
from medmat.models import nig, region_aware_matting  # noqa: F401  (registration side effects)
from medmat.models.medical_matting import PRESETS, MattingNetwork, MedicalMatting
from medmat.models.prob_unet import ProbabilisticUNet
from medmat.models.registry import build_model, list_models, register_model

__all__ = [
    "PRESETS",
    "MattingNetwork",
    "MedicalMatting",
    "ProbabilisticUNet",
    "build_model",
    "list_models",
    "register_model",
]

"""Networks: one file per model family, each a :class:`~medmat.models.contract.MattingModel`.

Importing this package imports every module in it, so that every ``@register_model`` runs: a
new model is one new file here (see docs/architecture.md), built by name through
:func:`~medmat.models.registry.build_model`. What a model takes and gives is its
:class:`~medmat.models.contract.ModelSpec`.
"""

from medmat.models.contract import INPUTS, MAP_OUTPUTS, OUTPUTS, MattingModel, ModelSpec
from medmat.models.registry import build_model, list_models, register_model
from medmat.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "INPUTS",
    "MAP_OUTPUTS",
    "OUTPUTS",
    "MattingModel",
    "ModelSpec",
    "build_model",
    "list_models",
    "register_model",
]

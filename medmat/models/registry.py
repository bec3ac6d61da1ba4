"""Model registry: models register a name; configs build them by that name.

    @register_model("medical_matting")
    class MedicalMatting(nn.Module): ...

    model = build_model("medical_matting", unet_filters=[16, 32, 64, 96])

Models are plain ``nn.Module``s without file I/O; ``import medmat.models`` registers all of them.
"""

from __future__ import annotations

from torch import nn

from medmat.registry import Registry

MODELS = Registry("model", "models")

#: Class decorator: ``@register_model("name")``.
register_model = MODELS.register
#: Names of the registered models, sorted.
list_models = MODELS.names


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the constructor keyword arguments ``kwargs``.

    Raises:
        MedmatError: unknown name (the message lists the known ones) or an option the model's
            constructor does not take.
    """
    return MODELS.build(name, **kwargs)

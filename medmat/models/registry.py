"""Model registry: models register a name; configs build them by that name.

    @register_model("medical_matting")
    class MedicalMatting(nn.Module): ...

    model = build_model("medical_matting", unet_filters=[16, 32, 64, 96])

Models are plain ``nn.Module``s without file I/O; ``import medmat.models`` registers all of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from medmat.errors import MedmatError
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


def build_base_model(base, wrapper: str, in_channels: int) -> nn.Module:
    """The base model a wrapper model ("nig", "probe_refiner") wraps, from its config section.

    Args:
        base: ``{"name": registered name, **constructor kwargs}`` without ``in_channels``.
        wrapper: the wrapper's registered name (a base cannot be another of the same).
        in_channels: the base's input channels, set by the wrapper.

    Raises:
        MedmatError: ``base`` not such a mapping, the wrapper itself, or holding ``in_channels``.
    """
    if not isinstance(base, Mapping) or not isinstance(base.get("name"), str):
        raise MedmatError("model option base must be a mapping with the base model's name and options")
    if base["name"] == wrapper:
        raise MedmatError(f"model option base cannot itself be {wrapper!r}")
    if "in_channels" in base:
        raise MedmatError(f"set in_channels on the {wrapper} model, not in base (the wrapper sets the base's)")
    return build_model(base["name"], in_channels=in_channels, **{key: value for key, value in base.items() if key != "name"})

"""Model registry: models register a name; configs build them by that name.

    @register_model("medical_matting")
    class MedicalMatting(nn.Module): ...

    model = build_model("medical_matting", unet_filters=[16, 32, 64, 96])

Models are plain ``nn.Module``s without file I/O; ``import medmat.models`` registers all of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from medmat.errors import MedmatError

ModelClass = TypeVar("ModelClass", bound=type)

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator registering an ``nn.Module`` subclass under ``name`` (unique)."""

    def register(cls: ModelClass) -> ModelClass:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_MODELS[name].__qualname__}")
        _MODELS[name] = cls
        return cls

    return register


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the constructor keyword arguments ``kwargs``.

    Raises:
        MedmatError: unknown name (the message lists the known ones) or an option the model's
            constructor does not take (configs are user input).
    """
    if name not in _MODELS:
        raise MedmatError(f"unknown model {name!r}; known models: {', '.join(list_models()) or 'none'}")
    cls = _MODELS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as error:
        raise MedmatError(f"model {name!r}: {error}") from None
    return cls(**kwargs)

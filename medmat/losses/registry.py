"""Criterion registry: ``build_criterion(loss_config)`` builds the loss named ``loss_config["name"]``.

    @register_criterion("medical_matting")
    class MedicalMattingLoss(nn.Module): ...

    criterion = build_criterion({"name": "medical_matting", "weighting": "oaws"})
    total, parts = criterion(outputs, batch, epoch, num_epochs)

A criterion's ``forward(outputs, batch, epoch: int, num_epochs: int)`` returns ``(total scalar
tensor, parts: dict[str, float])``; it may own parameters (trained with the model's) and define
``end_epoch(epoch_mean_parts)``, which the engine calls after every epoch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TypeVar

from torch import nn

from medmat.errors import MedmatError

CriterionClass = TypeVar("CriterionClass", bound=type)

_CRITERIA: dict[str, type[nn.Module]] = {}


def register_criterion(name: str) -> Callable[[CriterionClass], CriterionClass]:
    """Class decorator registering an ``nn.Module`` loss under ``name`` (unique)."""

    def register(cls: CriterionClass) -> CriterionClass:
        if name in _CRITERIA and _CRITERIA[name] is not cls:
            raise ValueError(f"criterion name {name!r} is already registered by {_CRITERIA[name].__qualname__}")
        _CRITERIA[name] = cls
        return cls

    return register


def list_criteria() -> list[str]:
    """Names of the registered criteria, sorted."""
    return sorted(_CRITERIA)


def build_criterion(loss_config: Mapping) -> nn.Module:
    """Build the criterion ``loss_config["name"]`` with the other keys as keyword arguments.

    Raises:
        MedmatError: no or unknown name (the message lists the known ones), or an option the
            criterion does not take.
    """
    options = dict(loss_config)
    name = options.pop("name", None)
    if name not in _CRITERIA:
        raise MedmatError(f"unknown loss {name!r}; known losses: {', '.join(list_criteria()) or 'none'}")
    cls = _CRITERIA[name]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as error:
        raise MedmatError(f"loss {name!r}: {error}") from None
    return cls(**options)

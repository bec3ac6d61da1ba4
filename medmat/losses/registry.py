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

from collections.abc import Mapping

import torch
from torch import nn

from medmat.errors import MedmatError
from medmat.registry import Registry

CRITERIA = Registry("loss", "losses")

#: Class decorator: ``@register_criterion("name")``.
register_criterion = CRITERIA.register
#: Names of the registered criteria, sorted.
list_criteria = CRITERIA.names


def build_criterion(loss_config: Mapping) -> nn.Module:
    """Build the criterion ``loss_config["name"]`` with the other keys as keyword arguments.

    Raises:
        MedmatError: no or unknown name (the message lists the known ones), or an option the
            criterion does not take.
    """
    options = dict(loss_config)
    return CRITERIA.build(options.pop("name", None), **options)


def build_base_criterion(base: Mapping | None, wrapper: str) -> nn.Module | None:
    """The wrapped base model's own criterion inside the criterion ``wrapper`` (None for ``base=None``).

    Raises:
        MedmatError: ``base`` is not a mapping with a criterion name, or names ``wrapper`` itself.
    """
    if base is None:
        return None
    if not isinstance(base, Mapping) or not isinstance(base.get("name"), str):
        raise MedmatError("loss option base must be null or a mapping with the base criterion's name")
    if base["name"] == wrapper:
        raise MedmatError(f"loss option base cannot itself be {wrapper!r}")
    return build_criterion(base)


def add_base_criterion_term(
    total: torch.Tensor, parts: dict[str, float], criterion: nn.Module | None, weight: float,
    base_outputs: dict, batch: dict, epoch: int, num_epochs: int,
) -> torch.Tensor:
    """``total`` plus ``weight`` times the base criterion's total on the base's outputs.

    The base's parts go into ``parts`` prefixed "base_". With no base criterion ``total`` comes
    back as it is and ``parts`` is left alone.
    """
    if criterion is None:
        return total
    base_total, base_parts = criterion(base_outputs, batch, epoch, num_epochs)
    parts.update({f"base_{key}": value for key, value in base_parts.items()})
    return total + weight * base_total


def base_criterion_end_epoch(criterion: nn.Module | None, epoch_mean_parts: dict) -> None:
    """Hand the epoch's means of the "base_" parts on to a base criterion that keeps per-epoch state."""
    if criterion is not None and hasattr(criterion, "end_epoch"):
        prefix = "base_"
        criterion.end_epoch({k[len(prefix):]: v for k, v in epoch_mean_parts.items() if k.startswith(prefix)})

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

from torch import nn

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

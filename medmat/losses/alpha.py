"""The criterion of any model that gives only an alpha matte: L1 to the ground truth (Eq. 7 of
Medical Matting, the basic term of every matting loss). A new model trains with it before it has
a criterion of its own (docs/architecture.md, "Add a model")."""

from __future__ import annotations

import torch
from torch import nn

from medmat.losses.medical_matting import alpha_l1_loss
from medmat.losses.registry import register_criterion


@register_criterion("alpha_l1")
class AlphaL1Loss(nn.Module):
    """``forward(outputs, batch, epoch, num_epochs)``: mean |"alpha" - batch "alpha"| over the
    (B, 1, H, W) mattes in [0, 1]; returns ``(loss, {"alpha_l1", "total"})``."""

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], epoch: int, num_epochs: int):
        loss = alpha_l1_loss(outputs["alpha"], batch["alpha"])
        return loss, {"alpha_l1": loss.item(), "total": loss.item()}

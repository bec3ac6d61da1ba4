"""The criterion of a refinement model (:mod:`medmat.models.probe_refiner`): the refined alpha
against the ground truth, where a matte is hard.

A matte's error lies in its transition band; the L1 over the whole image averages it with the
many easy pixels of the background. The criterion adds the L1 and Medical Matting's gradient
loss (Eq. 8) over the *hard region*: the pixels whose uncertainty exceeds ``threshold`` or whose
ground truth lies strictly between 0 and 1.

    loss = l1_weight * L1(image) + band_weight * L1(hard region) + gradient_weight * Grad(hard region)

A refiner trained together with its base (``freeze_base: false``, as RITM trains one network with
the clicks as input) adds the base's own criterion (``base: {name: ..., ...}``) on the base's
outputs, whose alpha is the model's "base_alpha", so that the matte a user sees before any click
stays trained as the base alone would be.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from medmat.errors import MedmatError
from medmat.losses.medical_matting import alpha_gradient_loss, alpha_l1_loss
from medmat.losses.registry import add_base_criterion_term, base_criterion_end_epoch, build_base_criterion, register_criterion
from medmat.uncertainty.entropy import lesion_uncertainty

#: Ground-truth alpha within this of 0 or 1 counts as background or foreground.
GT_TOLERANCE = 1e-3


def hard_region(uncertainty: torch.Tensor, alpha_gt: torch.Tensor, threshold: float) -> torch.Tensor:
    """float (B, 1, H, W) in {0, 1}: uncertainty > ``threshold`` or a ground truth strictly inside (0, 1)."""
    transition = (alpha_gt > GT_TOLERANCE) & (alpha_gt < 1.0 - GT_TOLERANCE)
    return ((uncertainty.detach() > threshold) | transition).to(alpha_gt.dtype)


def region_l1(alpha: torch.Tensor, alpha_gt: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean over the images of each one's mean |alpha - alpha_gt| over ``region`` (0 for an empty region)."""
    per_image = ((alpha - alpha_gt).abs() * region).sum(dim=(1, 2, 3)) / region.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return per_image.mean()


@register_criterion("alpha_refinement")
class AlphaRefinementLoss(nn.Module):
    """``forward(outputs, batch, epoch, num_epochs)`` -> ``(total, parts)`` (module docstring).

    Reads outputs "alpha" and "uncertainty_map" (the binary entropy of "base_alpha", else of
    "alpha", when the model gives none) and the batch's "alpha", all (B, 1, H, W); with ``base``,
    also the base's outputs and whatever its criterion reads in the batch.

    Returns ``(total, parts)``: floats "alpha_l1", "band_l1", "alpha_gradient", the base
    criterion's parts prefixed "base_" (with ``base``), and "total".

    Args:
        l1_weight, band_weight, gradient_weight: weights of the three terms (>= 0).
        threshold: uncertainty (nats) above which a pixel is hard (the gradient loss's tau).
        base: the base criterion's config (``{"name": ..., **options}``) for a base that trains
            with the refiner, or None (a frozen base).
        base_weight: weight of the base criterion's total (>= 0).
    """

    def __init__(self, l1_weight: float = 1.0, band_weight: float = 1.0, gradient_weight: float = 1.0,
                 threshold: float = 0.1, base: Mapping | None = None, base_weight: float = 1.0):
        super().__init__()
        if min(l1_weight, band_weight, gradient_weight, threshold, base_weight) < 0:
            raise MedmatError("alpha_refinement weights and threshold must not be negative")
        self.l1_weight, self.band_weight, self.gradient_weight = float(l1_weight), float(band_weight), float(gradient_weight)
        self.threshold, self.base_weight = float(threshold), float(base_weight)
        self.base = build_base_criterion(base, "alpha_refinement")

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], epoch: int, num_epochs: int):
        alpha, alpha_gt = outputs["alpha"].float(), batch["alpha"]
        uncertainty = outputs.get("uncertainty_map")
        if uncertainty is None:
            uncertainty = lesion_uncertainty(outputs.get("base_alpha", alpha).detach().float())
        region = hard_region(uncertainty.float(), alpha_gt, self.threshold)
        whole = alpha_l1_loss(alpha, alpha_gt)
        band = region_l1(alpha, alpha_gt, region)
        # The region as its "uncertainty" with a threshold of 0.5: Eq. 8 over exactly the hard pixels.
        gradient = alpha_gradient_loss(alpha, alpha_gt, region, threshold=0.5)
        total = self.l1_weight * whole + self.band_weight * band + self.gradient_weight * gradient
        parts = {"alpha_l1": whole.item(), "band_l1": band.item(), "alpha_gradient": gradient.item()}
        if self.base is not None and "base_alpha" not in outputs:
            raise MedmatError("loss option base needs a model that gives 'base_alpha' (a refiner)")
        base_outputs = dict(outputs, alpha=outputs["base_alpha"]) if self.base is not None else {}
        total = add_base_criterion_term(total, parts, self.base, self.base_weight, base_outputs, batch, epoch, num_epochs)
        parts["total"] = total.item()
        return total, parts

    def end_epoch(self, epoch_mean_parts: dict) -> None:
        """Pass the epoch's means on to the base criterion when it keeps per-epoch state."""
        base_criterion_end_epoch(self.base, epoch_mean_parts)

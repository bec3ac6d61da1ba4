"""AdaMatting's multi-task loss (Cai et al. 2019, §3.3 and §5.4).

- trimap adaptation: ``L_T``, cross-entropy of the trimap logits against the optimal trimap
  T_opt of the ground-truth alpha (Eq. 2, :func:`medmat.data.trimap.optimal_trimap_classes`);
- alpha estimation: ``L_alpha``, mean absolute error on the unknown pixels of the *adapted*
  trimap (Eq. 4), i.e. where the trimap decoder's arg-max is "unknown";
- combined by task uncertainty (Eq. 3, learnable sigmas initialised to 4, §4.1)
  ``L = L_T / (2 s1^2) + L_alpha / s2 + log(2 s1 s2)`` — the Gaussian form for the
  classification term and the Laplace form (L1 / b + log 2b) for the L1 term, as printed — or
  by the naive fixed weight of Eq. 5, ``L = (1 - w) L_T + w L_alpha``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.trimap import UNKNOWN_CLASS, optimal_trimap_classes
from medmat.errors import MedmatError
from medmat.losses.registry import register_criterion
from medmat.losses.weighting import TASKS, UncertaintyWeighting, _check_tasks

#: Eq. 3's tasks in medmat's weighting names: trimap adaptation is the segmentation-like task.
TRIMAP_TASK, ALPHA_TASK = TASKS
WEIGHTINGS = ("uncertainty", "naive")


def trimap_cross_entropy(trimap_logits: torch.Tensor, alpha_gt: torch.Tensor) -> torch.Tensor:
    """``L_T``: mean cross-entropy of (B, 3, H, W) logits against T_opt of the (B, 1, H, W) alpha; scalar >= 0."""
    return F.cross_entropy(trimap_logits, optimal_trimap_classes(alpha_gt))


def masked_mean_per_image(values: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``region`` in each image, then over the images.

    Args:
        values: (B, 1, H, W) per-pixel losses.
        region: (B, 1, H, W) bool or {0, 1}, not differentiated.

    Returns:
        Scalar tensor. An image whose region is empty contributes 0 (it still counts in the
        batch mean), as in medmat's other region losses.
    """
    region = region.detach().to(values.dtype)
    per_image = (values * region).sum(dim=(1, 2, 3)) / region.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return per_image.mean()


def adapted_unknown_l1(alpha: torch.Tensor, alpha_gt: torch.Tensor, trimap_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4: L1 of alpha on the adapted trimap's unknown pixels (arg-max of the logits).

    Args:
        alpha: (B, 1, H, W) predicted alpha in [0, 1] (before the known regions are filled in).
        alpha_gt: (B, 1, H, W) in [0, 1].
        trimap_logits: (B, 3, H, W); only their arg-max is used (no gradient).

    Returns:
        Scalar tensor in [0, 1].
    """
    unknown = trimap_logits.detach().argmax(dim=1, keepdim=True) == UNKNOWN_CLASS
    return masked_mean_per_image((alpha - alpha_gt).abs(), unknown)


class TaskUncertaintyWeighting(UncertaintyWeighting):
    """AdaMatting's Eq. 3: ``L = L_T / (2 s1^2) + L_alpha / s2 + log(2 s1 s2)``.

    The sigmas, their log parameterisation and their initialisation are Medical Matting's UWS
    (:class:`~medmat.losses.weighting.UncertaintyWeighting`); Eq. 3 differs in the factor and
    power of each task's weight and in the constant log 2, which does not change the gradients.
    Task names are the weighting module's: "seg" = L_T, "matt" = L_alpha.
    """

    scales = {TRIMAP_TASK: 0.5, ALPHA_TASK: 1.0}
    #: Power of sigma dividing each task loss.
    powers = {TRIMAP_TASK: 2.0, ALPHA_TASK: 1.0}

    def forward(self, losses: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        _check_tasks(losses)
        total = self.log_sigma.sum() + math.log(2.0)  # log(2 s1 s2)
        for index, task in enumerate(TASKS):
            total = total + self.scales[task] * torch.exp(-self.powers[task] * self.log_sigma[index]) * losses[task]
        return total

    def weights(self, epoch: int) -> dict[str, float]:
        """Multiplier of each task loss, and the sigmas, for logging."""
        sigma_trimap, sigma_alpha = self.sigma.detach().tolist()
        return {
            "weight_trimap": 0.5 / sigma_trimap**2,
            "weight_alpha": 1.0 / sigma_alpha,
            "sigma_trimap": sigma_trimap,
            "sigma_alpha": sigma_alpha,
        }


class FixedWeighting(nn.Module):
    """Eq. 5: ``L = (1 - w) L_T + w L_alpha`` with a fixed ``w`` in [0, 1] (w = 1: alpha loss alone)."""

    def __init__(self, alpha_weight: float = 0.5):
        super().__init__()
        if not 0.0 <= alpha_weight <= 1.0:
            raise MedmatError(f"loss option naive_weight must be in [0, 1], got {alpha_weight}")
        self.alpha_weight = float(alpha_weight)

    def forward(self, losses: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        _check_tasks(losses)
        return (1.0 - self.alpha_weight) * losses[TRIMAP_TASK] + self.alpha_weight * losses[ALPHA_TASK]

    def weights(self, epoch: int) -> dict[str, float]:
        """Multiplier of each task loss, for logging."""
        return {"weight_trimap": 1.0 - self.alpha_weight, "weight_alpha": self.alpha_weight}


@register_criterion("adamatting")
class AdaMattingLoss(nn.Module):
    """AdaMatting's training loss, ``forward(outputs, batch, epoch, num_epochs)``.

    Uses ``outputs`` "trimap_logits" (B, 3, H, W) and "alpha_raw" (B, 1, H, W) (the alpha
    before the adapted trimap fills in 0 and 1; "alpha" when absent) and ``batch`` "alpha".

    Returns ``(total, parts)``: floats "trimap_ce", "alpha_l1", "weight_trimap",
    "weight_alpha" (and with task uncertainty "sigma_trimap", "sigma_alpha"), "total".

    Args:
        weighting: "uncertainty" (Eq. 3) or "naive" (Eq. 5).
        sigma_init: initial sigma_1 = sigma_2 of Eq. 3 (paper 4).
        naive_weight: sigma of Eq. 5, the fixed weight of L_alpha.
    """

    def __init__(self, weighting: str = "uncertainty", sigma_init: float = 4.0, naive_weight: float = 0.5):
        super().__init__()
        key = str(weighting).lower()
        if key not in WEIGHTINGS:
            raise MedmatError(f"loss option weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        self.weighting = TaskUncertaintyWeighting(sigma_init) if key == "uncertainty" else FixedWeighting(naive_weight)

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], epoch: int, num_epochs: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        alpha = outputs.get("alpha_raw", outputs["alpha"])
        trimap_loss = trimap_cross_entropy(outputs["trimap_logits"], batch["alpha"])
        alpha_loss = adapted_unknown_l1(alpha, batch["alpha"], outputs["trimap_logits"])
        total = self.weighting({TRIMAP_TASK: trimap_loss, ALPHA_TASK: alpha_loss}, epoch)
        parts = {"trimap_ce": trimap_loss.item(), "alpha_l1": alpha_loss.item()}
        parts.update(self.weighting.weights(epoch))
        parts["total"] = total.item()
        return total, parts

"""The TCP matting loss (Liu et al. 2021, §3.3, Eq. 3-4).

- alpha-prediction loss ``L_a``: the Charbonnier distance ``sqrt((alpha - alpha_gt)^2 + eps^2)``
  averaged over the trimap's unknown region U (Eq. 3, Deep Image Matting's loss);
- background-enhancement loss ``L_bg``: the same distance averaged over the "absolute"
  background inside U, ``R_bg = {p in U : alpha_gt(p) < theta}`` (Eq. 4), which gives the
  network the context of the pure background that U hides;
- ``L = w1 L_a + w2 L_bg`` with the paper's w1 = 0.9, w2 = 0.1, theta = 0.1. Without the
  background term (the paper's baseline and "Baseline + TCP" rows) the loss is ``L_a`` alone.

U is the unknown region of the batch's "trimap" (the semantic path's input trimap).
"""

from __future__ import annotations

import torch
from torch import nn

from medmat.data.trimap import UNKNOWN_CLASS, trimap_classes
from medmat.errors import MedmatError
from medmat.losses.adamatting import masked_mean_per_image
from medmat.losses.registry import register_criterion

#: Deep Image Matting's epsilon of the Charbonnier distance.
DEFAULT_EPSILON = 1e-6


def charbonnier(alpha: torch.Tensor, alpha_gt: torch.Tensor, epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """Per-pixel ``sqrt((alpha - alpha_gt)^2 + epsilon^2)``, an L1 distance differentiable at 0.

    Same shape as the inputs, values >= epsilon.
    """
    return torch.sqrt((alpha - alpha_gt) ** 2 + epsilon**2)


def unknown_region(trimap: torch.Tensor) -> torch.Tensor:
    """Bool (B, 1, H, W): the unknown pixels of a (B, 1, H, W) trimap in [0, 1]."""
    return (trimap_classes(trimap) == UNKNOWN_CLASS)[:, None]


def alpha_prediction_loss(
    alpha: torch.Tensor, alpha_gt: torch.Tensor, trimap: torch.Tensor, epsilon: float = DEFAULT_EPSILON
) -> torch.Tensor:
    """Eq. 3: Charbonnier distance averaged over the unknown region of each image, then over the batch.

    Args:
        alpha: (B, 1, H, W) prediction (the TCP model's ``tanh`` output, in (-1, 1)).
        alpha_gt: (B, 1, H, W) in [0, 1].
        trimap: (B, 1, H, W) in [0, 1].

    Returns:
        Scalar tensor >= 0 (an image without unknown pixels contributes 0).
    """
    return masked_mean_per_image(charbonnier(alpha, alpha_gt, epsilon), unknown_region(trimap))


def background_enhancement_loss(
    alpha: torch.Tensor,
    alpha_gt: torch.Tensor,
    trimap: torch.Tensor,
    threshold: float = 0.1,
    epsilon: float = DEFAULT_EPSILON,
) -> torch.Tensor:
    """Eq. 4: Charbonnier distance averaged over ``R_bg = unknown & (alpha_gt < threshold)``.

    Args:
        alpha, alpha_gt, trimap: as :func:`alpha_prediction_loss`.
        threshold: theta (paper 0.1).

    Returns:
        Scalar tensor >= 0 (an image with an empty R_bg contributes 0).
    """
    region = unknown_region(trimap) & (alpha_gt < threshold)
    return masked_mean_per_image(charbonnier(alpha, alpha_gt, epsilon), region)


@register_criterion("tcp_matting")
class TexturalCompensateLoss(nn.Module):
    """``L = w1 L_a + w2 L_bg`` (or ``L_a`` alone), ``forward(outputs, batch, epoch, num_epochs)``.

    Uses ``outputs`` "alpha_raw" ("alpha" when absent) and ``batch`` "alpha" and "trimap".

    Returns ``(total, parts)``: floats "alpha_loss", "background_loss" (when used), "total".

    Args:
        use_background_loss: False = ``L_a`` alone.
        alpha_weight, background_weight: w1, w2 (paper 0.9, 0.1).
        background_threshold: theta (paper 0.1).
        epsilon: of the Charbonnier distance.
    """

    def __init__(self, use_background_loss: bool = True, alpha_weight: float = 0.9, background_weight: float = 0.1,
                 background_threshold: float = 0.1, epsilon: float = DEFAULT_EPSILON):
        super().__init__()
        for name, value in {"alpha_weight": alpha_weight, "background_weight": background_weight}.items():
            if not value >= 0:
                raise MedmatError(f"loss option {name} must be >= 0, got {value}")
        if not 0.0 < background_threshold <= 1.0:
            raise MedmatError(f"loss option background_threshold must be in (0, 1], got {background_threshold}")
        self.use_background_loss = bool(use_background_loss)
        self.alpha_weight, self.background_weight = float(alpha_weight), float(background_weight)
        self.background_threshold, self.epsilon = float(background_threshold), float(epsilon)

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], epoch: int, num_epochs: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.get("trimap") is None:
            raise MedmatError("loss 'tcp_matting' needs a trimap for every training case (data.trimaps)")
        alpha = outputs.get("alpha_raw", outputs["alpha"])
        alpha_loss = alpha_prediction_loss(alpha, batch["alpha"], batch["trimap"], self.epsilon)
        parts = {"alpha_loss": alpha_loss.item()}
        if not self.use_background_loss:
            parts["total"] = parts["alpha_loss"]
            return alpha_loss, parts
        background_loss = background_enhancement_loss(
            alpha, batch["alpha"], batch["trimap"], self.background_threshold, self.epsilon
        )
        total = self.alpha_weight * alpha_loss + self.background_weight * background_loss
        parts.update(background_loss=background_loss.item(), total=total.item())
        return total, parts

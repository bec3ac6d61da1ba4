"""Losses of Medical Matting (§III.D.1, Eq. 5-8) and the criterion combining them.

- masks: ``L_seg = mu * L_ce + upsilon * L_kl``: cross-entropy of the reparameterised posterior
  sample's mask against the pseudo mask (Eq. 5), KL(posterior || prior) (Eq. 6); optionally
  ``+ upsilon_prior * KL(sg(posterior) || prior)``, a KL whose gradient trains only the prior
  (KL balancing, Hafner et al. 2021; not in the paper, off by default);
- alpha: ``L_matt = zeta * L_alpha + xi * L_grad``: L1 to the ground-truth alpha (Eq. 7), and
  the L1 difference of Sobel gradients restricted to the uncertain region
  ``R = uncertainty_map > tau`` (Eq. 8);
- the two combined by a weighting strategy (:mod:`medmat.losses.weighting`).

Defaults are the paper's: ``[mu, upsilon, zeta, xi] = [1, 10, 1, 1]`` (Table III), tau = 0.1
(§IV.A), UWS sigmas initialised to 4, OAWS a, b, t = 0.05, 0.03, 0.5 (§IV.C). tau applies to
the uncertainty map in nats (see :mod:`medmat.uncertainty.entropy`); the authors' release
thresholds a map in bits, so its region is slightly larger (0.1 bit = 0.069 nat).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medmat.errors import MedmatError
from medmat.losses.gradient import sobel_gradients
from medmat.losses.registry import register_criterion
from medmat.losses.weighting import build_weighting


def mask_cross_entropy(mask_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5 for a foreground/background mask: mean binary cross-entropy over pixels and images.

    Args:
        mask_logits: (B, 1, H, W) foreground logits.
        target: (B, 1, H, W) pseudo mask in {0, 1}.

    Returns:
        Scalar tensor, >= 0 (ln 2 for all-zero logits).
    """
    return F.binary_cross_entropy_with_logits(mask_logits, target)


def alpha_l1_loss(alpha: torch.Tensor, alpha_gt: torch.Tensor) -> torch.Tensor:
    """Eq. 7: mean absolute difference of (B, 1, H, W) alphas in [0, 1]; scalar in [0, 1]."""
    return (alpha - alpha_gt).abs().mean()


def alpha_gradient_loss(
    alpha: torch.Tensor, alpha_gt: torch.Tensor, uncertainty: torch.Tensor, threshold: float = 0.1
) -> torch.Tensor:
    """Eq. 8: L1 distance of Sobel gradients, averaged over the uncertain region of each image.

    Per pixel the distance is ``|gx - gx_gt| + |gy - gy_gt|``; each image averages it over
    ``R = uncertainty > threshold`` (an image with an empty R contributes 0, as in the release),
    and the batch averages the images. Pixels outside R, and farther than one pixel from R (the
    Sobel kernel's reach), do not affect the loss.

    Args:
        alpha, alpha_gt: (B, 1, H, W) predicted and ground-truth alpha in [0, 1].
        uncertainty: (B, 1, h, w) uncertainty map (nats); not differentiated; resized bilinearly
            to (H, W) when its size differs (LIIF-style training, ``data.model_input_size``).
        threshold: tau.

    Returns:
        Scalar tensor, >= 0.
    """
    uncertainty = uncertainty.detach()
    if uncertainty.shape[-2:] != alpha.shape[-2:]:
        # A resolution-free model trained LIIF-style reads alpha finer than its uncertainty map.
        uncertainty = F.interpolate(uncertainty, size=alpha.shape[-2:], mode="bilinear", align_corners=False)
    region = (uncertainty > threshold).to(alpha.dtype)
    gx, gy = sobel_gradients(alpha)
    gx_gt, gy_gt = sobel_gradients(alpha_gt)
    distance = (gx - gx_gt).abs() + (gy - gy_gt).abs()
    per_image = (distance * region).sum(dim=(1, 2, 3)) / region.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return per_image.mean()


@register_criterion("medical_matting")
class MedicalMattingLoss(nn.Module):
    """The Medical Matting training loss, ``forward(outputs, batch, epoch, num_epochs)``.

    Uses ``outputs`` "mask_logits", "kl" ("kl_prior" too when ``prior_kl_weight`` > 0), and,
    when the model has a matting network (its outputs then hold "alpha_logits"), "alpha" and
    "uncertainty_map"; ``batch`` "pseudo_mask"
    and "alpha". Without a matting network (the "Prob. U-Net alone" ablation) the total is
    L_seg and the weighting is not used. ``epoch`` is the 0-based epoch index (OAWS's n);
    ``num_epochs`` is accepted for the engine contract and not needed.

    Returns ``(total, parts)``: ``parts`` holds floats "ce", "kl", "seg", and with a matting
    network "alpha_l1", "alpha_gradient", "matt", the weighting's "weight_seg"/"weight_matt"
    (and UWS's "sigma_seg"/"sigma_matt"), and "total".

    Args:
        weighting: "none", "uws" or "oaws".
        ce_weight, kl_weight, alpha_weight, gradient_weight: mu, upsilon, zeta, xi.
        prior_kl_weight: weight of a second KL term that reaches only the prior net, so the prior
            learns to cover the posterior's codes at this weight while ``kl_weight`` alone pulls
            the posterior towards the prior (a small ``kl_weight`` keeps the latent in use).
        kl_target: None (the paper's term, ``kl_weight * KL``) or a capacity in nats: the term
            becomes ``kl_weight * |KL - kl_target|`` per image (Burgess et al. 2018), which pulls
            a collapsing latent back up to ``kl_target`` nats instead of letting it fall to 0.
        gradient_threshold: tau of Eq. 8, in nats.
        sigma_init: UWS initial sigmas.
        oaws_a, oaws_b, oaws_t: OAWS coefficients a, b, t.
    """

    def __init__(
        self,
        weighting: str = "oaws",
        ce_weight: float = 1.0,
        kl_weight: float = 10.0,
        alpha_weight: float = 1.0,
        gradient_weight: float = 1.0,
        gradient_threshold: float = 0.1,
        sigma_init: float = 4.0,
        oaws_a: float = 0.05,
        oaws_b: float = 0.03,
        oaws_t: float = 0.5,
        prior_kl_weight: float = 0.0,
        kl_target: float | None = None,
    ):
        super().__init__()
        weights = {"ce_weight": ce_weight, "kl_weight": kl_weight, "alpha_weight": alpha_weight}
        weights.update(gradient_weight=gradient_weight, prior_kl_weight=prior_kl_weight)
        for name, value in weights.items():
            if not value >= 0:
                raise MedmatError(f"loss option {name} must be >= 0, got {value}")
        self.ce_weight, self.kl_weight = float(ce_weight), float(kl_weight)
        self.alpha_weight, self.gradient_weight = float(alpha_weight), float(gradient_weight)
        self.prior_kl_weight = float(prior_kl_weight)
        if kl_target is not None and not (isinstance(kl_target, (int, float)) and kl_target >= 0):
            raise MedmatError(f"loss option kl_target must be null or a number of nats >= 0, got {kl_target!r}")
        self.kl_target = None if kl_target is None else float(kl_target)
        self.gradient_threshold = float(gradient_threshold)
        options = {"uws": {"sigma_init": sigma_init}, "oaws": {"a": oaws_a, "b": oaws_b, "t": oaws_t}}
        self.weighting = build_weighting(weighting, **options.get(str(weighting).lower(), {}))

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], epoch: int, num_epochs: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        ce = mask_cross_entropy(outputs["mask_logits"], batch["pseudo_mask"])
        kl_per_image = outputs["kl"]
        kl = kl_per_image.mean()
        if self.kl_target is None:
            kl_term = kl
        else:
            kl_term = (kl_per_image - self.kl_target).abs().mean()
        seg = self.ce_weight * ce + self.kl_weight * kl_term
        if self.prior_kl_weight > 0:
            if "kl_prior" not in outputs:
                raise MedmatError("loss option prior_kl_weight needs a model that gives 'kl_prior' (a Prob. U-Net)")
            seg = seg + self.prior_kl_weight * outputs["kl_prior"].mean()
        parts = {"ce": ce.item(), "kl": kl.item(), "seg": seg.item()}
        if "alpha_logits" not in outputs:
            parts["total"] = parts["seg"]
            return seg, parts

        alpha_l1 = alpha_l1_loss(outputs["alpha"], batch["alpha"])
        alpha_gradient = alpha_gradient_loss(
            outputs["alpha"], batch["alpha"], outputs["uncertainty_map"], self.gradient_threshold
        )
        matt = self.alpha_weight * alpha_l1 + self.gradient_weight * alpha_gradient
        total = self.weighting({"seg": seg, "matt": matt}, epoch)
        parts.update(alpha_l1=alpha_l1.item(), alpha_gradient=alpha_gradient.item(), matt=matt.item())
        parts.update(self.weighting.weights(epoch))
        parts["total"] = total.item()
        return total, parts

"""dugMatting's first-stage loss for "nig" models (Wu et al., 2023, §3.1 and §3.5).

``L_stage1 = L_NIG + L_M`` with ``L_NIG = L_NLL + λ L_R``:

- ``L_NLL`` (Eq. 1), every term: ``1/2 log(π/ω) - α log Ω + (α + 1/2) log((y - γ)² ω + Ω) +
  log Φ`` with ``Ω = 2β(1 + ω)`` and ``Φ = Γ(α) / Γ(α + 1/2)``. It is the negative log-density of
  the NIG's Student-t marginal of y (2α degrees of freedom, location γ, squared scale
  ``β(1 + ω)/(ωα)``); the authors' release drops ``log Φ``, which is not a constant: it depends
  on α and pushes the evidence, so without it the loss is no longer a likelihood;
- ``L_R = |y - γ| (2ω + α)``, the penalty on evidence where the mean is wrong; λ is not given in
  the paper, the release uses 0.01;
- ``L_M``, the other terms of the base method: the base model's own criterion (by name and
  options) on the base's outputs, without its alpha regression where the criterion allows it
  (:data:`ALPHA_OUTPUTS`: Medical Matting's criterion trains the Prob. U-Net masks alone when the
  outputs hold no "alpha_logits"); criteria whose alpha loss cannot be switched off
  (AdaMatting's, TCP's) train the base's own alpha as before, beside the NIG head. Optionally the
  Sobel gradient loss of Medical Matting's Eq. 8 on γ, over the uncertainty map's region when
  the base gives one (the whole image otherwise).

Per-pixel terms are averaged over pixels and images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from medmat.errors import MedmatError
from medmat.losses.medical_matting import alpha_gradient_loss
from medmat.losses.registry import add_base_criterion_term, base_criterion_end_epoch, build_base_criterion, register_criterion
from medmat.uncertainty.nig import NIG

#: Outputs removed before the base criterion sees the base outputs, so that it leaves alpha alone.
ALPHA_OUTPUTS: dict[str, tuple[str, ...]] = {"medical_matting": ("alpha_logits",)}
#: λ of the evidence regulariser in the authors' release (the paper gives none).
DEFAULT_EVIDENCE_WEIGHT = 0.01
_LOG_PI = math.log(math.pi)


def nig_nll(target: torch.Tensor, nig: NIG) -> torch.Tensor:
    """Eq. 1, per pixel, with every term.

    Args:
        target: y, e.g. (B, 1, H, W) ground-truth alpha.
        nig: γ, ω, α, β of the same shape, ω > 0, α > 1, β > 0.

    Returns:
        Per-pixel negative log-likelihood, same shape (may be negative: a density can exceed 1).
    """
    gamma, omega, alpha, beta = nig
    big_omega = 2.0 * beta * (1.0 + omega)
    log_phi = torch.lgamma(alpha) - torch.lgamma(alpha + 0.5)
    return (
        0.5 * (_LOG_PI - torch.log(omega))
        - alpha * torch.log(big_omega)
        + (alpha + 0.5) * torch.log((target - gamma) ** 2 * omega + big_omega)
        + log_phi
    )


def evidence_regularizer(target: torch.Tensor, nig: NIG) -> torch.Tensor:
    """``L_R = |y - γ| (2ω + α)`` per pixel (same shape as ``target``, >= 0)."""
    return (target - nig.gamma).abs() * (2.0 * nig.omega + nig.alpha)


@register_criterion("nig")
class NIGLoss(nn.Module):
    """Criterion of "nig" models: ``forward(outputs, batch, epoch, num_epochs) -> (total, parts)``.

    Uses ``outputs`` "nig_gamma", "nig_omega", "nig_alpha", "nig_beta" (and "uncertainty_map"
    when present, for the gradient region; "base_alpha" and the base's outputs for the base
    criterion), ``batch`` "alpha" and whatever the base criterion reads.

    Returns ``(total, parts)``: floats "nig_nll", "nig_evidence", "nig" (= nll + λ evidence),
    "alpha_gradient" (when used), the base criterion's parts prefixed "base_" (when used), "total".

    Args:
        base: the base criterion's config (``{"name": ..., **options}``) or None for none.
        evidence_weight: λ (>= 0).
        gradient_weight: weight of the gradient loss on γ (0 = off).
        gradient_threshold: τ of that loss's region, on the uncertainty map (nats).
        base_weight: weight of the base criterion's total.
        base_alpha: keep the base criterion's alpha terms (Medical Matting's L1 and gradient loss
            on the base's own alpha, balanced with its masks by the base's weighting, e.g. OAWS):
            the base then learns as it does alone and the NIG head on its features. Off, the base
            criterion trains the base's other outputs only (its masks), as dugMatting replaces the
            alpha regression by the NIG likelihood.
    """

    def __init__(
        self,
        base: Mapping | None = None,
        evidence_weight: float = DEFAULT_EVIDENCE_WEIGHT,
        gradient_weight: float = 1.0,
        gradient_threshold: float = 0.1,
        base_weight: float = 1.0,
        base_alpha: bool = False,
    ):
        super().__init__()
        weights = {"evidence_weight": evidence_weight, "gradient_weight": gradient_weight, "base_weight": base_weight}
        for name, value in weights.items():
            if not value >= 0:
                raise MedmatError(f"loss option {name} must be >= 0, got {value}")
        self.evidence_weight, self.gradient_weight = float(evidence_weight), float(gradient_weight)
        self.gradient_threshold, self.base_weight = float(gradient_threshold), float(base_weight)
        self.base = build_base_criterion(base, "nig")
        self.base_name = None if base is None else base["name"]
        self.base_alpha = bool(base_alpha)

    def base_outputs(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The base model's outputs as its criterion expects them (alpha terms removed where possible)."""
        dropped = () if self.base_alpha else ALPHA_OUTPUTS.get(self.base_name, ())
        base = {key: value for key, value in outputs.items() if key not in dropped}
        base["alpha"] = outputs["base_alpha"]
        return base

    def forward(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], epoch: int, num_epochs: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        target = batch["alpha"]
        nig = NIG(outputs["nig_gamma"], outputs["nig_omega"], outputs["nig_alpha"], outputs["nig_beta"])
        nll = nig_nll(target, nig).mean()
        evidence = evidence_regularizer(target, nig).mean()
        total = nll + self.evidence_weight * evidence
        parts = {"nig_nll": nll.item(), "nig_evidence": evidence.item(), "nig": total.item()}
        if self.gradient_weight > 0:
            region = outputs.get("uncertainty_map")
            if region is None:
                region = torch.ones_like(target)  # every pixel is above the threshold
            gradient = alpha_gradient_loss(nig.gamma, target, region, self.gradient_threshold)
            total = total + self.gradient_weight * gradient
            parts["alpha_gradient"] = gradient.item()
        base_outputs = self.base_outputs(outputs) if self.base is not None else {}
        total = add_base_criterion_term(total, parts, self.base, self.base_weight, base_outputs, batch, epoch, num_epochs)
        parts["total"] = total.item()
        return total, parts

    def end_epoch(self, epoch_mean_parts: dict) -> None:
        """Pass the epoch's means on to the base criterion when it keeps per-epoch state."""
        base_criterion_end_epoch(self.base, epoch_mean_parts)

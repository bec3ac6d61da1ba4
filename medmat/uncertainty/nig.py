"""Normal-Inverse-Gamma (NIG) evidence of dugMatting (Wu et al., 2023, §3.1-3.2): moments and summation.

A NIG(γ, ω, α, β) over a pixel's (μ, σ²) says ``μ ~ N(γ, σ²/ω)``, ``σ² ~ Γ⁻¹(α, β)`` with ω > 0,
α > 1, β > 0 (ω is the paper's "v"/"λ" of Amini et al. 2020). Its moments:

- aleatoric uncertainty ``E[σ²] = β / (α - 1)`` (the noise the data carry);
- epistemic uncertainty ``Var[μ] = β / (ω (α - 1))`` (the paper's Var[γ], what the model does not know);
- ``Var[σ²] = β² / ((α - 1)² (α - 2))`` for α > 2 (App. A), infinite for α <= 2: how far the
  aleatoric estimate itself can be trusted (§3.4);
- the marginal of y is a Student-t with 2α degrees of freedom, location γ and squared scale
  ``β (1 + ω) / (ω α)`` (Amini et al. 2020); Eq. 1 is its negative log-density.

:func:`nig_sum` is the summation of Eq. 2 (Qian 2018; Ma et al. 2021), which dugMatting uses to
fuse the NIGs predicted before and after each interaction. It is commutative and associative;
it is not an averaging: the fused α is ``α1 + α2 + 1/2``, so every summand adds evidence, and a
summand with vanishing ω (no confidence in its mean) leaves γ and ω unchanged but still raises
α by its own α plus 1/2 (and β by its own β).

Every function takes torch tensors or numpy arrays (or floats) and returns the same kind.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

Array = torch.Tensor | np.ndarray | float


class NIG(NamedTuple):
    """The four NIG parameters, each of the same shape (e.g. (B, 1, H, W) tensors or (H, W) arrays).

    Attributes:
        gamma: γ, the mean of μ (dugMatting: the alpha matte, in [0, 1]).
        omega: ω > 0, the virtual observation count of the mean.
        alpha: α > 1, the shape of the inverse gamma.
        beta: β > 0, the scale of the inverse gamma.
    """

    gamma: Array
    omega: Array
    alpha: Array
    beta: Array

    def map(self, function) -> "NIG":
        """A NIG with ``function`` applied to each parameter (e.g. ``lambda t: t[0, 0].cpu().numpy()``)."""
        return NIG(*(function(value) for value in self))


def _where(condition, value, otherwise):
    if isinstance(condition, torch.Tensor):
        return torch.where(condition, value, torch.as_tensor(otherwise, dtype=value.dtype, device=value.device))
    return np.where(condition, value, otherwise)


def aleatoric_uncertainty(alpha: Array, beta: Array) -> Array:
    """``E[σ²] = β / (α - 1)``, elementwise, > 0 for α > 1, β > 0."""
    return beta / (alpha - 1.0)


def epistemic_uncertainty(omega: Array, alpha: Array, beta: Array) -> Array:
    """``Var[μ] = β / (ω (α - 1))``, elementwise, > 0 for ω > 0, α > 1, β > 0."""
    return beta / (omega * (alpha - 1.0))


def aleatoric_variance(alpha: Array, beta: Array) -> Array:
    """``Var[σ²] = β² / ((α - 1)² (α - 2))`` where α > 2, +inf where α <= 2 (the variance diverges)."""
    finite = alpha > 2.0
    # The denominator is only evaluated safely where it is positive; elsewhere it is replaced
    # before the division so that no warning or NaN is produced.
    denominator = (alpha - 1.0) ** 2 * _where(finite, alpha - 2.0, 1.0)
    return _where(finite, beta**2 / denominator, float("inf"))


def predictive_scale(omega: Array, alpha: Array, beta: Array) -> Array:
    """Scale of the Student-t marginal of y: ``sqrt(β (1 + ω) / (ω α))`` (its dof is 2α, its loc γ)."""
    return (beta * (1.0 + omega) / (omega * alpha)) ** 0.5


def nig_sum(first: NIG, second: NIG) -> NIG:
    """Summation of two NIG distributions, Eq. 2 of dugMatting, elementwise.

    ``γ = (ω1 γ1 + ω2 γ2) / (ω1 + ω2)``, ``ω = ω1 + ω2``, ``α = α1 + α2 + 1/2``,
    ``β = β1 + β2 + ω1 (γ1 - γ)² / 2 + ω2 (γ2 - γ)² / 2``.

    Args:
        first, second: NIGs of broadcastable shapes, tensors or arrays.

    Returns:
        The summed NIG (γ in the range of γ1 and γ2, since it is their ω-weighted mean).
    """
    omega = first.omega + second.omega
    gamma = (first.omega * first.gamma + second.omega * second.gamma) / omega
    alpha = first.alpha + second.alpha + 0.5
    beta = (
        first.beta
        + second.beta
        + 0.5 * first.omega * (first.gamma - gamma) ** 2
        + 0.5 * second.omega * (second.gamma - gamma) ** 2
    )
    return NIG(gamma, omega, alpha, beta)


def nig_sum_all(nigs) -> NIG:
    """``NIG_1 ⊕ NIG_2 ⊕ ... ⊕ NIG_M`` (Eq. 2) of a non-empty sequence, summed left to right."""
    nigs = list(nigs)
    if not nigs:
        raise ValueError("nig_sum_all needs at least one NIG")
    total = nigs[0]
    for nig in nigs[1:]:
        total = nig_sum(total, nig)
    return total


def nig_moments(nig: NIG) -> dict[str, Array]:
    """The maps dugMatting reads from a NIG.

    Returns:
        ``{"alpha": γ, "epistemic": Var[μ], "aleatoric": E[σ²], "aleatoric_variance": Var[σ²]}``,
        each of the parameters' shape and kind.
    """
    return {
        "alpha": nig.gamma,
        "epistemic": epistemic_uncertainty(nig.omega, nig.alpha, nig.beta),
        "aleatoric": aleatoric_uncertainty(nig.alpha, nig.beta),
        "aleatoric_variance": aleatoric_variance(nig.alpha, nig.beta),
    }

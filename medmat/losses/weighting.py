"""Multi-task loss weighting of Medical Matting (§III.D.2): none, UWS (Eq. 9), OAWS (Eq. 10-11).

Each strategy is an ``nn.Module`` mapping named task losses ``{"seg": L_seg, "matt": L_matt}``
and the 0-based epoch index to one scalar total. Learnable state (the UWS sigmas) lives in
parameters, so the optimiser trains it and ``state_dict()`` checkpoints it. None of the
strategies keeps per-epoch state: OAWS is a closed-form function of the epoch index.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from medmat.errors import MedmatError

#: The two tasks, in the order of the paper's equations.
TASKS = ("seg", "matt")


def _check_tasks(losses: dict[str, torch.Tensor]) -> None:
    if set(losses) != set(TASKS):
        raise ValueError(f"loss weighting expects the losses {TASKS}, got {tuple(losses)}")


class NoWeighting(nn.Module):
    """"None" in Table V: ``L = L_seg + L_matt``."""

    def forward(self, losses: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        _check_tasks(losses)
        return losses["seg"] + losses["matt"]

    def weights(self, epoch: int) -> dict[str, float]:
        """Multiplier of each task loss at ``epoch``, for logging."""
        return {"weight_seg": 1.0, "weight_matt": 1.0}


class UncertaintyWeighting(nn.Module):
    """UWS (Kendall et al., 2018), Eq. 9: ``L = L_seg / s1^2 + L_matt / (2 s2^2) + log(s1 s2)``.

    The paper trains sigma_1, sigma_2 themselves, initialised to 4 (§IV.C). They are stored as
    ``log_sigma`` so that sigma stays positive and ``log(s1 s2)`` defined; the loss is Eq. 9
    exactly. (The authors' release differs: it trains s = log sigma^2 initialised to 4, i.e.
    sigma = e^2, and adds ``s1 + s2 = 2 log(s1 s2)``.)

    Args:
        sigma_init: initial sigma_1 = sigma_2 (> 0).
    """

    #: Eq. 9's factor on each task: 1 for the classification-like L_seg, 1/2 for L_matt.
    scales = {"seg": 1.0, "matt": 0.5}

    def __init__(self, sigma_init: float = 4.0):
        super().__init__()
        if not sigma_init > 0:
            raise MedmatError(f"loss option sigma_init must be > 0, got {sigma_init}")
        self.log_sigma = nn.Parameter(torch.full((len(TASKS),), math.log(sigma_init)))

    @property
    def sigma(self) -> torch.Tensor:
        """(sigma_seg, sigma_matt), shape (2,)."""
        return self.log_sigma.exp()

    def forward(self, losses: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        _check_tasks(losses)
        total = self.log_sigma.sum()  # log(s1 s2)
        for index, task in enumerate(TASKS):
            total = total + self.scales[task] * torch.exp(-2.0 * self.log_sigma[index]) * losses[task]
        return total

    def weights(self, epoch: int) -> dict[str, float]:
        """Multiplier of each task loss, and the sigmas, for logging."""
        sigma = self.sigma.detach().tolist()
        described = {f"weight_{t}": self.scales[t] / s**2 for t, s in zip(TASKS, sigma)}
        described.update({f"sigma_{t}": s for t, s in zip(TASKS, sigma)})
        return described


class OscillationAttenuationWeighting(nn.Module):
    """OAWS, Eq. 10-11: ``L = gamma(n) L_seg + (1 - gamma(n)) L_matt`` at epoch ``n``.

    ``gamma(n) = 1/2 g(n) cos(n f(n)) + t`` with ``g(n) = exp(-a n)`` and ``f(n) = b n``, i.e.
    ``gamma(n) = 1/2 exp(-a n) cos(b n^2) + t`` (the release computes ``cos(b n n)`` too), with
    ``n`` the 0-based epoch index: training starts on the segmentation alone (gamma(0) = 1 for
    t = 1/2) and oscillates, ever more weakly and ever faster, towards ``gamma = t``. It depends
    on the epoch only, not on the loss values, so it needs no state. gamma stays in [0, 1] for
    t = 1/2 (the paper's value).

    Args:
        a: decay rate of the oscillation (paper 0.05), >= 0.
        b: chirp rate of the oscillation (paper 0.03).
        t: the weight gamma converges to (paper 0.5).
    """

    def __init__(self, a: float = 0.05, b: float = 0.03, t: float = 0.5):
        super().__init__()
        if a < 0:
            raise MedmatError(f"loss option oaws_a must be >= 0 (a decaying oscillation), got {a}")
        self.a, self.b, self.t = float(a), float(b), float(t)

    def gamma(self, epoch: int) -> float:
        """Weight of L_seg at the 0-based ``epoch`` (Eq. 10)."""
        return 0.5 * math.exp(-self.a * epoch) * math.cos(self.b * epoch * epoch) + self.t

    def forward(self, losses: dict[str, torch.Tensor], epoch: int) -> torch.Tensor:
        _check_tasks(losses)
        gamma = self.gamma(epoch)
        return gamma * losses["seg"] + (1.0 - gamma) * losses["matt"]

    def weights(self, epoch: int) -> dict[str, float]:
        """Multiplier of each task loss at ``epoch``, for logging."""
        gamma = self.gamma(epoch)
        return {"weight_seg": gamma, "weight_matt": 1.0 - gamma}


#: The name the project's issue gives OAWS; the paper's name is "oscillation attenuation".
OrderedAdaptiveWeighting = OscillationAttenuationWeighting

WEIGHTINGS: dict[str, type[nn.Module]] = {
    "none": NoWeighting,
    "uws": UncertaintyWeighting,
    "oaws": OscillationAttenuationWeighting,
}


def build_weighting(name: str, **options) -> nn.Module:
    """The weighting strategy ``name`` (none | uws | oaws, any case) built with ``options``.

    Raises:
        MedmatError: unknown name, or an option the strategy does not take.
    """
    key = str(name).lower()
    if key not in WEIGHTINGS:
        raise MedmatError(f"unknown loss weighting {name!r}; choose one of: {', '.join(WEIGHTINGS)}")
    try:
        inspect.signature(WEIGHTINGS[key]).bind(**options)
    except TypeError as error:
        raise MedmatError(f"loss weighting {key!r}: {error}") from None
    return WEIGHTINGS[key](**options)

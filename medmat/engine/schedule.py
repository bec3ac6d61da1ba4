"""The learning-rate schedule of the paper (§IV.A, Table III): a linear warm-up, then cosine annealing."""

from __future__ import annotations

import math

import torch


def learning_rate_factor(
    step: int,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int = 1,
    scheduler: str = "cosine",
    unit: str = "step",
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based).

    Linear warm-up over the first ``warmup_epochs`` epochs, step by step, reaching the base rate at
    the warm-up's last step (the first step uses ``1 / warmup_steps``, never 0); then cosine
    annealing from 1 down to ``min_factor`` at the end of training, advanced every step
    (``unit="step"``) or once per epoch (``unit="epoch"``); ``scheduler="constant"`` stays at 1.
    """
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "constant":
        return 1.0
    if unit == "epoch":
        progress = (step // steps_per_epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
    else:
        progress = (step - warmup_steps) / max(1, (epochs - warmup_epochs) * steps_per_epoch)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(optimizer: torch.optim.Optimizer, optim: dict, steps_per_epoch: int):
    """A per-step ``LambdaLR`` following :func:`learning_rate_factor` for the ``optim`` config section."""
    min_factor = optim["min_lr"] / optim["lr"] if optim["lr"] > 0 else 0.0

    def factor(step: int) -> float:
        return learning_rate_factor(
            step,
            steps_per_epoch,
            optim["epochs"],
            optim["warmup_epochs"],
            optim["scheduler"],
            optim["schedule_unit"],
            min_factor,
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

"""Seeds: every random draw of a run is a function of the config's seed (and the epoch, the rank).

A resumed run draws what an uninterrupted one would have drawn because each epoch reseeds from
``(seed, epoch, rank)`` (:func:`derived_seed`), and validation samples from a forked generator
(:func:`seeded_rng`) that leaves training's untouched.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def derived_seed(*numbers: int) -> int:
    """A 63-bit seed that depends on every number given (``(seed, epoch, rank)``), well mixed."""
    return int(np.random.SeedSequence([int(n) for n in numbers]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@contextlib.contextmanager
def seeded_rng(seed: int, model: nn.Module):
    """Seed torch for the block (CPU, and the model's GPU) and restore the generators afterwards."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield

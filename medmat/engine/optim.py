"""The optimiser of a config's ``optim`` section: ``optim.name`` picks Adam or AdamW.

    optimizer = build_optimizer(model.parameters(), config["optim"])

Both take ``optim.lr``, ``optim.betas`` and ``optim.weight_decay``. Adam adds the weight decay to
the gradient (L2 regularisation, as the paper's Table III recipe); AdamW decays the weights
directly, decoupled from the adaptive step (Loshchilov & Hutter, 2019).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from medmat.errors import MedmatError

#: ``optim.name`` -> optimiser class; the config's choices for that key.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def build_optimizer(parameters: Iterable, optim_section: Mapping) -> torch.optim.Optimizer:
    """The optimiser ``optim_section["name"]`` over ``parameters``, with its lr, betas and weight decay.

    Args:
        parameters: what ``torch.optim.Optimizer`` takes (parameters or parameter groups).
        optim_section: a resolved config's ``optim`` section (:func:`medmat.engine.config.load_config`).

    Raises:
        MedmatError: an ``optim.name`` that is not one of :data:`OPTIMIZERS`.
    """
    name = optim_section["name"]
    if name not in OPTIMIZERS:
        raise MedmatError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](
        parameters,
        lr=optim_section["lr"],
        betas=tuple(optim_section["betas"]),
        weight_decay=optim_section["weight_decay"],
    )

"""Uncertainty-guided interaction of dugMatting (Wu et al., 2023): user maps, proposals, simulated users, refinement.

- :mod:`~medmat.interaction.user_maps`: the user map U (-1 background, 0 unknown, 0.5 transition,
  1 foreground), patch labels read from a ground-truth alpha, and random training maps (App. B.1);
- :mod:`~medmat.interaction.proposals`: Algorithm 1, the patches proposed to the user by their
  mean epistemic uncertainty;
- :mod:`~medmat.interaction.simulate`: a simulated user answering from the ground truth, and the
  interaction loop (predict, propose, label, predict again, NIG summation);
- :mod:`~medmat.interaction.refinement`: the aleatoric-uncertainty refinement of §3.4 (stage 2).
"""

from medmat.interaction.proposals import Patch, patch_uncertainty, propose_patches
from medmat.interaction.user_maps import (
    BACKGROUND,
    FOREGROUND,
    TRANSITION,
    UNKNOWN,
    USER_MAP_VALUES,
    RandomUserMapd,
    patch_label,
    random_user_map,
    random_user_maps,
)

__all__ = [
    "BACKGROUND",
    "FOREGROUND",
    "TRANSITION",
    "UNKNOWN",
    "USER_MAP_VALUES",
    "Patch",
    "RandomUserMapd",
    "patch_label",
    "patch_uncertainty",
    "propose_patches",
    "random_user_map",
    "random_user_maps",
]

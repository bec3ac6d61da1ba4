"""Interaction with a trained model: answers that carry alpha, fused into any model's matte, and
dugMatting's uncertainty-guided correction (Wu et al., 2023).

- :mod:`~medmat.interaction.actions`: what a user says, as plain data (probe clicks at five alpha
  levels, brush strokes, dugMatting's patch answers), checked, saved and replayed as JSON;
- :mod:`~medmat.interaction.fusion`: the actions fused into any model's predicted alpha by an
  uncertainty-weighted, edge-aware solve in logit space;
- :mod:`~medmat.interaction.users`: simulated users (clicks at the centre of the largest error
  region, a noisy user, binary clicks, brush strokes, patch answers);
- :mod:`~medmat.interaction.ceiling`: the best global logit offset (and temperature) of a matte,
  the ceiling of one coherent correction;
- :mod:`~medmat.interaction.step`: one dugMatting step (predict with the user map, fuse the NIG by
  Eq. 2), shared by the simulated user and the browser app;
- :mod:`~medmat.interaction.simulate`: the simulated interaction loops of both kinds;
- :mod:`~medmat.interaction.refinement`: the aleatoric-uncertainty refinement of §3.4 (stage 2);
- :mod:`~medmat.interaction.evaluation`: interaction tables, NoC summaries, uncertainty reports, figures.

Its building blocks live lower, where models and the engine may use them: the user maps in
:mod:`medmat.data.user_maps`, the patch proposals in :mod:`medmat.uncertainty.proposals`.
"""

from medmat.interaction.actions import PatchAnswer, Probe, Stroke
from medmat.interaction.fusion import DEFAULT_PARAMS, FusionParams, fuse, fusion_uncertainty
from medmat.interaction.simulate import simulate_dataset, simulate_fusion, simulate_interactions
from medmat.interaction.step import interaction_step, predict_nig

__all__ = [
    "DEFAULT_PARAMS",
    "FusionParams",
    "PatchAnswer",
    "Probe",
    "Stroke",
    "fuse",
    "fusion_uncertainty",
    "interaction_step",
    "predict_nig",
    "simulate_dataset",
    "simulate_fusion",
    "simulate_interactions",
]

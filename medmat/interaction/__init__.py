"""Interaction with a trained model: dugMatting's uncertainty-guided correction (Wu et al., 2023).

- :mod:`~medmat.interaction.step`: one interaction step (predict with the user map, fuse the NIG
  by Eq. 2), shared by the simulated user and the browser app;
- :mod:`~medmat.interaction.simulate`: a simulated user answering from the ground truth, and the
  interaction loop over rounds;
- :mod:`~medmat.interaction.refinement`: the aleatoric-uncertainty refinement of §3.4 (stage 2);
- :mod:`~medmat.interaction.evaluation`: interaction tables, uncertainty reports, figures.

Its building blocks live lower, where models and the engine may use them: the user maps in
:mod:`medmat.data.user_maps`, the patch proposals in :mod:`medmat.uncertainty.proposals`.
"""

from medmat.interaction.simulate import simulate_dataset, simulate_interactions
from medmat.interaction.step import interaction_step, predict_nig

__all__ = ["interaction_step", "predict_nig", "simulate_dataset", "simulate_interactions"]

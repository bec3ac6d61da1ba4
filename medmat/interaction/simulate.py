"""Simulated interaction with a "nig" model (dugMatting §3.3, Algorithm 1 and Eq. 2).

One round: propose the N patches of highest mean epistemic uncertainty (Algorithm 1), let a
simulated user label each from the ground truth (foreground / background / transition,
:func:`~medmat.data.user_maps.patch_label`), add the labels to the user map, predict
again with the updated map, and fuse the new NIG with the previous one by the NIG summation of
Eq. 2. Round 0 is the prediction without interaction. A round without proposals (no patch above
the threshold, or all labelled) changes nothing: no interaction, no new NIG.

Two further readings of every round r >= 1 are scored, so that a table says how much the labels
themselves can give on a dataset:

- ``round-r+labels``: the fused alpha with the user's answers applied (:func:`apply_user_labels`:
  1 in patches labelled foreground, 0 in background ones; "transition" says nothing about the
  value). It uses nothing but the user's labels, so a tool may show it;
- ``round-r+oracle``: the fused alpha with the ground truth pasted into every labelled patch: the
  most any reading of those patches could give (an upper bound, not a method).

:func:`simulate_interactions` runs the loop on one case; :func:`simulate_dataset` on many, with
the Table IV metrics of every round (and after the aleatoric refinement when a refiner is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from medmat.data.sample import Sample
from medmat.data.user_maps import BACKGROUND, FOREGROUND, TRANSITION, UNKNOWN, patch_label
from medmat.errors import MedmatError
from medmat.interaction.refinement import refine_alpha
from medmat.interaction.step import interaction_step, predict_nig
from medmat.metrics import mean_table_iv_metrics, table_iv_metrics
from medmat.uncertainty.nig import NIG, nig_moments
from medmat.uncertainty.proposals import Patch, propose_patches


def apply_user_labels(alpha: np.ndarray, user_map: np.ndarray) -> np.ndarray:
    """``alpha`` (H, W) with the user's definite answers applied: 1 where ``user_map`` says
    foreground, 0 where it says background; transition and unlabelled pixels kept. float32 (H, W)."""
    applied = np.array(alpha, dtype=np.float32, copy=True)
    applied[user_map == FOREGROUND] = 1.0
    applied[user_map == BACKGROUND] = 0.0
    return applied


def oracle_alpha(alpha: np.ndarray, user_map: np.ndarray, alpha_gt: np.ndarray) -> np.ndarray:
    """``alpha`` (H, W) with the ground truth in every labelled pixel (``user_map != 0``): the
    upper bound of what labelling those patches can give. float32 (H, W)."""
    return np.where(user_map != UNKNOWN, alpha_gt, alpha).astype(np.float32)


def answer_proposals(user_map: np.ndarray, proposals: Sequence[Patch], alpha: np.ndarray) -> np.ndarray:
    """The simulated user: label every proposed patch from the ground-truth alpha.

    Args:
        user_map: float32 (H, W) current map.
        proposals: the patches to label.
        alpha: ground-truth alpha (H, W) in [0, 1].

    Returns:
        A new float32 (H, W) map: each patch set to its :func:`~medmat.data.user_maps.patch_label`.
    """
    updated = np.array(user_map, dtype=np.float32, copy=True)
    for patch in proposals:
        updated[patch.window] = patch_label(alpha[patch.window])
    return updated


@dataclass
class InteractionRound:
    """The state after one round (round 0: no interaction).

    Attributes:
        nig: the fused NIG (four (H, W) float arrays).
        user_map: float32 (H, W), every label given so far.
        proposals: the patches proposed (and labelled) in this round.
        maps: "alpha" (= fused γ), "epistemic", "aleatoric", "aleatoric_variance" of the fused NIG.
        metrics: :func:`round_metrics` of the fused alpha.
    """

    nig: NIG
    user_map: np.ndarray
    proposals: list[Patch]
    maps: dict[str, np.ndarray]
    metrics: dict = field(default_factory=dict)

    @property
    def alpha(self) -> np.ndarray:
        """The fused alpha matte γ, float (H, W) in [0, 1]."""
        return self.maps["alpha"]


def round_metrics(alpha: np.ndarray, sample: Sample, region: str = "unknown", extra: dict | None = None) -> dict:
    """Table IV metrics of one prediction: SAD/MSE/Grad/Conn on the trimap's unknown region and the whole image.

    Returns:
        ``{"region_name", "region", "whole", **extra}``: "region" is None when the region is
        empty; cases without a trimap use the whole image as region (as the engine's evaluation).
    """
    metrics = table_iv_metrics(np.clip(alpha, 0.0, 1.0), sample.alpha, sample.trimap, region)
    metrics.update(extra or {})
    return metrics


def _round(nig: NIG, user_map: np.ndarray, proposals: list[Patch], sample: Sample, region: str) -> InteractionRound:
    maps = {key: np.asarray(value, dtype=np.float32) for key, value in nig_moments(nig).items()}
    extra = {
        "epistemic": float(np.mean(maps["epistemic"])),
        "aleatoric": float(np.mean(maps["aleatoric"])),
        "labelled_fraction": float(np.mean(user_map != UNKNOWN)),
        "labelled_foreground": float(np.mean(user_map == FOREGROUND)),
        "labelled_background": float(np.mean(user_map == BACKGROUND)),
        "labelled_transition": float(np.mean(user_map == TRANSITION)),
        "num_proposals": len(proposals),
    }
    return InteractionRound(nig, user_map, proposals, maps, round_metrics(maps["alpha"], sample, region, extra))


def simulate_interactions(
    model: nn.Module,
    sample: Sample,
    rounds: int = 2,
    num_proposals: int = 4,
    patch_size: int = 16,
    threshold: float = 0.0,
    region: str = "unknown",
    fuse: bool = True,
) -> list[InteractionRound]:
    """Run the interaction loop on one case with a user who answers from the ground truth.

    Args:
        model: a "nig" model.
        sample: the case; it needs an alpha matte (the simulated user reads it); its trimap, when
            present, is fed to trimap-based bases and gives the metrics' region.
        rounds: interactions after the initial prediction (>= 0).
        num_proposals: N patches proposed per round.
        patch_size: side of the proposal grid's patches in pixels.
        threshold: t, the smallest mean epistemic uncertainty a proposal may have (exclusive).
        region: "unknown" or "whole", the Table IV region.
        fuse: fuse each new NIG with the previous one by Eq. 2 (False: keep the newest NIG alone).

    Returns:
        ``rounds + 1`` :class:`InteractionRound` s, round 0 first.
    """
    if sample.alpha is None:
        raise MedmatError("cannot simulate a user without the ground-truth alpha", sample.source or sample.id)
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    user_map = np.zeros(sample.shape, dtype=np.float32)
    _, fused = predict_nig(model, sample.image, user_map, sample.trimap)
    history = [_round(fused, user_map, [], sample, region)]
    for _ in range(rounds):
        epistemic = history[-1].maps["epistemic"]
        proposals = propose_patches(epistemic, num_proposals, patch_size, threshold, labelled=user_map != 0)
        if proposals:
            user_map = answer_proposals(user_map, proposals, sample.alpha)
            _, fused = interaction_step(model, sample.image, user_map, fused if fuse else None, sample.trimap)
        history.append(_round(fused, user_map, proposals, sample, region))
    return history


def mean_round_metrics(cases: Sequence[dict]) -> dict:
    """Means over cases of per-stage metrics.

    Args:
        cases: ``{stage name: round_metrics dict}`` per case (e.g. "round-0", "round-1", "refined").

    Returns:
        ``{stage: {"region": {metric: mean}, "whole": {...}, "epistemic": mean, ...}}``
        (:func:`~medmat.metrics.mean_table_iv_metrics` of each stage).
    """
    return {stage: mean_table_iv_metrics([case[stage] for case in cases]) for stage in cases[0]}


def simulate_dataset(
    model: nn.Module,
    samples: Sequence[Sample],
    rounds: int = 2,
    num_proposals: int = 4,
    patch_size: int = 16,
    threshold: float = 0.0,
    region: str = "unknown",
    refiner: nn.Module | None = None,
    seed: int = 0,
) -> dict:
    """:func:`simulate_interactions` on every case, optionally followed by the aleatoric refinement.

    Args:
        model, rounds, num_proposals, patch_size, threshold, region: as :func:`simulate_interactions`.
        samples: cases with alpha mattes.
        refiner: a trained :class:`~medmat.interaction.refinement.RefinementNetwork`; when given,
            the last round's fused NIG is refined (§3.4) and scored as stage "refined".
        seed: seeds the refinement's sampling of γ_s.

    Returns:
        ``{"cases": [{"id", "round-0": metrics, ..., "round-R": metrics, "round-r+labels" and
        "round-r+oracle" for r = 1..R (see the module), ["refined": metrics]}],
        "mean": mean_round_metrics(...)}``.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for sample in samples:
        history = simulate_interactions(model, sample, rounds, num_proposals, patch_size, threshold, region)
        case = {}
        for index, state in enumerate(history):
            case[f"round-{index}"] = state.metrics
            if index:
                labelled = apply_user_labels(state.alpha, state.user_map)
                case[f"round-{index}+labels"] = round_metrics(labelled, sample, region)
                oracle = oracle_alpha(state.alpha, state.user_map, sample.alpha)
                case[f"round-{index}+oracle"] = round_metrics(oracle, sample, region)
        if refiner is not None:
            refined = refine_alpha(refiner, sample.image, history[-1].maps, rng)
            extra = {"refined_patches": len(refined["centres"])}
            case["refined"] = round_metrics(refined["alpha"], sample, region, extra)
        cases.append({"id": sample.id, **case})
    stages = [{key: value for key, value in case.items() if key != "id"} for case in cases]
    return {"cases": cases, "mean": mean_round_metrics(stages) if stages else {}}

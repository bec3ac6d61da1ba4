"""Simulated interaction: dugMatting's NIG loop, and actions fused into any model's alpha.

**The fusion protocols** (every model; :func:`simulate_fusion`, :func:`simulate_fusion_dataset`):
the model predicts each case once; a simulated user (:mod:`medmat.interaction.users`) answers
with actions (probe clicks at five alpha levels, binary clicks, brush strokes, or dugMatting's
patch answers) and every interaction is fused into the prediction by
:func:`~medmat.interaction.fusion.fuse`. Beside the Table IV metrics of every round, a case records
how many interactions it took to cut its Table IV SAD by 40 % and 60 % (NoC-style).

**dugMatting's NIG loop** ("nig" models, §3.3, Algorithm 1 and Eq. 2). One round: propose the N patches of highest mean epistemic uncertainty (Algorithm 1), let a
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

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from medmat.data.sample import Sample
from medmat.data.user_maps import BACKGROUND, FOREGROUND, TRANSITION, UNKNOWN, patch_label
from medmat.errors import MedmatError
from medmat.engine.inference import predict_as_trained
from medmat.interaction.actions import PROBE_LEVELS, Action, actions_probes, actions_to_json
from medmat.interaction.fusion import DEFAULT_PARAMS, Fusion, FusionParams, fuse, fusion_uncertainty
from medmat.interaction.refinement import refine_alpha
from medmat.interaction.step import interaction_step, predict_nig
from medmat.metrics import mean_table_iv_metrics, table_iv_metrics
from medmat.uncertainty.nig import NIG, nig_moments
from medmat.interaction.users import BrushUser, PatchUser, ProbeUser
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


def case_stages(case: Mapping) -> dict:
    """The stages of a simulated case: its entries that are :func:`round_metrics` dicts (not "id",
    nor a case's other records such as the fusion protocols' "noc")."""
    return {key: value for key, value in case.items() if isinstance(value, Mapping) and "whole" in value}


def mean_round_metrics(cases: Sequence[dict]) -> dict:
    """Means over cases of per-stage metrics.

    Args:
        cases: ``{stage name: round_metrics dict}`` per case (e.g. "round-0", "round-1", "refined");
            other entries are left out (:func:`case_stages`).

    Returns:
        ``{stage: {"region": {metric: mean}, "whole": {...}, "epistemic": mean, ...}}``
        (:func:`~medmat.metrics.mean_table_iv_metrics` of each stage).
    """
    return {stage: mean_table_iv_metrics([case[stage] for case in cases]) for stage in case_stages(cases[0])}


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
    return {"cases": cases, "mean": mean_round_metrics(cases) if cases else {}}


# ------------------------------------------------------------------------------------------------
# Actions fused into any model's alpha (medmat.interaction.fusion)
# ------------------------------------------------------------------------------------------------

#: The protocols whose actions go through the fusion, for every model (``medmat interact --protocol``).
FUSION_PROTOCOLS = ("probe", "binary", "brush", "patch")
#: The protocols simulated with a noisy user beside the clean one.
NOISY_PROTOCOLS = ("probe", "binary")
#: Stage prefixes: the clean user's rounds and the noisy user's.
CLEAN, NOISY = "round", "noisy"
#: Reductions of the Table IV SAD whose number of interactions is counted (NoC-style).
NOC_TARGETS = (0.4, 0.6)


def make_user(protocol: str, prediction: Mapping[str, np.ndarray], noisy: bool = False, seed=0,
              num_proposals: int = 4, patch_size: int = 16):
    """The simulated user of a fusion protocol (:mod:`medmat.interaction.users`).

    Args:
        protocol: one of :data:`FUSION_PROTOCOLS`: "probe" (five levels), "binary" (clicks of 0 or 1),
            "brush" (a stroke along the largest error region's skeleton), "patch" (dugMatting's
            answers for the N most uncertain patches).
        prediction: the model's maps (the patch user proposes from its "epistemic" map when it
            gives one, else from :func:`~medmat.interaction.fusion.fusion_uncertainty`).
        noisy: the noisy user (probe and binary only).
        seed: seeds the noisy user (an int or a sequence of ints).
    """
    if protocol not in FUSION_PROTOCOLS:
        raise MedmatError(f"unknown protocol {protocol!r}; the fusion's are {', '.join(FUSION_PROTOCOLS)}")
    if noisy and protocol not in NOISY_PROTOCOLS:
        raise MedmatError(f"the {protocol} protocol has no noisy user (only {', '.join(NOISY_PROTOCOLS)})")
    if protocol in ("probe", "binary"):
        return ProbeUser(PROBE_LEVELS if protocol == "probe" else (0.0, 1.0), noisy, seed)
    if protocol == "brush":
        return BrushUser()
    proposal_map = prediction["epistemic"] if "epistemic" in prediction else fusion_uncertainty(prediction)
    return PatchUser(np.asarray(proposal_map, dtype=np.float64), num_proposals, patch_size)


@dataclass
class FusionRound:
    """The state after one interaction of a fusion protocol (round 0: the model's prediction).

    Attributes:
        alpha: float32 (H, W) in [0, 1], the matte shown to the user.
        actions: every action so far, oldest first.
        fusion: the :class:`~medmat.interaction.fusion.Fusion` that made ``alpha`` (None in round 0).
        metrics: :func:`round_metrics` of ``alpha``, with "seconds" (the fusion's, 0 when the user
            had nothing left to do), "acted" (1 when the user acted), "actions" (their number so far).
    """

    alpha: np.ndarray
    actions: tuple[Action, ...]
    fusion: Fusion | None
    metrics: dict


def simulate_fusion(
    sample: Sample,
    prediction: Mapping[str, np.ndarray],
    user,
    steps: int,
    params: FusionParams = DEFAULT_PARAMS,
    region: str = "unknown",
    repredict: Callable[[tuple[Action, ...]], Mapping[str, np.ndarray]] | None = None,
) -> list[FusionRound]:
    """A simulated user's ``steps`` interactions with one case, each fused into the model's alpha.

    Every fusion starts from the same prediction and replays every action so far, as the app does;
    with ``repredict`` (a model that reads the probes, :func:`probe_predictor`) it starts from the
    model's prediction with every action so far instead.

    Args:
        sample: the case, with its ground-truth alpha (the user reads it) and trimap (the band).
        prediction: the model's maps for ``sample.image`` (:func:`~medmat.engine.inference.predict`).
        user: a simulated user (:func:`make_user`).
        steps: interactions after the prediction (>= 0).
        params: the fusion's parameters.
        region: "unknown" or "whole", the Table IV region.
        repredict: actions -> the model's maps predicted with them; None = the prediction throughout.

    Returns:
        ``steps + 1`` :class:`FusionRound` s, round 0 first ("seconds" counts the re-prediction too).
    """
    if sample.alpha is None:
        raise MedmatError("cannot simulate a user without the ground-truth alpha", sample.source or sample.id)
    prior = np.clip(np.asarray(prediction["alpha"], dtype=np.float32), 0.0, 1.0)
    uncertainty = fusion_uncertainty(prediction)
    extra = {"seconds": 0.0, "acted": 0, "actions": 0}
    history = [FusionRound(prior, (), None, round_metrics(prior, sample, region, extra))]
    for _ in range(steps):
        state = history[-1]
        new = user.interact(sample, state.alpha, state.actions)
        if not new:
            extra = {"seconds": 0.0, "acted": 0, "actions": len(state.actions)}
            history.append(FusionRound(state.alpha, state.actions, state.fusion,
                                       round_metrics(state.alpha, sample, region, extra)))
            continue
        actions = state.actions + tuple(new)
        start = time.perf_counter()
        if repredict is None:
            fusion = fuse(sample.image, prior, uncertainty, actions, params)
        else:
            maps = repredict(actions)
            alpha = np.clip(np.asarray(maps["alpha"], dtype=np.float32), 0.0, 1.0)
            fusion = fuse(sample.image, alpha, fusion_uncertainty(maps), actions, params)
        extra = {"seconds": time.perf_counter() - start, "acted": 1, "actions": len(actions)}
        history.append(FusionRound(fusion.alpha, actions, fusion, round_metrics(fusion.alpha, sample, region, extra)))
    return history


def probe_predictor(model: nn.Module, sample: Sample, num_samples: int = 8, seed: int = 0,
                    flip: bool | str = False, model_input_size: Sequence[int] | None = None,
                    ) -> Callable[[tuple[Action, ...]], dict[str, np.ndarray]] | None:
    """For a model that re-predicts with the user's probes (``"probe_map"`` among its inputs,
    :mod:`medmat.models.probe_refiner`): ``actions -> maps``, its prediction of ``sample`` with the
    probes among ``actions`` (:func:`~medmat.interaction.actions.actions_probes`), as the run was
    evaluated (``flip``: ``eval.flip``'s views; ``model_input_size``: ``data.model_input_size``).
    Every call draws the model's random samples from ``seed``, so rounds differ by the probes
    alone. None for a model that does not read probes."""
    if "probe_map" not in model.spec.takes:
        return None

    def repredict(actions: tuple[Action, ...]) -> dict[str, np.ndarray]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return predict_as_trained(model, sample.image, num_samples, sample.trimap, model_input_size, flip,
                                      probes=actions_probes(actions))

    return repredict


def interactions_to_reach(case: Mapping, fraction: float, steps: int, prefix: str = CLEAN) -> int:
    """NoC: the first interaction after which the case's Table IV SAD is at most ``1 - fraction``
    of round 0's (the whole image's when the case has no region), ``steps + 1`` when none is.

    ``case`` holds ``"round-0"`` and ``"<prefix>-k"`` for k = 1..steps (:func:`round_metrics` dicts).
    """
    group = "region" if case["round-0"]["region"] is not None else "whole"
    goal = (1.0 - fraction) * case["round-0"][group]["SAD"]
    for step in range(1, steps + 1):
        if case[f"{prefix}-{step}"][group]["SAD"] <= goal:
            return step
    return steps + 1


def simulate_fusion_dataset(
    model: nn.Module,
    samples: Sequence[Sample],
    protocol: str,
    steps: int,
    params: FusionParams = DEFAULT_PARAMS,
    region: str = "unknown",
    num_samples: int = 8,
    noisy: bool = True,
    seed: int = 0,
    num_proposals: int = 4,
    patch_size: int = 16,
    keep: int = 0,
    flip: bool | str = False,
    model_input_size: Sequence[int] | None = None,
) -> tuple[dict, list[tuple[Sample, list[FusionRound]]]]:
    """:func:`simulate_fusion` on every case with the protocol's clean user (and its noisy user).

    Args:
        model: any medmat model; each case is predicted once (its trimap given to trimap models), and
            again after every interaction by a model that reads the probes (:func:`probe_predictor`).
        samples: cases with alpha mattes.
        protocol: one of :data:`FUSION_PROTOCOLS`.
        steps: interactions per case.
        params, region: as :func:`simulate_fusion`.
        num_samples: masks drawn by models that sample.
        noisy: also simulate the noisy user (protocols of :data:`NOISY_PROTOCOLS`), seeded by
            ``(seed, case index)``.
        seed: the noisy users' seed.
        num_proposals, patch_size: the patch protocol's N and patch side.
        keep: how many of the first cases' clean histories to return (for a figure).
        flip, model_input_size: the run's ``eval.flip`` and ``data.model_input_size``: each case is
            predicted as ``medmat evaluate`` predicts it
            (:func:`~medmat.engine.inference.predict_as_trained`), so that with the same seed
            round 0 is its Table IV.

    Returns:
        ``(simulation, histories)``: ``simulation = {"cases": [{"id", "round-0".."round-K",
        ["noisy-1".."noisy-K"], "noc": {prefix: {"40": k, "60": k}}, "actions": {prefix: every
        action as JSON}}], "mean": mean_round_metrics}`` and the kept ``(sample, clean history)`` pairs.
    """
    cases, histories = [], []
    with_noise = noisy and protocol in NOISY_PROTOCOLS
    for index, sample in enumerate(samples):
        repredict = probe_predictor(model, sample, num_samples, seed, flip, model_input_size)
        if repredict is None:
            prediction = predict_as_trained(model, sample.image, num_samples, sample.trimap, model_input_size, flip)
        else:
            prediction = repredict(())
        users = {CLEAN: make_user(protocol, prediction, False, seed, num_proposals, patch_size)}
        if with_noise:
            users[NOISY] = make_user(protocol, prediction, True, [seed, index], num_proposals, patch_size)
        case, actions = {"id": sample.id}, {}
        for prefix, user in users.items():
            history = simulate_fusion(sample, prediction, user, steps, params, region, repredict)
            actions[prefix] = actions_to_json(history[-1].actions)
            # The noisy user's round 0 is the clean user's: the same prediction.
            for step, state in enumerate(history):
                if prefix == CLEAN or step:
                    case[f"{prefix}-{step}"] = state.metrics
            if prefix == CLEAN and index < keep:
                histories.append((sample, history))
        case["noc"] = {prefix: {f"{round(100 * f)}": interactions_to_reach(case, f, steps, prefix)
                                for f in NOC_TARGETS} for prefix in users}
        case["actions"] = actions
        cases.append(case)
    return {"cases": cases, "mean": mean_round_metrics(cases) if cases else {}}, histories

"""Uncertainty-guided interaction: user maps (App. B.1), proposals (Algorithm 1), the simulated user and
loop with NIG summation (Eq. 2), and the aleatoric refinement (§3.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medmat.models.nig  # noqa: F401  (registers the "nig" model)
from medmat.data.phantom import make_phantom
from medmat.data.sample import Sample
from medmat.data.user_maps import (
    BACKGROUND,
    FOREGROUND,
    TRANSITION,
    USER_MAP_VALUES,
    RandomUserMapd,
    patch_label,
    random_user_map,
)
from medmat.uncertainty.proposals import Patch, patch_uncertainty, propose_patches
from medmat.interaction.refinement import (
    RefinementNetwork,
    patch_centres,
    refine_alpha,
    refinement_loss,
    refinement_window,
    sample_coarse_alpha,
    select_refinement_pixels,
    train_refiner,
)
from medmat.interaction.simulate import (
    answer_proposals,
    apply_user_labels,
    oracle_alpha,
    simulate_dataset,
    simulate_interactions,
)
from medmat.data.user_maps import draw_centre, draw_patch_count, patch_window, pixel_classes
from medmat.interaction.step import predict_nig
from medmat.models import build_model
from medmat.uncertainty.nig import nig_sum
from tiny_configs import MEDICAL_TINY, tiny_model

ADAMATTING_TINY = tiny_model("adamatting")


# Tiny networks: a second thread only waits on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


def three_class_alpha(size: int = 48) -> np.ndarray:
    """Foreground in the left third, a linear ramp in the middle third, background on the right."""
    third = size // 3
    alpha = np.zeros((size, size), np.float32)
    alpha[:, :third] = 1.0
    alpha[:, third : 2 * third] = np.linspace(1, 0, third + 2)[1:-1]
    return alpha


# --- user maps -----------------------------------------------------------------------------------


def test_patch_labels_follow_the_ground_truth():
    assert patch_label(np.ones((15, 15))) == FOREGROUND == 1.0
    assert patch_label(np.zeros((15, 15))) == BACKGROUND == -1.0
    assert patch_label(np.full((15, 15), 0.9995)) == FOREGROUND  # resampling rounding is still foreground
    mixed = np.zeros((15, 15))
    mixed[0, 0] = 1.0
    assert patch_label(mixed) == TRANSITION == 0.5
    assert patch_label(np.full((4, 4), 0.5)) == TRANSITION
    assert pixel_classes(three_class_alpha()).tolist()[0][:16] == [1.0] * 16


def test_patch_count_is_geometric_with_p_one_sixth_including_none():
    rng = np.random.default_rng(0)
    counts = np.array([draw_patch_count(rng) for _ in range(20000)])
    assert counts.min() == 0
    p = 1 / 6
    # P(L = l) = p (1 - p)^l; 4 standard errors of a proportion from 20000 draws is below 0.011.
    for count in range(4):
        assert np.mean(counts == count) == pytest.approx(p * (1 - p) ** count, abs=0.011)
    assert counts.mean() == pytest.approx((1 - p) / p, abs=0.15)  # 5; the standard error is 0.04


def test_random_maps_hold_allowed_values_and_15_pixel_patches():
    rng = np.random.default_rng(1)
    alpha = np.ones((100, 100), np.float32)  # every patch is labelled foreground
    empty = 0
    for _ in range(300):
        state = rng.bit_generator.state
        count = draw_patch_count(rng)
        rng.bit_generator.state = state  # the map draws the same count first
        user_map = random_user_map(alpha, rng, centres="uniform")
        assert user_map.dtype == np.float32 and set(np.unique(user_map)) <= set(USER_MAP_VALUES)
        if count == 0:
            empty += 1
            assert not user_map.any()
        if count == 1:
            rows, cols = np.nonzero(user_map)
            assert np.ptp(rows) < 15 and np.ptp(cols) < 15  # one patch: at most 15 x 15 (clipped at borders)
            inside = rows.min() > 0 and cols.min() > 0 and rows.max() < 99 and cols.max() < 99
            assert (user_map == FOREGROUND).sum() == 225 if inside else (user_map == FOREGROUND).sum() <= 225
    assert empty > 0
    assert patch_window((50, 50), 15, (100, 100)) == (slice(43, 58), slice(43, 58))
    assert patch_window((2, 97), 15, (100, 100)) == (slice(0, 10), slice(90, 100))


def test_class_balanced_centres_visit_every_class_equally():
    alpha = np.zeros((60, 60), np.float32)
    alpha[:5, :5] = 1.0  # a tiny foreground ...
    alpha[:5, 5:8] = 0.5  # ... and a tiny transition: uniform centres would nearly never land there
    classes = pixel_classes(alpha)
    rng = np.random.default_rng(2)
    hits = np.array([classes[draw_centre(alpha, rng, "class_balanced", 1e-3)] for _ in range(3000)])
    for value in (FOREGROUND, BACKGROUND, TRANSITION):
        assert np.mean(hits == value) == pytest.approx(1 / 3, abs=0.04)


def test_user_map_transform_is_seeded_and_leaves_its_input_alone():
    data = {"alpha": three_class_alpha(), "image": np.zeros((1, 48, 48), np.float32)}
    transform = RandomUserMapd()
    first = transform(data, np.random.default_rng(7))
    second = transform(data, np.random.default_rng(7))
    assert "user_map" not in data and first["image"] is data["image"]
    assert first["user_map"].shape == (48, 48) and first["user_map"].dtype == np.float32
    assert np.array_equal(first["user_map"], second["user_map"])


# --- proposals -----------------------------------------------------------------------------------


def test_proposals_are_the_top_patches_above_the_threshold():
    epistemic = np.zeros((8, 8))
    epistemic[:4, :4], epistemic[:4, 4:], epistemic[4:, :4], epistemic[4:, 4:] = 0.1, 0.5, 0.3, 0.05
    epistemic[0, 4] = 0.9  # the patch mean, not its maximum, ranks: (0.9 + 15 * 0.5) / 16 = 0.525
    means = patch_uncertainty(epistemic, 4)
    np.testing.assert_allclose(means, [[0.1, 0.525], [0.3, 0.05]])
    proposals = propose_patches(epistemic, 2, 4, threshold=0.08)
    assert proposals == [Patch(0, 4, 4, 4, pytest.approx(0.525)), Patch(4, 0, 4, 4, pytest.approx(0.3))]
    assert [p[:2] for p in propose_patches(epistemic, 5, 4, threshold=0.08)] == [(0, 4), (4, 0), (0, 0)]
    assert len(propose_patches(epistemic, 5, 4, threshold=0.525)) == 0  # strictly above t
    labelled = np.zeros((8, 8), bool)
    labelled[:4, 4:] = True
    assert [p[:2] for p in propose_patches(epistemic, 1, 4, 0.0, labelled)] == [(4, 0)]


def test_the_grid_is_non_overlapping_and_border_patches_average_their_own_pixels():
    epistemic = np.arange(60, dtype=float).reshape(6, 10)
    means = patch_uncertainty(epistemic, 4)
    assert means.shape == (2, 3)
    assert means[1, 2] == pytest.approx(epistemic[4:6, 8:10].mean())
    patches = propose_patches(epistemic, 100, 4, threshold=-1.0)
    coverage = np.zeros((6, 10), int)
    for patch in patches:
        coverage[patch.window] += 1
    assert len(patches) == 6 and np.all(coverage == 1)


# --- simulated user and the loop -----------------------------------------------------------------


def test_simulated_user_labels_proposals_from_the_ground_truth():
    alpha = three_class_alpha()
    user_map = np.zeros_like(alpha)
    proposals = [Patch(0, 0, 16, 16, 1.0), Patch(16, 16, 16, 16, 0.9), Patch(32, 32, 16, 16, 0.8)]
    answered = answer_proposals(user_map, proposals, alpha)
    assert not user_map.any()
    assert np.all(answered[:16, :16] == FOREGROUND)
    assert np.all(answered[16:32, 16:32] == TRANSITION)
    assert np.all(answered[32:, 32:] == BACKGROUND)
    assert np.count_nonzero(answered) == 3 * 256


def phantom_with_trimap(size: int = 32) -> Sample:
    sample = make_phantom(3, size=size, n_annotators=3)
    sample.trimap = np.where(sample.alpha >= 1, 255, np.where(sample.alpha <= 0, 0, 128)).astype(np.uint8)
    return sample


def test_interaction_loop_runs_rounds_and_fuses_by_eq2():
    torch.manual_seed(0)
    model = build_model("nig", base=ADAMATTING_TINY).eval()  # deterministic in eval mode
    sample = phantom_with_trimap()
    history = simulate_interactions(model, sample, rounds=2, num_proposals=3, patch_size=8)
    assert len(history) == 3 and history[0].proposals == []
    for state in history:
        assert state.alpha.shape == (32, 32) and state.user_map.shape == (32, 32)
        assert set(np.unique(state.user_map)) <= set(USER_MAP_VALUES)
        assert {"region", "whole", "epistemic", "labelled_fraction"} <= set(state.metrics)
    assert [len(state.proposals) for state in history[1:]] == [3, 3]
    assert history[1].metrics["labelled_fraction"] == pytest.approx(3 * 64 / 1024)
    assert history[2].metrics["labelled_fraction"] == pytest.approx(6 * 64 / 1024)
    # Round 1 proposes from round 0's epistemic map and fuses the new prediction by Eq. 2.
    assert history[1].proposals == propose_patches(history[0].maps["epistemic"], 3, 8)
    _, new = predict_nig(model, sample.image, history[1].user_map, sample.trimap)
    for fused, expected in zip(history[1].nig, nig_sum(history[0].nig, new)):
        np.testing.assert_allclose(fused, expected, rtol=1e-6)
    assert np.all(history[2].nig.alpha >= history[0].nig.alpha + 2 * 1.5)  # two summations: + α_new + 1/2 each


def test_simulate_dataset_scores_every_round_and_the_refinement():
    torch.manual_seed(0)
    model = build_model("nig", base=MEDICAL_TINY).eval()
    samples = [make_phantom(seed, size=32, n_annotators=3) for seed in (1, 2)]
    result = simulate_dataset(model, samples, rounds=1, num_proposals=2, patch_size=8, refiner=RefinementNetwork())
    assert [case["id"] for case in result["cases"]] == [s.id for s in samples]
    assert list(result["mean"]) == ["round-0", "round-1", "round-1+labels", "round-1+oracle", "refined"]
    assert result["mean"]["round-0"]["whole"]["SAD"] == pytest.approx(
        np.mean([case["round-0"]["whole"]["SAD"] for case in result["cases"]]))
    # The ground truth pasted into the labelled patches can only lower the error.
    for case in result["cases"]:
        assert case["round-1+oracle"]["whole"]["SAD"] <= case["round-1"]["whole"]["SAD"] + 1e-12


def test_user_labels_applied_and_the_oracle_bound_by_hand():
    alpha = np.full((2, 3), 0.25, dtype=np.float32)  # exact in float32
    user_map = np.array([[FOREGROUND, BACKGROUND, TRANSITION], [0.0, 0.0, FOREGROUND]], dtype=np.float32)
    np.testing.assert_array_equal(apply_user_labels(alpha, user_map), [[1.0, 0.0, 0.25], [0.25, 0.25, 1.0]])
    truth = np.array([[0.9, 0.1, 0.5], [0.0, 1.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(oracle_alpha(alpha, user_map, truth), np.float32([[0.9, 0.1, 0.5], [0.25, 0.25, 1.0]]))
    assert alpha[0, 0] == 0.25  # the inputs are not changed


# --- aleatoric refinement ------------------------------------------------------------------------


def test_pixel_selection_is_otsu_on_aleatoric_filtered_by_its_variance():
    aleatoric = np.full((20, 20), 0.01)
    aleatoric[:, 10:] = 0.2  # the high class
    variance = np.full((20, 20), 1e-4)
    variance[:5, 10:] = 10.0  # unreliable: far larger variance
    variance[5:8, 10:] = np.inf  # α <= 2: never reliable
    selected = select_refinement_pixels(aleatoric, variance)
    expected = np.zeros((20, 20), bool)
    expected[8:, 10:] = True
    assert np.array_equal(selected, expected)
    assert not select_refinement_pixels(np.full((5, 5), 0.1), np.ones((5, 5))).any()  # nothing stands out


def test_patch_centres_cover_the_selected_pixels_greedily():
    selected = np.zeros((64, 64), bool)
    selected[10:20, 10:50] = True
    aleatoric = np.zeros((64, 64))
    aleatoric[15, 30] = 1.0  # the first centre
    centres = patch_centres(selected, aleatoric, patch_size=32, max_patches=16)
    assert centres[0] == (15, 30)
    covered = np.zeros_like(selected)
    for centre in centres:
        covered[refinement_window(centre, 32, selected.shape)] = True
    assert np.all(covered[selected]) and len(centres) <= 3
    assert refinement_window((2, 62), 32, (64, 64)) == (slice(0, 32), slice(32, 64))
    assert len(patch_centres(selected, aleatoric, 32, max_patches=1)) == 1


def test_coarse_sample_draws_from_the_aleatoric_gaussian():
    rng = np.random.default_rng(0)
    alpha = np.full((200, 200), 0.5, np.float32)
    assert np.array_equal(sample_coarse_alpha(alpha, np.zeros_like(alpha), rng), alpha)
    coarse = sample_coarse_alpha(alpha, np.full_like(alpha, 0.01), rng)  # σ = 0.1: clipping is 5σ away
    assert coarse.mean() == pytest.approx(0.5, abs=0.002) and coarse.std() == pytest.approx(0.1, rel=0.02)


def test_refinement_loss_and_an_untrained_refiner_by_hand():
    target = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert refinement_loss(target, target).item() == 0.0
    # A constant offset has the target's gradients: only the L1 term remains.
    assert refinement_loss(target + 0.2, target).item() == pytest.approx(0.2, rel=1e-5)
    refiner = RefinementNetwork()
    coarse = target.clamp(0.01, 0.99)
    with torch.no_grad():
        assert torch.allclose(refiner(torch.rand(3, 1, 32, 32), coarse), coarse, atol=1e-6)


def test_refine_alpha_replaces_only_the_selected_patches():
    rng_maps = np.random.default_rng(1)
    alpha = rng_maps.uniform(0.2, 0.8, (64, 64)).astype(np.float32)
    aleatoric = np.full((64, 64), 1e-4, np.float32)
    aleatoric[40:44, 40:44] = 0.02
    maps = {"alpha": alpha, "aleatoric": aleatoric, "aleatoric_variance": np.full((64, 64), 1e-6, np.float32)}
    result = refine_alpha(RefinementNetwork(), np.zeros((1, 64, 64), np.float32), maps, np.random.default_rng(2))
    assert len(result["centres"]) == 1
    window = refinement_window(result["centres"][0], 32, (64, 64))
    inside = np.zeros((64, 64), bool)
    inside[window] = True
    # An untrained refiner returns γ_s inside its patch; outside, γ is kept.
    np.testing.assert_allclose(result["alpha"][inside], result["coarse"][inside], atol=1e-5)
    assert np.array_equal(result["alpha"][~inside], alpha[~inside])


def test_refiner_training_keeps_the_first_stage_frozen():
    torch.manual_seed(0)
    first_stage = build_model("nig", base=MEDICAL_TINY)
    before = {name: value.clone() for name, value in first_stage.state_dict().items()}
    samples = [make_phantom(seed, size=32, n_annotators=3) for seed in (1, 2)]
    refiner, losses = train_refiner(first_stage, samples, steps=3, patches_per_step=2, seed=0)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert all(torch.equal(before[name], value) for name, value in first_stage.state_dict().items())
    assert refiner.layers[-1].weight.abs().sum() > 0  # the refiner moved off its zero start
    assert first_stage.training  # the caller's mode is restored

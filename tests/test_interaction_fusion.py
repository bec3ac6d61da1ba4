"""Actions that carry alpha, their fusion into any model's matte, the simulated users and the offset ceiling.

The priors here are made by hand from a phantom's true alpha (a blurred matte shifted in logit
space, the kind of coherent error a trained model makes on a blurred border), so that what the
fusion must do is known: move the uncertain band towards an answer, along the image's edges and
not across them, and leave every confident pixel exactly as it was.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medmat.data.phantom import make_phantom
from medmat.data.probe_maps import quantised_map
from medmat.data.sample import Sample
from medmat.errors import MedmatError
from medmat.interaction.actions import (
    MAX_STROKE_POINTS,
    PROBE_LEVELS,
    PatchAnswer,
    Probe,
    Stroke,
    action_box,
    action_from_json,
    actions_from_json,
    actions_to_json,
    check_action,
    stroke_mask,
)
from medmat.interaction.ceiling import corrected_alpha, largest_error_regions, offset_ceiling, region_oracles
from medmat.interaction.fusion import (
    DEFAULT_PARAMS,
    FusionParams,
    fuse,
    fused_maps,
    fusion_params,
    fusion_uncertainty,
    logit,
    sigmoid,
)
from medmat.interaction.simulate import interactions_to_reach, make_user, simulate_fusion
from medmat.interaction.users import (
    BrushUser,
    ProbeUser,
    click_position,
    largest_error_region,
    quantise,
    skeleton_path,
    user_band,
)
from medmat.metrics import table_iv_metrics


def shifted_prior(alpha: np.ndarray, shift: float = -1.5, blur: float = 1.0) -> np.ndarray:
    """The true alpha blurred and shifted in logit space: a matte too small all along its border."""
    return sigmoid(logit(ndimage.gaussian_filter(alpha, blur), 1e-4) + shift).astype(np.float32)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3, size=96)


@pytest.fixture(scope="module")
def prior(phantom):
    return shifted_prior(phantom.alpha)


def worst_pixel(prior, alpha):
    return np.unravel_index(int(np.argmax(np.abs(prior - alpha))), alpha.shape)


# --- actions -------------------------------------------------------------------------------------


def test_actions_round_trip_through_json_and_keep_their_values():
    actions = (Probe(3, 4, 0.75), Stroke([(1, 2), (5.5, 6)], 2, "background"), PatchAnswer(0, 8, 16, 16, "transition"))
    records = json.loads(json.dumps(actions_to_json(actions)))
    assert actions_from_json(records, (32, 32)) == actions
    assert records[0] == {"kind": "probe", "row": 3, "col": 4, "value": 0.75}
    assert actions[1].value == 0.0 and actions[2].value is None and Stroke([(0, 0)], 1, "foreground").value == 1.0
    assert action_box(actions[0]) == (1, 2, 5, 5) and action_box(actions[2]) == (0, 8, 16, 16)
    assert Probe(2.0, 3.0, 1).row == 2  # whole numbers given as floats are pixel indices


@pytest.mark.parametrize("record, message", [
    ({"kind": "probe", "row": 1, "col": 2, "value": 0.3}, "not one of the levels 0, 0.25, 0.5, 0.75, 1"),
    ({"kind": "probe", "row": 1, "col": 2, "value": 1.25}, "probe value 1.25 lies outside"),
    ({"kind": "probe", "row": 1, "col": 2, "value": float("nan")}, "probe value must be a finite number"),
    ({"kind": "probe", "row": float("nan"), "col": 2, "value": 0.5}, "probe row must be a finite number"),
    ({"kind": "probe", "row": 1.5, "col": 2, "value": 0.5}, "whole pixel index"),
    ({"kind": "probe", "row": 32, "col": 2, "value": 0.5}, "probe at row 32, column 2 lies outside the 32 x 32 image"),
    ({"kind": "probe", "row": 1, "col": -1, "value": 0.5}, "lies outside the 32 x 32 image"),
    ({"kind": "probe", "row": True, "col": 2, "value": 0.5}, "probe row must be a number"),
    ({"kind": "stroke", "points": [], "radius": 2, "label": "foreground"}, "at least one point"),
    ({"kind": "stroke", "points": [[1, float("nan")]], "radius": 2, "label": "foreground"}, "finite numbers"),
    ({"kind": "stroke", "points": [[1, 2, 3]], "radius": 2, "label": "foreground"}, "list of \\[row, column\\]"),
    ({"kind": "stroke", "points": [[-40, -40]], "radius": 2, "label": "foreground"}, "the stroke lies outside"),
    ({"kind": "stroke", "points": [[1, 2]], "radius": 0, "label": "foreground"}, "brush radius must lie in"),
    ({"kind": "stroke", "points": [[1, 2]], "radius": 2, "label": "transition"}, "stroke label must be one of"),
    ({"kind": "patch", "top": 40, "left": 0, "height": 8, "width": 8, "label": "foreground"}, "lies outside"),
    ({"kind": "patch", "top": 0, "left": 0, "height": 0, "width": 8, "label": "foreground"}, "at least 1"),
    ({"kind": "lasso"}, "action kind must be one of probe, stroke, patch"),
    ({"kind": "probe", "row": 1}, "a probe action needs col, value"),
])
def test_bad_actions_are_one_line_errors(record, message):
    with pytest.raises(MedmatError, match=message) as refused:
        action_from_json(record, (32, 32))
    assert "\n" not in str(refused.value)


def test_a_stroke_of_more_than_a_million_points_is_refused_and_a_long_one_is_drawn_exactly():
    with pytest.raises(MedmatError, match="a stroke has 1 to 1000000 points, got 1000001"):
        Stroke(np.zeros((MAX_STROKE_POINTS + 1, 2)), 2, "foreground")
    with pytest.raises(MedmatError, match="action 1: probe value"):
        actions_from_json([Probe(1, 1, 0).to_json(), {"kind": "probe", "row": 1, "col": 1, "value": 2}])
    # Long and short segments, against the distance of every pixel to finely sampled points.
    rng = np.random.default_rng(0)
    points = np.concatenate([[[2.0, 3.0], [40.0, 45.0]], rng.uniform(-5, 50, (6, 2))])
    rows, cols = np.mgrid[:48, :48]
    for radius in (0.7, 2.5, 6.0):
        expected = np.zeros((48, 48), bool)
        for start, end in zip(points, points[1:]):
            for t in np.linspace(0, 1, 4001):
                point = start + t * (end - start)
                expected |= (rows - point[0]) ** 2 + (cols - point[1]) ** 2 <= radius**2
        assert np.array_equal(stroke_mask((48, 48), points, radius), expected)


# --- the fusion ----------------------------------------------------------------------------------


def test_no_action_or_a_transition_answer_leaves_the_prior_exactly(phantom, prior):
    uncertainty = fusion_uncertainty({"alpha": prior})
    for actions in ((), (PatchAnswer(0, 0, 16, 16, "transition"),)):
        fusion = fuse(phantom.image, prior, uncertainty, actions)
        np.testing.assert_array_equal(fusion.alpha, prior)
        assert not fusion.domain.any()


def test_a_probe_sets_its_pixel_moves_the_band_and_never_a_confident_pixel(phantom, prior):
    uncertainty = fusion_uncertainty({"alpha": prior})
    row, col = worst_pixel(prior, phantom.alpha)
    value = quantise(float(phantom.alpha[row, col]))
    fusion = fuse(phantom.image, prior, uncertainty, [Probe(row, col, value)], with_influence=True)
    assert abs(fusion.alpha[row, col] - value) < 0.05
    # Confident pixels (outside the solved band) keep the prior's value exactly.
    outside = ~fusion.domain
    assert outside.any() and np.array_equal(fusion.alpha[outside], prior[outside])
    assert fusion.domain.mean() < 0.5
    # The answer raised the matte (the prior is too low there): the clicked disc takes the click's
    # whole offset, and the maximum principle of the solve keeps every other offset between 0 and
    # the clipped offset that spreads.
    target = logit(np.array(value), DEFAULT_PARAMS.target_eps) - logit(prior[row, col], 1e-6)
    disc = fusion.constrained
    assert target > 0 and disc.sum() == 9 and np.allclose(fusion.offset[disc], target)
    assert fusion.offset.min() >= -1e-9 and fusion.offset[~disc].max() <= DEFAULT_PARAMS.spread_limit + 1e-9
    # ... and it spread: band pixels beyond the click's disc moved too.
    distance = np.hypot(*np.mgrid[:96, :96] - np.array([row, col])[:, None, None])
    moved = (fusion.alpha - prior > 0.01) & (distance > 4)
    assert moved.sum() > 20
    assert 0.9 < fusion.influence[row, col] <= 1.0 and fusion.influence.min() >= 0.0
    before = table_iv_metrics(prior, phantom.alpha, None, "whole")["whole"]["SAD"]
    after = table_iv_metrics(fusion.alpha, phantom.alpha, None, "whole")["whole"]["SAD"]
    assert after < before


def test_an_answer_spreads_along_the_image_not_across_its_edges():
    # A 40 x 40 image whose left half is dark and right half bright, uncertain everywhere.
    image = np.full((1, 40, 40), 0.2, np.float32)
    image[:, :, 20:] = 0.8
    prior = np.full((40, 40), 0.5, np.float32)
    fusion = fuse(image, prior, np.ones((40, 40)), [Probe(20, 16, 1.0)], fusion_params(smoothness=30.0))
    same_side, across = fusion.offset[20, 12], fusion.offset[20, 20]  # both 4 pixels from the click
    assert same_side > 0.5 and across < 0.05 * same_side


def test_the_newest_answer_counts_and_bounds_do_not_push_back(phantom, prior):
    uncertainty = fusion_uncertainty({"alpha": prior})
    row, col = worst_pixel(prior, phantom.alpha)
    twice = fuse(phantom.image, prior, uncertainty, [Probe(row, col, 0.0), Probe(row, col, 1.0)])
    once = fuse(phantom.image, prior, uncertainty, [Probe(row, col, 1.0)])
    np.testing.assert_allclose(twice.alpha, once.alpha, atol=1e-5)
    # A background stroke over pixels the model already calls background changes nothing there.
    background = np.argwhere(prior < 1e-4)[0]
    stroke = Stroke([tuple(background)], 2.0, "background")
    fusion = fuse(phantom.image, prior, uncertainty, [stroke])
    assert np.array_equal(fusion.alpha, prior)


def test_the_spread_is_clipped_and_a_probe_spreads_the_nearest_alpha_within_its_tolerance(phantom, prior):
    uncertainty = fusion_uncertainty({"alpha": prior})
    low = np.argwhere((prior > 0.01) & (prior < 0.02))[0]
    params = fusion_params(spread_limit=1.0, answer_tolerance=0.0)
    fusion = fuse(phantom.image, prior, uncertainty, [Probe(*low, 1.0)], params)
    assert fusion.alpha[tuple(low)] > 0.99  # the clicked pixel takes the answer...
    outside = ~fusion.constrained
    assert 0.5 < fusion.offset[outside].max() <= 1.0 + 1e-9  # ...its neighbours at most +1 logit
    # A probe whose answer is within the tolerance of the prior's alpha spreads nothing.
    middle = tuple(np.argwhere((prior > 0.45) & (prior < 0.55))[0])
    level = quantise(float(prior[middle]))
    calm = fuse(phantom.image, prior, uncertainty, [Probe(*middle, level)], fusion_params(answer_tolerance=0.125))
    assert np.all(calm.offset[~calm.constrained] == 0)


def test_spread_uncertainty_keeps_a_confident_miss_local_and_lets_an_uncertain_click_spread(phantom, prior):
    uncertainty = fusion_uncertainty({"alpha": prior})
    sure = tuple(np.argwhere((prior > 0.01) & (prior < 0.02) & (uncertainty < 0.1))[0])
    unsure = tuple(np.argwhere((prior > 0.2) & (prior < 0.3) & (uncertainty > 0.7))[0])
    params = fusion_params(spread_uncertainty=0.5)
    for pixel, share in ((sure, uncertainty[sure] / 0.5), (unsure, 1.0)):
        plain = fuse(phantom.image, prior, uncertainty, [Probe(*pixel, 1.0)])
        limited = fuse(phantom.image, prior, uncertainty, [Probe(*pixel, 1.0)], params)
        assert limited.alpha[pixel] == plain.alpha[pixel]  # the clicked pixel takes its answer either way
        outside = ~plain.constrained
        assert limited.offset[outside].max() <= share * DEFAULT_PARAMS.spread_limit + 1e-9
        assert limited.offset[outside].max() == pytest.approx(share * plain.offset[outside].max(), rel=1e-6)
    with pytest.raises(MedmatError, match="spread_uncertainty must be a number >= 0, got -0.1"):
        fusion_params(spread_uncertainty=-0.1)


def test_fusion_inputs_and_parameters_are_checked(phantom, prior):
    uncertainty = fusion_uncertainty({"alpha": prior})
    with pytest.raises(MedmatError, match="lies outside the 96 x 96 image"):
        fuse(phantom.image, prior, uncertainty, [Probe(200, 3, 0.5)])
    bad = prior.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MedmatError, match="fusion alpha contains NaN"):
        fuse(phantom.image, bad, uncertainty, [Probe(3, 3, 0.5)])
    with pytest.raises(MedmatError, match="fusion needs a \\(C, H, W\\) image"):
        fuse(phantom.image[0], prior, uncertainty, [])
    with pytest.raises(MedmatError, match="smoothness must be a positive number"):
        FusionParams(smoothness=-1.0)
    with pytest.raises(MedmatError, match="unknown fusion parameter lamda"):
        fusion_params(lamda=3)


def test_the_uncertainty_is_the_largest_map_the_model_gives_in_bits():
    alpha = np.array([[0.5, 0.01]], np.float32)
    entropy = np.array([[0.1, 0.6]], np.float32)  # nats
    both = fusion_uncertainty({"alpha": alpha, "uncertainty_map": entropy, "lesion_uncertainty": entropy / 2})
    np.testing.assert_allclose(both, entropy / np.log(2))
    nig = fusion_uncertainty({"alpha": alpha, "epistemic": np.array([[0.02, 0.04]])})
    np.testing.assert_allclose(nig, [[0.5, 1.0]])
    # A model that gives nothing else: its alpha's own binary entropy, 1 bit at 0.5.
    own = fusion_uncertainty({"alpha": alpha})
    assert own[0, 0] == pytest.approx(1.0) and 0 < own[0, 1] < 0.1


def test_fused_maps_lower_the_uncertainty_where_the_actions_settle_the_matte(phantom, prior):
    maps = {"alpha": prior, "uncertainty_map": np.full(prior.shape, 0.5, np.float32), "epistemic": np.ones(prior.shape)}
    row, col = worst_pixel(prior, phantom.alpha)
    fusion = fuse(phantom.image, prior, fusion_uncertainty(maps), [Probe(row, col, 0.75)], with_influence=True)
    updated = fused_maps(maps, fusion)
    assert updated["alpha"] is fusion.alpha
    assert updated["uncertainty_map"][row, col] < 0.05 and updated["epistemic"][row, col] < 0.1
    far = ~fusion.domain
    assert np.all(updated["uncertainty_map"][far] == 0.5)


# --- simulated users -----------------------------------------------------------------------------


def test_the_user_clicks_the_deepest_point_of_the_largest_error_region_not_yet_clicked():
    error = np.zeros((30, 30))
    error[2:8, 2:8] = 0.5      # 36 pixels
    error[12:27, 10:20] = 0.3  # 150 pixels, deepest along rows 17-21 at column 14-15
    region = largest_error_region(error, [])
    assert region.sum() == 150
    row, col = click_position(region, error)
    assert 16 <= row <= 22 and col in (14, 15)
    assert largest_error_region(error, [(row, col)]).sum() == 36
    # Every region clicked: the largest remainder once discs around the clicks are carved out.
    carved = largest_error_region(error, [(row, col), (4, 4)])
    assert carved is not None and not carved[row, col]
    assert largest_error_region(np.zeros((5, 5)), []) is None


def test_probe_binary_and_noisy_users_answer_from_the_truth_where_they_click(phantom, prior):
    band = user_band(phantom)
    assert band.all()  # a phantom has no trimap: the whole image
    clean = ProbeUser().interact(phantom, prior, [])[0]
    assert clean.value == quantise(float(phantom.alpha[clean.row, clean.col]))
    binary = ProbeUser(levels=(0.0, 1.0)).interact(phantom, prior, [])[0]
    assert (binary.row, binary.col) == (clean.row, clean.col) and binary.value == round(phantom.alpha[clean.row, clean.col])
    answers = [ProbeUser(noisy=True, seed=seed).interact(phantom, prior, [])[0] for seed in range(200)]
    off = [abs(a.value - clean.value) for a in answers]
    assert set(off) <= {0.0, 0.25} and 0.1 < np.mean(np.array(off) > 0) < 0.3
    jitter = np.array([(a.row - clean.row, a.col - clean.col) for a in answers])
    assert np.abs(jitter).max() == 2 and len({tuple(j) for j in jitter}) > 10
    assert ProbeUser(noisy=True, seed=7).interact(phantom, prior, []) == ProbeUser(noisy=True, seed=7).interact(
        phantom, prior, [])
    assert quantise(0.124) == 0.0 and quantise(0.126) == 0.25 and set(PROBE_LEVELS) == {0, 0.25, 0.5, 0.75, 1}


def test_the_brush_user_paints_the_error_regions_skeleton_on_the_side_of_the_error(phantom, prior):
    rectangle = np.zeros((20, 40), bool)
    rectangle[8:13, 5:35] = True
    path = skeleton_path(rectangle)
    # Along the middle row from one end to the other (a rectangle's skeleton forks at its ends),
    # one pixel at a time.
    assert np.mean(path[:, 0] == 10) > 0.8 and np.all((path[:, 0] >= 8) & (path[:, 0] <= 12))
    assert path[-1, 1] - path[0, 1] > 20 and np.all(np.abs(np.diff(path, axis=0)) <= 1)
    stroke = BrushUser().interact(phantom, prior, [])[0]
    assert stroke.label == "foreground"  # the prior is too low everywhere
    high = BrushUser().interact(phantom, shifted_prior(phantom.alpha, +1.5), [])[0]
    assert high.label == "background"


def test_the_patch_user_answers_the_most_uncertain_patches(phantom, prior):
    user = make_user("patch", {"alpha": prior}, num_proposals=3, patch_size=16)
    answers = user.interact(phantom, prior, [])
    assert len(answers) == 3
    for answer in answers:
        truth = phantom.alpha[answer.window]
        expected = "foreground" if truth.min() >= 0.999 else "background" if truth.max() <= 0.001 else "transition"
        assert answer.label == expected
    assert not set(user.interact(phantom, prior, answers)) & set(answers)  # answered patches are not proposed again
    with pytest.raises(MedmatError, match="no noisy user"):
        make_user("brush", {"alpha": prior}, noisy=True)


def test_clean_probes_lower_the_band_error_and_never_raise_the_whole_image_error():
    # Several phantoms, both directions of the coherent error; trimaps from the truth.
    for seed in range(4):
        case = make_phantom(seed, size=96)
        trimap = np.where(case.alpha >= 0.99, 255, np.where(case.alpha <= 0.01, 0, 128)).astype(np.uint8)
        case = Sample(case.id, case.image, case.masks, case.alpha, trimap)
        for shift in (-1.5, 1.0):
            prediction = {"alpha": shifted_prior(case.alpha, shift)}
            history = simulate_fusion(case, prediction, make_user("probe", prediction), 5)
            region = [state.metrics["region"]["SAD"] for state in history]
            whole = [state.metrics["whole"]["SAD"] for state in history]
            assert region[5] < 0.8 * region[0], (seed, shift, region)
            assert max(whole[1:]) <= whole[0], (seed, shift, whole)
            assert all(state.metrics["acted"] == 1 for state in history[1:])
            assert [len(state.actions) for state in history] == list(range(6))


def test_noc_counts_the_first_interaction_reaching_the_goal():
    case = {f"round-{k}": {"region": {"SAD": sad}, "whole": {"SAD": sad}} for k, sad in enumerate([10, 7, 5.9, 3.9])}
    assert interactions_to_reach(case, 0.4, 3) == 2 and interactions_to_reach(case, 0.6, 3) == 3
    assert interactions_to_reach(case, 0.7, 3) == 4  # not reached within 3: K + 1


# --- the ceiling ---------------------------------------------------------------------------------


def test_the_ceiling_finds_the_offset_and_temperature_that_undo_a_coherent_error(phantom):
    trimap = np.where(phantom.alpha >= 0.99, 255, np.where(phantom.alpha <= 0.01, 0, 128)).astype(np.uint8)
    shifted = corrected_alpha(phantom.alpha, -1.2)
    result = offset_ceiling(shifted, phantom.alpha, trimap)
    assert result["offset"]["offset"] == pytest.approx(1.2, abs=0.02)
    assert result["offset"]["metrics"]["region"]["SAD"] < 0.05 * result["prediction"]["region"]["SAD"]
    tempered = corrected_alpha(phantom.alpha, 0.5, scale=0.4)
    both = offset_ceiling(tempered, phantom.alpha, trimap)
    assert both["offset_temperature"]["scale"] == pytest.approx(2.5, rel=0.05)
    assert both["offset_temperature"]["offset"] == pytest.approx(-1.25, abs=0.05)
    assert both["offset_temperature"]["metrics"]["region"]["SAD"] <= both["offset"]["metrics"]["region"]["SAD"]
    assert both["offset"]["metrics"]["region"]["SAD"] < both["prediction"]["region"]["SAD"]


def two_error_squares(size: int = 64):
    """A quantised soft disc as truth, and a prior wrong by +0.4 in a large and a small square."""
    rows, cols = np.mgrid[:size, :size]
    radius = np.hypot(rows - size / 2, cols - size / 2)
    truth = quantised_map(1.0 / (1.0 + np.exp((radius - size / 4) / 3.0))).astype(np.float32)
    prior = truth.copy()
    large, small = (slice(4, 16), slice(4, 16)), (slice(40, 46), slice(50, 56))
    for square in (large, small):
        prior[square] = np.clip(truth[square] + 0.4, 0.0, 1.0) if truth[square].max() < 0.6 else truth[square] - 0.4
    return truth, prior, large, small


def test_the_error_regions_come_largest_first_and_the_pasted_truth_fixes_them_one_by_one():
    truth, prior, large, small = two_error_squares()
    trimap = np.full(truth.shape, 128, np.uint8)
    regions = largest_error_regions(prior, truth, trimap == 128, 5)
    assert len(regions) == 2 and regions[0][large].all() and regions[0].sum() == 144 and regions[1][small].all()
    oracles = region_oracles(prior, truth, trimap, counts=(1, 2, 5))
    before = table_iv_metrics(prior, truth, trimap)["region"]["SAD"]
    pasted = {k: oracles["pasted_levels"][k]["region"]["SAD"] for k in ("1", "2", "5")}
    assert pasted["1"] == pytest.approx(before * 36 / (144 + 36), rel=0.02)  # the large square fixed exactly
    assert pasted["2"] == pytest.approx(0.0, abs=1e-9) and pasted["5"] == pasted["2"]  # no region left to fix
    with pytest.raises(ValueError):
        region_oracles(prior, truth, trimap, counts=(0, 1))


def test_a_region_shifted_in_logit_gets_its_own_offset_back(phantom):
    truth = phantom.alpha
    trimap = np.where(truth >= 0.99, 255, np.where(truth <= 0.01, 0, 128)).astype(np.uint8)
    half = np.zeros(truth.shape, bool)
    half[:, : truth.shape[1] // 2] = True
    prior = np.where(half, corrected_alpha(truth, -2.0), truth).astype(np.float32)
    oracles = region_oracles(prior, truth, trimap, counts=(1,))
    before = table_iv_metrics(prior, truth, trimap)["region"]["SAD"]
    assert oracles["region_offset_temperature"]["1"]["region"]["SAD"] < 0.1 * before
    assert oracles["global_then_pasted"]["1"]["region"]["SAD"] < before


def test_the_oracles_global_step_starts_from_the_correction_they_are_given():
    truth, prior, _, _ = two_error_squares()
    trimap = np.full(truth.shape, 128, np.uint8)

    def sads(oracles, name):
        return [oracles[name][k]["region"]["SAD"] for k in ("1", "2")]

    searched = region_oracles(prior, truth, trimap, counts=(1, 2))
    ceiling = offset_ceiling(prior, truth, trimap)["offset_temperature"]
    given = region_oracles(prior, truth, trimap, counts=(1, 2), global_correction=(ceiling["offset"], ceiling["scale"]))
    assert sads(given, "global_then_pasted") == pytest.approx(sads(searched, "global_then_pasted"), rel=1e-6)
    # A correction far from the best one: the global step adds error that one pasted region cannot remove.
    wrong = region_oracles(prior, truth, trimap, counts=(1, 2), global_correction=(4.0, 1.0))
    assert sads(wrong, "global_then_pasted")[0] > 5 * sads(given, "global_then_pasted")[0]
    assert sads(wrong, "pasted_levels") == sads(given, "pasted_levels")

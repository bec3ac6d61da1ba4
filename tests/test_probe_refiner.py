"""Re-prediction with the user's probes: probe maps, the probe_refiner model, its loss, init_from, the interaction loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmat.app.session import MattingSession
from medmat.data.phantom import make_phantom
from medmat.data.probe_maps import (
    PROBE_LEVELS,
    RandomProbeMapd,
    disc_mask,
    probe_map,
    random_probe_map,
    transition_band,
)
from medmat.data.splits import save_split
from medmat.engine import train
from medmat.engine.cross_fit import held_out_base_maps
from medmat.engine.dataset import MattingDataset
from medmat.engine.trainer import compute_split, load_samples
from medmat.engine.checkpoint import save_checkpoint
from medmat.engine.config import load_config
from medmat.engine.inference import build_model_from_config, load_initial_weights, load_run, predict
from medmat.errors import MedmatError
from medmat.interaction.actions import Probe, Stroke, actions_probes, probe_disc
from medmat.interaction.simulate import make_user, probe_predictor, simulate_fusion, simulate_fusion_dataset
from medmat.io.images import write_png
from medmat.losses import build_criterion
from medmat.losses.refinement import hard_region, region_l1
from medmat.models.probe_refiner import error_probe_maps
from tiny_configs import IMAGE_FOLLOWING, MEDICAL_TINY, PROBE_ECHO, ProbeEchoMatting, save_run, soft_discs, tiny_phantom_config

REFINER_TINY = {"name": "probe_refiner", "base": MEDICAL_TINY, "widths": [4, 8]}
REFINER_LOSS = {"name": "alpha_refinement"}


# ------------------------------------------------------------------------------------------------
# probe maps
# ------------------------------------------------------------------------------------------------

def test_probe_map_marks_each_disc_with_its_level_and_nothing_elsewhere():
    planes = probe_map((20, 30), [(5, 5, 0.25), (15, 25, 1.0)], radius=2.0)
    assert planes.shape == (2, 20, 30) and planes.dtype == np.float32
    first, second = disc_mask((20, 30), 5, 5, 2.0), disc_mask((20, 30), 15, 25, 2.0)
    assert first.sum() == 13  # the pixels within 2 of the centre
    assert np.all(planes[0][first | second] == 1) and np.all(planes[0][~(first | second)] == 0)
    assert np.all(planes[1][first] == 0.25) and np.all(planes[1][second] == 1.0) and np.all(planes[1][~(first | second)] == 0)
    assert not probe_map((8, 8), []).any()
    # A later click writes over an earlier one where their discs overlap.
    assert probe_map((8, 8), [(4, 4, 0.0), (4, 5, 0.75)])[1, 4, 4] == 0.75


def test_disc_mask_is_the_probe_disc_and_clips_at_the_border():
    for row, col, radius in ((0, 0, 2.0), (9, 3, 1.5), (5, 5, 0.0), (2, 7, 3.2)):
        disc = disc_mask((10, 8), row, col, radius)
        rows, cols = np.indices((10, 8))
        expected = (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
        assert np.array_equal(disc, expected) and np.array_equal(probe_disc((10, 8), row, col, radius), expected)


@pytest.mark.parametrize("probe, message", [((10, 0, 0.5), "outside"), ((0, 0, 1.5), "not an alpha")])
def test_bad_probes_are_refused(probe, message):
    with pytest.raises(MedmatError, match=message):
        probe_map((10, 10), [probe])


def test_random_probe_maps_click_in_the_band_and_answer_the_quantised_truth():
    alpha = make_phantom(seed=3, size=64).alpha
    band = transition_band(alpha)
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(200):
        planes = random_probe_map(alpha, rng, radius=0.0)
        clicked = planes[0] > 0
        counts.append(int(clicked.sum()))
        assert np.all(band[clicked])
        levels = np.asarray(PROBE_LEVELS)
        nearest = levels[np.argmin(np.abs(alpha[clicked][:, None] - levels), axis=1)]
        assert np.array_equal(planes[1][clicked], nearest)
    # Geometric counts with p = 1/3, the empty map included: mean 2 (clipped at 8).
    assert 0 in counts and max(counts) <= 8 and 1.5 < np.mean(counts) < 2.5
    at_least_one = [int((random_probe_map(alpha, rng, radius=0.0, min_probes=1)[0] > 0).sum()) for _ in range(100)]
    assert min(at_least_one) == 1 and 2.5 < np.mean(at_least_one) < 3.5


def test_random_probe_map_transform_is_seeded_and_leaves_its_input():
    alpha = make_phantom(seed=1, size=32).alpha
    data = {"alpha": alpha}
    first = RandomProbeMapd()(data, np.random.default_rng(5))
    again = RandomProbeMapd()(data, np.random.default_rng(5))
    assert set(data) == {"alpha"} and np.array_equal(first["probe_map"], again["probe_map"])
    with pytest.raises(MedmatError, match="no 'alpha'"):
        RandomProbeMapd()({}, np.random.default_rng(0))
    with pytest.raises(MedmatError, match="p must be"):
        RandomProbeMapd(p=0.0)


def test_actions_probes_holds_the_probes_only():
    actions = (Probe(3, 4, 0.5), Stroke(((1, 1), (1, 6)), 1.0, "foreground"), Probe(8, 8, 0.0))
    planes = probe_map((12, 12), actions_probes(actions))
    assert np.array_equal(planes, probe_map((12, 12), [(3, 4, 0.5), (8, 8, 0.0)]))


# ------------------------------------------------------------------------------------------------
# the model and its loss
# ------------------------------------------------------------------------------------------------

def _refiner(**overrides):
    torch.manual_seed(0)
    return build_model_from_config(tiny_phantom_config({**REFINER_TINY, **overrides}, REFINER_LOSS))


def test_untrained_refiner_gives_its_base_alpha_whatever_the_probes(single_thread):
    model = _refiner().eval()
    image, _ = soft_discs(32)
    probes = torch.from_numpy(np.stack([probe_map((32, 32), [(16, 16, 0.0)])] * 2))
    torch.manual_seed(1)
    plain = model({"image": image})
    torch.manual_seed(1)
    base = model.base({"image": image})
    torch.manual_seed(1)
    probed = model({"image": image, "probe_map": probes})
    assert model.spec.takes == ("image", "probe_map") and "base_alpha" in model.spec.gives
    assert torch.allclose(plain["alpha"], base["alpha"], atol=1e-6)
    assert torch.allclose(probed["alpha"], base["alpha"], atol=1e-6)
    with pytest.raises(ValueError, match="probe_map must be"):
        model.check_batch({"image": image, "probe_map": probes[:, :1]})


def test_a_frozen_base_stays_in_eval_mode_and_only_the_refiner_learns(single_thread):
    model = _refiner().train()
    assert not model.base.training and model.refiner.training
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    refiner_before = {k: v.clone() for k, v in model.refiner.state_dict().items()}
    image, alpha = soft_discs(32)
    probes = torch.from_numpy(np.stack([probe_map((32, 32), [(16, 24, 0.5)])] * 2))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    criterion = build_criterion(REFINER_LOSS)
    for _ in range(3):
        loss, parts = criterion(model({"image": image, "alpha": alpha, "probe_map": probes}), {"alpha": alpha}, 0, 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(parts) == {"alpha_l1", "band_l1", "alpha_gradient", "total"}
    assert all(torch.equal(v, base_before[k]) for k, v in model.base.state_dict().items())
    assert any(not torch.equal(v, refiner_before[k]) for k, v in model.refiner.state_dict().items())


def test_a_base_trained_with_its_refiner_learns_from_its_own_criterion_too(single_thread):
    model = _refiner(freeze_base=False).train()
    assert model.base.training
    criterion = build_criterion({**REFINER_LOSS, "base": {"name": "medical_matting"}, "base_weight": 0.5})
    image, alpha = soft_discs(32)
    batch = {"image": image, "alpha": alpha, "pseudo_mask": (alpha > 0.5).float()}
    torch.manual_seed(3)
    outputs = model(batch)
    total, parts = criterion(outputs, batch, 0, 1)
    refined_only, refined_parts = build_criterion(REFINER_LOSS)(outputs, batch, 0, 1)
    assert {"base_ce", "base_kl", "base_alpha_l1", "base_total"} <= set(parts)
    # The base term reads the base's alpha, not the refined one, at its weight.
    base_l1 = (outputs["base_alpha"] - alpha).abs().mean().item()
    assert parts["base_alpha_l1"] == pytest.approx(base_l1, rel=1e-5)
    assert total.item() == pytest.approx(refined_only.item() + 0.5 * parts["base_total"], rel=1e-5)
    total.backward()
    assert next(model.base.prob_unet.prior_net.parameters()).grad is not None  # reached by the KL only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.base.matting_net.parameters())
    with pytest.raises(MedmatError, match="base_alpha"):
        criterion({k: v for k, v in outputs.items() if k != "base_alpha"}, batch, 0, 1)
    with pytest.raises(MedmatError, match="cannot itself be 'alpha_refinement'"):
        build_criterion({**REFINER_LOSS, "base": REFINER_LOSS})


def test_error_probes_click_where_the_prior_is_wrong_and_answer_the_quantised_truth():
    torch.manual_seed(0)
    alpha_gt = torch.zeros(4, 1, 24, 24)
    alpha_gt[..., 6:18, 6:18] = 0.7
    prior = alpha_gt.clone()
    prior[..., 8:11, 12:15] = 0.0  # the one wrong 3 x 3 block
    maps = error_probe_maps(prior, alpha_gt, p=0.01, max_probes=1)
    block = torch.zeros(24, 24, dtype=torch.bool)
    block[8:11, 12:15] = True
    for planes in maps:
        weight, answer = planes
        assert weight.sum() == 13  # one disc of radius 2
        centre = (weight * (weight == 1)).nonzero().float().mean(dim=0).round().long()
        assert block[centre[0], centre[1]] and answer[centre[0], centre[1]] == 0.75
        assert torch.all(answer[weight > 0] == 0.75) and torch.all(answer[weight == 0] == 0)
    assert not error_probe_maps(prior, alpha_gt, p=1.0).any()
    assert torch.all(error_probe_maps(prior, alpha_gt, p=1.0, min_probes=1)[:, 0].sum(dim=(1, 2)) == 13)


def test_error_probes_overlap_as_every_probe_map_does():
    alpha_gt = torch.zeros(1, 1, 16, 16)
    alpha_gt[0, 0, 8, 7], alpha_gt[0, 0, 8, 8] = 0.25, 1.0  # two wrong pixels side by side
    maps = error_probe_maps(torch.zeros_like(alpha_gt), alpha_gt, p=1.0, min_probes=2)[0].numpy()
    orders = [probe_map((16, 16), clicks) for clicks in ([(8, 7, 0.25), (8, 8, 1.0)], [(8, 8, 1.0), (8, 7, 0.25)])]
    assert any(np.array_equal(maps, expected) for expected in orders)  # the later click's answer, not a mean
    assert set(np.unique(maps[1])) <= {0.0, 0.25, 1.0}


def test_a_trained_refiner_leaves_an_image_without_probes_to_its_base(single_thread):
    model = _refiner().eval()
    with torch.no_grad():
        model.refiner.head.bias.fill_(3.0)  # as if trained: a large offset everywhere
    image, _ = soft_discs(32)
    probes = torch.from_numpy(np.stack([probe_map((32, 32), [(16, 16, 1.0)]), np.zeros((2, 32, 32), np.float32)]))
    torch.manual_seed(1)
    refined = model({"image": image, "probe_map": probes})
    torch.manual_seed(1)
    base = model.base({"image": image})
    assert torch.allclose(refined["alpha"][1], base["alpha"][1], atol=1e-6)  # no probe: the base's
    assert torch.all(refined["alpha"][0] > base["alpha"][0])  # a probe: the refined one everywhere
    loose = _refiner(identity_without_probes=False).eval()
    with torch.no_grad():
        loose.refiner.head.bias.fill_(3.0)
    torch.manual_seed(1)
    assert torch.all(loose({"image": image, "probe_map": probes})["alpha"][1] > base["alpha"][1])


def test_a_frozen_base_runs_once_while_only_the_probes_change(single_thread):
    model = _refiner().eval()
    with torch.no_grad():
        model.refiner.head.weight.fill_(0.5)  # as if trained: offsets that follow the probes
    calls = []
    model.base.register_forward_hook(lambda *args: calls.append(1))
    image, _ = soft_discs(32)
    clicks = [torch.from_numpy(np.stack([probe_map((32, 32), [(16, y, 1.0)])] * 2)) for y in (8, 24)]

    def run(batch, seed=1):
        torch.manual_seed(seed)
        return model(batch)["alpha"]

    first = run({"image": image, "probe_map": clicks[0]})
    after_the_base = torch.get_rng_state()
    second = run({"image": image, "probe_map": clicks[1]})
    assert len(calls) == 1 and not torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), after_the_base)  # a reuse leaves the random state as the base did
    model._last_base = None  # what the model gives without the kept outputs
    assert torch.equal(run({"image": image, "probe_map": clicks[1]}), second) and len(calls) == 2
    # Anything the base's outputs depend on runs it again: the image, the random state, its weights,
    # training mode.
    run({"image": image.flip(-1), "probe_map": clicks[1]})
    run({"image": image.flip(-1), "probe_map": clicks[1]}, seed=2)
    assert len(calls) == 4
    model.base.load_state_dict(model.base.state_dict())  # the same weights again: kept
    run({"image": image.flip(-1), "probe_map": clicks[1]}, seed=2)
    assert len(calls) == 4
    changed = {key: value + 0.01 if value.is_floating_point() else value for key, value in model.base.state_dict().items()}
    model.base.load_state_dict(changed)
    run({"image": image.flip(-1), "probe_map": clicks[1]}, seed=2)
    assert len(calls) == 5
    model.train()
    run({"image": image, "probe_map": clicks[0]}), run({"image": image, "probe_map": clicks[0]})
    assert len(calls) == 7


def test_iterative_probes_add_clicks_at_the_refiners_own_errors(single_thread):
    model = _refiner(iterative_probes=3, prior_noise=0.0).train()
    image, alpha = soft_discs(32)
    calls = []

    def record(module, inputs):
        calls.append((module.training, torch.is_grad_enabled(), inputs[0][:, -2:].clone()))

    model.refiner.register_forward_pre_hook(record)
    rounds = []
    torch.manual_seed(0)
    for _ in range(12):
        calls.clear()
        model({"image": image, "alpha": alpha})
        rounds.append(len(calls) - 1)
        # the extra passes: eval mode, no gradient; the last one trains, with every click so far
        assert [(t, g) for t, g, _ in calls] == [(False, False)] * (len(calls) - 1) + [(True, True)]
        weights = [maps[:, 0] > 0 for _, _, maps in calls]
        for before, after in zip(weights, weights[1:]):
            assert torch.all(after[before]) and after.sum() > before.sum()
    assert set(rounds) == {0, 1, 2, 3}
    assert model.refiner.training
    with pytest.raises(MedmatError, match="iterative_probes"):
        _refiner(iterative_probes=-1)


def test_refiner_options_are_checked():
    with pytest.raises(MedmatError, match="base"):
        build_model_from_config(tiny_phantom_config({"name": "probe_refiner", "base": "medical_matting"}, REFINER_LOSS))
    with pytest.raises(MedmatError, match="training_probes"):
        _refiner(training_probes="anywhere")
    with pytest.raises(MedmatError, match="prior_noise"):
        _refiner(prior_noise=-1)
    with pytest.raises(MedmatError, match="in_channels"):
        _refiner(base={**MEDICAL_TINY, "in_channels": 1})


def test_refinement_loss_weighs_the_hard_region():
    alpha_gt = torch.zeros(1, 1, 8, 8)
    alpha_gt[..., 2:4, 2:4] = 0.5
    uncertainty = torch.zeros(1, 1, 8, 8)
    uncertainty[..., 6, 6] = 0.5
    region = hard_region(uncertainty, alpha_gt, 0.1)
    assert region.sum() == 5 and region[0, 0, 6, 6] == 1 and region[0, 0, 2, 2] == 1
    alpha = alpha_gt.clone()
    alpha[..., 6, 6] = 1.0  # one hard pixel wrong by 1
    assert region_l1(alpha, alpha_gt, region).item() == pytest.approx(1 / 5)
    assert region_l1(alpha, alpha_gt, torch.zeros_like(region)).item() == 0.0
    with pytest.raises(MedmatError, match="negative"):
        build_criterion({"name": "alpha_refinement", "band_weight": -1})


# ------------------------------------------------------------------------------------------------
# train.init_from: the trained base of the same fold
# ------------------------------------------------------------------------------------------------

def _base_run(folder, config_overrides=None):
    config = tiny_phantom_config(MEDICAL_TINY)
    if config_overrides:
        config = load_config(config, config_overrides)
    torch.manual_seed(7)
    network = build_model_from_config(config)
    save_checkpoint(folder / "fold-0" / "final.pt", model=network.state_dict(), config=config)
    return network


def test_init_from_loads_the_fold_s_base_into_the_refiner(tmp_path):
    base = _base_run(tmp_path)
    config = load_config(tiny_phantom_config(REFINER_TINY, REFINER_LOSS), [f"train.init_from={tmp_path}/fold-{{fold}}"])
    model = build_model_from_config(config)
    assert load_initial_weights(model, config) == tmp_path / "fold-0" / "final.pt"
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.base.state_dict().items())
    # The plain model takes the weights itself.
    plain = load_config(tiny_phantom_config(MEDICAL_TINY), [f"train.init_from={tmp_path}/fold-0"])
    network = build_model_from_config(plain)
    load_initial_weights(network, plain)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in network.state_dict().items())
    assert model.base_model() is model.base and network.base_model() is None  # the contract says which is wrapped


def test_init_from_refuses_another_split_and_weights_that_fit_nothing(tmp_path):
    _base_run(tmp_path / "other-split", ["split.seed=3"])
    config = load_config(tiny_phantom_config(REFINER_TINY, REFINER_LOSS), [f"train.init_from={tmp_path}/other-split/fold-0"])
    with pytest.raises(MedmatError, match="another split"):
        load_initial_weights(build_model_from_config(config), config)
    _base_run(tmp_path / "wide", ["model.matting_channels=[8, 8]"])
    config = load_config(tiny_phantom_config(REFINER_TINY, REFINER_LOSS), [f"train.init_from={tmp_path}/wide/fold-0"])
    with pytest.raises(MedmatError, match="fit neither"):
        load_initial_weights(build_model_from_config(config), config)
    config = load_config(tiny_phantom_config(REFINER_TINY, REFINER_LOSS), [f"train.init_from={tmp_path}/missing"])
    with pytest.raises(MedmatError, match="not found"):
        load_initial_weights(build_model_from_config(config), config)


def test_a_refiner_trains_from_its_base_through_the_engine(tmp_path, single_thread):
    base = _base_run(tmp_path / "base")
    config = load_config(tiny_phantom_config(REFINER_TINY, REFINER_LOSS),
                         [f"train.init_from={tmp_path}/base/fold-{{fold}}", "optim.epochs=2"])
    train(config, tmp_path / "refiner")
    model, saved = load_run(tmp_path / "refiner")
    assert saved["train"]["init_from"].endswith("fold-{fold}")
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in model.base.state_dict().items())
    image = make_phantom(seed=2, size=32).image
    maps = predict(model, image, num_samples=2, probe_map=probe_map((32, 32), [(16, 16, 1.0)]))
    assert maps["alpha"].shape == (32, 32) and maps["base_alpha"].shape == (32, 32)


# ------------------------------------------------------------------------------------------------
# train.cross_fit_from: the base's held-out predictions of the training cases
# ------------------------------------------------------------------------------------------------

def _base_crossval(folder, config_overrides=None):
    """A 2-fold "crossval" folder of the tiny base: split.json and two fold models of other weights."""
    config = tiny_phantom_config(MEDICAL_TINY)
    if config_overrides:
        config = load_config(config, config_overrides)
    samples = load_samples(config)
    split, meta = compute_split(samples, config)
    save_split(folder / "split.json", split, meta)
    for fold, seed in ((0, 7), (1, 8)):
        torch.manual_seed(seed)
        save_checkpoint(folder / f"fold-{fold}" / "final.pt", model=build_model_from_config(config).state_dict(),
                        config=load_config(config, [f"split.fold={fold}"]))
    return samples, split


def test_held_out_maps_come_from_the_fold_model_that_held_each_case_out(tmp_path, single_thread):
    samples, split = _base_crossval(tmp_path)
    train_ids = next(fold["train"] for fold in split if fold["fold"] == 0)
    training = [sample for sample in samples if sample.id in train_ids]
    maps = held_out_base_maps(tmp_path, training, split, (32, 32), num_samples=2, seed=5)
    state = torch.get_rng_state()
    again = held_out_base_maps(tmp_path, training, split, (32, 32), num_samples=2, seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the global random state is left alone
    holder, _ = load_run(tmp_path / "fold-1")  # fold 0 trains on fold 1's test cases
    trainer, _ = load_run(tmp_path / "fold-0")
    assert sorted(maps) == sorted(train_ids)
    for index, sample in enumerate(training):
        torch.manual_seed(5 + index)
        expected = predict(holder, sample.image, num_samples=2)
        torch.manual_seed(5 + index)
        other = predict(trainer, sample.image, num_samples=2)
        got = maps[sample.id]
        assert np.allclose(got["held_out_base_alpha"], expected["alpha"], atol=1e-6)
        assert np.allclose(got["held_out_base_uncertainty"], expected["uncertainty_map"], atol=1e-6)
        assert not np.allclose(got["held_out_base_alpha"], other["alpha"], atol=1e-3)
        assert np.array_equal(got["held_out_base_alpha"], again[sample.id]["held_out_base_alpha"])


def test_held_out_maps_refuse_another_split_and_a_missing_fold(tmp_path, single_thread):
    samples, split = _base_crossval(tmp_path / "other", ["split.seed=3"])
    mine = compute_split(samples, tiny_phantom_config(MEDICAL_TINY))[0]
    with pytest.raises(MedmatError, match="split another way"):
        held_out_base_maps(tmp_path / "other", samples[:2], mine, (32, 32), num_samples=2)
    samples, split = _base_crossval(tmp_path / "gap")
    (tmp_path / "gap" / "fold-1" / "final.pt").unlink()
    with pytest.raises(MedmatError, match="fold 1 has not finished"):
        held_out_base_maps(tmp_path / "gap", samples, split, (32, 32), num_samples=2)
    with pytest.raises(MedmatError, match="split file not found"):
        held_out_base_maps(tmp_path / "nothing", samples, split, (32, 32), num_samples=2)


def test_case_maps_move_with_the_augmentations_and_must_fit_every_case():
    samples = [make_phantom(seed=seed, size=32) for seed in range(3)]
    maps = {s.id: {"held_out_base_alpha": s.alpha.copy(), "held_out_base_uncertainty": 1.0 - s.alpha} for s in samples}
    dataset = MattingDataset(samples, training=True, seed=1, case_maps=maps)
    for index in range(3):
        item = dataset[index]
        assert not torch.equal(item["alpha"], torch.from_numpy(samples[index].alpha)[None])  # augmented
        assert torch.allclose(item["held_out_base_alpha"], item["alpha"], atol=1e-6)
        assert item["held_out_base_uncertainty"].shape == (1, 32, 32)
    plain = MattingDataset(samples, training=True, seed=1)[0]
    assert torch.equal(plain["image"], dataset[0]["image"])  # the maps change no other draw
    with pytest.raises(MedmatError, match="no held-out base prediction"):
        MattingDataset(samples, case_maps={samples[0].id: maps[samples[0].id]})
    bad = dict(maps, **{samples[1].id: {"held_out_base_alpha": np.full((32, 32), np.nan, np.float32),
                                        "held_out_base_uncertainty": maps[samples[1].id]["held_out_base_uncertainty"]}})
    with pytest.raises(MedmatError, match="finite"):
        MattingDataset(samples, case_maps=bad)


def test_in_training_the_refiner_reads_the_held_out_base_not_its_own(single_thread):
    model = _refiner(prior_noise=0.0).train()
    image, alpha = soft_discs(32)
    held_out = torch.full_like(alpha, 0.3)

    def refuse(*args, **kwargs):
        raise AssertionError("the base ran")

    model.base.forward = refuse
    outputs = model({"image": image, "alpha": alpha, "held_out_base_alpha": held_out,
                     "held_out_base_uncertainty": torch.full_like(alpha, 0.5)})
    assert torch.equal(outputs["base_alpha"], held_out)
    assert torch.allclose(outputs["alpha"], held_out, atol=1e-6)  # untrained: the head adds 0
    model.eval()
    with pytest.raises(AssertionError, match="the base ran"):  # evaluation runs the base as always
        model({"image": image, "held_out_base_alpha": held_out})


def test_a_refiner_trains_on_held_out_base_predictions_through_the_engine(tmp_path, single_thread):
    _base_crossval(tmp_path / "base")
    config = load_config(tiny_phantom_config(REFINER_TINY, REFINER_LOSS), [
        f"train.init_from={tmp_path}/base/fold-{{fold}}", f"train.cross_fit_from={tmp_path}/base",
        "model.prior_noise=0", "optim.epochs=1"])
    train(config, tmp_path / "refiner")
    _, saved = load_run(tmp_path / "refiner")
    assert saved["train"]["cross_fit_from"] == f"{tmp_path}/base"
    plain = load_config(tiny_phantom_config(MEDICAL_TINY), [f"train.cross_fit_from={tmp_path}/base"])
    with pytest.raises(MedmatError, match="wraps a base"):
        train(plain, tmp_path / "plain")


# ------------------------------------------------------------------------------------------------
# the interaction loop re-predicts with the probes
# ------------------------------------------------------------------------------------------------

def test_the_loop_repredicts_with_every_probe_so_far():
    sample = make_phantom(seed=4, size=32)
    model = ProbeEchoMatting().eval()
    assert probe_predictor(build_model_from_config(tiny_phantom_config(IMAGE_FOLLOWING, {"name": "alpha_l1"})), sample) is None
    repredict = probe_predictor(model, sample)
    assert np.all(repredict(())["alpha"] == 0.5)
    history = simulate_fusion(sample, repredict(()), make_user("probe", {}), 2, repredict=repredict)
    assert len(history[-1].actions) == 2
    for action in history[-1].actions:
        # The prior the fusion started from held every answer on its disc, and the fusion keeps it there.
        assert history[-1].alpha[action.row, action.col] == pytest.approx(action.value, abs=0.01)
    simulation, _ = simulate_fusion_dataset(model, [sample], "probe", 2, noisy=False)
    assert simulation["cases"][0]["round-2"]["actions"] == 2


def test_the_app_predicts_again_with_every_probe_and_undo_restores(tmp_path):
    run = save_run(tmp_path / "echo", PROBE_ECHO, loss={"name": "alpha_l1"})
    session = MattingSession.from_run(run)
    write_png(tmp_path / "case.png", make_phantom(3, size=32).image)
    session.open_image((tmp_path / "case.png").read_bytes(), "case.png")
    first = session.current
    assert session.reads_probes and np.all(first.maps["alpha"] == 0.5)
    step = session.probe(10, 12, 0.25)
    # The model saw the probe (its alpha is the answer on the disc) and the fusion kept it.
    assert step.prior["alpha"][10, 12] == 0.25 and step.maps["alpha"][10, 12] == pytest.approx(0.25, abs=0.01)
    assert np.all(step.prior["alpha"][disc_mask((32, 32), 10, 12, 2.0)] == 0.25)
    second = session.probe(20, 20, 1.0)
    assert second.prior["alpha"][10, 12] == 0.25 and second.prior["alpha"][20, 20] == 1.0
    assert session.undo() is step and session.undo() is first
    session.close()


def test_the_app_draws_the_probes_at_the_size_the_run_trained_at(tmp_path):
    """A run trained on cases resized to 32 x 32 (data.resize) sees a 64 x 64 image at 32 x 32: each
    probe moves to the pixel its own falls in and its disc keeps the trained radius there (2 px),
    so the echoed answer covers about twice that radius at the image's size."""
    run = save_run(tmp_path / "echo", PROBE_ECHO, loss={"name": "alpha_l1"})
    write_png(tmp_path / "case.png", make_phantom(3, size=64).image)
    shown, own = MattingSession.from_run(run), MattingSession.from_run(run, own_size=True)
    for session in (shown, own):
        session.open_image((tmp_path / "case.png").read_bytes(), "case.png")
    assert shown.trained_sizes["resize"] == (32, 32) and own.trained_sizes["resize"] is None
    resampled, at_own_size = shown.probe(21, 25, 0.25).prior["alpha"], own.probe(21, 25, 0.25).prior["alpha"]
    assert resampled.shape == at_own_size.shape == (64, 64)
    assert resampled[21, 25] == pytest.approx(0.25) and at_own_size[21, 25] == 0.25
    # 3 px right of the click: outside the 2-px disc at 64 x 64, inside the resampled one.
    assert at_own_size[21, 28] == 0.5 and resampled[21, 28] < 0.35
    assert np.all(resampled[:, 40:] == pytest.approx(0.5))  # far from the click, nothing said

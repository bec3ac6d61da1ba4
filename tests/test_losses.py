"""Medical Matting losses (Eq. 5-8), loss weighting (Eq. 9-11) and the criterion registry."""

from __future__ import annotations

import math

import pytest
import torch

from medmat.errors import MedmatError
from medmat.losses import (
    NoWeighting,
    OscillationAttenuationWeighting,
    UncertaintyWeighting,
    alpha_gradient_loss,
    alpha_l1_loss,
    build_criterion,
    list_criteria,
    mask_cross_entropy,
    sobel_gradients,
)


def _ramp(height: int = 8, width: int = 8, slope: float = 0.1) -> torch.Tensor:
    """(1, 1, H, W) image rising by ``slope`` per pixel to the right."""
    return (torch.arange(width, dtype=torch.float32) * slope).expand(1, 1, height, width).clone()


# --- gradient operator ------------------------------------------------------------------------


def test_sobel_of_a_ramp_is_eight_times_its_slope_inside():
    gx, gy = sobel_gradients(_ramp(slope=0.1))
    # Sobel x = [1, 2, 1]^T (x) [-1, 0, 1]: (1 + 2 + 1) * (0.1 * 2) = 0.8 away from the borders.
    torch.testing.assert_close(gx[..., 1:-1], torch.full_like(gx[..., 1:-1], 0.8))
    torch.testing.assert_close(gy, torch.zeros_like(gy))


def test_sobel_of_a_constant_is_zero_up_to_the_border():
    gx, gy = sobel_gradients(torch.full((2, 3, 5, 5), 0.7))
    assert gx.shape == gy.shape == (2, 3, 5, 5)
    assert gx.abs().max().item() < 1e-6 and gy.abs().max().item() < 1e-6


def test_sobel_handles_each_channel_separately():
    image = torch.cat([_ramp(), _ramp().transpose(2, 3)], dim=1)  # x-ramp, then y-ramp
    gx, gy = sobel_gradients(image)
    centre = (slice(None), slice(None), 4, 4)
    torch.testing.assert_close(gx[centre], torch.tensor([[0.8, 0.0]]))
    torch.testing.assert_close(gy[centre], torch.tensor([[0.0, 0.8]]))


# --- mask and alpha losses ----------------------------------------------------------------------


def test_mask_cross_entropy_matches_hand_values():
    zero_logits = torch.zeros(2, 1, 3, 3)
    assert mask_cross_entropy(zero_logits, torch.ones_like(zero_logits)).item() == pytest.approx(math.log(2))
    # -ln sigmoid(2) = ln(1 + e^-2) = 0.126928; -ln(1 - sigmoid(-1)) = ln(1 + e^-1) = 0.313262
    logits = torch.tensor([2.0, -1.0]).reshape(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    assert mask_cross_entropy(logits, target).item() == pytest.approx((0.126928 + 0.313262) / 2, abs=1e-6)


def test_alpha_l1_is_the_mean_absolute_difference():
    alpha = torch.tensor([0.0, 0.5, 1.0, 0.25]).reshape(1, 1, 2, 2)
    target = torch.tensor([0.5, 0.5, 0.0, 0.25]).reshape(1, 1, 2, 2)
    assert alpha_l1_loss(alpha, target).item() == pytest.approx((0.5 + 0 + 1 + 0) / 4)


def _central_region(size: int = 12) -> torch.Tensor:
    """Uncertainty map: 0.5 nats on the 4x4 centre, 0.05 (below tau = 0.1) elsewhere."""
    uncertainty = torch.full((1, 1, size, size), 0.05)
    uncertainty[..., 4:8, 4:8] = 0.5
    return uncertainty


def test_gradient_loss_averages_over_the_uncertain_region():
    alpha_gt = _ramp(12, 12, slope=0.05)
    predicted = torch.zeros_like(alpha_gt)
    # In the region the ground truth has gx = 8 * 0.05 = 0.4, gy = 0; the prediction has none.
    loss = alpha_gradient_loss(predicted, alpha_gt, _central_region(), threshold=0.1)
    assert loss.item() == pytest.approx(0.4)


def test_gradient_loss_ignores_pixels_outside_the_region_and_its_sobel_reach():
    alpha_gt = _ramp(12, 12, slope=0.05)
    predicted = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    uncertainty = _central_region()
    reference = alpha_gradient_loss(predicted, alpha_gt, uncertainty).item()

    far_away = predicted.clone()
    far_away[..., :2, :] = 1.0 - far_away[..., :2, :]  # rows 0-1, two or more rows from the region
    far_away[..., :, 10:] = 0.0
    assert alpha_gradient_loss(far_away, alpha_gt, uncertainty).item() == pytest.approx(reference, abs=1e-7)

    inside = predicted.clone()
    inside[..., 5, 5] += 0.5
    assert alpha_gradient_loss(inside, alpha_gt, uncertainty).item() != pytest.approx(reference, abs=1e-3)


def test_gradient_loss_region_is_strictly_above_tau_and_empty_images_count_zero():
    alpha_gt = _ramp(12, 12, slope=0.05).repeat(2, 1, 1, 1)
    uncertainty = torch.cat([_central_region(), torch.full((1, 1, 12, 12), 0.1)])  # image 1: all == tau
    loss = alpha_gradient_loss(torch.zeros_like(alpha_gt), alpha_gt, uncertainty, threshold=0.1)
    assert loss.item() == pytest.approx((0.4 + 0.0) / 2)


# --- weighting strategies -----------------------------------------------------------------------


def _task_losses(seg: float = 2.0, matt: float = 3.0) -> dict[str, torch.Tensor]:
    return {"seg": torch.tensor(seg), "matt": torch.tensor(matt)}


def test_no_weighting_adds_the_task_losses():
    assert NoWeighting()(_task_losses(), epoch=7).item() == pytest.approx(5.0)


def test_uws_matches_eq9_at_initial_sigma_four():
    weighting = UncertaintyWeighting(sigma_init=4.0)
    torch.testing.assert_close(weighting.sigma, torch.tensor([4.0, 4.0]))
    total = weighting(_task_losses(2.0, 3.0), epoch=0)
    # 2 / 4^2 + 3 / (2 * 4^2) + ln(4 * 4) = 0.125 + 0.09375 + 2.7725887
    assert total.item() == pytest.approx(2.9913387, abs=1e-6)
    total.backward()
    # d/d(ln s1) = -2 L_seg / s1^2 + 1 = 0.75;  d/d(ln s2) = -2 L_matt / (2 s2^2) + 1 = 0.8125
    torch.testing.assert_close(weighting.log_sigma.grad, torch.tensor([0.75, 0.8125]))


def test_uws_state_is_a_parameter_in_the_state_dict():
    weighting = UncertaintyWeighting()
    other = UncertaintyWeighting()
    with torch.no_grad():
        other.log_sigma.copy_(torch.log(torch.tensor([1.0, 2.0])))
    weighting.load_state_dict(other.state_dict())
    # 2 / 1 + 3 / (2 * 4) + ln(1 * 2) = 2 + 0.375 + 0.6931472
    assert weighting(_task_losses(2.0, 3.0), epoch=0).item() == pytest.approx(3.0681472, abs=1e-6)
    assert [name for name, _ in weighting.named_parameters()] == ["log_sigma"]


@pytest.mark.parametrize(
    ("epoch", "gamma"),
    [
        (0, 1.0),  # 0.5 * e^0 * cos(0) + 0.5
        (5, 0.7849199),  # 0.5 * e^-0.25 * cos(0.75) + 0.5
        (10, 0.1997696),  # 0.5 * e^-0.5 * cos(3) + 0.5
        (20, 0.6552183),  # 0.5 * e^-1 * cos(12) + 0.5
    ],
)
def test_oaws_follows_eq10_and_eq11(epoch, gamma):
    weighting = OscillationAttenuationWeighting(a=0.05, b=0.03, t=0.5)
    assert weighting.gamma(epoch) == pytest.approx(gamma, abs=1e-6)
    total = weighting(_task_losses(2.0, 3.0), epoch=epoch)
    assert total.item() == pytest.approx(gamma * 2.0 + (1 - gamma) * 3.0, abs=1e-5)


def test_oaws_converges_to_t_and_stays_within_zero_one():
    weighting = OscillationAttenuationWeighting()
    gammas = [weighting.gamma(epoch) for epoch in range(400)]
    assert min(gammas) >= 0.0 and max(gammas) <= 1.0
    assert abs(gammas[-1] - 0.5) < 0.5 * math.exp(-0.05 * 399) + 1e-12
    assert list(weighting.state_dict()) == []  # a function of the epoch only: nothing to checkpoint


# --- criterion ----------------------------------------------------------------------------------


def _outputs_and_batch(with_matting: bool = True) -> tuple[dict, dict]:
    alpha_gt = _ramp(12, 12, slope=0.05).repeat(2, 1, 1, 1)
    outputs = {"mask_logits": torch.zeros(2, 1, 12, 12), "kl": torch.tensor([0.1, 0.3])}
    if with_matting:
        outputs["alpha"] = torch.zeros(2, 1, 12, 12)
        outputs["alpha_logits"] = torch.full((2, 1, 12, 12), -20.0)
        outputs["uncertainty_map"] = _central_region().repeat(2, 1, 1, 1)
    batch = {"pseudo_mask": torch.ones(2, 1, 12, 12), "alpha": alpha_gt}
    return outputs, batch


def test_criterion_without_matting_network_trains_the_masks_only():
    criterion = build_criterion({"name": "medical_matting", "weighting": "oaws"})
    outputs, batch = _outputs_and_batch(with_matting=False)
    total, parts = criterion(outputs, batch, epoch=10, num_epochs=50)
    # mu * ln 2 + upsilon * mean(0.1, 0.3) = ln 2 + 10 * 0.2
    assert total.item() == pytest.approx(math.log(2) + 2.0, abs=1e-6)
    assert set(parts) == {"ce", "kl", "seg", "total"}


def test_criterion_adds_the_prior_only_kl_at_its_own_weight():
    criterion = build_criterion({"name": "medical_matting", "kl_weight": 0.5, "prior_kl_weight": 4.0})
    outputs, batch = _outputs_and_batch(with_matting=False)
    with pytest.raises(MedmatError, match="prior_kl_weight needs a model that gives 'kl_prior'"):
        criterion(outputs, batch, epoch=0, num_epochs=1)
    outputs["kl_prior"] = torch.tensor([0.1, 0.3])
    total, parts = criterion(outputs, batch, epoch=0, num_epochs=1)
    assert total.item() == pytest.approx(math.log(2) + (0.5 + 4.0) * 0.2, abs=1e-6)
    assert parts["kl"] == pytest.approx(0.2)
    with pytest.raises(MedmatError, match="prior_kl_weight"):
        build_criterion({"name": "medical_matting", "prior_kl_weight": -1})


def test_criterion_kl_target_pulls_a_collapsing_latent_back_up():
    criterion = build_criterion({"name": "medical_matting", "kl_weight": 0.5, "kl_target": 0.2})
    outputs, batch = _outputs_and_batch(with_matting=False)
    kl = torch.tensor([0.1, 0.3], requires_grad=True)
    outputs["kl"] = kl
    total, parts = criterion(outputs, batch, epoch=0, num_epochs=1)
    # 0.5 * mean(|0.1 - 0.2|, |0.3 - 0.2|) = 0.05; "kl" still reports the KL itself
    assert total.item() == pytest.approx(math.log(2) + 0.05, abs=1e-6)
    assert parts["kl"] == pytest.approx(0.2)
    total.backward()
    # below the target the gradient raises the KL, above it lowers it
    assert kl.grad.tolist() == pytest.approx([-0.25, 0.25])
    for bad in (-1.0, "three"):
        with pytest.raises(MedmatError, match="kl_target"):
            build_criterion({"name": "medical_matting", "kl_target": bad})


@pytest.mark.parametrize("weighting", ["none", "uws", "oaws"])
def test_criterion_combines_seg_and_matt_with_the_chosen_weighting(weighting):
    criterion = build_criterion({"name": "medical_matting", "weighting": weighting})
    outputs, batch = _outputs_and_batch()
    total, parts = criterion(outputs, batch, epoch=10, num_epochs=50)
    seg = math.log(2) + 2.0
    alpha_l1 = batch["alpha"].mean().item()  # predicted alpha is 0
    matt = alpha_l1 + 0.4  # zeta * L1 + xi * L_grad (the ramp's gradient 0.4 in the region)
    expected = {
        "none": seg + matt,
        "uws": seg / 16 + matt / 32 + math.log(16),
        "oaws": 0.1997696 * seg + (1 - 0.1997696) * matt,
    }[weighting]
    assert total.item() == pytest.approx(expected, abs=1e-5)
    assert parts["seg"] == pytest.approx(seg, abs=1e-6) and parts["matt"] == pytest.approx(matt, abs=1e-6)
    assert parts["total"] == pytest.approx(total.item())


def test_criterion_with_uws_exposes_its_sigmas_to_the_optimiser_and_checkpoints():
    criterion = build_criterion({"name": "medical_matting", "weighting": "uws", "sigma_init": 2.0})
    assert [name for name, _ in criterion.named_parameters()] == ["weighting.log_sigma"]
    assert "weighting.log_sigma" in criterion.state_dict()
    assert list(build_criterion({"name": "medical_matting", "weighting": "none"}).parameters()) == []


def test_criterion_config_errors_are_user_errors():
    assert "medical_matting" in list_criteria()
    with pytest.raises(MedmatError, match="unknown loss 'nope'.*medical_matting"):
        build_criterion({"name": "nope"})
    with pytest.raises(MedmatError, match="unknown loss weighting 'gradnorm'"):
        build_criterion({"name": "medical_matting", "weighting": "gradnorm"})
    with pytest.raises(MedmatError, match="kl_scale"):
        build_criterion({"name": "medical_matting", "kl_scale": 10})
    with pytest.raises(MedmatError, match="kl_weight"):
        build_criterion({"name": "medical_matting", "kl_weight": -1})

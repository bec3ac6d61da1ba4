"""Semantic path + Textural Compensate Path: outputs, the TCP switch, Eq. 3-4 losses, a tiny overfit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medmat.data.trimap import one_hot_trimap, trimap_levels
from medmat.errors import MedmatError
from medmat.labels.training_trimaps import RandomTrimapd
from medmat.losses import build_criterion
from medmat.losses.textural_compensate import alpha_prediction_loss, background_enhancement_loss
from medmat.models import build_model, list_models
from medmat.models.textural_compensate import PRESETS, TexturalCompensateMatting, TexturalCompensatePath
from tiny_configs import soft_discs, tiny_network

EPSILON = 1e-6


# Tiny networks: a second thread only waits on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny_model(**overrides) -> TexturalCompensateMatting:
    return tiny_network("tcp_matting", **overrides)


def _levels(trimaps: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([trimap_levels(t) for t in trimaps]))[:, None]


def _phantom(size: int = 32, batch: int = 2) -> dict[str, torch.Tensor]:
    """Soft discs, their noisy images, and the semantic and noisy TCP trimaps of §3.3."""
    image, alpha = soft_discs(size, batch=batch)
    transform = RandomTrimapd(source="alpha", max_kernel=0.1, noisy_key="trimap_noisy")
    drawn = [transform({"alpha": a[0].numpy()}, np.random.default_rng(b + 1)) for b, a in enumerate(alpha)]
    batch_dict = {"image": image, "alpha": alpha}
    for key in ("trimap", "trimap_noisy"):
        batch_dict[key] = _levels([d[key] for d in drawn])
    return batch_dict


# --- network -------------------------------------------------------------------------------------


def test_registry_builds_tcp_matting_and_rejects_bad_sizes():
    assert "tcp_matting" in list_models()
    assert isinstance(build_model("tcp_matting", **PRESETS["lite"]), TexturalCompensateMatting)
    with pytest.raises(MedmatError, match="encoder_blocks needs 4"):
        build_model("tcp_matting", encoder_channels=(4, 4, 8, 8, 8), encoder_blocks=(1, 1))


@pytest.mark.parametrize("training", [True, False])
def test_outputs_have_contract_shapes_and_ranges(training):
    model = _tiny_model().train(training)
    batch = _phantom()
    inputs = batch if training else {"image": batch["image"], "trimap": batch["trimap"]}
    with torch.no_grad():
        outputs = model(inputs)
    assert set(outputs) == {"alpha", "alpha_raw"}
    alpha, raw = outputs["alpha"], outputs["alpha_raw"]
    assert alpha.shape == raw.shape == (2, 1, 32, 32)
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and -1.0 < raw.min() and raw.max() < 1.0
    # Known regions come from the (semantic path's) trimap; unknown pixels are tanh clipped to [0, 1].
    trimap = batch["trimap"]
    assert torch.all(alpha[trimap == 1.0] == 1.0) and torch.all(alpha[trimap == 0.0] == 0.0)
    unknown = trimap == 0.5
    assert torch.equal(alpha[unknown], raw[unknown].clamp(0, 1))


def test_a_trimap_is_required():
    with pytest.raises(MedmatError, match="needs a trimap"):
        _tiny_model().eval()({"image": torch.rand(1, 1, 32, 32)})


def test_tcp_switch():
    alone = _tiny_model(use_tcp=False).eval()
    assert alone.tcp is None and not any(isinstance(m, TexturalCompensatePath) for m in alone.modules())
    batch = _phantom()
    with torch.no_grad():
        semantic, _ = alone.semantic(torch.cat([batch["image"], one_hot_trimap(batch["trimap"])], dim=1))
        assert torch.allclose(alone(batch)["alpha_raw"], torch.tanh(semantic))

    with_tcp = _tiny_model(use_tcp=True)
    assert sum(p.numel() for p in with_tcp.parameters()) > sum(p.numel() for p in alone.parameters())
    # The TCP reads the noisy trimap in training only; at inference the given trimap feeds both paths.
    other_noise = dict(batch, trimap_noisy=torch.full_like(batch["trimap"], 0.5))
    with torch.no_grad():
        with_tcp.train()
        assert not torch.allclose(with_tcp(batch)["alpha_raw"], with_tcp(other_noise)["alpha_raw"])
        with_tcp.eval()
        assert torch.equal(with_tcp(batch)["alpha_raw"], with_tcp(other_noise)["alpha_raw"])


def test_feature_fusion_scales_nearest_resized_semantic_features_by_a_learnable_weight():
    path = TexturalCompensatePath(in_channels=2, channels=3, fusion_weight_init=0.0).eval()
    x = torch.rand(1, 2, 8, 8)
    features = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(path(x, features), path(x, torch.zeros_like(features)))  # w_c = 0: no influence
        path.fusion_weight.fill_(0.5)
        spatial = path.spatial(x)
        # Nearest interpolation repeats each semantic pixel over a 2x2 block.
        resized = features.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        assert torch.allclose(path(x, features), path.refine(spatial + 0.5 * resized))
    assert path.fusion_weight.requires_grad


# --- losses --------------------------------------------------------------------------------------


def _tiny_loss_example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Pixels: known bg, unknown (gt 0.05), unknown (gt 0.0), unknown (gt 0.5), known fg, unknown (gt 1).
    trimap = torch.tensor([0.0, 0.5, 0.5, 0.5, 1.0, 0.5]).reshape(1, 1, 2, 3)
    alpha_gt = torch.tensor([0.0, 0.05, 0.0, 0.5, 1.0, 1.0]).reshape(1, 1, 2, 3)
    alpha = torch.tensor([0.7, 0.25, -0.1, 0.9, 0.0, 0.8]).reshape(1, 1, 2, 3)
    return alpha, alpha_gt, trimap


def test_losses_by_hand():
    alpha, alpha_gt, trimap = _tiny_loss_example()
    # Unknown pixels' errors: 0.2, 0.1, 0.4, 0.2 (the known pixels' 0.7 and 1.0 do not count).
    expected_alpha = np.mean([math.sqrt(e**2 + EPSILON**2) for e in (0.2, 0.1, 0.4, 0.2)])
    assert alpha_prediction_loss(alpha, alpha_gt, trimap).item() == pytest.approx(expected_alpha, rel=1e-5)
    # R_bg: unknown pixels with gt < 0.1 are the first two (0.05 and 0.0); errors 0.2 and 0.1.
    expected_background = np.mean([math.sqrt(e**2 + EPSILON**2) for e in (0.2, 0.1)])
    assert background_enhancement_loss(alpha, alpha_gt, trimap).item() == pytest.approx(expected_background, rel=1e-5)
    # theta 0.01 leaves only the pixel with gt 0.0.
    assert background_enhancement_loss(alpha, alpha_gt, trimap, threshold=0.01).item() == pytest.approx(0.1, rel=1e-4)

    outputs = {"alpha": alpha.clamp(0, 1), "alpha_raw": alpha}
    batch = {"alpha": alpha_gt, "trimap": trimap}
    total, parts = build_criterion({"name": "tcp_matting"})(outputs, batch, 0, 1)
    assert total.item() == pytest.approx(0.9 * expected_alpha + 0.1 * expected_background, rel=1e-5)
    assert parts["background_loss"] == pytest.approx(expected_background, rel=1e-5)
    total, parts = build_criterion({"name": "tcp_matting", "use_background_loss": False})(outputs, batch, 0, 1)
    assert total.item() == pytest.approx(expected_alpha, rel=1e-5) and "background_loss" not in parts


def test_an_image_without_background_in_its_unknown_region_adds_zero():
    alpha, alpha_gt, trimap = _tiny_loss_example()
    no_background = torch.full_like(alpha_gt, 0.5)
    both = background_enhancement_loss(torch.cat([alpha, alpha]), torch.cat([alpha_gt, no_background]),
                                       torch.cat([trimap, trimap]))
    assert both.item() == pytest.approx(background_enhancement_loss(alpha, alpha_gt, trimap).item() / 2, rel=1e-5)


def test_loss_rejects_bad_options():
    with pytest.raises(MedmatError, match="background_threshold"):
        build_criterion({"name": "tcp_matting", "background_threshold": 0.0})
    with pytest.raises(MedmatError, match="alpha_weight"):
        build_criterion({"name": "tcp_matting", "alpha_weight": -1.0})


# --- learning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_tcp", [False, True])
def test_overfits_one_tiny_image(use_tcp):
    model = _tiny_model(use_tcp=use_tcp).train()
    criterion = build_criterion({"name": "tcp_matting"})
    batch = _phantom(size=32, batch=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss() -> float:
        with torch.no_grad():
            return criterion(model(batch), batch, 0, 1)[1]["total"]

    first = loss()
    for _ in range(40):
        total, _ = criterion(model(batch), batch, 0, 1)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert loss() < 0.15 * first

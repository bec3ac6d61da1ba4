"""Entropy maps of Medical Matting: Eq. 4 (uncertainty map) and Eq. 2 (lesion uncertainty)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medmat.uncertainty import EPS, MAX_ENTROPY, lesion_uncertainty, uncertainty_map

LN2 = math.log(2.0)


def test_uncertainty_map_is_zero_where_identical_samples_are_certain():
    certain = torch.zeros(2, 8, 5, 6)
    certain[:, :, :, 3:] = 1.0  # every sample says background left, foreground right
    result = uncertainty_map(certain)
    assert result.shape == (2, 1, 5, 6)
    assert torch.all(result >= 0)
    # Only the clamp remains: -eps ln eps - (1 - eps) ln(1 - eps).
    floor = -(EPS * math.log(EPS) + (1 - EPS) * math.log1p(-EPS))
    torch.testing.assert_close(result, torch.full_like(result, floor), rtol=0, atol=1e-6)  # float32 rounds 1 - eps
    assert floor < 2e-5


def test_uncertainty_map_is_ln2_for_a_half_half_split_of_samples():
    split = torch.zeros(1, 8, 4, 4)
    split[:, :4] = 1.0  # 4 samples say foreground, 4 say background
    torch.testing.assert_close(uncertainty_map(split), torch.full((1, 1, 4, 4), LN2))
    assert MAX_ENTROPY == pytest.approx(LN2)


def test_uncertainty_map_is_the_entropy_of_the_mean_not_the_mean_entropy():
    # Samples 0.2 and 0.6 average to 0.4: H(0.4) = -0.4 ln 0.4 - 0.6 ln 0.6 = 0.6730117 nats,
    # whereas the mean of H(0.2) = 0.5004024 and H(0.6) = 0.6730117 would be 0.5867071.
    scores = torch.tensor([0.2, 0.6]).reshape(1, 2, 1, 1)
    assert uncertainty_map(scores).item() == pytest.approx(0.6730117, abs=1e-6)


def test_lesion_uncertainty_is_largest_at_half_and_symmetric():
    alpha = torch.linspace(0.0, 1.0, 101)
    entropy = lesion_uncertainty(alpha)
    assert entropy.argmax().item() == 50
    assert entropy[50].item() == pytest.approx(LN2)
    torch.testing.assert_close(entropy, entropy.flip(0))
    # H(0.1) = -0.1 ln 0.1 - 0.9 ln 0.9 = 0.3250830
    assert entropy[10].item() == pytest.approx(0.3250830, abs=1e-6)
    assert torch.all(torch.isfinite(entropy)) and entropy[0].item() < 2e-5


def test_entropies_have_finite_gradients_at_zero_and_one():
    alpha = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    lesion_uncertainty(alpha).sum().backward()
    assert torch.all(torch.isfinite(alpha.grad))


def test_numpy_inputs_give_numpy_outputs_matching_torch():
    rng = np.random.default_rng(0)
    scores = rng.random((2, 5, 3, 3))
    from_numpy = uncertainty_map(scores)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float64
    np.testing.assert_allclose(from_numpy, uncertainty_map(torch.from_numpy(scores)).numpy())
    alpha = rng.random((3, 3)).astype(np.float32)
    lesion = lesion_uncertainty(alpha)
    assert isinstance(lesion, np.ndarray) and lesion.dtype == np.float32 and lesion.shape == (3, 3)
    expected = -(alpha * np.log(alpha) + (1 - alpha) * np.log(1 - alpha))
    np.testing.assert_allclose(lesion, expected, rtol=1e-5)


def test_uncertainty_map_rejects_inputs_without_a_sample_axis():
    with pytest.raises(ValueError, match="B, N, H, W"):
        uncertainty_map(torch.rand(4, 4))

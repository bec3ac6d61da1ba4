"""Dictionary transforms (one geometry for every key) and Eq. 3 pseudo masks."""

from __future__ import annotations

import numpy as np
import pytest

from medmat.data.phantom import make_phantom
from medmat.data.transforms import (
    Composed,
    PseudoMaskd,
    RandomElasticd,
    RandomFlipd,
    RandomIntensityd,
    RandomRotated,
    change_intensity,
    elastic_displacement,
    paper_augmentations,
    pseudo_mask,
    rotate,
)
from medmat.errors import MedmatError


def asymmetric_data(height: int = 24, width: int = 24) -> dict:
    """An L-shaped, off-centre pattern: no flip or rotation maps it onto itself."""
    pattern = np.zeros((height, width), dtype=np.float32)
    pattern[3:18, 4:8] = 1.0
    pattern[14:18, 4:15] = 1.0
    pattern[5, 18] = 0.5
    trimap = np.where(pattern > 0.75, 255, np.where(pattern > 0.25, 128, 0)).astype(np.uint8)
    return {
        "image": np.stack([pattern, 1.0 - pattern]),
        "alpha": pattern.copy(),
        "masks": np.stack([pattern > 0.5, pattern > 0.25]),
        "trimap": trimap,
        "id": "pattern",
    }


def phantom_data() -> dict:
    sample = make_phantom(4, size=64)
    alpha = sample.alpha
    trimap = np.where(alpha == 1, 255, np.where(alpha > 0, 128, 0)).astype(np.uint8)
    return {**sample.to_dict(), "trimap": trimap, "pseudo_mask": alpha > 0.5, "uncertainty": alpha * (1 - alpha)}


def snapshot(data: dict) -> dict:
    return {key: value.copy() for key, value in data.items() if isinstance(value, np.ndarray)}


ALL_TRANSFORMS = [
    RandomFlipd(prob=1.0),
    RandomRotated(max_degrees=180.0, prob=1.0),
    RandomElasticd(prob=1.0),
    paper_augmentations(),
]


def test_flip_matches_numpy_and_twice_is_identity():
    data = asymmetric_data()
    flip = RandomFlipd(prob=1.0, axes=(1,))
    once = flip(data, np.random.default_rng(0))
    for key in ("image", "alpha", "masks", "trimap"):
        assert np.array_equal(once[key], data[key][..., ::-1])
    both_axes = RandomFlipd(prob=1.0, axes=(0, 1))
    twice = both_axes(both_axes(data, np.random.default_rng(0)), np.random.default_rng(1))
    for key in ("image", "alpha", "masks", "trimap"):
        assert np.array_equal(twice[key], data[key])


def test_flip_probability_is_per_axis():
    data = asymmetric_data()
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(200):
        out = RandomFlipd(prob=0.5)(data, rng)["alpha"]
        outcomes.add((np.array_equal(out, data["alpha"][::-1]) or np.array_equal(out, data["alpha"][::-1, ::-1]),
                      np.array_equal(out, data["alpha"][:, ::-1]) or np.array_equal(out, data["alpha"][::-1, ::-1])))
    assert outcomes == {(False, False), (True, False), (False, True), (True, True)}


def test_rotation_by_zero_is_identity():
    data = asymmetric_data()
    out = RandomRotated(max_degrees=0.0, prob=1.0)(data, np.random.default_rng(0))
    for key in ("image", "alpha", "masks", "trimap"):
        assert np.array_equal(out[key], data[key])


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_quarter_turn_rotation_equals_rot90(quarter_turns):
    data = asymmetric_data()
    out = rotate(data, 90.0 * quarter_turns)
    for key in ("image", "alpha", "masks", "trimap"):
        expected = np.rot90(data[key], quarter_turns, axes=(-2, -1))
        np.testing.assert_allclose(out[key].astype(np.float64), expected.astype(np.float64), atol=1e-6)


def test_elastic_with_zero_strength_is_identity():
    data = asymmetric_data()
    out = RandomElasticd(alpha=0.0, affine=0.0, prob=1.0)(data, np.random.default_rng(0))
    for key in ("image", "alpha", "masks", "trimap"):
        assert np.array_equal(out[key], data[key])


def test_elastic_displacement_size_matches_theory():
    # Smoothing uniform[-1, 1] noise (variance 1/3) with a 2-D Gaussian of std s leaves variance
    # 1 / (3 * 4 pi s^2); times alpha.
    displacement = elastic_displacement(np.random.default_rng(0), (256, 256), alpha=10.0, sigma=4.0)
    expected_std = 10.0 / (2 * 4.0 * np.sqrt(3 * np.pi))
    np.testing.assert_allclose(displacement.std(axis=(1, 2)), expected_std, rtol=0.15)


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_same_geometry_for_every_key(transform):
    data = asymmetric_data()
    out = transform(data, np.random.default_rng(3))
    # Image channel 0 and alpha hold the same pattern and are both interpolated bilinearly.
    assert np.array_equal(out["image"][0], out["alpha"])
    assert not np.array_equal(out["alpha"], data["alpha"])
    # The nearest-neighbour mask follows the same geometry as the bilinear alpha.
    agree = out["masks"][0] == (out["alpha"] > 0.5)
    assert agree.mean() > 0.95


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_dtypes_and_ranges_are_kept(transform):
    data = phantom_data()
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = transform(data, rng)
        assert out["masks"].dtype == bool and out["pseudo_mask"].dtype == bool
        assert out["trimap"].dtype == np.uint8 and set(np.unique(out["trimap"])) <= {0, 128, 255}
        for key in ("image", "alpha"):
            assert out[key].dtype == np.float32 and out[key].shape == data[key].shape
            assert out[key].min() >= 0.0 and out[key].max() <= 1.0
        assert out["uncertainty"].min() >= 0.0 and out["uncertainty"].max() <= data["uncertainty"].max()


def test_trimap_keeps_its_label_values():
    data = asymmetric_data()
    out = paper_augmentations()(data, np.random.default_rng(5))
    assert set(np.unique(out["trimap"])) <= {0, 128, 255}


@pytest.mark.parametrize("transform", ALL_TRANSFORMS + [PseudoMaskd()], ids=lambda t: type(t).__name__)
def test_input_is_not_mutated(transform):
    data = phantom_data()
    before = snapshot(data)
    out = transform(data, np.random.default_rng(0))
    for key, value in before.items():
        assert np.array_equal(data[key], value)
        if key in ("image", "alpha", "masks") and not isinstance(transform, PseudoMaskd):
            assert not np.shares_memory(out[key], data[key])


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_deterministic_given_the_generator(transform):
    data = phantom_data()
    first = transform(data, np.random.default_rng(42))
    second = transform(data, np.random.default_rng(42))
    for key in ("image", "alpha", "masks", "trimap", "pseudo_mask", "uncertainty"):
        assert np.array_equal(first[key], second[key])


def test_other_seeds_give_other_augmentations():
    data = phantom_data()
    first = paper_augmentations()(data, np.random.default_rng(1))
    second = paper_augmentations()(data, np.random.default_rng(2))
    assert not np.array_equal(first["alpha"], second["alpha"])


def test_non_spatial_entries_pass_through_and_sizes_must_agree():
    data = asymmetric_data()
    assert paper_augmentations()(data, np.random.default_rng(0))["id"] == "pattern"
    data["alpha"] = data["alpha"][:-1]
    with pytest.raises(ValueError, match="disagree"):
        RandomFlipd()(data, np.random.default_rng(0))


def test_composed_applies_in_order_with_one_generator():
    data = asymmetric_data()
    composed = Composed([RandomFlipd(prob=1.0, axes=(1,)), RandomRotated(max_degrees=0.0)])
    out = composed(data, np.random.default_rng(0))
    assert np.array_equal(out["alpha"], data["alpha"][:, ::-1])


def linear_ramp(peak: float = 0.8, size: int = 10001) -> np.ndarray:
    return (np.linspace(0.0, 1.0, size) * peak).reshape(1, -1)


def test_pseudo_mask_exact_for_a_known_draw():
    alpha = make_phantom(2).alpha
    tau = np.random.default_rng(7).uniform(0.2, 0.7) * float(alpha.max())
    mask = pseudo_mask(alpha, np.random.default_rng(7))
    assert mask.dtype == bool and mask.shape == alpha.shape
    assert np.array_equal(mask, alpha >= tau)


class FixedDraw:
    """A generator stand-in whose uniform draw is a known fraction."""

    def __init__(self, fraction: float):
        self.fraction = fraction

    def uniform(self, low, high):
        return self.fraction


def test_pseudo_mask_includes_alpha_equal_to_tau():
    # Eq. 3: 1 where alpha >= tau. tau = 0.5 * 0.8 = 0.4, exactly representable here.
    alpha = np.array([[0.0, 0.2, 0.4, 0.8]])
    assert pseudo_mask(alpha, FixedDraw(0.5)).tolist() == [[False, False, True, True]]


def test_pseudo_mask_threshold_spans_low_to_high_of_the_peak():
    alpha = linear_ramp(peak=0.8)
    rng = np.random.default_rng(0)
    # On a fine ramp from 0 to the peak, the kept fraction is 1 - tau / peak.
    tau_fractions = np.array([1.0 - pseudo_mask(alpha, rng).mean() for _ in range(2000)])
    assert tau_fractions.min() >= 0.2 - 1e-3 and tau_fractions.max() <= 0.7 + 1e-3
    assert tau_fractions.min() < 0.21 and tau_fractions.max() > 0.69
    assert abs(tau_fractions.mean() - 0.45) < 0.01  # mean of U[0.2, 0.7]; sd of the mean 0.003


def test_pseudo_mask_of_an_empty_matte_is_empty():
    assert not pseudo_mask(np.zeros((4, 4), np.float32), np.random.default_rng(0)).any()


def test_pseudo_mask_transform_adds_the_key():
    data = phantom_data()
    out = PseudoMaskd()(data, np.random.default_rng(7))
    assert np.array_equal(out["pseudo_mask"], pseudo_mask(data["alpha"], np.random.default_rng(7)))


def test_intensity_scales_and_gammas_the_image_only_with_one_draw_per_item():
    data = phantom_data()
    before = snapshot(data)
    out = RandomIntensityd(scale=(0.6, 0.8), gamma=(1.2, 1.5))(data, np.random.default_rng(4))
    # The draw, replayed: every channel and pixel moved by the same scale and gamma.
    replay = np.random.default_rng(4)
    replay.random()
    scale, gamma = replay.uniform(0.6, 0.8), replay.uniform(1.2, 1.5)
    expected = np.clip(scale * before["image"] ** gamma, 0, 1)
    assert out["image"].dtype == before["image"].dtype
    np.testing.assert_allclose(out["image"], expected, rtol=1e-6, atol=1e-7)
    assert out["image"].mean() < 0.8 * before["image"].mean()  # a darker scan
    for key in ("alpha", "masks", "trimap", "pseudo_mask", "uncertainty"):
        assert np.array_equal(out[key], before[key]), key
    assert all(np.array_equal(data[key], before[key]) for key in before)  # input untouched


def test_intensity_stays_in_the_unit_range_and_is_off_at_one_one():
    data = asymmetric_data()
    bright = RandomIntensityd(scale=(1.5, 2.0))(data, np.random.default_rng(0))
    assert bright["image"].min() >= 0.0 and bright["image"].max() == 1.0
    identity = RandomIntensityd()
    rng = np.random.default_rng(9)
    state = rng.bit_generator.state
    assert np.array_equal(identity(data, rng)["image"], data["image"])
    assert rng.bit_generator.state == state  # draws nothing
    # An identity intensity adds no step: the paper's augmentations draw exactly as before.
    plain, with_identity = paper_augmentations(), paper_augmentations(identity)
    assert len(with_identity.transforms) == len(plain.transforms) == 3
    assert len(paper_augmentations(RandomIntensityd(gamma=(0.8, 1.2))).transforms) == 4


@pytest.mark.parametrize("scale, gamma", [((0.0, 1.0), (1, 1)), ((1.2, 0.8), (1, 1)), ((1, 1), (-1.0, 2.0)), ((0.8,), (1, 1))])
def test_intensity_refuses_an_empty_or_non_positive_range(scale, gamma):
    with pytest.raises(MedmatError, match="0 < low <= high"):
        RandomIntensityd(scale=scale, gamma=gamma)


def test_change_intensity_scales_after_the_gamma_keeps_the_dtype_and_stays_in_range():
    image = np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 3, 4)
    changed = change_intensity(image, 1.5, 2.0)
    assert changed.dtype == np.float32
    np.testing.assert_allclose(changed, np.clip(1.5 * image**2, 0, 1), rtol=1e-6)
    assert changed.max() == 1.0 and changed.min() == 0.0

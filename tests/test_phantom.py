"""Synthetic phantoms: determinism, a real textured transition zone, annotators, image model."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from medmat.data.phantom import (
    ZONE_TEXTURE,
    bilinear_sample,
    make_phantom,
    make_phantom_dataset,
    smooth_noise,
    soft_alpha,
)
from medmat.data.validate import validate_dataset


@pytest.fixture(scope="module")
def dataset():
    return make_phantom_dataset()


def test_same_seed_gives_bit_identical_arrays():
    first, second = make_phantom(11), make_phantom(11)
    assert first.image.tobytes() == second.image.tobytes()
    assert first.alpha.tobytes() == second.alpha.tobytes()
    assert first.masks.tobytes() == second.masks.tobytes()


def test_different_seeds_give_different_cases():
    first, second = make_phantom(11), make_phantom(12)
    assert not np.array_equal(first.alpha, second.alpha)
    assert not np.array_equal(first.image, second.image)


def test_dataset_contract(dataset):
    validate_dataset(dataset, "phantom", require_alpha=True)
    assert [sample.id for sample in dataset] == [f"phantom-{index:03d}" for index in range(16)]
    for index, sample in enumerate(dataset):
        assert sample.group == sample.id
        assert sample.source == f"phantom(seed={index})"
        assert sample.image.shape == (1, 128, 128) and sample.image.dtype == np.float32
        assert sample.alpha.shape == (128, 128) and sample.alpha.dtype == np.float32
        assert sample.masks.shape == (4, 128, 128) and sample.masks.dtype == bool


def test_dataset_case_is_the_case_of_its_seed():
    shifted = make_phantom_dataset(n_cases=2, seed=5)
    assert shifted[1].id == "phantom-006"
    assert np.array_equal(shifted[1].alpha, make_phantom(6).alpha)


def test_size_and_annotator_count_are_honoured():
    sample = make_phantom(3, size=64, n_annotators=7)
    assert sample.image.shape == (1, 64, 64)
    assert sample.masks.shape == (7, 64, 64)
    assert len(sample.meta["annotator_levels"]) == 7


def test_alpha_has_a_real_transition_zone(dataset):
    for sample in dataset:
        alpha = sample.alpha
        soft = np.mean((alpha > 0.05) & (alpha < 0.95))
        # Measured 0.034 .. 0.086 over the 16 default cases.
        assert 0.02 < soft < 0.15, sample.id
        assert np.any(alpha == 1.0) and np.any(alpha == 0.0)


def test_transition_zone_width_varies_along_the_border(dataset):
    for sample in dataset:
        alpha = sample.alpha
        distance_to_core = ndimage.distance_transform_edt(alpha < 1.0)
        outer_edge = (alpha > 0) & ndimage.binary_dilation(alpha == 0)
        widths = distance_to_core[outer_edge]
        # A constant ring would give widths within a pixel of each other; measured max/min >= 1.8.
        assert widths.max() / widths.min() > 1.5, sample.id
        assert widths.std() / widths.mean() > 0.1, sample.id


def test_soft_alpha_ramp_hand_worked():
    width = np.full(5, 4.0)
    distance = np.array([-3.0, -2.0, 0.0, 2.0, 3.0])
    flat = soft_alpha(distance, width, np.zeros(5))
    # ramp = clip(0.5 - d / w): 1.25 -> 1, 1, 0.5, 0, -0.25 -> 0; smoothstep(0.5) = 0.5.
    np.testing.assert_allclose(flat, [1.0, 1.0, 0.5, 0.0, 0.0])
    # Texture shifts the ramp by ZONE_TEXTURE: ramp 0.5 + 0.3 = 0.8, smoothstep 0.64 * 1.4.
    shifted = soft_alpha(np.array([0.0]), np.array([4.0]), np.array([1.0]))
    ramp = 0.5 + ZONE_TEXTURE
    np.testing.assert_allclose(shifted, [ramp * ramp * (3 - 2 * ramp)])


def test_smooth_noise_is_bounded_and_smooth():
    field = smooth_noise(np.random.default_rng(0), 128, 16.0)
    assert np.max(np.abs(field)) == 1.0
    # Features span ~16 px, so neighbouring pixels differ by a small fraction of the range.
    assert np.abs(np.diff(field, axis=0)).max() < 0.2
    assert np.abs(np.diff(field, axis=1)).max() < 0.2


def test_bilinear_sample_hand_worked():
    field = np.array([[0.0, 1.0], [2.0, 3.0]])
    values = bilinear_sample(field, np.array([0.0, 0.5, 1.0, -4.0]), np.array([0.5, 0.5, 1.0, 0.0]))
    np.testing.assert_allclose(values, [0.5, 1.5, 3.0, 0.0])


def test_annotators_disagree_only_where_alpha_is_intermediate(dataset):
    for sample in dataset:
        alpha, masks = sample.alpha, sample.masks
        disagreement = masks.any(axis=0) & ~masks.all(axis=0)
        intermediate = (alpha > 0) & (alpha < 1)
        assert disagreement.any(), sample.id
        assert not np.any(disagreement & ~intermediate), sample.id
        assert masks[:, alpha == 1.0].all() and not masks[:, alpha == 0.0].any()


def test_each_annotator_thresholds_alpha_at_their_level(dataset):
    for sample in dataset:
        levels = sample.meta["annotator_levels"]
        assert all(0.25 <= level <= 0.75 for level in levels)
        for mask, level in zip(sample.masks, levels):
            # The sub-pixel jitter moves only the boundary: nearly every pixel agrees with
            # a plain threshold of the true alpha.
            assert np.mean(mask == (sample.alpha > level)) > 0.97, sample.id


def test_image_follows_alpha(dataset):
    for sample in dataset:
        image, alpha = sample.image[0], sample.alpha
        assert np.corrcoef(image.ravel(), alpha.ravel())[0, 1] > 0.8, sample.id
        assert image[alpha == 1].mean() > image[alpha == 0].mean() + 0.2

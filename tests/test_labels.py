"""Alpha labels from several annotators: the trimap rule of Medical Matting §II.A and the solver step."""

from __future__ import annotations

import numpy as np
import pytest

from medmat.data.phantom import make_phantom
from medmat.errors import MedmatError
from medmat.labels import disagreement_region, trimap_from_masks
from medmat.labels.build import alpha_label, build_alpha_labels
from medmat.metrics import region_mask, sad


def test_trimap_rule_by_hand():
    masks = np.zeros((3, 5, 5), dtype=bool)
    masks[:, 1:4, 1:4] = True  # all three agree on a 3x3 square
    masks[0, 0, 2] = True  # one annotator also marks a pixel above it
    trimap = trimap_from_masks(masks, dilation_radius=0)
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 1:4] = 255
    expected[0, 2] = 128
    np.testing.assert_array_equal(trimap, expected)

    dilated = trimap_from_masks(masks, dilation_radius=1)
    # The 3x3 neighbourhood of (0, 2) becomes unknown, the rest stays as agreed.
    assert (dilated[0:2, 1:4] == 128).all()
    assert dilated[2, 2] == 255 and dilated[4, 4] == 0 and dilated[0, 0] == 0


def test_unanimous_masks_have_no_unknown_region():
    masks = np.zeros((4, 6, 6), dtype=bool)
    masks[:, 2:4, 2:4] = True
    assert not disagreement_region(masks).any()
    assert set(np.unique(trimap_from_masks(masks, 2))) == {0, 255}


def test_bad_inputs_are_user_errors():
    with pytest.raises(MedmatError):
        trimap_from_masks(np.zeros((0, 4, 4), bool))
    with pytest.raises(MedmatError):
        trimap_from_masks(np.zeros((2, 4, 4), bool), dilation_radius=-1)


def test_alpha_label_recovers_the_phantom_alpha():
    """On a phantom the annotators threshold a known alpha; the label must be far closer to it
    than the annotators' mean is, inside the region they disagree on."""
    sample = make_phantom(seed=3, size=96, n_annotators=5)
    alpha, trimap = alpha_label(sample.image, sample.masks, method="cf", dilation_radius=2)
    assert alpha.dtype == np.float32 and alpha.shape == sample.shape
    assert alpha.min() >= 0 and alpha.max() <= 1
    unknown = region_mask(trimap, "unknown")
    assert unknown.any()
    label_error = sad(alpha, sample.alpha, unknown)
    mean_mask_error = sad(sample.masks.mean(axis=0), sample.alpha, unknown)
    assert label_error < 0.7 * mean_mask_error
    # Where all annotators agree, the label is exactly their answer.
    np.testing.assert_array_equal(alpha[trimap == 255], 1.0)
    np.testing.assert_array_equal(alpha[trimap == 0], 0.0)


def test_build_alpha_labels_sets_alpha_trimap_and_timing():
    samples = [make_phantom(seed=s, size=64, n_annotators=3) for s in range(2)]
    labelled, seconds = build_alpha_labels(samples, method="cf", dilation_radius=1, progress=False)
    assert [s.id for s in labelled] == [s.id for s in samples]
    assert all(s.trimap is not None and s.alpha is not None for s in labelled)
    assert labelled[0].meta["label_method"] == "cf" and len(seconds) == 2
    # The input samples are not modified.
    assert samples[0].trimap is None

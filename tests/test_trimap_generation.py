"""Trimap encodings for networks, AdaMatting's optimal trimap, and random training trimaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmat.data.trimap import (
    alpha_trimap,
    fill_known_regions,
    one_hot_trimap,
    optimal_trimap_classes,
    standard_trimap,
    trimap_classes,
    trimap_levels,
)
from medmat.errors import MedmatError
from medmat.labels.training_trimaps import (
    RandomTrimapd,
    erode,
    nearest_known_labels,
    noisy_trimap,
    pixels_of_width,
    widen_unknown,
)
from medmat.labels.trimap import trimap_from_masks


def _soft_disk(size: int = 48, inner: float = 10.0, outer: float = 14.0) -> np.ndarray:
    """Alpha 1 within ``inner`` of the centre, 0 beyond ``outer``, a linear ramp between."""
    rows, cols = np.indices((size, size), dtype=np.float64)
    radius = np.hypot(rows - size // 2, cols - size // 2)
    return np.clip((outer - radius) / (outer - inner), 0.0, 1.0).astype(np.float32)


# --- tensors -------------------------------------------------------------------------------------


def test_trimap_classes_and_one_hot_read_levels_like_every_medmat_method():
    # Engine levels 0 / 0.5 / 1 and resampled grey values (<= 0.1 background, >= 0.9 foreground).
    trimap = torch.tensor([0.0, 0.5, 1.0, 0.05, 0.95, 0.3]).reshape(1, 1, 2, 3)
    expected = torch.tensor([[[0, 1, 2], [0, 2, 1]]])
    assert torch.equal(trimap_classes(trimap), expected)
    one_hot = one_hot_trimap(trimap)
    assert one_hot.shape == (1, 3, 2, 3) and one_hot.dtype == torch.float32
    assert torch.equal(one_hot.sum(dim=1), torch.ones(1, 2, 3))
    # Channel order is (background, unknown, foreground).
    assert one_hot[0, :, 0, 0].tolist() == [1, 0, 0]
    assert one_hot[0, :, 0, 1].tolist() == [0, 1, 0]
    assert one_hot[0, :, 0, 2].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        trimap_classes(torch.zeros(1, 2, 3))


def test_optimal_trimap_follows_eq2_by_hand():
    alpha = np.array([[0.0, 0.2, 1.0], [1.0, 254 / 255, 1 / 255]], dtype=np.float32)
    by_hand = np.array([[0, 1, 2], [2, 1, 1]])
    classes = optimal_trimap_classes(torch.from_numpy(alpha)[None, None])
    assert classes.tolist() == [by_hand.tolist()]
    # The numpy trimap the training trimaps start from is the same partition in 0 / 128 / 255.
    assert alpha_trimap(alpha).tolist() == [[0, 128, 255], [255, 128, 128]]
    assert alpha_trimap(alpha).dtype == np.uint8


def test_fill_known_regions_sets_trimap_values():
    alpha = torch.tensor([0.3, 0.6, 0.9]).reshape(1, 1, 1, 3)
    classes = torch.tensor([[[0, 1, 2]]])
    assert fill_known_regions(alpha, classes).flatten().tolist() == pytest.approx([0.0, 0.6, 1.0])


# --- numpy trimaps -------------------------------------------------------------------------------


def test_square_erosion_of_a_disk_by_hand():
    # Disk x^2 + y^2 <= 100. A 5x5 square keeps (dx, 0) iff its far corner (dx + 2, 2) is inside:
    # (dx + 2)^2 + 4 <= 100, i.e. |dx| <= 7, so the centre row keeps 15 pixels; (5, 5) needs
    # 7^2 + 7^2 = 98 <= 100 and stays, (6, 5) needs 8^2 + 7^2 = 113 and goes.
    rows, cols = np.indices((31, 31))
    disk = (rows - 15) ** 2 + (cols - 15) ** 2 <= 100
    eroded = erode(disk, 5)
    assert eroded[15].sum() == 15 and eroded[15, 15 - 7] and not eroded[15, 15 - 8]
    assert eroded[20, 20] and not eroded[21, 20]
    assert np.array_equal(erode(disk, 1), disk)


def test_border_does_not_erode_a_region_that_touches_it():
    background = np.ones((9, 9), dtype=bool)
    background[3:6, 3:6] = False
    eroded = erode(background, 3)
    assert eroded[0].all() and eroded[:, 0].all()  # the frame is not an edge of the background


def test_widened_trimaps_keep_the_papers_semantics_on_a_disk():
    alpha = _soft_disk()
    base = alpha_trimap(alpha)
    grew = False
    for seed in range(10):
        trimap = widen_unknown(base, np.random.default_rng(seed), max_kernel=9)
        assert set(np.unique(trimap)) <= {0, 128, 255}
        # Foreground only where alpha == 1, background only where alpha == 0: every fractional
        # pixel stays unknown, and erosion only moves known pixels into the unknown band.
        assert np.all(alpha[trimap == 255] == 1.0)
        assert np.all(alpha[trimap == 0] == 0.0)
        assert np.all(trimap[(alpha > 0) & (alpha < 1)] == 128)
        grew |= (trimap == 128).sum() > (base == 128).sum()
    assert grew
    assert np.array_equal(widen_unknown(base, np.random.default_rng(0), max_kernel=1), base)


def test_nearest_known_labels_by_hand():
    strip = np.array([[0, 128, 128, 128, 128, 255]], dtype=np.uint8)
    assert nearest_known_labels(strip).tolist() == [[0, 0, 0, 255, 255, 255]]
    everything_unknown = np.full((2, 2), 128, dtype=np.uint8)
    assert np.array_equal(nearest_known_labels(everything_unknown), everything_unknown)


def test_noisy_trimap_moves_the_unknown_band_both_ways():
    base = widen_unknown(alpha_trimap(_soft_disk()), np.random.default_rng(0), max_kernel=3)
    unknown_sizes = set()
    for seed in range(30):
        noisy = noisy_trimap(base, np.random.default_rng(seed), max_dilation=9, max_erosion=5)
        assert noisy.dtype == np.uint8 and set(np.unique(noisy)) <= {0, 128, 255}
        assert np.array_equal(noisy, noisy_trimap(base, np.random.default_rng(seed), max_dilation=9, max_erosion=5))
        unknown_sizes.add(int(np.sign((noisy == 128).sum() - (base == 128).sum())))
    assert unknown_sizes == {-1, 0, 1}  # shrunk, unchanged (n = 0 or p = 0) and grown
    assert np.array_equal(noisy_trimap(base, np.random.default_rng(0), max_steps=0), base)


def test_random_trimap_transform_writes_engine_readable_trimaps():
    alpha = _soft_disk()
    data = {"image": alpha[None].copy(), "alpha": alpha, "masks": np.stack([alpha > 0.3, alpha > 0.7])}
    transform = RandomTrimapd(source="alpha", noisy_key="trimap_noisy")
    out = transform(data, np.random.default_rng(3))
    assert set(out) == {"image", "alpha", "masks", "trimap", "trimap_noisy"}
    assert "trimap" not in data  # the input dict is not modified
    for key in ("trimap", "trimap_noisy"):
        assert out[key].dtype == np.uint8 and out[key].shape == alpha.shape
        assert set(np.unique(trimap_levels(out[key]))) <= {0.0, 0.5, 1.0}
    again = transform(data, np.random.default_rng(3))
    assert np.array_equal(out["trimap"], again["trimap"]) and np.array_equal(out["trimap_noisy"], again["trimap_noisy"])
    # Kernel sizes are fractions of the width: the papers' 30 px of a 320-px crop is 12 px at 128.
    assert pixels_of_width(30 / 320, 128) == 12 and pixels_of_width(0.0, 128) == 1


def test_random_trimap_sources():
    alpha = _soft_disk()
    masks = np.stack([alpha > 0.3, alpha > 0.7])
    unchanged = {"max_kernel": 0.0}  # kernel side 1: the source trimap itself
    from_masks = RandomTrimapd(source="masks", **unchanged)({"masks": masks}, np.random.default_rng(0))
    assert np.array_equal(from_masks["trimap"], trimap_from_masks(masks, dilation_radius=0))
    grey = np.array([[0, 3, 120, 140, 250, 255]], dtype=np.uint8)
    given = RandomTrimapd(source="trimap", **unchanged)({"trimap": grey}, np.random.default_rng(0))
    assert given["trimap"].tolist() == standard_trimap(grey).tolist() == [[0, 0, 128, 128, 255, 255]]
    with pytest.raises(MedmatError, match="source must be one of"):
        RandomTrimapd(source="scribbles")
    with pytest.raises(MedmatError, match="from 'masks'"):
        RandomTrimapd(source="masks")({"alpha": alpha}, np.random.default_rng(0))

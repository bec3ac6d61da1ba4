"""A torch ``Dataset`` over :class:`~medmat.data.sample.Sample` lists that yields the model contract's batch.

Each item is a dict of float32 tensors: ``image`` (C,H,W) in [0,1], ``alpha`` (1,H,W) in [0,1],
``masks`` (K,H,W) in {0,1}, ``pseudo_mask`` (1,H,W) in {0,1} (Eq. 3) and, when every case has
one, ``trimap`` (1,H,W) in {0, 0.5, 1}.

In training every item's randomness (augmentation, pseudo-mask threshold) comes from a numpy
generator seeded with ``(seed, epoch, index)``, so an epoch draws the same data whatever the
number of worker processes or torchrun ranks, and a resumed run draws what an uninterrupted
one would have drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from medmat.classical.trimap import trimap_regions
from medmat.data.sample import Sample
from medmat.data.validate import validate_dataset
from medmat.errors import MedmatError

def center_window(source: int, target: int) -> tuple[slice, slice]:
    """Slices that place a length-``source`` axis centrally in a length-``target`` axis.

    Returns ``(from_source, into_target)``: cropping when ``source > target``, padding when it
    is smaller. ``target[into_target] = source[from_source]`` and the inverse undo each other.
    """
    if source >= target:
        start = (source - target) // 2
        return slice(start, start + target), slice(0, target)
    start = (target - source) // 2
    return slice(0, source), slice(start, start + source)


def fit_to_size(array: np.ndarray, size: tuple[int, int], fill=0) -> np.ndarray:
    """Centre-crop or zero-pad the last two axes of ``array`` (any dtype, shape (..., H, W)) to ``size``."""
    height, width = array.shape[-2:]
    if (height, width) == tuple(size):
        return array
    rows_from, rows_into = center_window(height, size[0])
    cols_from, cols_into = center_window(width, size[1])
    fitted = np.full(array.shape[:-2] + tuple(size), fill, dtype=array.dtype)
    fitted[..., rows_into, cols_into] = array[..., rows_from, cols_from]
    return fitted


def unfit_from_size(array: np.ndarray, original: tuple[int, int]) -> np.ndarray:
    """Undo :func:`fit_to_size` on a prediction (..., h, w): back to ``original`` (H, W).

    Pixels that :func:`fit_to_size` cropped away were never seen by the model; they come back as 0.
    """
    height, width = array.shape[-2:]
    rows_from, rows_into = center_window(original[0], height)
    cols_from, cols_into = center_window(original[1], width)
    restored = np.zeros(array.shape[:-2] + tuple(original), dtype=array.dtype)
    restored[..., rows_from, cols_from] = array[..., rows_into, cols_into]
    return restored


def common_size(samples: Sequence[Sample], size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``size`` when given, else the largest height and width among ``samples``."""
    if size is not None:
        return tuple(size)
    return max(s.shape[0] for s in samples), max(s.shape[1] for s in samples)


def trimap_levels(trimap: np.ndarray) -> np.ndarray:
    """Trimap (H,W), uint8 or float in [0,1] -> float32 (H,W) in {0, 0.5, 1} (background, unknown, foreground).

    Intermediate values of resampled trimaps are read the way every medmat matting method reads
    them (:func:`medmat.classical.trimap.trimap_regions`).
    """
    foreground, _, unknown = trimap_regions(trimap)
    return (foreground + 0.5 * unknown).astype(np.float32)


def item_seed(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one item of one epoch; a function of the three numbers only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def default_augmentations() -> Callable:
    """The paper's training augmentations (flip, rotation, elastic): ``(data, rng) -> data``."""
    from medmat.data.transforms import paper_augmentations

    return paper_augmentations()


def default_pseudo_mask() -> Callable:
    """Eq. 3's random-threshold pseudo mask: ``(alpha, rng, low, high) -> bool (H,W)``."""
    from medmat.data.transforms import pseudo_mask

    return pseudo_mask


class MattingDataset(Dataset):
    """Samples as contract batches; training items are augmented and carry a pseudo mask.

    Args:
        samples: the cases; in training each needs an alpha matte and the same number K of
            annotator masks (the batch stacks them).
        training: draw augmentations and pseudo masks (else return the case as it is).
        seed: run seed; with the epoch and the item's index it seeds the item's randomness.
        augment: apply the augmentations in training.
        pseudo_mask_range: ``(low, high)`` of Eq. 3's threshold, as fractions of the alpha's range.
        size: ``(H, W)`` every item is centre-cropped or zero-padded to; None = largest case.
        augmentations: ``(data, rng) -> data`` override (default: the paper's).
        pseudo_mask: ``(alpha, rng, low, high) -> bool (H,W)`` override (default: Eq. 3).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        training: bool = True,
        seed: int = 0,
        augment: bool = True,
        pseudo_mask_range: tuple[float, float] = (0.2, 0.7),
        size: tuple[int, int] | None = None,
        augmentations: Callable | None = None,
        pseudo_mask: Callable | None = None,
    ):
        self.samples = validate_dataset(samples, "training data", require_alpha=True)
        annotators = {s.num_annotators for s in self.samples}
        if len(annotators) > 1:
            raise MedmatError(f"cases have different numbers of annotator masks {sorted(annotators)}; a batch needs one K")
        self.training = training
        self.seed = seed
        self.epoch = 0
        self.size = common_size(self.samples, size)
        self.low, self.high = pseudo_mask_range
        self.with_trimap = all(s.trimap is not None for s in self.samples)
        self.augmentations = None
        if training and augment:
            self.augmentations = augmentations or default_augmentations()
        self.pseudo_mask = (pseudo_mask or default_pseudo_mask()) if training else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next items use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        data = {key: np.array(value, copy=True) for key, value in sample.to_dict().items()}
        if not self.with_trimap:
            data.pop("trimap", None)
        if self.training:
            rng = item_seed(self.seed, self.epoch, index)
            if self.augmentations is not None:
                data = self.augmentations(data, rng)
            data["pseudo_mask"] = self.pseudo_mask(data["alpha"], rng, low=self.low, high=self.high)
        return to_batch_item(data, self.size)


def to_batch_item(data: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Numpy case arrays (``image`` (C,H,W), ``alpha``/``trimap``/``pseudo_mask`` (H,W), ``masks`` (K,H,W))
    -> float32 tensors of spatial size ``size`` with the contract's channel axes."""
    item = {"image": data["image"].astype(np.float32)}
    item["masks"] = data["masks"].astype(np.float32)
    for key in ("alpha", "pseudo_mask"):
        if key in data:
            item[key] = data[key].astype(np.float32)[None]
    if "trimap" in data:
        item["trimap"] = trimap_levels(data["trimap"])[None]
    return {key: torch.from_numpy(np.ascontiguousarray(fit_to_size(value, size))) for key, value in item.items()}

"""A torch ``Dataset`` over :class:`~medmat.data.sample.Sample` lists that yields the model contract's batch.

Each item is a dict of float32 tensors: ``image`` (C,H,W) in [0,1], ``alpha`` (1,H,W) in [0,1],
``masks`` (K,H,W) in {0,1}, ``pseudo_mask`` (1,H,W) in {0,1} (Eq. 3) and, when every case has
one, ``trimap`` (1,H,W) in {0, 0.5, 1}. With generated training trimaps (``data.train_trimaps``)
every training item has a ``trimap``, and with ``data.noisy_trimaps`` a ``trimap_noisy`` too.
With a user-map transform (dugMatting's "nig" models) every training item has a ``user_map``
(1,H,W) in {-1, 0, 0.5, 1}. With ``case_maps`` (``train.cross_fit_from``) every training item has
the base's held-out ``held_out_base_alpha`` and ``held_out_base_uncertainty`` (1,H,W). With
``model_input_size`` (h, w) (``data.model_input_size``, LIIF-style training of resolution-free
models) the model's inputs of a training item (``image``, ``pseudo_mask``, trimaps, ``user_map``)
are resampled to (h, w), the targets (``alpha``, ``masks``) stay at (H, W), and ``output_size``
(2,) int64 = (H, W) tells the model where to read its alpha.

:func:`resize_sample` is medmat's one resampling of a whole case to another size (``data.resize``).

In training every item's randomness (augmentation, pseudo-mask threshold, trimaps) comes from a numpy
generator seeded with ``(seed, epoch, index)``, so an epoch draws the same data whatever the
number of worker processes or torchrun ranks, and a resumed run draws what an uninterrupted
one would have drawn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medmat.data import transforms
from medmat.data.sample import Sample
from medmat.data.transforms import HELD_OUT_BASE_KEYS
from medmat.data.trimap import trimap_levels
from medmat.data.validate import validate_dataset, validate_sample
from medmat.errors import MedmatError
from medmat.labels.training_trimaps import RandomTrimapd

#: ``data.train_trimaps`` -> the ground truth :class:`~medmat.labels.training_trimaps.RandomTrimapd`
#: draws training trimaps from ("given" draws none: the cases' own trimaps are used as they are).
TRAIN_TRIMAP_SOURCES = {"alpha": "alpha", "annotators": "masks"}
#: Batch key of the TCP's noisy training trimap.
NOISY_TRIMAP_KEY = "trimap_noisy"
#: Masks are resampled as fractions of their pixels, then kept where at least half is inside.
MASK_LEVEL = 0.5
#: Batch keys the model reads as input (resampled by ``model_input_size``); the rest are targets.
MODEL_INPUT_KEYS = ("image", "pseudo_mask", "trimap", NOISY_TRIMAP_KEY, "user_map", "probe_map", *HELD_OUT_BASE_KEYS)


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


def fit_sample(sample: Sample, size: tuple[int, int] | None) -> Sample:
    """A copy of ``sample`` with image, masks, alpha and trimap centre-cropped or padded to ``size``
    (the view a model trained with ``data.input_size`` had); the sample itself when ``size`` is None."""
    if size is None or tuple(sample.shape) == tuple(size):
        return sample
    fitted = {key: fit_to_size(value, size) for key, value in sample.to_dict().items()}
    return dataclasses.replace(sample, **fitted)


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


def resize_planes(array: np.ndarray, size: tuple[int, int], label: bool = False) -> np.ndarray:
    """Resample the last two axes of ``array`` (..., H, W) to ``size`` (h, w); float32 out.

    Continuous values are averaged over each output pixel's footprint (``area``) when no axis
    grows, and interpolated bilinearly (pixel centres, ``align_corners=False``) otherwise;
    ``label=True`` takes the nearest pixel (``nearest-exact``), so label values stay exact.
    """
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    height, width = tensor.shape[-2:]
    if label:
        mode = "nearest-exact"
    else:
        mode = "area" if size[0] <= height and size[1] <= width else "bilinear"
    flat = tensor.reshape(1, -1, height, width)
    options = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(flat, size=tuple(size), mode=mode, **options)
    return resized.reshape(*tensor.shape[:-2], *size).numpy()


def resized_affine(affine: np.ndarray, shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The voxel-to-world affine of an (H, W) = ``shape`` image after resampling it to ``size`` (h, w).

    ``affine`` maps (row, column, slice, 1) to world coordinates (:mod:`medmat.io.images`). The
    row and column columns are scaled by H / h and W / w, and the origin moves by half the change
    of pixel size, so that every resampled pixel sits where :func:`resize_planes` takes it from:
    the centre of output row i is input row (i + 0.5) H / h - 0.5 (columns alike), and the image
    covers the same extent of the world.

    Returns:
        A new float64 (4, 4) array.
    """
    scale_rows, scale_cols = shape[0] / size[0], shape[1] / size[1]
    index_map = np.eye(4)
    index_map[0, 0], index_map[1, 1] = scale_rows, scale_cols
    index_map[0, 3], index_map[1, 3] = (scale_rows - 1) / 2, (scale_cols - 1) / 2
    return np.asarray(affine, dtype=np.float64) @ index_map


def resize_sample(sample: Sample, size: tuple[int, int]) -> Sample:
    """``sample`` resampled to ``size`` (h, w); the same sample when it already has that size.

    The image and alpha are averaged (shrinking) or bilinear (growing) and stay in [0, 1]; each
    annotator mask is resampled as the fraction of its pixels inside, then kept at >= 0.5; the
    trimap takes the nearest pixel, so its levels stay 0 / 128 / 255. The spacing and affine
    follow the new pixel size; the id, group, source and meta are kept.

    Raises:
        MedmatError: when the resampled case is not a valid sample (via ``validate_sample``).
    """
    size = (int(size[0]), int(size[1]))
    if sample.shape == size:
        return sample
    alpha = None if sample.alpha is None else np.clip(resize_planes(sample.alpha, size), 0.0, 1.0)
    trimap = None
    if sample.trimap is not None:
        trimap = np.rint(resize_planes(sample.trimap, size, label=True)).astype(np.uint8)
    spacing = None
    if sample.spacing is not None:
        spacing = (sample.spacing[0] * sample.shape[0] / size[0], sample.spacing[1] * sample.shape[1] / size[1])
    affine = None if sample.affine is None else resized_affine(sample.affine, sample.shape, size)
    masks = np.zeros((0, *size), dtype=bool)  # images to predict may come without masks
    if sample.num_annotators:
        masks = resize_planes(sample.masks, size) >= MASK_LEVEL
    resized = dataclasses.replace(
        sample,
        image=np.clip(resize_planes(sample.image, size), 0.0, 1.0),
        masks=masks,
        alpha=alpha,
        trimap=trimap,
        spacing=spacing,
        affine=affine,
    )
    return validate_sample(resized, require_masks=False, require_alpha=sample.alpha is not None)


def resize_samples(samples: Sequence[Sample], size: tuple[int, int] | None) -> list[Sample]:
    """Every sample at ``size`` (:func:`resize_sample`); ``size=None`` returns them as they are."""
    if size is None:
        return list(samples)
    return [resize_sample(sample, size) for sample in samples]


def common_size(samples: Sequence[Sample], size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``size`` when given, else the largest height and width among ``samples``."""
    if size is not None:
        return tuple(size)
    return max(s.shape[0] for s in samples), max(s.shape[1] for s in samples)


def item_seed(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one item of one epoch; a function of the three numbers only."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def default_augmentations(
    intensity_scale: Sequence[float] = (1.0, 1.0), intensity_gamma: Sequence[float] = (1.0, 1.0)
) -> Callable:
    """The paper's training augmentations (flip, rotation, elastic): ``(data, rng) -> data``.

    ``intensity_scale`` / ``intensity_gamma`` (``data.intensity_scale`` / ``data.intensity_gamma``):
    then a brightness and gamma change of the image (:class:`~medmat.data.transforms.RandomIntensityd`);
    both (1, 1), the default, add nothing.
    """
    return transforms.paper_augmentations(transforms.RandomIntensityd(intensity_scale, intensity_gamma))


def default_pseudo_mask() -> Callable:
    """Eq. 3's random-threshold pseudo mask: ``(alpha, rng, low, high) -> bool (H,W)``."""
    return transforms.pseudo_mask


def training_trimaps(kind: str = "given", noisy: bool = False) -> Callable | None:
    """The ``(data, rng) -> data`` transform that draws training trimaps, or None for ``"given"``.

    Args:
        kind: ``data.train_trimaps``: "given", "alpha" or "annotators" (:data:`TRAIN_TRIMAP_SOURCES`).
        noisy: also draw the TCP's noisy trimap into ``data["trimap_noisy"]``.
    """
    if kind == "given":
        if noisy:
            raise MedmatError("noisy training trimaps need generated trimaps (train_trimaps alpha or annotators)")
        return None
    if kind not in TRAIN_TRIMAP_SOURCES:
        raise MedmatError(f"training trimaps must be given, {', '.join(TRAIN_TRIMAP_SOURCES)}; got {kind!r}")
    return RandomTrimapd(source=TRAIN_TRIMAP_SOURCES[kind], noisy_key=NOISY_TRIMAP_KEY if noisy else None)


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
        train_trimaps: "given" (the cases' trimaps, when every case has one), or trimaps drawn
            every epoch from the ground truth: "alpha" (Eq. 2 of the alpha) or "annotators"
            (their masks), see :func:`training_trimaps`. They are drawn after the pseudo mask,
            so the other random draws of an item do not depend on this choice.
        noisy_trimaps: with generated trimaps, also the TCP's ``trimap_noisy``.
        model_transform: the model's own ``(data, rng) -> data`` training transform
            (:meth:`~medmat.models.contract.MattingModel.training_transform`), e.g.
            :class:`~medmat.data.user_maps.RandomUserMapd` adding ``data["user_map"]`` for
            dugMatting's training maps (App. B.1). Training only; applied last, after the trimaps,
            so that it labels the augmented alpha and leaves the item's other draws unchanged.
        model_input_size: (h, w) the model's inputs are resampled to in training, with the targets
            kept at ``size`` and ``output_size`` added (:func:`to_model_input`); None = ``size``.
        case_maps: extra (H, W) float maps per case id, added to the case's arrays before the
            augmentations so that they move with the image: a base model's held-out prediction
            (:data:`HELD_OUT_BASE_KEYS`, :mod:`medmat.engine.cross_fit`). Every case needs the same keys.
        copies_per_image: items per case (training only): item ``i`` is case ``i // copies`` with
            the random draws of index ``i``, so that copies differ in augmentation and pseudo mask;
            1 gives the items of earlier runs exactly. The sampler keeps a case's copies in one batch
            (:func:`~medmat.engine.distributed.make_sampler`).
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
        train_trimaps: str = "given",
        noisy_trimaps: bool = False,
        model_transform: Callable | None = None,
        model_input_size: tuple[int, int] | None = None,
        case_maps: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        copies_per_image: int = 1,
    ):
        self.samples = validate_dataset(samples, "training data", require_alpha=True)
        if int(copies_per_image) < 1:
            raise MedmatError(f"copies_per_image must be at least 1, got {copies_per_image}")
        self.copies_per_image = int(copies_per_image) if training else 1
        self.case_maps = _checked_case_maps(self.samples, case_maps)
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
        self.trimap_generator = training_trimaps(train_trimaps, noisy_trimaps) if training else None
        self.model_transform = model_transform if training else None
        self.model_input_size = None if model_input_size is None else tuple(int(v) for v in model_input_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next items use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples) * self.copies_per_image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index // self.copies_per_image]
        data = {key: np.array(value, copy=True) for key, value in sample.to_dict().items()}
        if self.case_maps is not None:
            data.update({key: np.array(value, copy=True) for key, value in self.case_maps[sample.id].items()})
        if not self.with_trimap:
            data.pop("trimap", None)
        if self.training:
            rng = item_seed(self.seed, self.epoch, index)
            if self.augmentations is not None:
                data = self.augmentations(data, rng)
            data["pseudo_mask"] = self.pseudo_mask(data["alpha"], rng, low=self.low, high=self.high)
            if self.trimap_generator is not None:
                data = self.trimap_generator(data, rng)
            if self.model_transform is not None:
                data = self.model_transform(data, rng)
        item = to_batch_item(data, self.size)
        if self.training and self.model_input_size is not None:
            item = to_model_input(item, self.model_input_size)
        return item


def _checked_case_maps(samples: Sequence[Sample], case_maps: Mapping[str, Mapping[str, np.ndarray]] | None) -> dict | None:
    """``case_maps`` checked against the cases: one finite float32 (H, W) map per key of :data:`HELD_OUT_BASE_KEYS`."""
    if case_maps is None:
        return None
    checked = {}
    keys = None
    for sample in samples:
        maps = case_maps.get(sample.id)
        if maps is None:
            raise MedmatError(f"no held-out base prediction for training case {sample.id!r}")
        if keys is None:
            keys = sorted(maps)
        unknown = sorted(set(maps) - set(HELD_OUT_BASE_KEYS))
        if unknown or sorted(maps) != keys:
            raise MedmatError(f"case {sample.id!r} has maps {sorted(maps)}; every case needs the same of {', '.join(HELD_OUT_BASE_KEYS)}")
        checked[sample.id] = {}
        for key, value in maps.items():
            value = np.asarray(value, dtype=np.float32)
            if value.shape != tuple(sample.shape) or not np.isfinite(value).all():
                raise MedmatError(f"case {sample.id!r}: {key} must be a finite {tuple(sample.shape)} map, got shape {value.shape}")
            checked[sample.id][key] = value
    return checked


def to_batch_item(data: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Numpy case arrays (``image`` (C,H,W), ``alpha``/``pseudo_mask``/``user_map``/``trimap``/``trimap_noisy``
    (H,W), ``masks`` (K,H,W), ``probe_map`` (2,H,W)) -> float32 tensors of spatial size ``size`` with the
    contract's channel axes;
    trimaps become levels 0 / 0.5 / 1 (:func:`~medmat.data.trimap.trimap_levels`); padding adds 0 ("unknown" in a user map)."""
    item = {"image": data["image"].astype(np.float32)}
    item["masks"] = data["masks"].astype(np.float32)
    if "probe_map" in data:
        item["probe_map"] = data["probe_map"].astype(np.float32)
    for key in ("alpha", "pseudo_mask", "user_map", *HELD_OUT_BASE_KEYS):
        if key in data:
            item[key] = data[key].astype(np.float32)[None]
    for key in ("trimap", NOISY_TRIMAP_KEY):
        if key in data:
            item[key] = trimap_levels(data[key])[None]
    return {key: torch.from_numpy(np.ascontiguousarray(fit_to_size(value, size))) for key, value in item.items()}


def to_model_input(item: dict[str, torch.Tensor], model_input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A batch item whose model inputs are resampled to ``model_input_size`` (h, w), targets kept.

    LIIF-style training of a resolution-free model: it sees the case at (h, w) and its alpha is
    read, and scored, at the item's own (H, W). ``image`` is resampled as :func:`resize_sample`
    resamples images (area when shrinking), ``pseudo_mask`` as it resamples annotator masks
    (fraction inside >= 0.5, so the posterior net and the mask loss see one consistent mask),
    trimaps and ``user_map`` by the nearest pixel (their levels stay exact), a held-out base
    prediction (:data:`HELD_OUT_BASE_KEYS`) as the image; ``alpha`` and
    ``masks`` are left at (H, W), and ``output_size`` = tensor([H, W]) (int64) is added.
    """
    size = tuple(item["alpha"].shape[-2:])
    resampled = dict(item)
    for key in MODEL_INPUT_KEYS:
        if key not in item:
            continue
        label = key not in ("image", "pseudo_mask", *HELD_OUT_BASE_KEYS)
        value = torch.from_numpy(resize_planes(item[key].numpy(), model_input_size, label=label))
        if key == "image":
            value = value.clamp(0.0, 1.0)
        elif key == "pseudo_mask":
            value = (value >= MASK_LEVEL).to(torch.float32)
        resampled[key] = value.contiguous()
    resampled["output_size"] = torch.tensor(size, dtype=torch.int64)
    return resampled

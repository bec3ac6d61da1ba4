"""Predicting and scoring whole 3-D scans (a NIfTI volume, a DICOM series) lesion by lesion.

The models learnt from crops of ``data.input_size`` (64² or 128²) centred on a lesion; a whole
512² CT slice is outside what they saw. So a volume is predicted per *lesion*: every lesion is a
box of voxels (:class:`Lesion`: slices z0..z1, rows y0..y1, columns x0..x1, half-open), each of its
slices is cropped at the run's training size around the box (tiles, averaged where they overlap,
when the box is larger), predicted with :func:`medmat.engine.inference.predict_as_trained` (the one
:func:`~medmat.engine.inference.predict` path) and pasted back into the box. Outside every box the
alpha and the uncertainty are 0; where boxes overlap the larger value is kept.

Lesions come from ``--roi`` (:func:`lesions_from_rois`): a label volume on the same grid (every 3-D
connected component, ``scipy.ndimage.label``, is one lesion), ``box:z0,z1,y0,y1,x0,x1`` or
``seed:z,y,x`` (a box of the training size centred there over ``roi_slices`` slices). Without
ROIs, :func:`detect_lesions` is a heuristic: it slides the training window over every slice with
a stride of half a window, keeps the windows whose alpha exceeds 0.5 somewhere, and merges
detections that overlap in-plane on the same or adjacent slices into lesions.

Runs record no pixel spacing (the training data carry none: LIDC PNG crops, Brain-growth
pickles), so crops are taken at the volume's native spacing, not resampled.

2.5-D runs (``data.context_slices`` k > 0) see the k slices on each side of a slice as extra
channels (the nearest slice repeated past the volume's ends): :func:`context_indices`.

Every slice's predictions draw their random latents after ``torch.manual_seed(slice_seed(seed,
z))``, so a slice's prediction does not depend on the other slices or lesions predicted with it.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from tqdm import tqdm

from medmat.data.sample import Sample
from medmat.engine.config import input_size, model_input_size, resize_size
from medmat.engine.dataset import fit_to_size, unfit_from_size
from medmat.engine.evaluation import label_masks_from_alpha
from medmat.engine.inference import predict_as_trained
from medmat.engine.seeding import derived_seed
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json
from medmat.io.volumes import Volume, context_indices, read_volume_array, volume_writer
from medmat.metrics import adapted_dice, ged, mse, sad
from medmat.metrics.tables import summarise, write_tables
from medmat.models import MattingModel
from medmat.models.contract import ENTROPY_FILES

#: A window "detects" a lesion when its alpha exceeds this somewhere (the coarse pass).
DETECTION_LEVEL = 0.5
#: Crops predicted together in the coarse pass.
DETECTION_BATCH = 8
#: Ending of the volumes ``medmat predict`` writes.
VOLUME_ENDING = ".nii.gz"
#: The per-lesion scores of :func:`evaluate_volumes`, in table order.
VOLUME_METRICS = ("SAD", "MSE", "GED", "Dice")


@dataclass
class Lesion:
    """One region of interest: ``box`` = (z0, z1, y0, y1, x0, x1) voxel indices, half-open."""

    id: int
    source: str
    box: tuple[int, int, int, int, int, int]
    stats: dict = field(default_factory=dict)

    @property
    def slices(self) -> range:
        return range(self.box[0], self.box[1])


# --------------------------------------------------------------------------------------------
# What a run was trained on
# --------------------------------------------------------------------------------------------


def context_slices(config: dict) -> int:
    """``data.context_slices`` k of a run (0 for 2-D runs and runs older than the key)."""
    return int(config["data"].get("context_slices", 0) or 0)


def training_window(config: dict) -> tuple[int, int]:
    """(h, w) of the crops the run trained on: ``data.input_size``, else ``data.resize``.

    Raises:
        MedmatError: a run that records neither (it trained on its dataset's own sizes).
    """
    size = input_size(config) or resize_size(config)
    if size is None:
        raise MedmatError(
            "the run records no training size (data.input_size or data.resize), so medmat does not know "
            "the crop to predict a volume with"
        )
    return size


def check_image_channels(model: MattingModel, channels: int, context: int, where) -> None:
    """Raise unless ``model.spec.in_channels`` equals ``channels``, the channels of the images it is
    fed (a 2.5-D run's grey images: 1 + 2 ``context``)."""
    expected = model.spec.in_channels
    if channels != expected:
        raise MedmatError(
            f"the model takes {expected}-channel images but the images have {channels} channels "
            f"(data.context_slices={context}: 1 + 2k channels for grey); set model.in_channels={channels} "
            "or change data.context_slices", where,
        )


def slice_seed(seed: int, z: int) -> int:
    """The torch seed of slice ``z``'s predictions (see the module docstring)."""
    return derived_seed(seed, z)


# --------------------------------------------------------------------------------------------
# Regions of interest
# --------------------------------------------------------------------------------------------


def _axis_window(start: int, stop: int, size: int, length: int) -> tuple[int, int]:
    """[start, stop) grown, centred, to at least ``size`` voxels and kept inside [0, length)."""
    extent = stop - start
    if extent >= size or length <= size:
        return (start, stop) if length > size else (0, length)
    begin = min(max(start - (size - extent) // 2, 0), length - size)
    return begin, begin + size


def window_box(box: Sequence[int], crop: tuple[int, int], shape: tuple[int, int, int]) -> tuple[int, ...]:
    """``box`` with its rows and columns grown to the crop size (centred, inside the volume)."""
    z0, z1, y0, y1, x0, x1 = box
    return (z0, z1, *_axis_window(y0, y1, crop[0], shape[1]), *_axis_window(x0, x1, crop[1], shape[2]))


def _integers(text: str, count: int, what: str, where) -> list[int]:
    parts = text.split(",")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise MedmatError(f"{what} needs {count} whole numbers separated by commas, got {text!r}", where)
    return values


def _check_inside(box: Sequence[int], shape: tuple[int, int, int], what: str, where) -> None:
    for axis, (low, high, length) in enumerate(zip(box[0::2], box[1::2], shape)):
        name = "zyx"[axis]
        if high <= low:
            raise MedmatError(f"ROI {what} is empty along {name} ({low} to {high})", where)
        if low < 0 or high > length:
            raise MedmatError(
                f"ROI {what} lies outside the volume: {name} {low}..{high} but the volume has "
                f"{shape[0]} x {shape[1]} x {shape[2]} (z, y, x) voxels", where,
            )


def lesions_from_rois(
    rois: Sequence[str], volume: Volume, crop: tuple[int, int], roi_slices: int = 1
) -> list[Lesion]:
    """Lesions of ``--roi`` values: ``box:z0,z1,y0,y1,x0,x1``, ``seed:z,y,x`` or a label volume path.

    Args:
        rois: the values, each giving one lesion (a box, a seed) or one per connected component
            (a label volume: non-zero voxels are lesion).
        volume: the scan, for its shape and grid.
        crop: (h, w) the run's training size.
        roi_slices: slices a seed's box spans, centred on the seed's slice (clipped to the volume).

    Raises:
        MedmatError: a malformed value, a box or seed outside the volume, an empty box, a label
            volume that is unreadable, holds no lesion or is not on the volume's grid.
    """
    lesions: list[Lesion] = []
    for roi in rois:
        kind, _, rest = roi.partition(":")
        if kind == "box" and rest:
            box = tuple(_integers(rest, 6, "box", volume.path))
            _check_inside(box, volume.shape, roi, volume.path)
            found = [(roi, box)]
        elif kind == "seed" and rest:
            z, y, x = _integers(rest, 3, "seed", volume.path)
            _check_inside((z, z + 1, y, y + 1, x, x + 1), volume.shape, roi, volume.path)
            first = min(max(z - roi_slices // 2, 0), max(volume.shape[0] - roi_slices, 0))
            box = window_box((first, min(first + roi_slices, volume.shape[0]), y, y + 1, x, x + 1), crop, volume.shape)
            found = [(roi, box)]
        else:
            found = label_boxes(roi, volume, crop)
        lesions += [Lesion(len(lesions) + i + 1, source, tuple(int(v) for v in box)) for i, (source, box) in enumerate(found)]
    return lesions


def label_boxes(path: str, volume: Volume, crop: tuple[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(source, box) of every 3-D connected lesion of a label volume on ``volume``'s grid.

    Each box spans its component's slices, and its rows and columns are the component's grown to
    the crop size (:func:`window_box`).
    """
    if not os.path.exists(path):
        raise MedmatError("ROI is not box:z0,z1,y0,y1,x0,x1, seed:z,y,x or an existing label volume", path)
    labels, grid = read_volume_array(path)
    if labels.shape != volume.shape:
        raise MedmatError(
            f"label volume of {labels.shape} (z, y, x) voxels is not on the volume's grid {volume.shape}", path
        )
    if not np.allclose(grid.affine, volume.affine, atol=1e-3):
        raise MedmatError("label volume's affine differs from the volume's: not on the same grid", path)
    if not np.all(np.isfinite(labels)):
        raise MedmatError("label volume contains NaN or infinite values", path)
    components, count = ndimage.label(labels != 0, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        raise MedmatError("empty ROI: the label volume holds no lesion (every voxel is 0)", path)
    boxes = []
    for number, found in enumerate(ndimage.find_objects(components), start=1):
        box = (found[0].start, found[0].stop, found[1].start, found[1].stop, found[2].start, found[2].stop)
        boxes.append((f"{os.path.basename(path)} component {number}", window_box(box, crop, volume.shape)))
    return boxes


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def _tile_starts(start: int, stop: int, size: int, length: int) -> list[int]:
    """Starts of ``size``-long tiles covering [start, stop) inside [0, length): one centred tile
    when the range fits, else tiles overlapping by half a tile."""
    if length <= size:
        return [0]
    extent = stop - start
    if extent <= size:
        return [_axis_window(start, stop, size, length)[0]]
    count = math.ceil((extent - size) / max(size // 2, 1)) + 1
    return [start + round(i * (extent - size) / (count - 1)) for i in range(count)]


class _SliceCache:
    """The [0, 1] slices of a volume that the current slice's context needs, read once each."""

    def __init__(self, volume: Volume, intensity: tuple[float, float] | None, context: int):
        self.volume, self.intensity, self.context = volume, intensity, context
        self.slices: dict[int, np.ndarray] = {}

    def stack(self, z: int) -> np.ndarray:
        """float32 (1 + 2k, Y, X): slice z with its context, the slice itself in the middle."""
        indices = context_indices(z, self.context, self.volume.shape[0])
        for old in [i for i in self.slices if i < indices[0]]:
            del self.slices[old]  # slices are visited in order: what lies behind is done
        for index in indices:
            if index not in self.slices:
                self.slices[index] = self.volume.unit_slice(index, self.intensity)
        return np.stack([self.slices[index] for index in indices])


def _predict_crops(model, crops: np.ndarray, num_samples: int, small, flip: bool | str = False) -> dict[str, np.ndarray]:
    """:func:`predict_as_trained` of a batch (B, C, h, w) of crops (``flip``: the test-time views, ``eval.flip``)."""
    return predict_as_trained(model, crops, num_samples, None, small, flip)


def output_maps(model: MattingModel) -> dict[str, str]:
    """The maps a volume prediction writes, by output name -> file stem: "alpha", and the entropy
    maps (in bits) among the model's :attr:`~medmat.models.contract.ModelSpec.map_outputs`."""
    maps = {"alpha": "alpha"}
    maps.update({key: stem for key, stem in ENTROPY_FILES.items() if key in model.spec.map_outputs})
    return maps


def _check_model(model: MattingModel, config: dict, where) -> tuple[int, tuple[int, int], tuple | None]:
    if "trimap" in model.spec.requires:
        raise MedmatError(
            f"model {config['model']['name']!r} needs a trimap for every image; volumes are predicted "
            "from the image alone", where,
        )
    context = context_slices(config)
    check_image_channels(model, 1 + 2 * context, context, where)
    return context, training_window(config), model_input_size(config)


def detect_lesions(
    model: MattingModel,
    config: dict,
    volume: Volume,
    intensity: tuple[float, float] | None = None,
    num_samples: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> list[Lesion]:
    """The coarse pass (a heuristic): lesions where the run's window, slid over every slice with a
    stride of half a window, predicts alpha > 0.5.

    Every detection is the box of its window's pixels above 0.5; detections that overlap (or touch)
    in-plane on the same or adjacent slices are one lesion, whose box spans their slices and their
    union grown to the crop size. Returns the lesions in order of their first slice.
    """
    context, crop, small = _check_model(model, config, volume.path)
    slices, rows, columns = volume.shape
    h, w = min(crop[0], rows), min(crop[1], columns)
    tiles = [(y, x) for y in _sweep(rows, h) for x in _sweep(columns, w)]
    cache = _SliceCache(volume, intensity, context)
    detections: list[tuple[int, int, int, int, int]] = []  # z, y0, y1, x0, x1
    for z in tqdm(range(slices), desc="detect", unit="slice", disable=not progress):
        stack = cache.stack(z)
        torch.manual_seed(slice_seed(seed, z))
        for first in range(0, len(tiles), DETECTION_BATCH):
            chunk = tiles[first : first + DETECTION_BATCH]
            crops = np.stack([stack[:, y : y + h, x : x + w] for y, x in chunk])
            alphas = _predict_crops(model, crops, num_samples, small)["alpha"]
            for (y, x), alpha in zip(chunk, alphas):
                core = alpha > DETECTION_LEVEL
                if core.any():
                    ys, xs = np.flatnonzero(core.any(axis=1)), np.flatnonzero(core.any(axis=0))
                    detections.append((z, y + ys[0], y + ys[-1] + 1, x + xs[0], x + xs[-1] + 1))
    return [Lesion(i + 1, "detected (coarse pass)", box) for i, box in enumerate(_merge(detections, crop, volume.shape))]


def _sweep(length: int, size: int) -> list[int]:
    """Window starts with a stride of half a window, the last one flush with the end."""
    starts = list(range(0, length - size + 1, max(size // 2, 1)))
    return starts if starts[-1] == length - size else starts + [length - size]


def _merge(detections: list[tuple[int, ...]], crop, shape) -> list[tuple[int, ...]]:
    """Union of detections that overlap in-plane on the same or adjacent slices -> lesion boxes."""
    parent = list(range(len(detections)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_slice: dict[int, list[int]] = {}
    for i, (z, *_rest) in enumerate(detections):
        by_slice.setdefault(z, []).append(i)
    for i, (z, y0, y1, x0, x1) in enumerate(detections):
        for j in by_slice.get(z, []) + by_slice.get(z - 1, []):
            _, v0, v1, u0, u1 = detections[j]
            if j != i and y0 <= v1 and v0 <= y1 and x0 <= u1 and u0 <= x1:
                parent[root(i)] = root(j)
    groups: dict[int, list[tuple[int, ...]]] = {}
    for i, detection in enumerate(detections):
        groups.setdefault(root(i), []).append(detection)
    boxes = []
    for members in groups.values():
        zs, y0s, y1s, x0s, x1s = zip(*members)
        box = (min(zs), max(zs) + 1, min(y0s), max(y1s), min(x0s), max(x1s))
        boxes.append(window_box(box, crop, shape))
    return sorted(boxes)


def predict_volume(
    model: MattingModel,
    config: dict,
    volume: Volume,
    output_base: str | os.PathLike,
    lesions: Sequence[Lesion],
    intensity: tuple[float, float] | None = None,
    num_samples: int = 8,
    seed: int = 0,
    progress: bool = True,
    extra: dict | None = None,
) -> dict:
    """Predict every lesion of a volume and write the volumes and ``lesions.json``, streaming.

    Args:
        model: a trained model (no trimap needed); ``model.spec.in_channels`` must be 1 + 2k for
            the run's ``data.context_slices`` k.
        config: the run's config (training size, context slices, ``data.model_input_size``, the
            test-time views of ``eval.flip``).
        volume: the scan (:func:`medmat.io.volumes.read_volume`).
        output_base: path prefix; writes ``<base>_alpha.nii.gz`` (alpha in [0, 1]),
            ``<base>_uncertainty.nii.gz`` / ``<base>_lesion_uncertainty.nii.gz`` (entropies in bits,
            [0, 1], when the model gives them) and ``<base>_lesions.json``; float32 volumes on the
            input's grid (its affine, and its header for a NIfTI input).
        lesions: the regions to predict (:func:`lesions_from_rois`, :func:`detect_lesions`).
        intensity: (level, width) window, or None for min-max per slice.
        num_samples: masks drawn by sampling models (their uncertainty map needs them).
        seed: see :func:`slice_seed`.
        progress: a tqdm bar over the slices.
        extra: more entries for ``lesions.json``.

    Returns:
        The ``lesions.json`` record: per lesion its box, slice range, soft volume Σα · voxel
        volume (mm³) and mean uncertainty (bits) over its box.

    Memory: the slices in the current slice's context, one slice per output, the lesions' crops.
    """
    context, crop, small = _check_model(model, config, volume.path)
    if not lesions:
        raise MedmatError("no lesion to predict (the ROIs are empty and the coarse pass found none)", volume.path)
    slices, rows, columns = volume.shape
    maps = output_maps(model)
    active: dict[int, list[Lesion]] = {}
    for lesion in lesions:
        lesion.stats = {"alpha_sum": 0.0, "voxels": 0, **{f"{key}_sum": 0.0 for key in maps if key != "alpha"}}
        for z in lesion.slices:
            active.setdefault(z, []).append(lesion)
    cache = _SliceCache(volume, intensity, context)
    base = os.fspath(output_base)
    paths = {key: f"{base}_{stem}{VOLUME_ENDING}" for key, stem in maps.items()}
    with contextlib.ExitStack() as stack:
        writers = {key: stack.enter_context(volume_writer(path, volume)) for key, path in paths.items()}
        for z in tqdm(range(slices), desc="predict volume", unit="slice", disable=not progress):
            planes = {key: np.zeros((rows, columns), dtype=np.float32) for key in maps}
            for lesion in active.get(z, []):
                predicted = _predict_lesion_slice(model, cache.stack(z), lesion, crop, num_samples, small, seed, z, maps,
                                                  config["eval"]["flip"])
                _, _, y0, y1, x0, x1 = lesion.box
                lesion.stats["voxels"] += predicted["alpha"].size
                for key, values in predicted.items():
                    lesion.stats[f"{key}_sum"] += float(values.sum(dtype=np.float64))
                    np.maximum(planes[key][y0:y1, x0:x1], values, out=planes[key][y0:y1, x0:x1])
            for key, write in writers.items():
                write(planes[key])
    record = _lesions_record(volume, lesions, maps, paths, crop, context, intensity, num_samples, seed)
    record["flip"] = config["eval"]["flip"]
    record.update(extra or {})
    atomic_write_json(f"{base}_lesions.json", record)
    return record


def _predict_lesion_slice(model, stack, lesion, crop, num_samples, small, seed, z, maps, flip=False) -> dict[str, np.ndarray]:
    """One lesion's maps on slice z over its box: tiles of the crop size, averaged where they overlap.
    Entropies are converted to bits (nats / ln 2, clipped to [0, 1]) as ``medmat predict`` writes them."""
    _, _, y0, y1, x0, x1 = lesion.box
    rows, columns = stack.shape[-2:]
    h, w = min(crop[0], rows), min(crop[1], columns)
    sums = {key: np.zeros((y1 - y0, x1 - x0), dtype=np.float64) for key in maps}
    counts = np.zeros((y1 - y0, x1 - x0), dtype=np.float64)
    for ty in _tile_starts(y0, y1, h, rows):
        for tx in _tile_starts(x0, x1, w, columns):
            torch.manual_seed(slice_seed(seed, z))
            prediction = _predict_crops(model, stack[None, :, ty : ty + h, tx : tx + w], num_samples, small, flip)
            # The part of the tile inside the box, in box and in tile coordinates.
            top, bottom, left, right = max(ty, y0), min(ty + h, y1), max(tx, x0), min(tx + w, x1)
            inside_box = (slice(top - y0, bottom - y0), slice(left - x0, right - x0))
            inside_tile = (slice(top - ty, bottom - ty), slice(left - tx, right - tx))
            for key in maps:
                sums[key][inside_box] += prediction[key][0][inside_tile]
            counts[inside_box] += 1
    maps_out = {}
    for key, total in sums.items():
        values = total / counts
        values = values if key == "alpha" else values / math.log(2)
        maps_out[key] = np.clip(values, 0.0, 1.0).astype(np.float32)
    return maps_out


def _lesions_record(volume, lesions, maps, paths, crop, context, intensity, num_samples, seed) -> dict:
    voxel = volume.voxel_volume
    entries = []
    for lesion in lesions:
        z0, z1, y0, y1, x0, x1 = lesion.box
        stats = lesion.stats
        centre = volume.affine @ np.array([(y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, (z0 + z1 - 1) / 2, 1.0])
        entries.append({
            "id": lesion.id,
            "source": lesion.source,
            "first_slice": z0,
            "last_slice": z1 - 1,
            "bounding_box": {"z": [z0, z1], "y": [y0, y1], "x": [x0, x1]},
            "centre_ras_mm": [round(float(v), 3) for v in centre[:3]],
            "soft_volume_mm3": stats["alpha_sum"] * voxel,
            "mean_uncertainty_bits": {
                maps[key]: stats[f"{key}_sum"] / max(stats["voxels"], 1) for key in maps if key != "alpha"
            },
        })
    return {
        "input": volume.path,
        "format": volume.format,
        "shape_zyx": list(volume.shape),
        "axes": "z = slice (NIfTI voxel axis k), y = row (i), x = column (j); boxes are half-open [start, stop)",
        "spacing_mm": {"row": volume.spacing[0], "column": volume.spacing[1], "slice": volume.spacing[2]},
        "voxel_volume_mm3": voxel,
        "affine_ras": volume.affine.round(6).tolist(),
        "crop_size": list(crop),
        "context_slices": context,
        "window": None if intensity is None else {"level": intensity[0], "width": intensity[1]},
        "num_samples": num_samples,
        "seed": seed,
        "outputs": {maps[key]: os.path.basename(path) for key, path in paths.items()},
        "lesions": entries,
    }


# --------------------------------------------------------------------------------------------
# Evaluation of volumes
# --------------------------------------------------------------------------------------------


def volume_cases(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    """The slices of every volume case (``meta["volume"]``), in slice order; 2-D cases are left out."""
    cases: dict[str, list[Sample]] = {}
    for sample in samples:
        if "volume" in sample.meta:
            cases.setdefault(sample.meta["volume"], []).append(sample)
    return {name: sorted(members, key=lambda s: s.meta["slice"]) for name, members in cases.items()}


def evaluate_volumes(
    model: MattingModel,
    samples: Sequence[Sample],
    num_samples: int = 8,
    size: tuple[int, int] | None = None,
    small: tuple[int, int] | None = None,
    flip: bool | str = False,
) -> list[dict]:
    """Per-lesion 3-D scores of the volume cases among ``samples`` (slices with an alpha).

    Every slice is predicted as :func:`medmat.engine.evaluation.evaluate_samples` predicts it (fitted
    to ``size``, at ``small`` for LIIF-style runs, averaged over the ``flip`` views of ``eval.flip``,
    put back at its own size); the slices of a volume
    are stacked. Its lesions are the 3-D connected components of ground-truth alpha > 0, and every
    voxel belongs to the nearest lesion, so a lesion's scores count the false positives around it.
    Per lesion: SAD (/1000) and MSE of the alpha over its voxels, and GED and Dice between the 8
    thresholded mattes (:func:`~medmat.engine.evaluation.label_masks_from_alpha`) of the prediction
    and of the ground truth — thresholds of the 3-D matte, since sampled masks are drawn slice by
    slice and do not form 3-D samples.

    Returns:
        One dict per lesion: ``{"volume", "lesion", "slices", "voxels", "SAD", "MSE", "GED", "Dice"}``.
    """
    records = []
    for name, members in volume_cases(samples).items():
        if any(sample.alpha is None for sample in members):
            raise MedmatError("cannot evaluate a volume without an alpha matte on every slice", members[0].source)
        predicted = np.stack([_evaluation_alpha(model, sample, num_samples, size, small, flip) for sample in members])
        truth = np.stack([sample.alpha for sample in members])
        components, count = ndimage.label(truth > 0, structure=np.ones((3, 3, 3), dtype=bool))
        if count == 0:
            continue
        nearest = ndimage.distance_transform_edt(components == 0, return_distances=False, return_indices=True)
        owner = components[tuple(nearest)]
        for lesion in range(1, count + 1):
            region = owner == lesion
            pred, gt = predicted[region][None], truth[region][None]  # (1, n): the metrics take 2-D mattes
            everything = np.ones(gt.shape, dtype=bool)
            pred_masks, gt_masks = label_masks_from_alpha(pred), label_masks_from_alpha(gt)
            zs = np.flatnonzero(region.any(axis=(1, 2)))
            records.append({
                "volume": name, "lesion": lesion, "slices": [int(zs[0]), int(zs[-1]) + 1], "voxels": int(region.sum()),
                "SAD": sad(pred, gt, everything), "MSE": mse(pred, gt, everything),
                "GED": ged(pred_masks, gt_masks), "Dice": adapted_dice(pred_masks, gt_masks),
            })
    return records


def _evaluation_alpha(model, sample: Sample, num_samples: int, size, small, flip: bool | str = False) -> np.ndarray:
    size = size or sample.shape
    trimap = None if sample.trimap is None else fit_to_size(sample.trimap, size)
    prediction = predict_as_trained(model, fit_to_size(sample.image, size), num_samples, trimap, small, flip)
    return np.clip(unfit_from_size(prediction["alpha"], sample.shape), 0.0, 1.0)


def write_volume_tables(records: Sequence[dict], output: str | os.PathLike, extra: dict | None = None) -> list[str]:
    """``volumes.md`` / ``.csv`` / ``.json`` in ``output``: the mean per lesion of
    :func:`evaluate_volumes` records (each with its ``fold``), and the fold mean ± std."""
    per_lesion = {f"{r['volume']}#{r['lesion']}": r for r in records}
    folds = sorted({r["fold"] for r in records})
    fold_ids = [[key for key, r in per_lesion.items() if r["fold"] == fold] for fold in folds]
    rows = {"per lesion, 3-D": summarise(per_lesion, VOLUME_METRICS, fold_ids if len(folds) > 1 else None)}
    title = "Volumes: per-lesion 3-D SAD (/1000), MSE, and GED / Dice of the 8 thresholded mattes"
    written = write_tables(Path(output) / "volumes", rows, VOLUME_METRICS, title, extra)
    atomic_write_json(Path(output) / "volume_lesions.json", {"lesions": list(records), **(extra or {})})
    return written + [str(Path(output) / "volume_lesions.json")]

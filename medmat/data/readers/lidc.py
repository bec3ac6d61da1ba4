"""LIDC-IDRI lung-nodule slices with four radiologists' masks (the Kaggle "LIDC-IDRI slices").

Layout::

    root/LIDC-IDRI-0001/nodule-0/images/slice-0.png     uint8 grey 128x128 CT crop
    root/LIDC-IDRI-0001/nodule-0/mask-0/slice-0.png     uint8 {0, 255}, radiologist 0
    ...                                   mask-3/...     radiologist 3

A radiologist who did not mark the nodule on a slice has an all-zero mask there. No alpha
mattes are shipped: :mod:`medmat.labels` builds them from the masks.
"""

from __future__ import annotations

import os

import numpy as np

from medmat.data.readers import natural_key
from medmat.data.sample import Sample
from medmat.data.validate import validate_dataset
from medmat.errors import MedmatError
from medmat.io.checks import binary_masks_from_array
from medmat.io.images import channels_first, read_png_array, scale_to_unit
from medmat.io.volumes import context_indices

PATIENT_PREFIX = "LIDC-IDRI-"


def is_lidc_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` is a folder holding at least one ``LIDC-IDRI-*`` patient folder."""
    return os.path.isdir(root) and any(name.startswith(PATIENT_PREFIX) for name in os.listdir(root))


def read_lidc(
    root: str | os.PathLike,
    min_annotators: int = 4,
    patients: str | list[str] | None = None,
    limit: int | None = None,
    context_slices: int = 0,
) -> list[Sample]:
    """Read LIDC-IDRI slices, keeping those that enough radiologists marked.

    Args:
        root: the folder holding ``LIDC-IDRI-XXXX`` patient folders.
        min_annotators: keep a slice when at least this many masks are non-empty. The default
            4 keeps the slices all four radiologists marked, as the Medical Matting paper did;
            0 keeps every slice.
        patients: patient folder names (``"LIDC-IDRI-0001"``, or a list of them) to read; None
            reads all.
        limit: stop after this many kept slices (for quick runs); None reads all.
        context_slices: k > 0 makes 2.5-D stacks: the image holds slices K - k .. K + k of the
            nodule folder's consecutive ``slice-K.png`` (every slice of the folder, marked or not),
            slice K in the middle channel, the nearest slice repeated past the folder's first and
            last; 0 reads the slice alone.

    Returns:
        Validated samples in natural order of patient, nodule and slice: id
        ``LIDC-IDRI-0001/nodule-0/slice-3``, group the patient (so that splits keep a patient's
        slices together), image float32 (1 + 2k, 128, 128) = uint8 / 255, masks bool (4, 128, 128)
        of slice K, no alpha; ``meta`` has patient, nodule, slice and ``annotators_marked`` (and
        ``context_slices`` when k > 0).
    """
    root = os.fspath(root)
    if min_annotators < 0:
        raise MedmatError(f"min_annotators must be >= 0, got {min_annotators}", root)
    if limit is not None and limit < 1:
        raise MedmatError(f"limit must be >= 1, got {limit}", root)
    if context_slices < 0:
        raise MedmatError(f"context_slices must be >= 0, got {context_slices}", root)
    patient_names = _patient_names(root, [patients] if isinstance(patients, str) else patients)
    samples = []
    for patient in patient_names:
        for nodule in _sorted_subfolders(os.path.join(root, patient), "nodule-"):
            for sample in _nodule_samples(root, patient, nodule, min_annotators, context_slices):
                samples.append(sample)
                if limit is not None and len(samples) >= limit:
                    return validate_dataset(samples, root)
    if not samples:
        raise MedmatError(f"no slice has at least {min_annotators} radiologists' masks", root)
    return validate_dataset(samples, root)


def _patient_names(root: str, patients: list[str] | None) -> list[str]:
    if not os.path.isdir(root):
        raise MedmatError("LIDC folder not found", root)
    available = _sorted_subfolders(root, PATIENT_PREFIX)
    if not available:
        raise MedmatError(f"no {PATIENT_PREFIX}XXXX patient folders", root)
    if patients is None:
        return available
    unknown = sorted(set(patients) - set(available))
    if unknown:
        raise MedmatError(f"patient(s) not found: {', '.join(unknown[:5])}", root)
    return sorted(set(patients), key=natural_key)


def _sorted_subfolders(folder: str, prefix: str) -> list[str]:
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries if entry.is_dir() and entry.name.startswith(prefix)]
    return sorted(names, key=natural_key)


def _nodule_samples(root: str, patient: str, nodule: str, min_annotators: int, context_slices: int = 0):
    """Yield the samples of one nodule folder whose slices enough radiologists marked."""
    folder = os.path.join(root, patient, nodule)
    annotator_folders = _sorted_subfolders(folder, "mask-")
    if min_annotators > len(annotator_folders):
        raise MedmatError(f"min_annotators={min_annotators} but only {len(annotator_folders)} mask folders", folder)
    images = os.path.join(folder, "images")
    if not os.path.isdir(images):
        raise MedmatError("nodule folder has no images/ folder", folder)
    names = sorted((n for n in os.listdir(images) if n.endswith(".png")), key=natural_key)
    for position, name in enumerate(names):
        # Masks first: most slices are dropped by min_annotators, and their images need no reading.
        masks = _slice_masks(folder, annotator_folders, name)
        marked = int(masks.any(axis=(1, 2)).sum())
        if marked < min_annotators:
            continue
        image_path = os.path.join(images, name)
        slice_name = name[: -len(".png")]
        meta = {"patient": patient, "nodule": nodule, "slice": slice_name, "annotators_marked": marked}
        if context_slices:
            image = _context_stack(images, names, position, context_slices)
            meta["context_slices"] = context_slices
        else:
            image = _unit_image(os.path.join(images, name))
        yield Sample(
            id=f"{patient}/{nodule}/{slice_name}",
            image=image,
            masks=masks,
            group=patient,
            source=image_path,
            meta=meta,
        )


def _unit_image(path: str) -> np.ndarray:
    """A slice PNG as float32 (C, H, W) = uint8 / 255."""
    return scale_to_unit(channels_first(read_png_array(path), path), "image", path)


def _context_stack(images: str, names: list[str], position: int, k: int) -> np.ndarray:
    """float32 (1 + 2k, H, W): the grey slices position - k .. position + k of the folder's
    ``slice-K.png`` (in natural order, which must run 0, 1, 2, ... without a gap), the nearest
    one repeated past the ends."""
    _check_consecutive(images, names)
    planes = []
    for index in context_indices(position, k, len(names)):
        path = os.path.join(images, names[index])
        plane = _unit_image(path)
        if plane.shape[0] != 1:
            raise MedmatError(f"2.5-D stacks need grey slices; this one has {plane.shape[0]} channels", path)
        planes.append(plane)
    shapes = {plane.shape for plane in planes}
    if len(shapes) != 1:
        raise MedmatError(f"the slices of a 2.5-D stack differ in shape: {sorted(shapes)}", images)
    return np.concatenate(planes)


def _slice_masks(folder: str, annotator_folders: list[str], name: str) -> np.ndarray:
    paths = [os.path.join(folder, annotator, name) for annotator in annotator_folders]
    for path in paths:
        if not os.path.isfile(path):
            raise MedmatError("radiologist mask missing for this slice", path)
    stored = [read_png_array(path) for path in paths]
    shapes = {mask.shape for mask in stored}
    if len(shapes) != 1:
        raise MedmatError(f"the radiologists' masks of {name} differ in shape: {sorted(shapes)}", folder)
    return binary_masks_from_array(np.stack(stored), os.path.join(folder, "mask-*", name))


def _check_consecutive(images: str, names: list[str]) -> None:
    """Stacks need the slices slice-0.png, slice-1.png, ... of a folder without a gap."""
    expected = [f"slice-{index}.png" for index in range(len(names))]
    if names != expected:
        missing = sorted(set(expected) - set(names), key=natural_key)
        raise MedmatError(
            f"a stack needs consecutive slice-0.png .. slice-{len(names) - 1}.png; "
            f"{', '.join(missing[:3]) or 'other names'} missing", images,
        )


def read_lidc_nodule(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Every slice of one nodule folder as a stack: its CT crops and its radiologists' masks.

    Args:
        folder: ``root/LIDC-IDRI-XXXX/nodule-N`` with ``images/`` and ``mask-*/``.

    Returns:
        ``(images, masks)``: uint8 (Z, H, W) as stored (slice-0.png first), bool (K, Z, H, W).

    Raises:
        MedmatError: a missing folder, a gap in slice-K.png, a missing mask, slices of different
            sizes, colour slices.
    """
    folder = os.fspath(folder)
    images = os.path.join(folder, "images")
    if not os.path.isdir(images):
        raise MedmatError("nodule folder has no images/ folder", folder)
    names = sorted((n for n in os.listdir(images) if n.endswith(".png")), key=natural_key)
    _check_consecutive(images, names)
    annotator_folders = _sorted_subfolders(folder, "mask-")
    planes, masks = [], []
    for name in names:
        path = os.path.join(images, name)
        plane = read_png_array(path)
        if plane.ndim != 2 or plane.dtype != np.uint8:
            raise MedmatError(f"LIDC slices are 8-bit grey; this one is {plane.dtype} of shape {plane.shape}", path)
        if planes and plane.shape != planes[0].shape:
            raise MedmatError(f"slice of shape {plane.shape} in a nodule of {planes[0].shape}", path)
        planes.append(plane)
        masks.append(_slice_masks(folder, annotator_folders, name))
    return np.stack(planes), np.stack(masks, axis=1)


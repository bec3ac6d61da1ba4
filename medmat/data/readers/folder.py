"""medmat's folder layout for users' own data, modelled on nnU-Net's (see docs/data-format.md)::

    root/dataset.json                  {"name", "modality", "file_ending", "image_ending"?, "annotators", "groups"?}
    root/imagesTr/<case>_0000<ext>     channel 0 (one file per channel; an RGB picture is one file)
    root/labelsTr/<case>_r<k><ext>     annotator k's binary mask, k = 0 .. annotators - 1
    root/alphasTr/<case><ext>          optional alpha matte
    root/trimapsTr/<case><ext>         optional trimap (0 / 128 / 255)
    root/imagesTs/<case>_0000<ext>     optional images without labels, to predict

A case name may contain ``/``: the case then lives in subfolders of every folder above, which is
how LIDC ids (``LIDC-IDRI-0001/nodule-0/slice-3``) are written.

A case may be a *volume*: a 3-D NIfTI image (one channel) with 3-D masks, alpha and trimap on the
same grid. Its slices become samples ``<case>/slice-<z>`` (group: the case's, so a split keeps a
volume together), each read as :class:`medmat.io.volumes.Volume` reads a slice; with
``context_slices`` k > 0 a slice's image holds slices z - k .. z + k (2.5-D), the nearest slice
repeated past the volume's ends. :func:`write_volume_folder` writes such a dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medmat.data.readers import natural_key
from medmat.data.sample import Sample
from medmat.data.validate import validate_dataset
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json
from medmat.io.checks import binary_masks_from_array
from medmat.io.images import (
    geometry_affine,
    read_alpha,
    read_image,
    read_mask,
    read_trimap,
    sample_geometry,
    scale_to_unit,
    trimap_from_array,
    write_nifti,
    write_png,
)
from medmat.io.volumes import context_indices, read_volume, read_volume_array, write_nifti_volume

#: File endings a folder dataset may use (one per dataset). DICOM, TIFF and BMP are read but not written.
FILE_ENDINGS = (".png", ".nii.gz", ".nii", ".dcm", ".tif", ".tiff", ".bmp")
#: Endings its images may use when they differ from the masks' (``image_ending``): JPEG too, whose
#: loss is harmless in an image and would break a binary mask.
IMAGE_FILE_ENDINGS = FILE_ENDINGS + (".jpg", ".jpeg")
WRITABLE_ENDINGS = (".png", ".nii.gz", ".nii")
#: What :func:`write_folder` can write, each into its own sub-folder.
FIELDS = ("image", "masks", "alpha", "trimap")
_FIELD_FOLDERS = {"image": "imagesTr", "masks": "labelsTr", "alpha": "alphasTr", "trimap": "trimapsTr"}
_SUBSET_FOLDERS = {"train": "imagesTr", "test": "imagesTs"}


# --------------------------------------------------------------------------------------------
# dataset.json
# --------------------------------------------------------------------------------------------


def read_dataset_json(root: str | os.PathLike) -> dict:
    """Read and check ``root/dataset.json``.

    Returns a dict with ``name`` (str, default the folder name), ``modality`` (str, default
    ``"unknown"``), ``file_ending`` (one of :data:`FILE_ENDINGS`), ``image_ending`` (one of
    :data:`IMAGE_FILE_ENDINGS`, default ``file_ending``: the images' own ending, e.g. JPEG
    dermoscopy with PNG masks), ``annotators`` (int >= 0) and ``groups`` ({case: group},
    default empty).
    """
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise MedmatError("no dataset.json: not a medmat folder dataset (see docs/data-format.md)", path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MedmatError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedmatError(f"cannot read dataset.json ({exc})", path) from None
    if not isinstance(config, dict):
        raise MedmatError("dataset.json must hold a JSON object", path)
    return _checked_config(config, Path(root), path)


def _checked_config(config: dict, root: Path, path: Path) -> dict:
    ending = config.get("file_ending")
    if ending not in FILE_ENDINGS:
        raise MedmatError(f"'file_ending' must be one of {', '.join(FILE_ENDINGS)}, got {ending!r}", path)
    image_ending = config.get("image_ending", ending)
    if image_ending not in IMAGE_FILE_ENDINGS:
        raise MedmatError(f"'image_ending' must be one of {', '.join(IMAGE_FILE_ENDINGS)}, got {image_ending!r}", path)
    annotators = config.get("annotators")
    if not isinstance(annotators, int) or isinstance(annotators, bool) or annotators < 0:
        raise MedmatError(f"'annotators' must be a whole number >= 0, got {annotators!r}", path)
    groups = config.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
        raise MedmatError("'groups' must map case names to group names", path)
    return {
        "name": str(config.get("name", root.name)),
        "modality": str(config.get("modality", "unknown")),
        "file_ending": ending,
        "image_ending": image_ending,
        "annotators": annotators,
        "groups": groups,
    }


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_folder(root: str | os.PathLike, subset: str = "train", context_slices: int = 0) -> list[Sample]:
    """Read a medmat folder dataset.

    Args:
        root: the folder holding ``dataset.json``.
        subset: ``"train"`` reads ``imagesTr`` with its masks, alphas and trimaps; ``"test"``
            reads ``imagesTs`` (images only, K = 0 masks).
        context_slices: k > 0: 2.5-D stacks of 1 + 2k slices from volume cases (see the module
            docstring); a 2-D case is then an error. 0 reads every case as before.

    Returns:
        Validated samples in natural order of case name: image float32 (C, H, W) in [0, 1]
        (channels concatenated; see :func:`medmat.io.images.read_image` for scaling), masks bool
        (K, H, W), alpha and trimap when present, spacing and affine from channel 0, group from
        ``dataset.json``'s ``groups`` (default the case), ``meta`` format / modality / dataset.
    """
    if subset not in _SUBSET_FOLDERS:
        raise MedmatError(f"subset must be 'train' or 'test', got {subset!r}", root)
    root = Path(root)
    config = read_dataset_json(root)
    if context_slices < 0:
        raise MedmatError(f"context_slices must be >= 0, got {context_slices}", root)
    cases = channel_files(root / _SUBSET_FOLDERS[subset], config["image_ending"])
    samples = []
    for case, files in cases.items():
        # With context slices a one-slice NIfTI is a volume too (its neighbours repeat it), so that
        # every case of a volume dataset has the same channels.
        if _is_volume(files[0], min_slices=1 if context_slices else 2):
            samples += _volume_samples(root, case, files, config, subset == "train", context_slices)
        elif context_slices:
            raise MedmatError("context_slices needs volume cases (3-D NIfTI); this case is a 2-D image", files[0])
        else:
            samples.append(_case_sample(root, case, files, config, labelled=subset == "train"))
    return validate_dataset(samples, str(root), require_masks=subset == "train")


def _is_volume(path: Path, min_slices: int = 2) -> bool:
    """A NIfTI file of at least ``min_slices`` slices (its header alone is read)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return False
    with read_volume(path) as volume:
        return volume.shape[0] >= min_slices


def _volume_samples(root: Path, case: str, files: list[Path], config: dict, labelled: bool, k: int) -> list[Sample]:
    """The slices of a volume case as samples (see the module docstring)."""
    if len(files) > 1:
        raise MedmatError(f"a volume case has one channel (grey), this one has {len(files)} files", files[0])
    with read_volume(files[0]) as volume:
        planes = [volume.unit_slice(z) for z in range(volume.shape[0])]
    ending = config["file_ending"]
    masks = np.zeros((0, *volume.shape), dtype=bool)
    alpha = trimap = None
    if labelled:
        found = [_volume_file(root / "labelsTr" / f"{case}_r{a}{ending}", volume.shape) for a in range(config["annotators"])]
        masks = np.stack([binary_masks_from_array(array, str(path)) for path, array in found]) if found else masks
        alpha_file, trimap_file = root / "alphasTr" / f"{case}{ending}", root / "trimapsTr" / f"{case}{ending}"
        if alpha_file.is_file():
            alpha = scale_to_unit(_volume_file(alpha_file, volume.shape)[1], "alpha", alpha_file)
        if trimap_file.is_file():
            stored = _volume_file(trimap_file, volume.shape)[1]
            trimap = np.stack([trimap_from_array(plane, trimap_file) for plane in stored])
    meta = {"format": "nifti", "modality": config["modality"], "dataset": config["name"], "volume": case,
            "slices": volume.shape[0]}
    if k:
        meta["context_slices"] = k
    return [
        Sample(
            id=f"{case}/slice-{z}",
            image=np.stack([planes[i] for i in context_indices(z, k, len(planes))]),
            masks=masks[:, z],
            alpha=None if alpha is None else alpha[z],
            trimap=None if trimap is None else trimap[z],
            group=config["groups"].get(case, case),
            spacing=volume.spacing[:2],
            affine=volume.slice_affine(z),
            source=str(files[0]),
            meta={**meta, "slice": z},
        )
        for z in range(volume.shape[0])
    ]


def _volume_file(path: Path, shape: tuple[int, int, int]) -> tuple[Path, np.ndarray]:
    """``(path, stored values (Z, Y, X))`` of a label, alpha or trimap volume on a ``shape`` grid."""
    if not path.is_file():
        raise MedmatError("missing file of a volume case (masks: one per annotator of dataset.json)", path)
    array = read_volume_array(path)[0]
    if array.shape != tuple(shape):
        raise MedmatError(f"volume of {array.shape} (z, y, x) voxels but the image's is {tuple(shape)}", path)
    return path, array


def channel_files(folder: Path, ending: str) -> dict[str, list[Path]]:
    """``{case: [channel 0 file, channel 1 file, ...]}`` of an images folder, in natural case order.

    Every file must be named ``<case>_<4-digit channel><ending>`` and a case's channels must run
    0, 1, ... without gaps. Hidden files (names starting with ``.``) are skipped.
    """
    if not folder.is_dir():
        return {}
    pattern = re.compile(rf"^(?P<case>.+)_(?P<channel>\d{{4}}){re.escape(ending)}$")
    channels: dict[str, dict[int, Path]] = {}
    for file in folder.rglob(f"*{ending}"):
        if file.name.startswith(".") or not file.is_file():
            continue
        relative = file.relative_to(folder).as_posix()
        match = pattern.match(relative)
        if match is None:
            raise MedmatError(f"image file names must end in _0000{ending} (the channel index)", file)
        channels.setdefault(match["case"], {})[int(match["channel"])] = file
    ordered = {}
    for case in sorted(channels, key=natural_key):
        indices = sorted(channels[case])
        if indices != list(range(len(indices))):
            raise MedmatError(f"case {case!r} has channels {indices}; expected 0..{len(indices) - 1}", folder)
        ordered[case] = [channels[case][index] for index in indices]
    return ordered


def _case_sample(root: Path, case: str, files: list[Path], config: dict, labelled: bool) -> Sample:
    ending = config["file_ending"]
    channels, geometries = zip(*(read_image(file) for file in files))
    image = np.concatenate(channels, axis=0)
    masks = np.zeros((0, *image.shape[1:]), dtype=bool)
    alpha = trimap = None
    if labelled:
        masks = _annotator_masks(root, case, ending, config["annotators"], image.shape[1:])
        alpha_file = root / "alphasTr" / f"{case}{ending}"
        trimap_file = root / "trimapsTr" / f"{case}{ending}"
        alpha = _plane_of_shape(read_alpha, alpha_file, "alpha", image.shape[1:])
        trimap = _plane_of_shape(read_trimap, trimap_file, "trimap", image.shape[1:])
    geometry = geometries[0]
    return Sample(
        id=case,
        image=image,
        masks=masks,
        alpha=alpha,
        trimap=trimap,
        group=config["groups"].get(case, case),
        spacing=geometry["spacing"],
        affine=geometry["affine"],
        source=str(files[0]),
        meta={"format": geometry["format"], "modality": config["modality"], "dataset": config["name"]},
    )


def _plane_of_shape(read, file: Path, what: str, shape: tuple[int, int]) -> np.ndarray | None:
    """``read(file)`` when the file exists (None otherwise), refused with the file named when its
    shape is not the image's."""
    if not file.is_file():
        return None
    plane = read(file)
    if plane.shape != tuple(shape):
        raise MedmatError(f"{what} has shape {plane.shape} but the image is {shape[0]}x{shape[1]}", file)
    return plane


def _annotator_masks(root: Path, case: str, ending: str, annotators: int, shape: tuple[int, int]) -> np.ndarray:
    masks = []
    for k in range(annotators):
        file = root / "labelsTr" / f"{case}_r{k}{ending}"
        if not file.is_file():
            raise MedmatError(f"missing mask of annotator {k} (dataset.json says {annotators} annotators)", file)
        masks.append(_plane_of_shape(read_mask, file, "mask", shape))
    return np.stack(masks) if masks else np.zeros((0, *shape), dtype=bool)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_folder(
    samples: Iterable[Sample],
    root: str | os.PathLike,
    file_ending: str | None = None,
    name: str | None = None,
    modality: str | None = None,
    fields: Iterable[str] = FIELDS,
) -> Path:
    """Write samples in the folder layout, every file atomically; return ``root``.

    Args:
        samples: the samples; each writes those of ``fields`` it has (a sample without alpha
            writes no alpha). Every sample must have the same number of annotators.
        root: destination folder (created when missing).
        file_ending: ``.png``, ``.nii.gz`` or ``.nii``. None uses the existing dataset.json's
            ending, else ``.png``.
        name: dataset name for dataset.json (default: the folder name).
        modality: ``"CT"``, ``"MRI"``, ``"dermoscopy"``, ... for dataset.json (default: kept, or
            ``"unknown"``).
        fields: which of ``image``, ``masks``, ``alpha``, ``trimap`` to write. ``medmat label``
            passes ``("alpha", "trimap")`` to add labels to an existing dataset without
            rewriting its images (a NIfTI image read back would be min-max normalised).

    ``dataset.json`` is (re)written when images are written or when it does not exist yet.
    PNG stores float alphas as ``round(255 * alpha)``; NIfTI stores them as float32.
    """
    root = Path(root)
    samples = list(samples)
    fields = tuple(fields)
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; choose from {FIELDS}")
    existing = read_dataset_json(root) if (root / "dataset.json").is_file() else None
    ending = file_ending or (existing["file_ending"] if existing else ".png")
    if ending not in WRITABLE_ENDINGS:
        raise MedmatError(f"medmat writes {', '.join(WRITABLE_ENDINGS)} datasets, not {ending}", root)
    annotators = {sample.num_annotators for sample in samples}
    if len(annotators) > 1:
        raise ValueError(f"samples differ in their number of annotators: {sorted(annotators)}")
    for sample in samples:
        _check_case_name(sample.id, root)
        _write_sample(sample, root, ending, fields)
    if "image" in fields or existing is None:
        config = {
            "name": name or (existing["name"] if existing else root.name),
            "modality": modality or (existing["modality"] if existing else "unknown"),
            "file_ending": ending,
            "annotators": annotators.pop() if annotators else 0,
        }
        groups = {sample.id: sample.group for sample in samples if sample.group != sample.id}
        if groups:
            config["groups"] = groups
        atomic_write_json(root / "dataset.json", config)
    return root


def _check_case_name(case: str, root: Path) -> None:
    # Case names become paths: a hostile id (from a pickle's keys) must not climb out of root.
    parts = case.split("/")
    if not case or "\\" in case or case.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise MedmatError(f"case name {case!r} cannot be a file name in a folder dataset", root)


def _write_sample(sample: Sample, root: Path, ending: str, fields: tuple[str, ...]) -> None:
    def target(field: str, suffix: str = "") -> Path:
        return root / _FIELD_FOLDERS[field] / f"{sample.id}{suffix}{ending}"

    affine = geometry_affine(sample_geometry(sample))

    if "image" in fields:
        if ending == ".png":
            write_png(target("image", "_0000"), sample.image)  # grey or RGB in one file
        else:
            for channel, plane in enumerate(sample.image):
                write_nifti(target("image", f"_{channel:04d}"), plane, affine)
    if "masks" in fields:
        for k, mask in enumerate(sample.masks):
            _write_plane(target("masks", f"_r{k}"), mask, affine)
    if "alpha" in fields and sample.alpha is not None:
        _write_plane(target("alpha"), sample.alpha, affine)
    if "trimap" in fields and sample.trimap is not None:
        _write_plane(target("trimap"), sample.trimap, affine)


def _write_plane(path: Path, plane: np.ndarray, affine: np.ndarray) -> None:
    if path.name.endswith(".png"):
        write_png(path, plane)
    else:
        write_nifti(path, plane, affine)


def write_volume_folder(
    cases: Iterable[dict],
    root: str | os.PathLike,
    name: str | None = None,
    modality: str = "unknown",
    file_ending: str = ".nii.gz",
) -> Path:
    """Write volume cases in the folder layout (every file atomically), and ``dataset.json``.

    Args:
        cases: dicts with ``case`` (name), ``image`` (Z, Y, X) stored values (uint8, int16 and
            uint16 kept, else float32), ``masks`` bool (K, Z, Y, X) (the same K for every case),
            optionally ``alpha`` float (Z, Y, X) in [0, 1], ``affine`` (4, 4) and ``group``.
        root: destination folder.
        name, modality: for dataset.json (name defaults to the folder's).
        file_ending: ``.nii.gz`` or ``.nii``.

    Returns:
        ``root``; :func:`read_folder` reads it back slice by slice.
    """
    if file_ending not in (".nii.gz", ".nii"):
        raise MedmatError(f"volume cases are NIfTI (.nii.gz, .nii), not {file_ending}", root)
    root = Path(root)
    annotators, groups = set(), {}
    for entry in cases:
        case = entry["case"]
        _check_case_name(case, root)
        affine = entry.get("affine")
        write_nifti_volume(root / "imagesTr" / f"{case}_0000{file_ending}", entry["image"], affine)
        for k, mask in enumerate(entry["masks"]):
            write_nifti_volume(root / "labelsTr" / f"{case}_r{k}{file_ending}", np.asarray(mask, dtype=bool), affine)
        if entry.get("alpha") is not None:
            write_nifti_volume(root / "alphasTr" / f"{case}{file_ending}", entry["alpha"], affine)
        annotators.add(len(entry["masks"]))
        if entry.get("group", case) != case:
            groups[case] = entry["group"]
    if len(annotators) > 1:
        raise ValueError(f"cases differ in their number of annotators: {sorted(annotators)}")
    config = {"name": name or root.name, "modality": modality, "file_ending": file_ending,
              "annotators": annotators.pop() if annotators else 0}
    if groups:
        config["groups"] = groups
    atomic_write_json(root / "dataset.json", config)
    return root

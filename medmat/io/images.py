"""Reading and writing single 2-D images: PNG, JPEG, TIFF, BMP (Pillow), NIfTI (nibabel) and DICOM (pydicom).

Every reader returns numpy arrays and a *geometry* dict, and turns every failure (a missing
file, a file that is not what its extension says, a truncated file, a 4-D array, NaN) into a
:class:`~medmat.errors.MedmatError` naming the file. Every writer goes through
:func:`medmat.io.atomic.atomic_path`.

Intensity conventions of :func:`read_image` (the sample model wants float32 in [0, 1]):

- PNG stores display values: uint8 is divided by 255, uint16 by 65535. Grey stays one channel,
  RGB gives three, an alpha channel is dropped, a palette is expanded (to grey when the palette
  is grey). JPEG (dermoscopy, photographs), TIFF and BMP are read the same way (the *picture*
  formats), with two differences: a floating-point TIFF holds measurements, not display values,
  and is min-max normalised as NIfTI is; a multi-page TIFF is a stack whose pages are chosen
  with ``slice_index``. Pixels are read as stored: an EXIF orientation tag is not applied, so
  masks drawn on the stored pixels stay aligned. JPEG is lossy: keep masks, alphas and trimaps
  in a lossless format.
- NIfTI and DICOM store scanner units (Hounsfield units, arbitrary MR units) whose range depends
  on the modality, so each image is min-max normalised to [0, 1] on its own; the original range
  is kept in ``geometry["intensity_range"]``. A constant image becomes all zeros. Window a CT
  before exporting it if a fixed window matters.

Geometry conventions:

- ``geometry["affine"]`` is a 4x4 matrix mapping ``(row, column, 0, 1)`` of the returned array to
  world millimetres in NIfTI's RAS+ frame; DICOM's LPS patient frame is converted to RAS+ so that
  both formats agree. PNG has none.
- NIfTI arrays keep nibabel's voxel order: rows are the first voxel axis (i), columns the second
  (j). This is what makes the affine apply to array indices directly; it is not a display
  orientation, so a NIfTI written from a PNG by a tool that reverses axes (SimpleITK) reads
  transposed relative to that PNG. Keep one format per dataset.
- ``geometry["spacing"]`` is the pixel spacing (row, column) in mm, where the format has it.
"""

from __future__ import annotations

import os
import zlib

import nibabel
import numpy as np
import PIL
import pydicom
import pydicom.errors
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from PIL import Image
from pydicom.pixels import apply_modality_lut

from medmat.errors import MedmatError
from medmat.io.atomic import atomic_path
from medmat.io.checks import binary_masks_from_array, check_unit_range

#: File endings medmat reads, and the format each one means (".nii.gz" before ".nii", so that the
#: first ending a name ends with is its whole ending).
FORMATS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp",
    ".nii.gz": "nifti", ".nii": "nifti", ".dcm": "dicom", ".dicom": "dicom",
}  # fmt: skip
#: The picture formats (display values, read with Pillow), and Pillow's name of each.
PICTURE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}

# What each library raises for a file it cannot decode. Pillow (every picture format): not an image, truncated data
# (OSError), a broken chunk (SyntaxError), a decoder failure (ValueError), an absurd size.
_PICTURE_ERRORS = (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
# nibabel: not a NIfTI (ImageFileError, HeaderDataError), a truncated or corrupt gzip stream
# (EOFError, zlib.error, gzip.BadGzipFile is an OSError), data shorter than the header says.
_NIFTI_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)
# pydicom: no DICOM preamble, truncated elements (EOFError, OSError), pixel data shorter than
# Rows x Columns says (ValueError), a compressed transfer syntax without a decoder installed.
_DICOM_ERRORS = (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, NotImplementedError, RuntimeError)

# DICOM patient coordinates are LPS (x to the left, y to the back); NIfTI's are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def image_format(path: str | os.PathLike) -> str:
    """The format named by a file's ending: ``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``, ``"nifti"`` or ``"dicom"``.

    Raises :class:`MedmatError` for any other ending.
    """
    name = os.fspath(path).lower()
    for ending, fmt in FORMATS.items():
        if name.endswith(ending):
            return fmt
    known = ", ".join(FORMATS)
    raise MedmatError(f"unsupported file type; medmat reads {known}", path)


def _require_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MedmatError("file not found" if not os.path.exists(path) else "not a file", path)
    return path


# --------------------------------------------------------------------------------------------
# Raw arrays: the stored values, before any scaling to [0, 1]
# --------------------------------------------------------------------------------------------


def read_array(path: str | os.PathLike, slice_index: int | None = None) -> tuple[np.ndarray, dict]:
    """Read the stored values of a 2-D image, unscaled.

    Args:
        path: a file with one of the endings of :data:`FORMATS`.
        slice_index: which slice of a 3-D NIfTI volume, multi-frame DICOM or multi-page TIFF to
            read; may be omitted when there is only one.

    Returns:
        ``(array, geometry)``: array (H, W) or (H, W, 3) colour. A picture (PNG, JPEG, TIFF,
        BMP) gives uint8 or uint16, or float32 for a floating-point TIFF; NIfTI its stored dtype
        (float when the header scales the data); DICOM the values after the modality LUT
        (RescaleSlope / RescaleIntercept), so CT is in Hounsfield units. ``geometry`` has
        ``format``, ``affine`` (4x4 or None), ``spacing`` ((row, column) mm or None) and
        ``header`` (the nibabel header, a dict of DICOM attributes, or None).
    """
    fmt = image_format(path)
    path = _require_file(path)
    if fmt in PICTURE_FORMATS:
        pixels = read_picture_array(path, fmt=fmt, page=slice_index)
        return pixels, {"format": fmt, "affine": None, "spacing": None, "header": None}
    if fmt == "nifti":
        return _read_nifti_array(path, slice_index)
    return _read_dicom_array(path, slice_index)


def read_png_array(source, where: str | os.PathLike | None = None) -> np.ndarray:
    """Decode a PNG (a path or a binary file object): :func:`read_picture_array` with ``fmt="png"``."""
    return read_picture_array(source, where, fmt="png")


def read_picture_array(source, where: str | os.PathLike | None = None, fmt: str = "png", page: int | None = None) -> np.ndarray:
    """Decode a picture (a path or a binary file object) to (H, W) or (H, W, 3).

    Grey, 16-bit grey and RGB are kept as stored (uint8, uint16); an alpha channel is dropped; a
    palette or a 1-bit image is expanded (to grey when the palette is grey); CMYK and YCbCr
    become RGB; a floating-point TIFF gives float32. ``fmt`` is the format the file must hold
    (a key of :data:`PICTURE_FORMATS`); ``page`` the page of a multi-page TIFF (optional when
    there is one). ``where`` names the file in errors (defaults to ``source`` when it is a path).
    """
    where = where if where is not None else source
    name = PICTURE_FORMATS[fmt]
    try:
        with Image.open(source) as picture:
            if picture.format != name:
                raise MedmatError(f"not a {name} file (its content is {picture.format})", where)
            pages = int(getattr(picture, "n_frames", 1))
            if pages > 1 and fmt == "tiff":
                picture.seek(_slice_to_read(pages, page, where))
            elif page not in (None, 0):
                raise MedmatError(f"a {name} has one page here, slice_index={page} asked", where)
            return _pixels_of(picture, where)
    except FileNotFoundError:
        raise MedmatError("file not found", where) from None
    except _PICTURE_ERRORS as exc:
        raise MedmatError(f"not a readable {name} ({type(exc).__name__}: {exc})", where) from None


def _pixels_of(picture: Image.Image, where) -> np.ndarray:
    mode = picture.mode
    if mode in ("L", "RGB"):
        return np.asarray(picture)
    if mode.startswith("I;16"):
        return np.asarray(picture).astype(np.uint16)  # native byte order
    if mode == "I":
        values = np.asarray(picture)
        if values.min() < 0 or values.max() > 65535:
            raise MedmatError(f"32-bit integer values outside 0..65535 ([{values.min()}, {values.max()}])", where)
        return values.astype(np.uint16)
    if mode == "F":
        return np.asarray(picture, dtype=np.float32)
    if mode in ("1", "LA"):
        return np.asarray(picture.convert("L"))
    if mode == "RGBA":
        return np.asarray(picture.convert("RGB"))
    # Palette (P, PA), CMYK, YCbCr and anything else: expand to RGB, and to grey when the colours
    # are grey, as the alphamatting.com trimaps are.
    colour = np.asarray(picture.convert("RGB"))
    return single_channel(colour, "image", where) if is_grey(colour) else colour


def is_grey(colour: np.ndarray) -> bool:
    """Whether the three colour channels of ``colour`` (..., 3), channels last, are equal everywhere."""
    return bool(np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]))


def _read_nifti_array(path: str, slice_index: int | None) -> tuple[np.ndarray, dict]:
    try:
        volume = nibabel.load(path)
        if 0 in volume.shape:  # before reading: such a file's data reads as a flat empty array
            raise MedmatError(f"NIfTI array of shape {volume.shape} holds no voxels", path)
        data = np.asanyarray(volume.dataobj)
    except _NIFTI_ERRORS as exc:
        raise MedmatError(f"not a readable NIfTI file ({type(exc).__name__}: {exc})", path) from None
    if data.ndim == 2:
        if slice_index not in (None, 0):
            raise MedmatError(f"a 2-D NIfTI has one slice, slice_index={slice_index} asked", path)
        index = 0
    elif data.ndim == 3:
        index = _slice_to_read(data.shape[2], slice_index, path)
        data = data[:, :, index]
    else:
        raise MedmatError(f"NIfTI array of shape {data.shape} is not a 2-D image or a 3-D volume", path)
    # The chosen slice sits `index` steps along the third voxel axis; fold that into the affine
    # so that (row, column, 0) of the returned array maps to the right world position.
    affine = np.array(volume.affine, dtype=np.float64)
    affine[:3, 3] += index * affine[:3, 2]
    zooms = volume.header.get_zooms()
    geometry = {
        "format": "nifti",
        "affine": affine,
        "spacing": (float(zooms[0]), float(zooms[1])),
        "header": volume.header,
        "slice_index": index,
    }
    return np.asarray(data), geometry


def _slice_to_read(n_slices: int, slice_index: int | None, path) -> int:
    if slice_index is None:
        if n_slices != 1:
            raise MedmatError(f"volume has {n_slices} slices; choose one with slice_index", path)
        return 0
    if not 0 <= slice_index < n_slices:
        raise MedmatError(f"slice_index {slice_index} outside the volume's 0..{n_slices - 1}", path)
    return slice_index


def _read_dicom_array(path: str, slice_index: int | None) -> tuple[np.ndarray, dict]:
    try:
        dataset = pydicom.dcmread(path)
        if "PixelData" not in dataset:
            raise MedmatError("DICOM file has no pixel data", path)
        pixels = dataset.pixel_array
    except _DICOM_ERRORS as exc:
        raise MedmatError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
    colour = int(dataset.get("SamplesPerPixel", 1)) > 1
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[_slice_to_read(frames, slice_index, path)]
    elif slice_index not in (None, 0):
        raise MedmatError(f"a single-frame DICOM has one slice, slice_index={slice_index} asked", path)
    if not colour:
        pixels = apply_modality_lut(pixels, dataset)
    header = {
        key: str(dataset.get(key, ""))
        for key in ("Modality", "PhotometricInterpretation", "SeriesInstanceUID", "SOPInstanceUID")
    }
    geometry = {
        "format": "dicom",
        "affine": dicom_affine(dataset),
        "spacing": tuple(float(s) for s in dataset.PixelSpacing) if "PixelSpacing" in dataset else None,
        "header": header,
    }
    return np.asarray(pixels), geometry


def dicom_affine(dataset: pydicom.Dataset) -> np.ndarray | None:
    """The 4x4 RAS+ affine of a DICOM slice, or None without position, orientation and spacing.

    ImageOrientationPatient holds the direction of increasing column index (along a row) then of
    increasing row index; PixelSpacing holds the spacing between rows then between columns.
    Array axis 0 (rows) therefore moves along the second direction, axis 1 along the first.
    """
    needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    if not all(key in dataset for key in needed):
        return None
    orientation = np.array(dataset.ImageOrientationPatient, dtype=np.float64)
    along_row, along_column = orientation[:3], orientation[3:]
    row_spacing, column_spacing = (float(s) for s in dataset.PixelSpacing)
    thickness = float(dataset.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = along_column * row_spacing
    lps[:3, 1] = along_row * column_spacing
    lps[:3, 2] = np.cross(along_row, along_column) * thickness
    lps[:3, 3] = np.array(dataset.ImagePositionPatient, dtype=np.float64)
    return _LPS_TO_RAS @ lps


# --------------------------------------------------------------------------------------------
# Array conversions shared by the readers
# --------------------------------------------------------------------------------------------


def scale_to_unit(array: np.ndarray, what: str, where) -> np.ndarray:
    """Display values to float32 in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0 / 1.

    Floats must already lie in [0, 1] (NaN and values outside are errors, not clipped); any
    other dtype is an error. Shape is kept.
    """
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        check_unit_range(array, what, where)
        return array.astype(np.float32)
    raise MedmatError(f"{what} must be uint8, uint16 or float in [0, 1], got {array.dtype}", where)


def min_max_normalise(array: np.ndarray, what: str, where) -> tuple[np.ndarray, tuple[float, float]]:
    """Scanner units to float32 in [0, 1] by the array's own minimum and maximum.

    Returns ``(normalised, (minimum, maximum))``; a constant array becomes zeros. NaN or
    infinite values are an error.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise MedmatError(f"{what} has non-real dtype {array.dtype}", where)
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise MedmatError(f"{what} contains NaN or infinite values", where)
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros(array.shape, dtype=np.float32), (low, high)
    normalised = np.clip((values - low) / (high - low), 0.0, 1.0)
    return normalised.astype(np.float32), (low, high)


def channels_first(array: np.ndarray, where) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, 3) -> (3, H, W); (H, W, 4) drops the alpha channel."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return np.ascontiguousarray(np.moveaxis(array[..., :3], -1, 0))
    raise MedmatError(f"image must be (H, W) grey or (H, W, 3) colour, got shape {array.shape}", where)


def single_channel(array: np.ndarray, what: str, where) -> np.ndarray:
    """(H, W) as is; (H, W, C) whose channels are all equal -> (H, W); anything else is an error."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] in (3, 4) and is_grey(array[..., :3]):
        return array[..., 0]
    raise MedmatError(f"{what} must be a single-channel (H, W) image, got shape {array.shape}", where)


def trimap_from_array(array: np.ndarray, where) -> np.ndarray:
    """Stored trimap values to uint8 (H, W): integers in 0..255 (0 / 128 / 255 and resampled
    values in between are all kept); fractions, NaN or values outside 0..255 are errors."""
    array = single_channel(array, "trimap", where)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise MedmatError(f"trimap has dtype {array.dtype}; expected integers 0..255", where)
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 255 or np.any(values != np.round(values)):
        raise MedmatError("trimap values must be integers in 0..255 (0 background, 128 unknown, 255 foreground)", where)
    return values.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike, slice_index: int | None = None) -> tuple[np.ndarray, dict]:
    """Read a 2-D image for the sample model.

    Args:
        path: a file with one of the endings of :data:`FORMATS`.
        slice_index: the slice of a 3-D NIfTI volume, multi-frame DICOM or multi-page TIFF
            (optional when there is one slice).

    Returns:
        ``(image, geometry)``: image float32 (C, H, W) in [0, 1], C = 1 grey or 3 colour, scaled
        as the module docstring says; geometry as :func:`read_array` describes, plus
        ``intensity_range`` (the stored minimum and maximum) for NIfTI, DICOM and
        floating-point TIFF grey images.
    """
    array, geometry = read_array(path, slice_index)
    if array.ndim == 3 or (geometry["format"] in PICTURE_FORMATS and not np.issubdtype(array.dtype, np.floating)):
        # Pictures and colour DICOM hold display values with a fixed scale.
        return scale_to_unit(channels_first(array, path), "image", path), geometry
    monochrome1 = geometry["format"] == "dicom" and geometry["header"]["PhotometricInterpretation"] == "MONOCHROME1"
    image, geometry["intensity_range"] = grey_to_unit(array, path, monochrome1)
    return image[None], geometry


def grey_to_unit(values: np.ndarray, where, monochrome1: bool = False) -> tuple[np.ndarray, tuple[float, float]]:
    """One grey image's scanner units (H, W) to float32 (H, W) in [0, 1], as :func:`read_image` maps them.

    Min-max normalised on its own (:func:`min_max_normalise`), then inverted for a DICOM
    MONOCHROME1 image, which shows high values dark. Returns ``(image, (minimum, maximum))``.
    """
    image, value_range = min_max_normalise(values, "image", where)
    return (1.0 - image if monochrome1 else image), value_range


def read_mask(path: str | os.PathLike, slice_index: int | None = None) -> np.ndarray:
    """Read one annotator's binary mask: stored {0, 1} or {0, 255} -> bool (H, W).

    Any other value is an error (see :func:`medmat.io.checks.binary_masks_from_array`).
    """
    array, _ = read_array(path, slice_index)
    mask = single_channel(array, "mask", path)
    return binary_masks_from_array(mask[None], os.fspath(path))[0]


def read_alpha(path: str | os.PathLike, slice_index: int | None = None) -> np.ndarray:
    """Read an alpha matte: float32 (H, W) in [0, 1].

    uint8 is divided by 255 and uint16 by 65535 (a picture, or integer NIfTI); a float NIfTI or TIFF must
    already lie in [0, 1]. An RGB PNG with three equal channels reads as grey.
    """
    array, _ = read_array(path, slice_index)
    return scale_to_unit(single_channel(array, "alpha", path), "alpha", path)


def read_trimap(path: str | os.PathLike, slice_index: int | None = None) -> np.ndarray:
    """Read a trimap: uint8 (H, W), 0 background, 128 unknown, 255 foreground (see
    :func:`trimap_from_array` for what else is admitted)."""
    array, _ = read_array(path, slice_index)
    return trimap_from_array(array, path)


def count_slices(path: str | os.PathLike) -> int:
    """Slices of an image file: the third axis of a 3-D NIfTI, the frames of a DICOM, the pages of a TIFF, else 1.

    Only the header is read. A file whose header cannot be read counts as 1: reading its pixels
    next reports the problem in :func:`read_image`'s words.
    """
    fmt = image_format(path)
    try:
        if fmt == "nifti":
            shape = nibabel.load(os.fspath(path)).shape
            return int(shape[2]) if len(shape) == 3 else 1
        if fmt == "dicom":
            header = pydicom.dcmread(os.fspath(path), stop_before_pixels=True)
            return max(1, int(header.get("NumberOfFrames", 1) or 1))
        if fmt == "tiff":
            with Image.open(os.fspath(path)) as picture:
                return max(1, int(getattr(picture, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - any decoding failure is reported by the pixel read that follows
        return 1
    return 1


def slice_name(stem: str, slice_index: int) -> str:
    """The name of one slice's outputs, ``<stem>_slice-<index, 3 digits>`` (the app and ``medmat predict``)."""
    return f"{stem}_slice-{slice_index:03d}"


# --------------------------------------------------------------------------------------------
# Writers (all atomic)
# --------------------------------------------------------------------------------------------


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a 2-D image as PNG, atomically.

    Args:
        path: destination ``.png``.
        array: (H, W), or (C, H, W) with C = 1 or 3. bool -> 0 / 255; float in [0, 1] ->
            uint8 by ``round(255 * x)``; uint8 and uint16 (grey) are written as they are.
    """
    pixels = _png_pixels(np.asarray(array), path)
    with atomic_path(path) as temporary:
        Image.fromarray(pixels).save(temporary, format="PNG")


def _png_pixels(array: np.ndarray, where) -> np.ndarray:
    if array.ndim == 3:
        if array.shape[0] not in (1, 3):
            raise ValueError(f"PNG needs 1 or 3 channels first, got shape {array.shape}")
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    if array.ndim != 2 and not (array.ndim == 3 and array.shape[2] == 3):
        raise ValueError(f"PNG needs (H, W) or (C, H, W), got shape {array.shape}")
    if array.dtype == bool:
        return np.where(array, np.uint8(255), np.uint8(0))
    if array.dtype == np.uint8 or (array.dtype == np.uint16 and array.ndim == 2):
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        check_unit_range(array, "image", where)
        return np.round(array.astype(np.float64) * 255).astype(np.uint8)
    raise ValueError(f"cannot write {array.dtype} as PNG")


def write_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    """Write a 2-D array as NIfTI (``.nii`` or ``.nii.gz``), atomically.

    Args:
        path: destination ending in ``.nii`` or ``.nii.gz``.
        array: (H, W). Floats are written as float32 (an alpha matte keeps its full precision);
            bool and uint8 as uint8 (masks, trimaps).
        affine: 4x4 voxel-to-world matrix to keep the source image's geometry; identity when
            None.
    """
    if image_format(path) != "nifti":
        raise ValueError(f"write_nifti needs a .nii or .nii.gz path, got {path}")
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"write_nifti writes (H, W) arrays, got shape {array.shape}")
    dtype = np.uint8 if array.dtype in (bool, np.uint8) else np.float32
    volume = nibabel.Nifti1Image(array.astype(dtype), np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64))
    volume.header.set_xyzt_units("mm")
    with atomic_path(path) as temporary:
        nibabel.save(volume, temporary)


def geometry_affine(geometry: dict | None) -> np.ndarray:
    """The geometry's affine, else a diagonal one from its spacing, else the identity."""
    geometry = geometry or {}
    if geometry.get("affine") is not None:
        return np.asarray(geometry["affine"], dtype=np.float64)
    if geometry.get("spacing") is not None:
        row_spacing, column_spacing = geometry["spacing"]
        return np.diag([row_spacing, column_spacing, 1.0, 1.0])
    return np.eye(4)


def sample_geometry(sample) -> dict:
    """The geometry dict of a :class:`~medmat.data.sample.Sample` (for :func:`write_like`)."""
    return {"format": sample.meta.get("format", "png"), "affine": sample.affine, "spacing": sample.spacing}


def write_like(path_without_ext: str | os.PathLike, array: np.ndarray, geometry: dict | None, fmt: str | None = None) -> str:
    """Write a prediction beside its source's geometry; return the written path.

    Args:
        path_without_ext: destination without ending; ``.png`` or ``.nii.gz`` is appended.
        array: (H, W) float in [0, 1], bool or uint8 (see :func:`write_png` / :func:`write_nifti`).
        geometry: the source image's geometry (from :func:`read_image` or
            :func:`sample_geometry`); its affine (or spacing) goes into a NIfTI.
        fmt: ``"png"`` or ``"nifti"``; None writes NIfTI for NIfTI and DICOM sources (float
            precision and geometry kept) and PNG otherwise.
    """
    if fmt is None:
        fmt = "nifti" if (geometry or {}).get("format") in ("nifti", "dicom") else "png"
    base = os.fspath(path_without_ext)
    if fmt == "png":
        write_png(base + ".png", array)
        return base + ".png"
    if fmt == "nifti":
        write_nifti(base + ".nii.gz", array, geometry_affine(geometry))
        return base + ".nii.gz"
    raise ValueError(f"fmt must be 'png' or 'nifti', got {fmt!r}")

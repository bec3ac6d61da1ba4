"""3-D scans: a NIfTI volume or a DICOM series folder, read one slice at a time, and NIfTI volumes
written one slice at a time.

Axes. A volume's slices are numbered ``z`` along NIfTI's third voxel axis (k), and each slice is
an (H, W) = (Y, X) array laid out exactly as :func:`medmat.io.images.read_image` returns a slice
of a NIfTI volume: rows are NIfTI's first voxel axis (i), columns its second (j). So slice ``z``
of :meth:`Volume.unit_slice` equals ``read_image(path, slice_index=z)`` and the affine maps
``(row, column, slice, 1)`` to world millimetres in NIfTI's RAS+ frame, as for single images.

DICOM series. Every file of the folder must be a DICOM slice of one series (one
SeriesInstanceUID, one ImageOrientationPatient, one size). Slices are ordered by their
ImagePositionPatient projected on the slice normal (the cross product of the row and column
directions of ImageOrientationPatient); the slice step and spacing come from those positions
(never from SliceThickness), and the positions must lie on a line at a uniform step: a duplicated
position, a gap (a missing slice) or an irregular step is refused. RescaleSlope / RescaleIntercept
are applied (CT in Hounsfield units). The affine is built as nibabel and dcm2niix build it: DICOM's
patient frame is LPS (x to the left, y to the back), NIfTI's is RAS, so x and y change sign; its
third column is the step between consecutive slice positions (a tilted gantry gives a sheared
affine instead of a wrong one).

Intensities. With a window (:func:`parse_window`: a preset such as ``lung`` or ``LEVEL/WIDTH``)
a value ``v`` maps to ``clip((v - (level - width / 2)) / width, 0, 1)``; without one every slice
is min-max normalised on its own, as :func:`medmat.io.images.read_image` normalises one slice
(:func:`medmat.io.images.grey_to_unit`, the one implementation). MONOCHROME1 DICOM is inverted
afterwards in both cases.

Writing. :func:`volume_writer` streams a float32 NIfTI volume to disk slice after slice (NIfTI
stores a slice contiguously), through :func:`medmat.io.atomic.atomic_path`: a run that stops
leaves no partial file.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Iterator

import nibabel
import numpy as np
import pydicom
import pydicom.errors
from pydicom.pixels import apply_modality_lut

from medmat.errors import MedmatError
from medmat.io.atomic import atomic_path
from medmat.io.images import _DICOM_ERRORS, _LPS_TO_RAS, _NIFTI_ERRORS, FORMATS, dicom_affine, grey_to_unit, image_format

#: Intensity windows (level, width) in Hounsfield units, as radiology viewers preset them.
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft-tissue": (40.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}

#: ImageOrientationPatient direction cosines that differ by less than this are one orientation.
ORIENTATION_TOLERANCE = 1e-4
#: Positions off the uniform line by more than this (mm, plus a fraction of the step) are a gap.
POSITION_TOLERANCE_MM = 0.01
POSITION_TOLERANCE_FRACTION = 0.01
#: What a DICOM slice of a series must carry (besides its pixels).
_SERIES_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"lung"`` or ``"LEVEL/WIDTH"`` (``"-600/1500"``) -> ``(level, width)``; None -> None.

    Raises:
        MedmatError: an unknown preset, a malformed pair or a width <= 0.
    """
    if text is None:
        return None
    name = str(text).strip().lower()
    if name in WINDOWS:
        return WINDOWS[name]
    level, separator, width = name.partition("/")
    try:
        if not separator:
            raise ValueError
        pair = float(level), float(width)
    except ValueError:
        raise MedmatError(
            f"window {text!r} is neither a preset ({', '.join(WINDOWS)}) nor LEVEL/WIDTH such as -600/1500"
        ) from None
    if not np.all(np.isfinite(pair)) or pair[1] <= 0:
        raise MedmatError(f"window {text!r}: the width must be a positive number and both finite")
    return pair


def apply_window(values: np.ndarray, window: tuple[float, float], where) -> np.ndarray:
    """Scanner values (any shape) -> float32 in [0, 1] through ``window`` = (level, width).

    ``clip((v - (level - width / 2)) / width, 0, 1)``; NaN or infinite values are an error.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise MedmatError("image contains NaN or infinite values", where)
    level, width = window
    return np.clip((values - (level - width / 2.0)) / width, 0.0, 1.0).astype(np.float32)


class Volume:
    """A 3-D scan, read lazily one slice at a time (memory: a few slices, whatever its size).

    Attributes:
        path: the file or folder, named in errors.
        format: ``"nifti"`` or ``"dicom"``.
        shape: (Z, Y, X): slices, rows, columns.
        affine: float64 (4, 4), (row, column, slice, 1) -> RAS+ millimetres.
        spacing: (row, column, slice) spacing in mm.
        header: the NIfTI header (kept in outputs), None for DICOM.
        files: the DICOM files in slice order (empty for NIfTI).

    Use it as a context manager (or call :meth:`close`) to release the open file.
    """

    def __init__(self, path, fmt, shape, affine, spacing, reader, header=None, files=(), monochrome1=False, source=None):
        self.path, self.format = os.fspath(path), fmt
        self.shape = tuple(int(v) for v in shape)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.spacing = tuple(float(v) for v in spacing)
        self.header, self.files = header, list(files)
        self._reader, self.monochrome1 = reader, monochrome1
        # The object whose file stays open while slices are read (the nibabel image), released by close().
        self._source = source

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the open file (nibabel closes it with its image); the geometry stays readable."""
        self._reader = self._source = None

    @property
    def voxel_volume(self) -> float:
        """mm³ of one voxel: |det| of the affine's 3x3 part."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def slice_where(self, z: int) -> str:
        """What an error about slice ``z`` names: its DICOM file, or the volume and the slice."""
        return self.files[z] if self.files else f"{self.path} (slice {z})"

    def values(self, z: int) -> np.ndarray:
        """Stored values of slice ``z`` (Y, X) after the scanner rescale (DICOM: Hounsfield units for CT)."""
        if not 0 <= z < self.shape[0]:
            raise IndexError(f"slice {z} outside 0..{self.shape[0] - 1}")
        if self._reader is None:
            raise ValueError(f"volume {self.path} is closed")
        return self._reader(z)

    def unit_slice(self, z: int, window: tuple[float, float] | None = None) -> np.ndarray:
        """Slice ``z`` as float32 (Y, X) in [0, 1]: through ``window``, else min-max on its own
        (:func:`medmat.io.images.grey_to_unit`, as ``read_image`` reads one slice)."""
        values, where = self.values(z), self.slice_where(z)
        if window is None:
            return grey_to_unit(values, where, self.monochrome1)[0]
        image = apply_window(values, window, where)
        return 1.0 - image if self.monochrome1 else image

    def slab(self, zs, window: tuple[float, float] | None = None) -> np.ndarray:
        """float32 (len(zs), Y, X) of :meth:`unit_slice` for each slice index in ``zs``."""
        return np.stack([self.unit_slice(int(z), window) for z in zs])

    def slice_affine(self, z: int) -> np.ndarray:
        """The affine of slice ``z`` alone (origin moved ``z`` steps), as ``read_image`` gives it."""
        affine = self.affine.copy()
        affine[:3, 3] += z * affine[:3, 2]
        return affine


def is_dicom_series_folder(path: str | os.PathLike) -> bool:
    """True for a folder with files none of which is a picture or NIfTI (a DICOM series folder)."""
    if not os.path.isdir(path):
        return False
    names = _visible_files(path)
    return bool(names) and not any(_known_non_dicom(name) for name in names)


def _known_non_dicom(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(tuple(ending for ending, fmt in FORMATS.items() if fmt != "dicom"))


def _visible_files(folder) -> list[str]:
    return sorted(
        name for name in os.listdir(folder) if not name.startswith(".") and os.path.isfile(os.path.join(folder, name))
    )


def read_volume(path: str | os.PathLike) -> Volume:
    """Open a 3-D NIfTI (``.nii``, ``.nii.gz``; a 2-D one is a volume of one slice) or a DICOM series folder.

    Returns:
        A :class:`Volume` (headers read and checked now, pixels slice by slice later).

    Raises:
        MedmatError: missing path, not a NIfTI / DICOM series, a 4-D NIfTI, and for a series:
            a file that is not DICOM, mixed SeriesInstanceUID, inconsistent orientation or size,
            missing position tags, duplicated positions, a gap or an irregular step.
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        return read_dicom_series(text)
    if not os.path.exists(text):
        raise MedmatError("no such volume file or DICOM series folder", text)
    if image_format(text) != "nifti":
        raise MedmatError("a volume is a NIfTI file (.nii, .nii.gz) or a DICOM series folder", text)
    return read_nifti_volume(text)


def read_nifti_volume(path: str) -> Volume:
    """A :class:`Volume` over a NIfTI file (see :func:`read_volume`)."""
    try:
        image = nibabel.load(path, keep_file_open=True)  # slices read in order from one open stream
        shape = image.shape
    except _NIFTI_ERRORS as exc:
        raise MedmatError(f"not a readable NIfTI file ({type(exc).__name__}: {exc})", path) from None
    if len(shape) > 3 and any(size != 1 for size in shape[3:]):
        raise MedmatError(
            f"NIfTI array of shape {shape} is {len(shape)}-D (a time series or several channels); "
            "medmat predicts 3-D volumes", path,
        )
    if len(shape) < 2:
        raise MedmatError(f"NIfTI array of shape {shape} is not an image", path)
    if 0 in shape:
        raise MedmatError(f"NIfTI array of shape {shape} holds no voxels", path)
    rows, columns = shape[:2]
    slices = shape[2] if len(shape) > 2 else 1
    extra = (0,) * (len(shape) - 3)
    proxy = image.dataobj

    def reader(z: int) -> np.ndarray:
        index = (slice(None), slice(None)) + ((z,) + extra if len(shape) > 2 else ())
        try:
            return np.asarray(proxy[index])
        except _NIFTI_ERRORS as exc:
            raise MedmatError(f"cannot read slice {z} ({type(exc).__name__}: {exc})", path) from None

    zooms = image.header.get_zooms()
    spacing = (zooms[0], zooms[1], zooms[2] if len(zooms) > 2 else 1.0)
    return Volume(path, "nifti", (slices, rows, columns), image.affine, spacing, reader, header=image.header, source=image)


def read_dicom_series(folder: str) -> Volume:
    """A :class:`Volume` over a DICOM series folder (see the module docstring for the checks)."""
    names = _visible_files(folder)
    if not names:
        raise MedmatError("no files in the folder: not a DICOM series", folder)
    headers = [_series_header(os.path.join(folder, name)) for name in names]
    first_path, first = headers[0]
    orientation = np.array(first.ImageOrientationPatient, dtype=np.float64)
    for path, header in headers[1:]:
        if str(header.get("SeriesInstanceUID", "")) != str(first.get("SeriesInstanceUID", "")):
            raise MedmatError(
                f"mixed series: SeriesInstanceUID {header.get('SeriesInstanceUID', '')} differs from "
                f"{first.get('SeriesInstanceUID', '')} of {os.path.basename(first_path)}; give one series per folder", path,
            )
        if np.abs(np.array(header.ImageOrientationPatient, dtype=np.float64) - orientation).max() > ORIENTATION_TOLERANCE:
            raise MedmatError(
                f"inconsistent orientation: ImageOrientationPatient differs from {os.path.basename(first_path)}'s", path
            )
        if (int(header.Rows), int(header.Columns)) != (int(first.Rows), int(first.Columns)):
            raise MedmatError(
                f"slice of {header.Rows}x{header.Columns} pixels in a series of {first.Rows}x{first.Columns}", path
            )
        if [float(s) for s in header.PixelSpacing] != [float(s) for s in first.PixelSpacing]:
            raise MedmatError(f"PixelSpacing differs from {os.path.basename(first_path)}'s", path)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.array(h.ImagePositionPatient, dtype=np.float64) for _, h in headers])
    order = np.argsort(positions @ normal, kind="stable")
    files = [headers[i][0] for i in order]
    positions = positions[order]
    step = _uniform_step(positions, normal, files, folder)
    affine = dicom_affine(headers[order[0]][1])
    if len(files) > 1:
        affine[:3, 2] = _LPS_TO_RAS[:3, :3] @ step
    row_spacing, column_spacing = (float(s) for s in first.PixelSpacing)
    slice_spacing = float(abs(step @ normal)) if len(files) > 1 else float(first.get("SliceThickness", 1.0) or 1.0)
    monochrome1 = str(first.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    shape = (len(files), int(first.Rows), int(first.Columns))

    def reader(z: int) -> np.ndarray:
        return _dicom_slice(files[z], shape[1:])

    return Volume(folder, "dicom", shape, affine, (row_spacing, column_spacing, slice_spacing), reader,
                  files=files, monochrome1=monochrome1)


def _series_header(path: str) -> tuple[str, pydicom.Dataset]:
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError as exc:
        raise MedmatError(f"not a DICOM file ({exc}); a series folder must hold only the series' DICOM files", path) from None
    except _DICOM_ERRORS as exc:
        raise MedmatError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
    missing = [tag for tag in _SERIES_TAGS if tag not in header]
    if missing:
        raise MedmatError(f"DICOM file without {', '.join(missing)}: not an image slice of a series", path)
    if int(header.get("NumberOfFrames", 1) or 1) > 1:
        raise MedmatError("multi-frame DICOM in a series folder; a series folder holds one slice per file", path)
    if int(header.get("SamplesPerPixel", 1)) != 1:
        raise MedmatError("colour DICOM in a series folder; medmat reads grey (CT, MR) series", path)
    return path, header


def _uniform_step(positions: np.ndarray, normal: np.ndarray, files: list[str], folder: str) -> np.ndarray:
    """The position step between consecutive slices (LPS mm), after checking that every slice
    sits on one line at that step: no duplicate, no gap, no irregular spacing."""
    if len(positions) == 1:
        return normal.copy()
    along = positions @ normal
    gaps = np.diff(along)
    tolerance = POSITION_TOLERANCE_MM + POSITION_TOLERANCE_FRACTION * float(np.median(np.abs(gaps)))
    for k, gap in enumerate(gaps):
        if gap <= tolerance:
            raise MedmatError(
                f"duplicated slice position {along[k]:.4g} mm along the normal: "
                f"{os.path.basename(files[k])} and {os.path.basename(files[k + 1])}", folder,
            )
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    expected = positions[0] + np.arange(len(positions))[:, None] * step
    off = np.linalg.norm(positions - expected, axis=1)
    worst = int(np.argmax(off))
    if off[worst] > tolerance:
        k = int(np.argmax(np.abs(gaps - np.median(gaps))))
        raise MedmatError(
            f"non-uniform slice spacing (a gap or a missing slice?): {gaps[k]:.4g} mm between "
            f"{os.path.basename(files[k])} and {os.path.basename(files[k + 1])}, the median step is "
            f"{np.median(gaps):.4g} mm", folder,
        )
    return step


def _dicom_slice(path: str, shape: tuple[int, int]) -> np.ndarray:
    try:
        dataset = pydicom.dcmread(path)
        if "PixelData" not in dataset:
            raise MedmatError("DICOM file has no pixel data", path)
        pixels = apply_modality_lut(dataset.pixel_array, dataset)
    except _DICOM_ERRORS as exc:
        raise MedmatError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
    if pixels.shape != tuple(shape):
        raise MedmatError(f"pixel data of shape {pixels.shape}, the series is {shape[0]}x{shape[1]}", path)
    return np.asarray(pixels)


def read_volume_array(path: str | os.PathLike) -> tuple[np.ndarray, Volume]:
    """A whole (small) volume's stored values as one (Z, Y, X) array, with its :class:`Volume`.

    For label, mask and alpha volumes (datasets, ROIs); a scan to predict is read slice by slice.
    """
    with read_volume(path) as volume:
        return np.stack([volume.values(z) for z in range(volume.shape[0])]), volume


def context_indices(z: int, k: int, n: int) -> list[int]:
    """The 2k + 1 slice indices z - k .. z + k of an n-slice stack, the nearest one repeated past its
    ends (the 2.5-D context of slice z; ``data.context_slices`` = k)."""
    return [min(max(z + offset, 0), n - 1) for offset in range(-k, k + 1)]


def write_nifti_volume(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    """Write a whole (Z, Y, X) array as a NIfTI volume (voxel order (Y, X, Z), as :class:`Volume` reads it), atomically.

    bool is written as uint8 0 / 1; uint8, int16 and uint16 as they are (an image keeps its stored
    values); anything else as float32. ``affine`` None: the identity.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"write_nifti_volume writes (Z, Y, X) arrays, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype not in (np.uint8, np.int16, np.uint16):
        array = array.astype(np.float32)
    image = nibabel.Nifti1Image(np.moveaxis(array, 0, -1), np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as temporary:
        nibabel.save(image, temporary)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def volume_header(volume: Volume, dtype=np.float32) -> nibabel.Nifti1Header:
    """The NIfTI header of an output on ``volume``'s grid: its own header for a NIfTI input
    (descriptions, units, codes kept), a new one carrying its affine otherwise; ``dtype`` data,
    no scaling, one file without extensions."""
    template = volume.header if isinstance(volume.header, nibabel.Nifti1Header) else None
    # The image updates a copy of the template with the affine (its qform / sform codes kept).
    header = nibabel.Nifti1Image(np.zeros((1, 1, 1), dtype=dtype), volume.affine, header=template).header
    if template is None:
        header.set_xyzt_units("mm")
        header.set_qform(volume.affine, code="scanner")
        header.set_sform(volume.affine, code="scanner")
    header.set_data_shape((volume.shape[1], volume.shape[2], volume.shape[0]))
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0)
    header.extensions.clear()
    header["magic"] = b"n+1"
    header["vox_offset"] = 352  # 348 header bytes + the 4-byte "no extension" flag
    return header


@contextlib.contextmanager
def volume_writer(path: str | os.PathLike, volume: Volume, dtype=np.float32) -> Iterator:
    """Stream a NIfTI volume on ``volume``'s grid to ``path`` (``.nii`` or ``.nii.gz``), atomically.

    Yields ``write(plane)``: call it once per slice z = 0, 1, ..., Z - 1 with an (Y, X) array.
    The file appears at ``path`` only when the block ends after all Z slices; on an exception,
    or with slices missing, nothing is left there.
    """
    path = os.fspath(path)
    if image_format(path) != "nifti":
        raise ValueError(f"volume_writer writes .nii or .nii.gz, got {path}")
    header = volume_header(volume, dtype)
    expected = volume.shape[1:]
    written = [0]
    with atomic_path(path) as temporary:
        opener = gzip.GzipFile if path.lower().endswith(".gz") else open
        options = {"compresslevel": 1} if opener is gzip.GzipFile else {}
        with opener(temporary, "wb", **options) as stream:
            header.write_to(stream)
            stream.write(b"\0" * (int(header["vox_offset"]) - stream.tell()))

            def write(plane: np.ndarray) -> None:
                plane = np.asarray(plane)
                if plane.shape != expected:
                    raise ValueError(f"slice of shape {plane.shape}, the volume's are {expected}")
                # NIfTI is column-major: a slice is i fastest, then j; that is (Y, X) in Fortran order.
                stream.write(plane.astype(header.get_data_dtype()).tobytes(order="F"))
                written[0] += 1

            yield write
            if written[0] != volume.shape[0]:
                raise ValueError(f"{written[0]} slices written of {volume.shape[0]}")

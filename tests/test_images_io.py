"""Single-image IO: PNG, JPEG, TIFF, NIfTI and DICOM reading, writing, geometry, and hostile files."""

from __future__ import annotations

import gzip
import os

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medmat.errors import MedmatError
from medmat.io.images import (
    geometry_affine,
    read_alpha,
    read_array,
    read_image,
    read_mask,
    read_trimap,
    write_like,
    write_nifti,
    write_png,
)
from medmat.io.volumes import read_volume


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# --------------------------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------------------------


def test_float_png_round_trip_rounds_to_255_levels(tmp_path, rng):
    values = rng.random((12, 9)).astype(np.float32)
    path = tmp_path / "alpha.png"
    write_png(path, values)
    image, geometry = read_image(path)
    assert image.shape == (1, 12, 9) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], np.round(values * 255) / 255, atol=1e-7)
    assert geometry["format"] == "png" and geometry["affine"] is None and geometry["spacing"] is None
    np.testing.assert_allclose(read_alpha(path), np.round(values * 255) / 255, atol=1e-7)


def test_bool_png_is_written_0_255_and_read_back_as_mask(tmp_path, rng):
    mask = rng.random((10, 11)) > 0.5
    path = tmp_path / "mask.png"
    write_png(path, mask)
    assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 255}
    np.testing.assert_array_equal(read_mask(path), mask)


def test_colour_png_round_trip_keeps_three_channels(tmp_path, rng):
    colour = rng.integers(0, 256, size=(3, 8, 6), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    write_png(path, colour)
    image, _ = read_image(path)
    assert image.shape == (3, 8, 6)
    np.testing.assert_allclose(image, colour / 255.0, atol=1e-7)


def test_sixteen_bit_png_is_divided_by_65535(tmp_path, rng):
    values = rng.integers(0, 65536, size=(7, 5), dtype=np.uint16)
    path = tmp_path / "deep.png"
    write_png(path, values)
    image, _ = read_image(path)
    np.testing.assert_allclose(image[0], values / 65535.0, rtol=1e-6)


def test_rgba_png_drops_the_alpha_channel(tmp_path, rng):
    rgba = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image, _ = read_image(path)
    np.testing.assert_allclose(image, np.moveaxis(rgba[..., :3], -1, 0) / 255.0, atol=1e-7)


def test_grey_palette_png_reads_as_a_grey_trimap(tmp_path):
    trimap = np.array([[0, 128, 255], [255, 128, 0]], dtype=np.uint8)
    palette = Image.fromarray(trimap, mode="L").convert("P")
    path = tmp_path / "trimap.png"
    palette.save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(read_trimap(path), trimap)


def test_alpha_stored_as_rgb_with_equal_channels_reads_as_grey(tmp_path, rng):
    grey = rng.integers(0, 256, size=(5, 5), dtype=np.uint8)
    path = tmp_path / "gt.png"
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path)
    np.testing.assert_allclose(read_alpha(path), grey / 255.0, atol=1e-7)


def test_mask_with_a_grey_level_is_refused(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8)).save(path)
    with pytest.raises(MedmatError, match="mask.png.*mask values"):
        read_mask(path)


def test_colour_mask_is_refused(tmp_path, rng):
    path = tmp_path / "colour_mask.png"
    Image.fromarray(rng.integers(0, 2, size=(4, 4, 3), dtype=np.uint8) * 255).save(path)
    with pytest.raises(MedmatError, match="colour_mask.png.*single-channel"):
        read_mask(path)


# --------------------------------------------------------------------------------------------
# JPEG, TIFF, BMP
# --------------------------------------------------------------------------------------------


def test_jpeg_dermoscopy_photo_reads_as_colour_and_a_grey_jpeg_as_grey(tmp_path, rng):
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
    Image.fromarray(smooth).save(tmp_path / "lesion.jpg", quality=95)
    image, geometry = read_image(tmp_path / "lesion.jpg")
    assert image.shape == (3, 64, 64) and image.dtype == np.float32 and geometry["format"] == "jpeg"
    assert np.abs(image - np.moveaxis(smooth, -1, 0) / 255).mean() < 0.06  # chroma subsampling; a swapped channel: ~0.3
    Image.fromarray(smooth[..., 0]).save(tmp_path / "grey.jpeg")
    grey, _ = read_image(tmp_path / "grey.jpeg")
    assert grey.shape == (1, 64, 64)
    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "print.jpg")
    assert read_image(tmp_path / "print.jpg")[0].shape == (3, 64, 64)


def test_tiff_sixteen_bit_float_and_pages(tmp_path, rng):
    stored = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(stored).save(tmp_path / "scan.tif")
    image, _ = read_image(tmp_path / "scan.tif")
    np.testing.assert_allclose(image[0], stored / 65535, atol=1e-6)
    # A float TIFF holds measurements: min-max normalised, its range kept, as NIfTI.
    values = rng.normal(40, 300, (20, 30)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "hu.tiff")
    image, geometry = read_image(tmp_path / "hu.tiff")
    np.testing.assert_allclose(image[0], (values - values.min()) / (values.max() - values.min()), atol=1e-6)
    assert geometry["intensity_range"] == pytest.approx((values.min(), values.max()))
    # ... but a float alpha must already be in [0, 1].
    Image.fromarray(np.float32(0.25) * np.ones((4, 4), np.float32)).save(tmp_path / "alpha.tif")
    np.testing.assert_allclose(read_alpha(tmp_path / "alpha.tif"), 0.25)
    with pytest.raises(MedmatError, match="hu.tiff.*alpha"):
        read_alpha(tmp_path / "hu.tiff")
    pages = [Image.fromarray(np.full((6, 6), 10 * k, np.uint8)) for k in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    assert read_array(tmp_path / "stack.tif", slice_index=2)[0][0, 0] == 20
    with pytest.raises(MedmatError, match="stack.tif: volume has 3 slices; choose one"):
        read_image(tmp_path / "stack.tif")
    with pytest.raises(MedmatError, match="stack.tif: slice_index 3 outside"):
        read_image(tmp_path / "stack.tif", slice_index=3)


def test_bmp_mask_and_pictures_named_as_another_format_are_refused(tmp_path, rng):
    mask = rng.random((9, 9)) > 0.5
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.bmp")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.bmp"), mask)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.jpg", format="PNG")
    with pytest.raises(MedmatError, match="mask.jpg: not a JPEG file \\(its content is PNG\\)"):
        read_mask(tmp_path / "mask.jpg")
    (tmp_path / "cut.tif").write_bytes(b"II*\x00" + rng.bytes(60))
    with pytest.raises(MedmatError, match="cut.tif: not a readable TIFF"):
        read_image(tmp_path / "cut.tif")


# --------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------


def _affine():
    # An oblique affine with anisotropic spacing and a shear, so no axis can be mistaken.
    return np.array(
        [[0.0, -0.8, 0.1, 12.5], [0.7, 0.0, 0.0, -40.0], [0.0, 0.05, 2.5, 7.0], [0.0, 0.0, 0.0, 1.0]]
    )


def test_write_nifti_keeps_float_alpha_and_affine(tmp_path, rng):
    alpha = rng.random((9, 7)).astype(np.float32)
    path = tmp_path / "alpha.nii.gz"
    write_nifti(path, alpha, _affine())
    np.testing.assert_array_equal(read_alpha(path), alpha)
    _, geometry = read_image(path)
    np.testing.assert_allclose(geometry["affine"], _affine(), atol=1e-6)
    # Spacing is the length of the affine's first two columns.
    np.testing.assert_allclose(geometry["spacing"], (0.7, np.hypot(0.8, 0.05)), rtol=1e-5)


def test_nifti_intensities_are_min_max_normalised(tmp_path, rng):
    hounsfield = rng.integers(-1024, 3000, size=(6, 8)).astype(np.int16)
    path = tmp_path / "ct.nii"
    nibabel.save(nibabel.Nifti1Image(hounsfield, np.eye(4)), path)
    image, geometry = read_image(path)
    low, high = hounsfield.min(), hounsfield.max()
    np.testing.assert_allclose(image[0], (hounsfield - low) / (high - low), atol=1e-6)
    assert geometry["intensity_range"] == (low, high)


def test_nifti_slice_of_a_volume_keeps_world_positions(tmp_path, rng):
    volume = rng.random((5, 4, 3)).astype(np.float32)
    path = tmp_path / "volume.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, _affine()), path)
    alpha = read_alpha(path, slice_index=2)
    np.testing.assert_array_equal(alpha, volume[:, :, 2])
    _, geometry = read_array(path, slice_index=2)
    # Pixel (row 3, column 1) of slice 2 is voxel (3, 1, 2) of the volume.
    np.testing.assert_allclose(geometry["affine"] @ [3, 1, 0, 1], _affine() @ [3, 1, 2, 1])


def test_nifti_volume_without_slice_index_is_refused(tmp_path):
    path = tmp_path / "volume.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), path)
    with pytest.raises(MedmatError, match="volume.nii.gz.*3 slices"):
        read_image(path)
    with pytest.raises(MedmatError, match="slice_index 5 outside"):
        read_image(path, slice_index=5)


def test_four_dimensional_nifti_is_refused(tmp_path):
    path = tmp_path / "time.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 1, 2), np.float32), np.eye(4)), path)
    with pytest.raises(MedmatError, match="time.nii.gz.*not a 2-D image"):
        read_image(path)


def test_nifti_without_voxels_is_refused_naming_its_shape(tmp_path):
    path = tmp_path / "empty.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 0), np.float32), np.eye(4)), path)
    with pytest.raises(MedmatError, match=r"empty.nii.gz.*\(4, 4, 0\) holds no voxels"):
        read_image(path)
    with pytest.raises(MedmatError, match=r"empty.nii.gz.*\(4, 4, 0\) holds no voxels"):
        read_volume(path)


def test_nifti_with_nan_is_refused(tmp_path):
    data = np.ones((4, 4), np.float32)
    data[1, 2] = np.nan
    path = tmp_path / "nan.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(MedmatError, match="nan.nii.gz.*NaN"):
        read_image(path)
    with pytest.raises(MedmatError, match="nan.nii.gz.*NaN"):
        read_alpha(path)


def test_float_nifti_alpha_outside_unit_range_is_refused(tmp_path):
    path = tmp_path / "alpha.nii.gz"
    write_nifti(path, np.full((3, 3), 1.5, np.float32))
    with pytest.raises(MedmatError, match=r"alpha.nii.gz.*\[0, 1\]"):
        read_alpha(path)


def test_truncated_nifti_is_refused(tmp_path, rng):
    whole = tmp_path / "whole.nii.gz"
    write_nifti(whole, rng.random((64, 64)).astype(np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MedmatError, match="truncated.nii.gz"):
        read_image(truncated)


def test_gzip_of_random_bytes_named_nifti_is_refused(tmp_path, rng):
    path = tmp_path / "noise.nii.gz"
    path.write_bytes(gzip.compress(rng.bytes(600)))
    with pytest.raises(MedmatError, match="noise.nii.gz.*NIfTI"):
        read_image(path)


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


def _write_dicom(path, pixels, photometric="MONOCHROME2", with_geometry=True):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = "CT"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.RescaleSlope = 2
    dataset.RescaleIntercept = -1024
    if with_geometry:
        dataset.PixelSpacing = [0.5, 0.7]  # between rows, between columns
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        dataset.ImagePositionPatient = [10, 20, 30]
    dataset.PixelData = pixels.astype(np.int16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def test_dicom_applies_rescale_then_min_max(tmp_path, rng):
    stored = rng.integers(0, 2000, size=(6, 5)).astype(np.int16)
    path = tmp_path / "slice.dcm"
    _write_dicom(path, stored)
    array, _ = read_array(path)
    np.testing.assert_array_equal(array, 2.0 * stored - 1024)  # Hounsfield units
    image, geometry = read_image(path)
    # A positive rescale slope is linear, so min-max of HU equals min-max of stored values.
    np.testing.assert_allclose(image[0], (stored - stored.min()) / (stored.max() - stored.min()), atol=1e-6)
    assert geometry["format"] == "dicom"
    assert geometry["intensity_range"] == (2.0 * stored.min() - 1024, 2.0 * stored.max() - 1024)
    assert geometry["header"]["Modality"] == "CT"


def test_dicom_geometry_is_converted_to_ras(tmp_path):
    path = tmp_path / "slice.dcm"
    _write_dicom(path, np.arange(30, dtype=np.int16).reshape(6, 5))
    _, geometry = read_image(path)
    assert geometry["spacing"] == (0.5, 0.7)
    # Pixel (row 2, column 3), LPS: x = 10 + 3 * 0.7 along the row, y = 20 + 2 * 0.5 down the
    # column, z = 30; RAS negates x and y.
    np.testing.assert_allclose(geometry["affine"] @ [2, 3, 0, 1], [-12.1, -21.0, 30.0, 1.0])


def test_dicom_without_position_has_no_affine(tmp_path):
    path = tmp_path / "bare.dcm"
    _write_dicom(path, np.arange(30, dtype=np.int16).reshape(6, 5), with_geometry=False)
    _, geometry = read_image(path)
    assert geometry["affine"] is None and geometry["spacing"] is None


def test_monochrome1_dicom_is_inverted(tmp_path):
    stored = np.arange(30, dtype=np.int16).reshape(6, 5)
    path = tmp_path / "inverted.dcm"
    _write_dicom(path, stored, photometric="MONOCHROME1")
    image, _ = read_image(path)
    np.testing.assert_allclose(image[0], 1.0 - stored / 29.0, atol=1e-6)


def test_truncated_dicom_is_refused(tmp_path):
    whole = tmp_path / "whole.dcm"
    _write_dicom(whole, np.arange(4096, dtype=np.int16).reshape(64, 64))
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(whole.read_bytes()[:-3000])
    with pytest.raises(MedmatError, match="cut.dcm"):
        read_image(truncated)


def test_random_bytes_named_dicom_are_refused(tmp_path, rng):
    path = tmp_path / "noise.dcm"
    path.write_bytes(rng.bytes(500))
    with pytest.raises(MedmatError, match="noise.dcm.*DICOM"):
        read_image(path)


# --------------------------------------------------------------------------------------------
# Hostile and missing files
# --------------------------------------------------------------------------------------------


def test_random_bytes_named_png_are_refused(tmp_path, rng):
    path = tmp_path / "fake.png"
    path.write_bytes(rng.bytes(256))
    with pytest.raises(MedmatError, match="fake.png.*not a readable PNG"):
        read_image(path)


def test_jpeg_named_png_is_refused(tmp_path, rng):
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path, format="JPEG")
    with pytest.raises(MedmatError, match="photo.png.*not a PNG file"):
        read_image(path)


def test_truncated_png_is_refused(tmp_path, rng):
    whole = tmp_path / "whole.png"
    write_png(whole, rng.random((64, 64)))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MedmatError, match="cut.png"):
        read_image(truncated)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(MedmatError, match="absent.png: file not found"):
        read_image(tmp_path / "absent.png")


def test_unsupported_extension_is_refused(tmp_path):
    path = tmp_path / "scan.gif"
    path.write_bytes(b"GIF89a")
    with pytest.raises(MedmatError, match="scan.gif: unsupported file type"):
        read_image(path)


def test_error_messages_are_one_line(tmp_path, rng):
    path = tmp_path / "fake.png"
    path.write_bytes(rng.bytes(64))
    with pytest.raises(MedmatError) as caught:
        read_image(path)
    assert "\n" not in str(caught.value)


def test_fractional_trimap_is_refused(tmp_path):
    path = tmp_path / "trimap.nii.gz"
    write_nifti(path, np.array([[0.0, 0.5], [1.0, 0.5]], np.float32))
    with pytest.raises(MedmatError, match="trimap.nii.gz.*integers in 0..255"):
        read_trimap(path)


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def test_write_png_refuses_nan_and_leaves_nothing_behind(tmp_path):
    values = np.zeros((4, 4))
    values[0, 0] = np.nan
    with pytest.raises(MedmatError, match="NaN"):
        write_png(tmp_path / "out.png", values)
    assert os.listdir(tmp_path) == []


def test_write_like_png_and_nifti(tmp_path, rng):
    alpha = rng.random((6, 6)).astype(np.float32)
    nifti_geometry = {"format": "nifti", "affine": _affine(), "spacing": (0.7, 0.8)}
    written = write_like(tmp_path / "pred", alpha, nifti_geometry)
    assert written == str(tmp_path / "pred.nii.gz")
    np.testing.assert_array_equal(read_alpha(written), alpha)
    np.testing.assert_allclose(read_image(written)[1]["affine"], _affine(), atol=1e-6)

    written = write_like(tmp_path / "pred", alpha, {"format": "png", "affine": None, "spacing": None})
    assert written == str(tmp_path / "pred.png")
    np.testing.assert_allclose(read_alpha(written), np.round(alpha * 255) / 255, atol=1e-7)


def test_geometry_affine_falls_back_to_spacing_then_identity():
    np.testing.assert_array_equal(geometry_affine({"affine": None, "spacing": (0.5, 2.0)}), np.diag([0.5, 2.0, 1, 1]))
    np.testing.assert_array_equal(geometry_affine(None), np.eye(4))

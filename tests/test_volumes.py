"""Volumes: LIDC nodule stacks as NIfTI volumes predicted lesion by lesion, DICOM series read against
SimpleITK, hostile volumes through the CLI, 2.5-D context from LIDC folders and volume cases, and the
per-lesion 3-D evaluation."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medmat.cli.main import main
from medmat.data.readers.folder import read_folder, write_volume_folder
from medmat.data.readers.lidc import read_lidc, read_lidc_nodule
from medmat.engine import load_run, predict, train
from medmat.engine.checkpoint import save_checkpoint
from medmat.engine.inference import build_model_from_config
from medmat.engine.volumes import evaluate_volumes, slice_seed
from medmat.errors import MedmatError
from medmat.io.images import read_image
from medmat.io.volumes import WINDOWS, parse_window, read_volume
from tiny_configs import tiny_model, tiny_phantom_config

#: Three LIDC nodules of a few slices each (LIDC-IDRI-0003/nodule-2 has 4, nodule-0 of 0001 has 9).
NODULES = ("LIDC-IDRI-0001/nodule-0", "LIDC-IDRI-0003/nodule-2", "LIDC-IDRI-0004/nodule-0")
#: A volume affine with non-unit, anisotropic spacing, axes swapped and an origin, as scanners write.
AFFINE = np.array([[0.0, -0.7, 0.0, 120.0], [-0.68, 0.0, 0.0, 80.5], [0.0, 0.0, 2.5, -310.0], [0.0, 0.0, 0.0, 1.0]])


def volume_run(folder: Path, input_size: int, context: int = 0) -> Path:
    """An untrained tiny Medical Matting run (seed 0) trained at ``input_size`` with ``context`` slices."""
    config = tiny_phantom_config(tiny_model("medical_matting", in_channels=1 + 2 * context))
    config["data"].update(input_size=input_size, context_slices=context)
    torch.manual_seed(0)
    network = build_model_from_config(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "final.pt", model=network.state_dict(), config=config)
    return folder


def write_stack(lidc: Path, nodule: str, folder: Path) -> tuple[Path, Path, np.ndarray]:
    """A nodule folder's consecutive slices as a uint8 NIfTI volume and the union of its radiologists'
    masks as a label volume; returns (volume, labels, images (Z, H, W))."""
    images, masks = read_lidc_nodule(lidc / nodule)
    name = nodule.replace("/", "_")
    volume, labels = folder / f"{name}.nii.gz", folder / f"{name}_labels.nii.gz"
    image = nibabel.Nifti1Image(np.moveaxis(images, 0, -1), AFFINE)
    image.header["descrip"] = b"lidc stack"
    nibabel.save(image, volume)
    nibabel.save(nibabel.Nifti1Image(np.moveaxis(masks.any(axis=0), 0, -1).astype(np.uint8), AFFINE), labels)
    return volume, labels, images


def slice_by_slice(model, volume: Path, z: int, rows: slice, cols: slice, num_samples: int = 8, flip=False) -> dict:
    """The reference: the slice read by read_image, cropped, predicted alone by predict()."""
    image = read_image(volume, slice_index=z)[0][:, rows, cols]
    torch.manual_seed(slice_seed(0, z))
    return predict(model, image, num_samples=num_samples, flip=flip)


def load_output(path: Path) -> np.ndarray:
    return np.moveaxis(np.asarray(nibabel.load(path).dataobj), -1, 0)  # (Z, Y, X)


@pytest.fixture(scope="module")
def lidc(shared_data) -> Path:
    return shared_data / "lidc-idri-slices"


@pytest.mark.shared_data
def test_lidc_stack_box_roi_equals_slice_by_slice_prediction(lidc, tmp_path, single_thread):
    volume, _, images = write_stack(lidc, NODULES[0], tmp_path)
    run = volume_run(tmp_path / "run", 64)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(volume), "-m", str(run), "-o", str(out), "--roi", f"box:0,{len(images)},32,96,30,94"]) == 0
    model, _ = load_run(run)
    alpha = load_output(out / "LIDC-IDRI-0001_nodule-0_alpha.nii.gz")
    uncertainty = load_output(out / "LIDC-IDRI-0001_nodule-0_uncertainty.nii.gz")
    assert alpha.shape == images.shape and alpha.dtype == np.float32
    outside = np.ones(alpha.shape, dtype=bool)
    outside[:, 32:96, 30:94] = False
    assert not alpha[outside].any() and not uncertainty[outside].any()
    for z in range(len(images)):
        expected = slice_by_slice(model, volume, z, slice(32, 96), slice(30, 94))
        np.testing.assert_allclose(alpha[z, 32:96, 30:94], expected["alpha"], atol=1e-5)
        bits = np.clip(expected["uncertainty_map"] / math.log(2), 0, 1)
        np.testing.assert_allclose(uncertainty[z, 32:96, 30:94], bits, atol=1e-5)
    assert alpha.max() > 0  # the model answered something inside the box
    # --flip (or the run's eval.flip) averages each crop's views, as for a 2-D image.
    flipped = tmp_path / "flipped"
    assert main(["predict", "-i", str(volume), "-m", str(run), "-o", str(flipped), "--flip", "flips",
                 "--roi", f"box:0,{len(images)},32,96,30,94"]) == 0
    alpha = load_output(flipped / "LIDC-IDRI-0001_nodule-0_alpha.nii.gz")
    for z in range(len(images)):
        expected = slice_by_slice(model, volume, z, slice(32, 96), slice(30, 94), flip="flips")
        np.testing.assert_allclose(alpha[z, 32:96, 30:94], expected["alpha"], atol=1e-5)
    assert json.loads((flipped / "LIDC-IDRI-0001_nodule-0_lesions.json").read_text())["flip"] == "flips"


@pytest.mark.shared_data
def test_lidc_stacks_label_rois_every_output_keeps_the_affine(lidc, tmp_path, single_thread):
    import json

    run = volume_run(tmp_path / "run", 128)  # the LIDC crops' own size: a lesion's crop is its whole slice
    model, _ = load_run(run)
    for nodule in NODULES:
        volume, labels, images = write_stack(lidc, nodule, tmp_path)
        out = tmp_path / "out"
        assert main(["predict", "-i", str(volume), "-m", str(run), "-o", str(out), "--roi", str(labels), "--samples", "2"]) == 0
        name = nodule.replace("/", "_")
        written = sorted(out.glob(f"{name}_*"))
        assert [p.name for p in written] == [f"{name}_{s}" for s in (
            "alpha.nii.gz", "lesion_uncertainty.nii.gz", "lesions.json", "uncertainty.nii.gz")]
        marked = np.flatnonzero(load_output(labels).any(axis=(1, 2)))
        for path in written:
            if path.suffix == ".json":
                continue
            output = nibabel.load(path)
            np.testing.assert_allclose(output.affine, AFFINE, atol=1e-6)
            assert output.header["descrip"].tobytes().startswith(b"lidc stack")
        alpha = load_output(out / f"{name}_alpha.nii.gz")
        for z in range(len(images)):
            if marked[0] <= z <= marked[-1]:
                expected = slice_by_slice(model, volume, z, slice(None), slice(None), num_samples=2)["alpha"]
                np.testing.assert_allclose(alpha[z], expected, atol=1e-5)
            else:
                assert not alpha[z].any()
        record = json.loads((out / f"{name}_lesions.json").read_text())
        lesion = record["lesions"][0]
        assert (lesion["first_slice"], lesion["last_slice"]) == (int(marked[0]), int(marked[-1]))
        assert lesion["soft_volume_mm3"] == pytest.approx(alpha.sum(dtype=np.float64) * 0.7 * 0.68 * 2.5, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# DICOM series
# ---------------------------------------------------------------------------------------------

#: Row direction, column direction (an oblique, non-axial orientation), pixel spacing (rows, columns).
ORIENTATION = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
PIXEL_SPACING = [0.8, 0.6]


def write_series(folder: Path, values: np.ndarray, step: float = 3.0, slope: float = 2.0, intercept: float = -1024.0,
                 positions: list[float] | None = None, uid: str | None = None) -> list[Path]:
    """A synthetic CT series of (Z, Y, X) stored values, one file per slice, names shuffled against
    their positions; returns the files in position order."""
    folder.mkdir(parents=True, exist_ok=True)
    series = uid or generate_uid()
    normal = np.cross(ORIENTATION[:3], ORIENTATION[3:])
    positions = positions if positions is not None else [step * z for z in range(len(values))]
    names = [f"IM{n:04d}" for n in random.Random(3).sample(range(1000), len(values))]
    files = []
    for z, (plane, along, name) in enumerate(zip(values, positions, names)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2.3"
        ds.PatientID = "synthetic"
        ds.ImageOrientationPatient = ORIENTATION
        ds.ImagePositionPatient = [float(v) for v in np.array([-40.0, 12.5, 30.0]) + along * normal]
        ds.PixelSpacing = PIXEL_SPACING
        ds.SliceThickness = 1.0  # deliberately not the spacing: the positions give it
        ds.InstanceNumber = z + 1
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = plane.astype(np.uint16).tobytes()
        ds.save_as(folder / name, enforce_file_format=True)
        files.append(folder / name)
    return files


def test_dicom_series_reads_as_simpleitk_does(tmp_path):
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is the independent reader (test extras)")
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 3000, size=(7, 20, 24))
    folder = tmp_path / "series"
    write_series(folder, stored, step=3.0, slope=2.0, intercept=-1024.0)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference = reader.Execute()
    expected = sitk.GetArrayFromImage(reference)  # (z, y, x) = (slice, row, column), rescaled
    # ITK's index (x = column, y = row, z = slice) -> LPS point; medmat's affine maps (row, column, slice) -> RAS.
    direction = np.array(reference.GetDirection()).reshape(3, 3) * np.array(reference.GetSpacing())
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = direction[:, 1], direction[:, 0], direction[:, 2]
    lps[:3, 3] = reference.GetOrigin()
    expected_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps

    with read_volume(folder) as volume:
        values = np.stack([volume.values(z) for z in range(volume.shape[0])])
        np.testing.assert_array_equal(values, expected)
        np.testing.assert_array_equal(values, stored * 2.0 - 1024.0)  # rescaled, in position order
        np.testing.assert_allclose(volume.affine, expected_affine, atol=1e-6)
        assert volume.spacing == pytest.approx((0.8, 0.6, 3.0))
        assert volume.voxel_volume == pytest.approx(0.8 * 0.6 * 3.0)


def test_windows_map_hounsfield_units():
    assert parse_window("lung") == WINDOWS["lung"] == (-600.0, 1500.0)
    assert parse_window("-600/1500") == (-600.0, 1500.0)
    for bad in ("nope", "40/0", "40", "a/b"):
        with pytest.raises(MedmatError):
            parse_window(bad)


def test_dicom_series_window_through_the_cli(tmp_path, single_thread):
    # A bright disc in HU; the lung window maps -1350 HU to 0 and 150 HU to 1.
    rows, cols = np.mgrid[:40, :40]
    disc = np.hypot(rows - 20, cols - 20) < 8
    stored = np.where(disc, 1524 + 100, 24).astype(np.int64)[None].repeat(5, axis=0)  # HU = 2 * v - 1024
    folder = tmp_path / "ct"
    write_series(folder, stored)
    with read_volume(folder) as volume:
        lung = volume.unit_slice(2, parse_window("lung"))
        np.testing.assert_allclose(lung[disc], 1.0)
        np.testing.assert_allclose(lung[~disc], (-976 + 1350) / 1500, rtol=1e-6)
    run = volume_run(tmp_path / "run", 32)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(folder), "-m", str(run), "-o", str(out), "--window", "lung",
                 "--roi", "seed:2,20,20", "--roi-slices", "3", "--samples", "2"]) == 0
    alpha = load_output(out / "ct_alpha.nii.gz")
    assert alpha.shape == (5, 40, 40)
    assert not alpha[[0, 4]].any() and alpha[1:4, 4:36, 4:36].any() and not alpha[:, :4].any()
    # LEVEL/WIDTH with a negative level is the same window as the preset.
    again = tmp_path / "again"
    assert main(["predict", "-i", str(folder), "-m", str(run), "-o", str(again), "--window", "-600/1500",
                 "--roi", "seed:2,20,20", "--roi-slices", "3", "--samples", "2"]) == 0
    np.testing.assert_array_equal(load_output(again / "ct_alpha.nii.gz"), alpha)


# ---------------------------------------------------------------------------------------------
# Hostile input: one line naming the file, exit 1, nothing written
# ---------------------------------------------------------------------------------------------


def assert_refused(args: list[str], out: Path, named: str, capsys) -> str:
    assert main(args) == 1
    # The progress bar shares stderr (a run may fail mid-volume); the error is one line of its own.
    errors = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("medmat: error: ") and named in errors[0], errors
    error = errors[0]
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    return error


def test_bad_volumes_are_refused_with_one_line(tmp_path, capsys):
    run = volume_run(tmp_path / "run", 16)
    out = tmp_path / "out"
    four_d = tmp_path / "fmri.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 4, 2), np.float32), np.eye(4)), four_d)
    assert "4-D" in assert_refused(["predict", "-i", str(four_d), "-m", str(run), "-o", str(out)], out, "fmri.nii.gz", capsys)

    volume = tmp_path / "ct.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.arange(16 * 16 * 6, dtype=np.int16).reshape(16, 16, 6), AFFINE), volume)
    base = ["predict", "-i", str(volume), "-m", str(run), "-o", str(out)]
    assert "outside" in assert_refused(base + ["--roi", "box:0,6,0,16,10,20"], out, "ct.nii.gz", capsys)
    assert "outside" in assert_refused(base + ["--roi", "seed:9,3,3"], out, "ct.nii.gz", capsys)
    assert "empty" in assert_refused(base + ["--roi", "box:2,2,0,16,0,16"], out, "ct.nii.gz", capsys)
    empty_labels = tmp_path / "labels.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((16, 16, 6), np.uint8), AFFINE), empty_labels)
    assert "empty" in assert_refused(base + ["--roi", str(empty_labels)], out, "labels.nii.gz", capsys)
    shifted = tmp_path / "shifted.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((16, 16, 6), np.uint8), np.eye(4)), shifted)
    assert "grid" in assert_refused(base + ["--roi", str(shifted)], out, "shifted.nii.gz", capsys)


def test_bad_series_are_refused_with_one_line(tmp_path, capsys):
    run = volume_run(tmp_path / "run", 16)
    out = tmp_path / "out"
    values = np.full((5, 16, 16), 1000)
    gap = tmp_path / "gap"
    write_series(gap, values, positions=[0.0, 2.0, 4.0, 8.0, 10.0])  # slice at 6 mm missing
    assert "non-uniform" in assert_refused(["predict", "-i", str(gap), "-m", str(run), "-o", str(out)], out, "gap", capsys)

    duplicated = tmp_path / "duplicated"
    write_series(duplicated, values, positions=[0.0, 2.0, 2.0, 4.0, 6.0])
    assert "duplicated" in assert_refused(["predict", "-i", str(duplicated), "-m", str(run), "-o", str(out)], out,
                                          "duplicated", capsys)

    stray = tmp_path / "stray"
    write_series(stray, values)
    (stray / "notes.txt").write_text("scanned on Tuesday\n")
    assert_refused(["predict", "-i", str(stray), "-m", str(run), "-o", str(out)], out, "notes.txt", capsys)

    mixed = tmp_path / "mixed"
    write_series(mixed, values)
    other = write_series(tmp_path / "other", values[:1], positions=[20.0])[0]
    os.replace(other, mixed / "IM9999")
    assert "SeriesInstanceUID" in assert_refused(["predict", "-i", str(mixed), "-m", str(run), "-o", str(out)], out,
                                                 "IM9999", capsys)

    # A slice whose pixels turn out corrupt only while streaming: no output may be left behind.
    corrupt = tmp_path / "corrupt"
    files = write_series(corrupt, values)
    dataset = pydicom.dcmread(files[3])
    dataset.PixelData = dataset.PixelData[:100]
    dataset.save_as(files[3])
    assert_refused(["predict", "-i", str(corrupt), "-m", str(run), "-o", str(out), "--roi", "box:0,5,0,16,0,16"], out,
                   files[3].name, capsys)


# ---------------------------------------------------------------------------------------------
# 2.5-D context and the volume evaluation
# ---------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_lidc_context_stacks(lidc):
    plain = read_lidc(lidc, patients="LIDC-IDRI-0001")
    assert [s.image.tobytes() for s in read_lidc(lidc, patients="LIDC-IDRI-0001", context_slices=0)] == [
        s.image.tobytes() for s in plain]
    stacked = read_lidc(lidc, patients="LIDC-IDRI-0001", context_slices=2)
    images, _ = read_lidc_nodule(lidc / NODULES[0])
    for flat, stack in zip(plain, stacked):
        k = int(flat.meta["slice"].split("-")[1])
        assert stack.image.shape == (5, 128, 128)
        np.testing.assert_array_equal(stack.image[2], flat.image[0])
        expected = [images[min(max(k + d, 0), len(images) - 1)] for d in (-2, -1, 0, 1, 2)]
        np.testing.assert_array_equal(np.round(stack.image * 255).astype(np.uint8), np.stack(expected))


def lidc_volume_dataset(lidc: Path, root: Path, nodules=NODULES) -> Path:
    """The nodule stacks as a volume folder dataset, alpha = the mean of the radiologists' masks."""
    cases = []
    for nodule in nodules:
        images, masks = read_lidc_nodule(lidc / nodule)
        cases.append({"case": nodule, "image": images, "masks": masks, "alpha": masks.mean(axis=0),
                      "affine": AFFINE, "group": nodule.split("/")[0]})
    return write_volume_folder(cases, root, name="lidc-stacks", modality="CT")


@pytest.mark.shared_data
def test_volume_folder_dataset_and_context(lidc, tmp_path):
    root = lidc_volume_dataset(lidc, tmp_path / "stacks")
    plain = read_folder(root)
    images, masks = read_lidc_nodule(lidc / NODULES[1])
    slices = [s for s in plain if s.meta["volume"] == NODULES[1]]
    assert [s.id for s in slices] == [f"{NODULES[1]}/slice-{z}" for z in range(len(images))]
    volume = root / "imagesTr" / f"{NODULES[1]}_0000.nii.gz"
    for z, sample in enumerate(slices):
        np.testing.assert_array_equal(sample.image, read_image(volume, slice_index=z)[0])  # as one slice is read
        np.testing.assert_array_equal(sample.masks, masks[:, z])
        np.testing.assert_allclose(sample.alpha, masks[:, z].mean(axis=0), atol=1e-7)
        assert sample.group == "LIDC-IDRI-0003"
    stacked = [s for s in read_folder(root, context_slices=1) if s.meta["volume"] == NODULES[1]]
    for z, sample in enumerate(stacked):
        below, above = slices[max(z - 1, 0)], slices[min(z + 1, len(slices) - 1)]
        np.testing.assert_array_equal(sample.image, np.concatenate([below.image, slices[z].image, above.image]))


@pytest.mark.shared_data
def test_tiny_25d_training_prediction_and_volume_evaluation(lidc, tmp_path, single_thread, capsys):
    root = lidc_volume_dataset(lidc, tmp_path / "stacks")
    config = tiny_phantom_config(tiny_model("medical_matting", in_channels=3))
    config["data"].update(dataset=str(root), resize=None, input_size=64, context_slices=1)
    config["split"] = {"scheme": "group", "k": 3, "fold": 0, "seed": 0}
    run = tmp_path / "run"
    record = train(config, run)
    model, saved = load_run(run)
    assert model.spec.in_channels == 3 and saved["data"]["context_slices"] == 1
    assert record["mean"]["num_cases"] > 0

    # The volume path builds the same stacks from a volume and predicts with the 2.5-D model.
    volume, labels, images = write_stack(lidc, NODULES[0], tmp_path)
    out = tmp_path / "pred"
    assert main(["predict", "-i", str(volume), "-m", str(run), "-o", str(out), "--roi", "box:0,9,32,96,32,96",
                 "--samples", "2"]) == 0
    alpha = load_output(out / "LIDC-IDRI-0001_nodule-0_alpha.nii.gz")
    for z in (0, 4, 8):
        stack = np.concatenate([read_image(volume, slice_index=min(max(z + d, 0), 8))[0] for d in (-1, 0, 1)])
        torch.manual_seed(slice_seed(0, z))
        expected = predict(model, stack[:, 32:96, 32:96], num_samples=2)["alpha"]
        np.testing.assert_allclose(alpha[z, 32:96, 32:96], expected, atol=1e-5)

    # A 2.5-D config whose model takes one channel is refused in one line before training.
    config["model"]["in_channels"] = 1
    with pytest.raises(MedmatError, match="model.in_channels=3"):
        train(config, tmp_path / "mismatch")

    # evaluate: the per-slice tables, and per lesion 3-D scores beside them.
    evaluation = tmp_path / "evaluation"
    assert main(["evaluate", "--run", str(run), "--output", str(evaluation), "--samples", "2", "--figure", "0"]) == 0
    assert (evaluation / "summary.md").is_file() and (evaluation / "volumes.md").is_file()
    import json

    lesions = json.loads((evaluation / "volume_lesions.json").read_text())["lesions"]
    held_out = {s.meta["volume"] for s in read_folder(root) if s.id in record["test_ids"]}
    assert {lesion["volume"] for lesion in lesions} == held_out
    for lesion in lesions:
        assert 0 <= lesion["Dice"] <= 1 and 0 <= lesion["GED"] <= 2 and lesion["SAD"] >= 0


@pytest.mark.shared_data
def test_volume_sad_is_the_sum_of_the_slices_sad(lidc, tmp_path, single_thread):
    from medmat.engine.evaluation import evaluate_samples

    root = lidc_volume_dataset(lidc, tmp_path / "stacks", nodules=NODULES[:1])
    samples = read_folder(root)
    model, _ = load_run(volume_run(tmp_path / "run", 64))
    torch.manual_seed(0)
    slices = evaluate_samples(model, samples, 2, "whole", (64, 64), with_region=False)
    torch.manual_seed(0)
    lesions = evaluate_volumes(model, samples, 2, (64, 64))
    assert len(lesions) == 1  # one nodule: every voxel of the stack is its region
    assert lesions[0]["SAD"] == pytest.approx(sum(case["whole"]["SAD"] for case in slices), rel=1e-9)
    assert lesions[0]["MSE"] == pytest.approx(np.mean([case["whole"]["MSE"] for case in slices]), rel=1e-9)
    # With test-time views (eval.flip) both see the same flipped predictions.
    torch.manual_seed(0)
    slices = evaluate_samples(model, samples, 2, "whole", (64, 64), with_region=False, flip="flips")
    torch.manual_seed(0)
    flipped = evaluate_volumes(model, samples, 2, (64, 64), flip="flips")
    assert flipped[0]["SAD"] == pytest.approx(sum(case["whole"]["SAD"] for case in slices), rel=1e-9)
    assert flipped[0]["SAD"] != lesions[0]["SAD"]


def test_a_one_slice_volume_case_gets_its_context_channels_too(tmp_path):
    # LIDC has nodules seen on one slice only: with context slices they must have 1 + 2k channels too.
    rng = np.random.default_rng(0)
    cases = []
    for name, depth in (("single", 1), ("stack", 3)):
        image = rng.integers(0, 255, (depth, 16, 16), dtype=np.uint8)
        masks = np.zeros((2, depth, 16, 16), dtype=bool)
        masks[:, :, 4:12, 4:12] = True
        cases.append({"case": name, "image": image, "masks": masks, "alpha": masks[0].astype(np.float32)})
    root = write_volume_folder(cases, tmp_path / "volumes")
    plain = {sample.id: sample for sample in read_folder(root)}
    assert plain["single"].image.shape == (1, 16, 16)  # without context: a 2-D case, as before
    stacked = {sample.id: sample for sample in read_folder(root, context_slices=1)}
    assert stacked["single/slice-0"].image.shape == (3, 16, 16)
    np.testing.assert_array_equal(stacked["single/slice-0"].image[0], stacked["single/slice-0"].image[1])
    assert {sample.image.shape for sample in stacked.values()} == {(3, 16, 16)}

"""Dataset readers and load_dataset: the release pickle, trimaps, LIDC slices, folder datasets."""

from __future__ import annotations

import glob
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medmat.data.load import describe_dataset, load_dataset
from medmat.data.phantom import make_phantom_dataset
from medmat.data.readers import (
    natural_key,
    read_folder,
    read_lidc,
    read_medical_matting,
    read_trimaps,
    write_folder,
)
from medmat.data.sample import Sample
from medmat.errors import MedmatError
from medmat.io.images import write_png

SIZE = 16


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _case(rng, n_masks=3, size=SIZE):
    return {
        "series_uid": f"uid-{rng.integers(1000)}",
        "image": rng.integers(0, 256, size=(size, size), dtype=np.uint8),
        "masks": [rng.integers(0, 2, size=(size, size), dtype=np.uint8) for _ in range(n_masks)],
        "alpha": rng.integers(0, 256, size=(size, size), dtype=np.uint8),
    }


def _write_pickle(path: Path, release) -> Path:
    path.write_bytes(pickle.dumps(release))
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Medical Matting release
# --------------------------------------------------------------------------------------------


def test_release_cases_are_scaled_and_naturally_sorted(tmp_path, rng):
    release = {"case10": _case(rng), "case2": _case(rng), "case1": _case(rng)}
    path = _write_pickle(tmp_path / "release.pkl", release)
    samples = read_medical_matting(path)
    assert [s.id for s in samples] == ["case1", "case2", "case10"]
    first = samples[0]
    np.testing.assert_allclose(first.image[0], release["case1"]["image"] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(first.masks, np.stack(release["case1"]["masks"]).astype(bool))
    np.testing.assert_allclose(first.alpha, release["case1"]["alpha"] / 255.0, atol=1e-7)
    assert first.meta["series_uid"] == release["case1"]["series_uid"]
    assert first.source == f"{path}:case1"
    assert first.alpha.dtype == np.float32 and first.image.shape == (1, SIZE, SIZE)


def test_release_in_a_zip_with_colour_images(tmp_path, rng):
    case = _case(rng)
    case["image"] = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    path = _zip(tmp_path / "release.zip", {"release.pkl": pickle.dumps({"case01": case})})
    (sample,) = read_medical_matting(path)
    np.testing.assert_allclose(sample.image, np.moveaxis(case["image"], -1, 0) / 255.0, atol=1e-7)


class _Exploit:
    """Unpickling this would create the marker file: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, rng):
    marker = tmp_path / "pwned"
    release = {"case01": _case(rng)}
    release["case01"]["alpha"] = _Exploit(marker)
    path = _write_pickle(tmp_path / "evil.pkl", release)
    with pytest.raises(MedmatError, match="evil.pkl.*posix.system|evil.pkl.*refused"):
        read_medical_matting(path)
    zipped = _zip(tmp_path / "evil.zip", {"evil.pkl": path.read_bytes()})
    with pytest.raises(MedmatError, match="evil.zip"):
        load_dataset(zipped)
    assert not marker.exists()


def test_truncated_zip_is_refused(tmp_path, rng):
    whole = _zip(tmp_path / "whole.zip", {"r.pkl": pickle.dumps({"case01": _case(rng)})})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MedmatError, match="cut.zip"):
        read_medical_matting(cut)


def test_truncated_pickle_is_refused(tmp_path, rng):
    data = pickle.dumps({"case01": _case(rng)})
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MedmatError, match="cut.pkl.*truncated"):
        read_medical_matting(path)


def test_mask_of_another_shape_is_refused_naming_the_case(tmp_path, rng):
    release = {"case01": _case(rng), "case02": _case(rng)}
    release["case02"]["masks"][1] = np.zeros((SIZE, SIZE + 2), np.uint8)
    path = _write_pickle(tmp_path / "release.pkl", release)
    with pytest.raises(MedmatError, match=r"release.pkl:case02: mask of annotator 1 has shape \(16, 18\)"):
        read_medical_matting(path)


def test_nan_alpha_is_refused(tmp_path, rng):
    release = {"case01": _case(rng)}
    alpha = np.full((SIZE, SIZE), 0.5, np.float32)
    alpha[3, 4] = np.nan
    release["case01"]["alpha"] = alpha
    path = _write_pickle(tmp_path / "release.pkl", release)
    with pytest.raises(MedmatError, match="release.pkl:case01: alpha contains NaN"):
        read_medical_matting(path)


def test_mask_values_outside_binary_are_refused(tmp_path, rng):
    release = {"case01": _case(rng)}
    release["case01"]["masks"][0][0, 0] = 2
    path = _write_pickle(tmp_path / "release.pkl", release)
    with pytest.raises(MedmatError, match="release.pkl:case01: mask values must be"):
        read_medical_matting(path)


def test_masks_stored_as_0_255_are_read(tmp_path, rng):
    release = {"case01": _case(rng)}
    release["case01"]["masks"] = [mask * 255 for mask in release["case01"]["masks"]]
    (sample,) = read_medical_matting(_write_pickle(tmp_path / "release.pkl", release))
    np.testing.assert_array_equal(sample.masks, np.stack(release["case01"]["masks"]) == 255)


def test_empty_release_is_refused(tmp_path):
    path = _write_pickle(tmp_path / "empty.pkl", {})
    with pytest.raises(MedmatError, match="empty.pkl: dataset is empty"):
        read_medical_matting(path)


def test_case_with_no_annotators_is_refused(tmp_path, rng):
    release = {"case01": _case(rng, n_masks=0)}
    path = _write_pickle(tmp_path / "release.pkl", release)
    with pytest.raises(MedmatError, match="release.pkl:case01: case has no annotator masks"):
        read_medical_matting(path)


def test_release_structure_problems_are_refused(tmp_path, rng):
    no_image = {"case01": {"masks": [np.zeros((4, 4), np.uint8)]}}
    with pytest.raises(MedmatError, match="case01: case has no 'image' entry"):
        read_medical_matting(_write_pickle(tmp_path / "a.pkl", no_image))
    with pytest.raises(MedmatError, match="b.pkl: expected a dict of cases, found a list"):
        read_medical_matting(_write_pickle(tmp_path / "b.pkl", [_case(rng)]))
    with pytest.raises(MedmatError, match="c.pkl:case01: case is a str"):
        read_medical_matting(_write_pickle(tmp_path / "c.pkl", {"case01": "not a case"}))


# --------------------------------------------------------------------------------------------
# Trimaps
# --------------------------------------------------------------------------------------------


def test_trimaps_from_a_folder_and_a_nested_zip(tmp_path, rng):
    trimaps = {case: rng.choice(np.array([0, 128, 255], np.uint8), size=(SIZE, SIZE)) for case in ("case1", "case2")}
    folder = tmp_path / "trimaps"
    for case, trimap in trimaps.items():
        write_png(folder / f"{case}.png", trimap)
    archive = _zip(tmp_path / "trimaps.zip", {f"trimap/{case}.png": _png_bytes(t) for case, t in trimaps.items()})
    for source in (folder, archive):
        read = read_trimaps(source, ["case2"])
        assert list(read) == ["case2"]
        np.testing.assert_array_equal(read["case2"], trimaps["case2"])
    with pytest.raises(MedmatError, match="trimaps.zip: no trimap for 1 case"):
        read_trimaps(archive, ["case1", "case3"])


def test_release_with_trimaps_attached(tmp_path, rng):
    release = {"case1": _case(rng)}
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=(SIZE, SIZE))
    archive = _zip(tmp_path / "trimaps.zip", {"trimap/case1.png": _png_bytes(trimap)})
    (sample,) = load_dataset(_write_pickle(tmp_path / "release.pkl", release), trimaps=archive)
    np.testing.assert_array_equal(sample.trimap, trimap)


# --------------------------------------------------------------------------------------------
# LIDC slices
# --------------------------------------------------------------------------------------------


def _lidc_slice(root: Path, patient: str, nodule: str, slice_name: str, marked: int, rng, annotators: int = 4):
    folder = root / patient / nodule
    write_png(folder / "images" / f"{slice_name}.png", rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8))
    for k in range(annotators):
        mask = np.zeros((SIZE, SIZE), bool)
        if k < marked:
            mask[4:9, 5 + k : 10] = True
        write_png(folder / f"mask-{k}" / f"{slice_name}.png", mask)


@pytest.fixture
def lidc_root(tmp_path, rng):
    root = tmp_path / "lidc"
    # marked = how many of the four radiologists drew a mask on the slice
    layout = [
        ("LIDC-IDRI-0002", "nodule-0", "slice-10", 4),
        ("LIDC-IDRI-0002", "nodule-0", "slice-2", 4),
        ("LIDC-IDRI-0002", "nodule-0", "slice-3", 3),
        ("LIDC-IDRI-0002", "nodule-1", "slice-0", 0),
        ("LIDC-IDRI-0010", "nodule-0", "slice-0", 4),
        ("LIDC-IDRI-0010", "nodule-0", "slice-1", 1),
    ]
    for patient, nodule, slice_name, marked in layout:
        _lidc_slice(root, patient, nodule, slice_name, marked, rng)
    return root


def test_lidc_keeps_slices_all_four_marked_in_natural_order(lidc_root):
    samples = read_lidc(lidc_root)
    assert [s.id for s in samples] == [
        "LIDC-IDRI-0002/nodule-0/slice-2",
        "LIDC-IDRI-0002/nodule-0/slice-10",
        "LIDC-IDRI-0010/nodule-0/slice-0",
    ]
    assert [s.group for s in samples] == ["LIDC-IDRI-0002", "LIDC-IDRI-0002", "LIDC-IDRI-0010"]
    first = samples[0]
    expected_image = np.asarray(Image.open(lidc_root / "LIDC-IDRI-0002/nodule-0/images/slice-2.png")) / 255.0
    np.testing.assert_allclose(first.image[0], expected_image, atol=1e-7)
    assert first.masks.shape == (4, SIZE, SIZE)
    # Radiologist k drew rows 4..8, columns 5+k..9.
    assert [int(mask.sum()) for mask in first.masks] == [25, 20, 15, 10]
    assert first.meta["annotators_marked"] == 4 and first.alpha is None


def test_lidc_min_annotators_patients_and_limit(lidc_root):
    assert len(read_lidc(lidc_root, min_annotators=3)) == 4
    assert len(read_lidc(lidc_root, min_annotators=1)) == 5
    assert len(read_lidc(lidc_root, min_annotators=0)) == 6
    only = read_lidc(lidc_root, min_annotators=0, patients=["LIDC-IDRI-0010"])
    assert [s.id for s in only] == ["LIDC-IDRI-0010/nodule-0/slice-0", "LIDC-IDRI-0010/nodule-0/slice-1"]
    assert len(read_lidc(lidc_root, min_annotators=0, limit=2)) == 2
    assert len(read_lidc(lidc_root, patients="LIDC-IDRI-0010")) == 1


def test_lidc_problems_are_refused(lidc_root):
    with pytest.raises(MedmatError, match="patient\\(s\\) not found: LIDC-IDRI-0999"):
        read_lidc(lidc_root, patients=["LIDC-IDRI-0999"])
    with pytest.raises(MedmatError, match="min_annotators=5 but only 4 mask folders"):
        read_lidc(lidc_root, min_annotators=5)
    with pytest.raises(MedmatError, match="limit must be >= 1"):
        read_lidc(lidc_root, limit=0)
    os.remove(lidc_root / "LIDC-IDRI-0010/nodule-0/mask-2/slice-1.png")
    with pytest.raises(MedmatError, match="mask-2/slice-1.png: radiologist mask missing"):
        read_lidc(lidc_root, min_annotators=0)


def test_lidc_with_no_qualifying_slice_is_refused(tmp_path, rng):
    _lidc_slice(tmp_path, "LIDC-IDRI-0001", "nodule-0", "slice-0", 2, rng)
    with pytest.raises(MedmatError, match="no slice has at least 4"):
        read_lidc(tmp_path)


# --------------------------------------------------------------------------------------------
# Folder datasets
# --------------------------------------------------------------------------------------------


def _samples(rng, n=3, annotators=2, channels=1):
    samples = []
    for index in range(n):
        masks = rng.random((annotators, SIZE, SIZE)) > 0.5
        samples.append(
            Sample(
                id=f"case{index}",
                image=rng.random((channels, SIZE, SIZE)).astype(np.float32),
                masks=masks,
                alpha=rng.random((SIZE, SIZE)).astype(np.float32),
                trimap=rng.choice(np.array([0, 128, 255], np.uint8), size=(SIZE, SIZE)),
                group=f"patient{index // 2}",
            )
        )
    return samples


def test_png_folder_round_trip(tmp_path, rng):
    samples = _samples(rng, channels=3)
    root = write_folder(samples, tmp_path / "data", name="toy", modality="dermoscopy")
    config = json.loads((root / "dataset.json").read_text())
    assert config == {
        "name": "toy",
        "modality": "dermoscopy",
        "file_ending": ".png",
        "annotators": 2,
        "groups": {"case0": "patient0", "case1": "patient0", "case2": "patient1"},
    }
    assert (root / "imagesTr/case0_0000.png").is_file() and (root / "labelsTr/case2_r1.png").is_file()
    read = read_folder(root)
    assert [s.id for s in read] == ["case0", "case1", "case2"]
    for original, back in zip(samples, read):
        np.testing.assert_allclose(back.image, np.round(original.image * 255) / 255, atol=1e-7)
        np.testing.assert_array_equal(back.masks, original.masks)
        np.testing.assert_allclose(back.alpha, np.round(original.alpha * 255) / 255, atol=1e-7)
        np.testing.assert_array_equal(back.trimap, original.trimap)
        assert back.group == original.group
        assert back.meta["modality"] == "dermoscopy"


def test_nifti_folder_keeps_alpha_exactly_and_the_affine(tmp_path, rng):
    samples = _samples(rng, n=1)
    samples[0].affine = np.diag([0.7, 0.9, 2.0, 1.0])
    samples[0].affine[:3, 3] = [5.0, -3.0, 1.0]
    root = write_folder(samples, tmp_path / "data", file_ending=".nii.gz")
    (back,) = read_folder(root)
    np.testing.assert_array_equal(back.alpha, samples[0].alpha)
    np.testing.assert_allclose(back.affine, samples[0].affine, atol=1e-6)
    assert back.spacing == pytest.approx((0.7, 0.9))
    assert back.meta["format"] == "nifti"


def test_nested_case_names_round_trip(tmp_path, rng):
    samples = _samples(rng, n=1)
    samples[0].id = "LIDC-IDRI-0001/nodule-0/slice-3"
    root = write_folder(samples, tmp_path / "data")
    assert (root / "imagesTr/LIDC-IDRI-0001/nodule-0/slice-3_0000.png").is_file()
    assert [s.id for s in read_folder(root)] == ["LIDC-IDRI-0001/nodule-0/slice-3"]


def test_write_only_alphas_into_an_existing_dataset(tmp_path, rng):
    samples = _samples(rng, n=2)
    root = write_folder([Sample(id=s.id, image=s.image, masks=s.masks) for s in samples], tmp_path / "data")
    images_before = (root / "imagesTr/case0_0000.png").read_bytes()
    assert read_folder(root)[0].alpha is None
    write_folder(samples, root, fields=("alpha", "trimap"))
    read = read_folder(root)
    np.testing.assert_allclose(read[1].alpha, np.round(samples[1].alpha * 255) / 255, atol=1e-7)
    np.testing.assert_array_equal(read[1].trimap, samples[1].trimap)
    assert (root / "imagesTr/case0_0000.png").read_bytes() == images_before


def test_hostile_case_name_cannot_escape_the_folder(tmp_path, rng):
    samples = _samples(rng, n=1)
    samples[0].id = "../escaped"
    with pytest.raises(MedmatError, match="cannot be a file name"):
        write_folder(samples, tmp_path / "data")
    assert not (tmp_path / "escaped_0000.png").exists()


def test_folder_dataset_json_problems(tmp_path, rng):
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(MedmatError, match="dataset.json: no dataset.json"):
        read_folder(root)
    (root / "dataset.json").write_text('{"file_ending": ".png", "annotators": 2,')
    with pytest.raises(MedmatError, match="dataset.json: invalid JSON"):
        read_folder(root)
    (root / "dataset.json").write_text('{"file_ending": ".jpg", "annotators": 2}')
    with pytest.raises(MedmatError, match="'file_ending' must be one of"):
        read_folder(root)


def test_folder_of_jpeg_images_with_png_masks(tmp_path, rng):
    """ISIC-style dermoscopy: JPEG images (image_ending) beside lossless PNG masks and alphas."""
    samples = _samples(rng, n=2, channels=3)
    root = write_folder(samples, tmp_path / "data")
    for sample in samples:
        png = root / f"imagesTr/{sample.id}_0000.png"
        Image.open(png).save(png.with_suffix(".jpg"), quality=95)
        png.unlink()
    with pytest.raises(MedmatError, match="dataset is empty"):
        load_dataset(root)  # the images are not where file_ending says
    config = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**config, "image_ending": ".jpg"}))
    read = read_folder(root)
    assert [s.id for s in read] == ["case0", "case1"]
    for original, back in zip(samples, read):
        assert back.image.shape == (3, SIZE, SIZE) and back.meta["format"] == "jpeg"
        assert np.abs(back.image - original.image).mean() < 0.2  # lossy on noise, but the same picture (another: 0.33)
        np.testing.assert_array_equal(back.masks, original.masks)
        np.testing.assert_allclose(back.alpha, np.round(original.alpha * 255) / 255, atol=1e-7)
    (root / "dataset.json").write_text(json.dumps({**config, "image_ending": ".gif"}))
    with pytest.raises(MedmatError, match="'image_ending' must be one of"):
        read_folder(root)
    (root / "dataset.json").write_text(json.dumps({**config, "file_ending": ".jpg"}))
    with pytest.raises(MedmatError, match="'file_ending' must be one of"):
        read_folder(root)  # masks in JPEG would not be binary: only images may be lossy


def test_folder_with_no_cases_is_empty(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "dataset.json").write_text('{"file_ending": ".png", "annotators": 2}')
    with pytest.raises(MedmatError, match="data: dataset is empty"):
        load_dataset(root)


def test_folder_case_problems(tmp_path, rng):
    root = write_folder(_samples(rng, n=2), tmp_path / "data")
    os.remove(root / "labelsTr/case1_r1.png")
    with pytest.raises(MedmatError, match="case1_r1.png: missing mask of annotator 1"):
        read_folder(root)
    write_png(root / "imagesTr/stray.png", np.zeros((SIZE, SIZE)))
    with pytest.raises(MedmatError, match="stray.png: image file names must end in _0000.png"):
        read_folder(root)


def test_folder_labels_of_another_shape_name_their_own_file(tmp_path, rng):
    for field, folder in (("mask", "labelsTr/case0_r0.png"), ("alpha", "alphasTr/case0.png"),
                          ("trimap", "trimapsTr/case0.png")):
        root = write_folder(_samples(rng, n=1), tmp_path / field)
        write_png(root / folder, np.zeros((SIZE // 2, SIZE), np.uint8))
        with pytest.raises(MedmatError, match=f"{folder}: {field} has shape \\({SIZE // 2}, {SIZE}\\) but the image"):
            read_folder(root)


def test_folder_with_zero_annotators_is_refused_for_training(tmp_path, rng):
    samples = _samples(rng, n=1, annotators=0)
    root = write_folder(samples, tmp_path / "data")
    with pytest.raises(MedmatError, match="case has no annotator masks"):
        read_folder(root)


def test_folder_test_subset_needs_no_masks(tmp_path, rng):
    root = write_folder(_samples(rng, n=1), tmp_path / "data")
    write_png(root / "imagesTs/new_0000.png", np.full((SIZE, SIZE), 0.5))
    (sample,) = read_folder(root, subset="test")
    assert sample.id == "new" and sample.num_annotators == 0


# --------------------------------------------------------------------------------------------
# load_dataset and describe_dataset
# --------------------------------------------------------------------------------------------


def test_load_dataset_dispatches_on_the_form(tmp_path, rng, lidc_root):
    release = _write_pickle(tmp_path / "release.pkl", {"case01": _case(rng)})
    assert [s.id for s in load_dataset(release)] == ["case01"]
    folder = write_folder(_samples(rng, n=2), tmp_path / "data")
    assert len(load_dataset(str(folder))) == 2
    assert len(load_dataset(lidc_root, min_annotators=0, patients=None)) == 6


def test_load_dataset_phantom(tmp_path):
    samples = load_dataset("phantom:2", seed=3, min_annotators=None)
    expected = make_phantom_dataset(n_cases=2, seed=3)
    assert [s.id for s in samples] == [s.id for s in expected]
    np.testing.assert_array_equal(samples[1].alpha, expected[1].alpha)
    with pytest.raises(MedmatError, match="option 'trimaps' does not apply to phantoms"):
        load_dataset("phantom", trimaps="x.zip")
    with pytest.raises(MedmatError, match="phantom count must be a positive whole number"):
        load_dataset("phantom:two")


def test_load_dataset_refuses_unknown_forms_and_options(tmp_path, rng):
    with pytest.raises(MedmatError, match="nowhere: no such file or folder"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedmatError, match="notes.txt: not a dataset medmat recognises"):
        load_dataset(tmp_path / "notes.txt")
    release = _write_pickle(tmp_path / "release.pkl", {"case01": _case(rng)})
    with pytest.raises(MedmatError, match="option 'min_annotators' does not apply to a Medical Matting release"):
        load_dataset(release, min_annotators=4)


def test_describe_dataset(rng):
    samples = _samples(rng, n=3, annotators=2)
    samples[2].alpha = None
    assert describe_dataset(samples) == "3 cases, 2 annotators, 16x16, 1 channel, alpha: 2 of 3"


def test_natural_key_orders_numbers_by_value():
    names = ["slice-10", "slice-2", "slice-1", "case9", "case10"]
    assert sorted(names, key=natural_key) == ["case9", "case10", "slice-1", "slice-2", "slice-10"]


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_brain_growth_release(shared_data):
    folder = shared_data / "medical-matting"
    samples = load_dataset(folder / "brain_growth_alpha.zip", trimaps=folder / "trimap_brain.zip")
    assert [s.id for s in samples] == [f"case{i:02d}" for i in range(1, 40)]
    assert {s.num_annotators for s in samples} == {7}
    assert {s.image.shape for s in samples} == {(1, 128, 128)}
    assert all(s.alpha.dtype == np.float32 and 0 <= s.alpha.min() and s.alpha.max() <= 1 for s in samples)
    # Every case has a soft border: some alpha strictly between 0 and 1.
    assert all(np.any((s.alpha > 0) & (s.alpha < 1)) for s in samples)
    with zipfile.ZipFile(folder / "trimap_brain.zip") as archive:
        expected = np.asarray(Image.open(io.BytesIO(archive.read("trimap/case17.png"))))
    np.testing.assert_array_equal(samples[16].trimap, expected)
    assert describe_dataset(samples) == "39 cases, 7 annotators, 128x128, 1 channel, alpha: yes"


@pytest.mark.shared_data
def test_real_lidc_patients_match_an_independent_count(shared_data):
    root = shared_data / "lidc-idri-slices"
    patients = ["LIDC-IDRI-0001", "LIDC-IDRI-0003", "LIDC-IDRI-0010"]
    samples = read_lidc(root, patients=patients)
    expected = set()
    for patient in patients:
        for image in glob.glob(str(root / patient / "nodule-*" / "images" / "slice-*.png")):
            nodule_folder, name = Path(image).parents[1], Path(image).name
            marked = sum(np.asarray(Image.open(nodule_folder / f"mask-{k}" / name)).max() > 0 for k in range(4))
            if marked == 4:
                expected.add(f"{patient}/{nodule_folder.name}/{name[:-4]}")
    assert expected and {s.id for s in samples} == expected
    assert {s.image.shape for s in samples} == {(1, 128, 128)}
    assert {s.group for s in samples} <= set(patients)
    assert all(s.masks.any(axis=(1, 2)).all() for s in samples)


@pytest.mark.shared_data
def test_real_alphamatting_folder_is_recognised(shared_data):
    samples = load_dataset(shared_data / "alphamatting-lowres")
    assert [s.id for s in samples] == [f"GT{i:02d}" for i in range(1, 14)]
    assert all(s.num_annotators == 0 and s.image.shape[0] == 3 for s in samples)

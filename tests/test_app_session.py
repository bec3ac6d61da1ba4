"""The browser app's session (medmat.app.session): opening, proposals, labels, brush, undo, save, bad input.

The "nig" model of these tests is a tiny, untrained Medical Matting base whose NIG head reads a
two-layer stem (``features="stem"``), wired by hand so that its alpha follows the user map:
two stem channels carry relu(U) and relu(-U) unchanged and γ's layer weighs them by ±GAIN, so
γ = sigmoid(base terms + GAIN·U) pixel by pixel. A one-epoch model has not learnt to read the
user map yet, and a labelled patch would barely change its matte; the wiring makes the effect of
a label large, local and known, which is what the app's logic is tested on. The run is conftest's
``wired_nig_run`` (tiny_configs.user_map_following_run).
"""

from __future__ import annotations

import json
import math
import os

import nibabel
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from medmat.app.session import LABELS, MattingSession, stroke_mask
from medmat.interaction.actions import PatchAnswer, Probe
from medmat.interaction.fusion import fusion_uncertainty
from medmat.data.phantom import make_phantom
from medmat.engine.dataset import resize_planes
from medmat.engine.inference import predict_as_trained, resample_user_map
from medmat.errors import MedmatError
from medmat.uncertainty.proposals import propose_patches
from medmat.interaction.step import predict_nig
from medmat.io.images import read_image, write_png
from tiny_configs import MEDICAL_TINY, save_run


def phantom_png(path, size: int = 64, seed: int = 3):
    """A grey phantom PNG of size x size; returns its path."""
    write_png(path, make_phantom(seed, size=size).image)
    return path


# Tiny networks: a second thread only waits on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture()
def session(wired_nig_run, tmp_path):
    """The wired run on a 64 x 64 phantom at the image's own size: its model is pixel-local by
    construction, and these tests follow the NIG pixel by pixel (the run says data.resize 32; the
    resampling the app does by default is tested on its own)."""
    session = MattingSession.from_run(wired_nig_run, num_proposals=3, patch_size=16, own_size=True)
    path = phantom_png(tmp_path / "case.png")
    session.open_image(path.read_bytes(), "case.png")
    yield session
    session.close()


def test_opening_a_png_predicts_it_and_proposes_the_most_uncertain_patches(session, wired_nig_run, tmp_path):
    step = session.current
    image = read_image(tmp_path / "case.png")[0]
    assert session.interactive and session.opened.shape == (64, 64)
    # The same prediction, made independently: the model of the run, the session's seeding, the
    # image's own size (the fixture's own_size).
    assert session.trained_sizes == {"resize": None, "model_input_size": None}
    torch.manual_seed(session.seed)
    prediction, nig = predict_nig(session.model, image, num_samples=session.num_samples)
    np.testing.assert_array_equal(step.maps["alpha"], prediction["alpha"])
    gamma, omega, alpha, beta = nig
    epistemic = beta / (omega * (alpha - 1.0))
    np.testing.assert_allclose(step.maps["epistemic"], epistemic, rtol=1e-6)
    assert list(step.proposals) == propose_patches(epistemic, 3, 16)
    uncertainties = [patch.uncertainty for patch in step.proposals]
    assert len(uncertainties) == 3 and uncertainties == sorted(uncertainties, reverse=True)
    # The patch's mean, by hand.
    first = step.proposals[0]
    assert first.uncertainty == pytest.approx(float(np.mean(epistemic[first.window])))
    assert not step.user_map.any() and session.summary()["num_interactions"] == 0
    alpha = step.maps["alpha"].astype(np.float64)
    lesion = -(alpha * np.log(alpha) + (1 - alpha) * np.log(1 - alpha))
    np.testing.assert_allclose(step.maps["lesion_uncertainty"], lesion, rtol=1e-4)
    assert step.maps["sample_masks"].shape == (session.num_samples, 64, 64)


def test_labelling_a_patch_fuses_the_new_nig_inside_the_patch(session):
    before = session.current
    patch = before.proposals[1]
    after = session.label_patch(1, "foreground")
    rows, cols = patch.window
    inside = np.zeros((64, 64), bool)
    inside[rows, cols] = True
    assert np.all(after.user_map[inside] == LABELS["foreground"]) and not after.user_map[~inside].any()

    # Eq. 2 by hand, from the model's own prediction with the new user map.
    torch.manual_seed(session.seed)
    _, new = predict_nig(session.model, session.opened.image, after.user_map, num_samples=session.num_samples)
    old = before.nig
    expected = (old.omega * old.gamma + new.omega * new.gamma) / (old.omega + new.omega)
    np.testing.assert_allclose(after.maps["alpha"], expected, rtol=1e-5, atol=1e-7)
    assert after.nig.alpha == pytest.approx(old.alpha + new.alpha + 0.5)
    # The wired model: the patch's new alpha is near 1, so the fused alpha rises there.
    change = after.maps["alpha"] - before.maps["alpha"]
    assert change[inside].min() > 0.1
    assert np.abs(change[~inside]).max() < 0.05 * change[inside].min()

    assert session.summary()["num_interactions"] == 1 and session.interactions[0]["kind"] == "patch"
    assert session.interactions[0]["box"] == [patch.top, patch.left, patch.height, patch.width]
    assert patch not in after.proposals  # answered patches are not proposed again


def test_undo_restores_the_previous_step_exactly(session):
    first = session.current
    session.label_patch(0, "background")
    session.label_patch(0, "transition")
    assert len(session.history) == 3
    session.undo()
    session.undo()
    restored = session.current
    assert restored is first
    for key, value in first.maps.items():
        np.testing.assert_array_equal(restored.maps[key], value)
    with pytest.raises(MedmatError, match="nothing to undo"):
        session.undo()


def test_a_brush_stroke_labels_the_pixels_within_its_radius(session):
    points, radius = [(10.0, 20.0), (10.0, 30.0), (16.0, 30.0)], 2.5
    rows, cols = np.mgrid[:64, :64]
    expected = np.zeros((64, 64), bool)
    # Brute force: distance of every pixel centre to each segment, sampled finely along it.
    for (r0, c0), (r1, c1) in zip(points, points[1:]):
        for t in np.linspace(0, 1, 2001):
            expected |= (rows - (r0 + t * (r1 - r0))) ** 2 + (cols - (c0 + t * (c1 - c0))) ** 2 <= radius**2
    assert np.array_equal(stroke_mask((64, 64), points, radius), expected)
    disc = stroke_mask((64, 64), [(0.0, 0.0)], 1.0)
    assert sorted(zip(*np.nonzero(disc))) == [(0, 0), (0, 1), (1, 0)]

    step = session.paint_stroke(points, radius, "background")
    assert np.array_equal(step.user_map == LABELS["background"], expected)
    assert session.interactions[0]["pixels"] == int(expected.sum())
    with pytest.raises(MedmatError, match="the stroke lies outside the 64 x 64 image"):
        session.paint_stroke([(-50, -50)], 3, "foreground")
    with pytest.raises(MedmatError, match="brush radius"):
        session.paint_stroke(points, 0, "foreground")
    with pytest.raises(MedmatError, match="label must be one of"):
        session.paint_stroke(points, 2, "lesion")
    with pytest.raises(MedmatError, match="not proposed"):
        session.label_patch(7, "foreground")
    assert len(session.history) == 2  # refused requests change nothing


def test_save_writes_png_float_nifti_user_map_and_the_record(session, tmp_path):
    session.label_patch(0, "foreground")
    session.paint_stroke([(40, 40)], 3, "background")
    step = session.current
    out = tmp_path / "saved"
    record = session.save(out)

    alpha_png = np.asarray(Image.open(out / "case_alpha.png"))
    np.testing.assert_array_equal(alpha_png, np.round(step.maps["alpha"].astype(np.float64) * 255).astype(np.uint8))
    alpha_nifti = nibabel.load(out / "case_alpha.nii.gz")
    assert alpha_nifti.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(alpha_nifti.dataobj), step.maps["alpha"])
    bits = np.asarray(nibabel.load(out / "case_lesion_uncertainty.nii.gz").dataobj)
    np.testing.assert_allclose(bits, np.clip(step.maps["lesion_uncertainty"] / math.log(2), 0, 1), rtol=1e-6)
    epistemic = np.asarray(nibabel.load(out / "case_epistemic.nii.gz").dataobj)
    np.testing.assert_array_equal(epistemic, step.maps["epistemic"])
    assert record["png_scale"]["epistemic"] == pytest.approx(float(step.maps["epistemic"].max()))
    assert np.asarray(Image.open(out / "case_epistemic.png")).max() == 255

    user_map = np.asarray(nibabel.load(out / "case_user_map.nii.gz").dataobj)
    np.testing.assert_array_equal(user_map, step.user_map)
    assert set(np.unique(np.asarray(Image.open(out / "case_user_map.png"))).tolist()) == {0, 128, 255}

    written = json.loads((out / "case_interactions.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert [entry["kind"] for entry in written["interactions"]] == ["patch", "stroke"]
    assert written["num_interactions"] == 2 and written["image"]["shape"] == [64, 64]
    listed = {name for names in written["files"].values() for name in names}
    assert listed == set(os.listdir(out))  # every file is listed, no temporary file is left


def test_a_nifti_volume_shows_one_slice_and_its_outputs_keep_the_geometry(wired_nig_run, tmp_path):
    affine = np.array([[0.0, 0.8, 0, -5.0], [0.9, 0.0, 0, 3.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
    volume = np.stack([make_phantom(seed, size=32).image[0] * 1000 - 200 for seed in range(3)], axis=-1)
    path = tmp_path / "scan.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume.astype(np.float32), affine), path)
    session = MattingSession.from_run(wired_nig_run)
    session.open_image(path.read_bytes(), "scan.nii.gz")
    assert (session.opened.slice_index, session.opened.num_slices) == (1, 3)  # the middle slice
    session.select_slice(2)
    expected = (volume[:, :, 2] - volume[:, :, 2].min()) / (volume[:, :, 2].max() - volume[:, :, 2].min())
    np.testing.assert_allclose(session.opened.image[0], expected, atol=1e-6)
    with pytest.raises(MedmatError, match="slice 3 outside"):
        session.select_slice(3)
    session.save(tmp_path / "out")
    written = nibabel.load(tmp_path / "out" / "scan_slice-002_alpha.nii.gz").affine
    # Slice 2 sits two steps along the volume's third axis.
    np.testing.assert_allclose(written[:3, 3], affine[:3, 3] + 2 * affine[:3, 2], atol=1e-5)
    np.testing.assert_allclose(written[:3, :2], affine[:3, :2], atol=1e-6)
    session.close()


def test_bad_uploads_are_one_line_errors_and_leave_the_session_unchanged(session, tmp_path):
    before = session.summary()
    with pytest.raises(MedmatError, match=r"^broken\.png: not a readable PNG") as refused:
        session.open_image(b"\x89PNG\r\n\x1a\n not really", "broken.png")
    assert "medmat-app-" not in str(refused.value)  # the session's private copy is not named
    with pytest.raises(MedmatError, match=r"^notes\.txt: unsupported file type"):
        session.open_image(b"hello", "C:\\Users\\me\\notes.txt")
    with pytest.raises(MedmatError, match="the upload is empty"):
        session.open_image(b"", "empty.png")
    colour = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(colour)
    message = r"photo\.png: the image is colour \(3 channels\) but the model was trained on 1-channel images"
    with pytest.raises(MedmatError, match=message):
        session.open_image(colour.read_bytes(), "photo.png")
    assert session.summary() == before


def test_a_tiff_stack_is_paged_like_a_volume_and_a_grey_jpeg_opens(wired_nig_run, tmp_path):
    pages = [Image.fromarray(np.uint8(np.clip(make_phantom(seed, size=32).image[0], 0, 1) * 255)) for seed in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    session = MattingSession.from_run(wired_nig_run)
    session.open_image((tmp_path / "stack.tif").read_bytes(), "stack.tif")
    assert (session.opened.slice_index, session.opened.num_slices) == (1, 3)  # the middle page
    session.select_slice(2)
    np.testing.assert_allclose(session.opened.image[0], np.asarray(pages[2]) / 255, atol=1e-6)
    session.save(tmp_path / "out")
    assert (tmp_path / "out" / "stack_slice-002_alpha.png").is_file()
    pages[0].save(tmp_path / "photo.jpg", quality=95)
    session.open_image((tmp_path / "photo.jpg").read_bytes(), "photo.jpg")
    assert session.opened.num_slices == 1 and session.output_stem() == "photo"
    session.close()


def test_a_dicom_of_another_modality_than_the_training_data_is_refused(wired_nig_run, tmp_path):
    from test_images_io import _write_dicom

    path = tmp_path / "slice.dcm"
    _write_dicom(path, np.arange(32 * 32).reshape(32, 32) % 97)
    dataset = pydicom.dcmread(path)
    dataset.Modality = "MR"
    dataset.save_as(path)
    folder = tmp_path / "ct-dataset"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"modality": "CT", "file_ending": ".png", "annotators": 1}))
    session = MattingSession.from_run(wired_nig_run)
    session.config["data"]["dataset"] = str(folder)
    with pytest.raises(MedmatError, match=r"slice\.dcm: the image is MR but the model was trained on CT images"):
        session.open_image(path.read_bytes(), "slice.dcm")
    (folder / "dataset.json").write_text(json.dumps({"modality": "MRI", "file_ending": ".png", "annotators": 1}))
    session.open_image(path.read_bytes(), "slice.dcm")
    assert session.opened.shape == (32, 32)
    session.close()


def test_the_app_predicts_as_the_run_was_trained_and_evaluated(tmp_path):
    """A run trained on cases resized to 32 x 32 (data.resize) predicts a 64 x 64 upload at 32 x 32
    and resamples its maps back, as `medmat predict` does; its eval.flip (or the session's) views
    are averaged; own_size predicts at 64 x 64."""
    run = save_run(tmp_path / "medical", MEDICAL_TINY)
    image = read_image(phantom_png(tmp_path / "case.png"))[0]
    sessions = {
        "as trained": MattingSession.from_run(run, num_samples=2),
        "flips": MattingSession.from_run(run, num_samples=2, flip="flips"),
        "own size": MattingSession.from_run(run, num_samples=2, own_size=True),
    }
    for session in sessions.values():
        session.open_image((tmp_path / "case.png").read_bytes(), "case.png")
    model = sessions["as trained"].model
    expected = {
        "as trained": {"resize": (32, 32), "flip": False},
        "flips": {"resize": (32, 32), "flip": "flips"},
        "own size": {"resize": None, "flip": False},
    }
    alphas = {}
    for name, session in sessions.items():
        torch.manual_seed(session.seed)
        prediction = predict_as_trained(model, image, 2, **expected[name])
        maps = session.current.maps
        assert session.summary()["settings"]["resize"] == expected[name]["resize"]
        assert maps["alpha"].shape == maps["uncertainty_map"].shape == (64, 64)
        np.testing.assert_array_equal(maps["alpha"], prediction["alpha"])
        alphas[name] = maps["alpha"]
        session.close()
    assert np.abs(alphas["as trained"] - alphas["own size"]).max() > 1e-3
    assert np.abs(alphas["as trained"] - alphas["flips"]).max() > 1e-4
    with pytest.raises(MedmatError, match="test-time flip must be"):
        MattingSession.from_run(run, flip="sideways")


def test_runs_without_nig_show_their_maps_and_take_answers_through_the_fusion(tmp_path):
    with pytest.raises(MedmatError, match="not a medmat run"):
        MattingSession.from_run(tmp_path)
    run = save_run(tmp_path / "medical", MEDICAL_TINY)
    session = MattingSession.from_run(run, num_samples=3)
    session.open_image(phantom_png(tmp_path / "case.png", size=32).read_bytes(), "case.png")
    assert session.interactive and not session.nig
    assert set(session.current.maps) == {"alpha", "uncertainty_map", "lesion_uncertainty", "sample_masks"}
    assert session.current.maps["sample_masks"].shape == (3, 32, 32) and session.current.proposals
    # A patch answer is an action fused into the alpha (no user map, no second prediction).
    first = session.current
    step = session.label_patch(0, "foreground")
    patch = first.proposals[0]
    assert step.actions == (PatchAnswer(patch.top, patch.left, patch.height, patch.width, "foreground"),)
    assert not step.user_map.any() and step.prior is first.prior
    assert np.all(step.maps["alpha"][patch.window] > first.maps["alpha"][patch.window])
    assert patch not in step.proposals
    with pytest.raises(MedmatError, match="transition stroke .* needs a 'nig' model"):
        session.paint_stroke([(3, 3)], 2, "transition")
    record = session.save(tmp_path / "out")
    assert record["num_interactions"] == 1 and "epistemic" not in record["files"]
    assert record["actions"] == [step.actions[0].to_json()]
    session.close()


@pytest.fixture()
def following(image_following_run, tmp_path):
    """A session on the image-following model (sure of background and lesion, unsure on the border), 64 x 64
    at the image's own size (the model is pixel-local)."""
    session = MattingSession.from_run(image_following_run, own_size=True)
    session.open_image(phantom_png(tmp_path / "case.png").read_bytes(), "case.png")
    yield session
    session.close()


def _border_pixel(step):
    """The most uncertain pixel of a step (a pixel of the lesion's border)."""
    return np.unravel_index(int(np.argmax(step.maps["lesion_uncertainty"])), step.maps["alpha"].shape)


def test_a_probe_moves_the_matte_near_the_click_and_not_where_the_model_is_sure(following):
    first = following.current
    row, col = _border_pixel(first)
    step = following.probe(row, col, 1.0)
    alpha, before = step.maps["alpha"], first.maps["alpha"]
    assert alpha[row, col] > 0.99 > before[row, col]
    # The pixels the model is sure of: those the fusion leaves out of its band (and far from the click).
    sure = fusion_uncertainty(first.maps) < following.fusion_params.band_uncertainty
    far = sure & ~step.fusion.domain
    assert sure.mean() > 0.5 and far.mean() > 0.3 and np.array_equal(alpha[far], before[far])
    distance = np.hypot(*np.mgrid[:64, :64] - np.array([row, col])[:, None, None])
    # Inside the band's margin a sure pixel (alpha below 0.006 or above 0.994) moves by at most
    # the clipped offset that spreads (2 logit units), beyond the clicked disc.
    assert np.abs(alpha - before)[sure & (distance > 3)].max() < 0.05
    near = distance <= 4
    assert (alpha - before)[near & ~sure].mean() > 0.05
    # The uncertainty falls where the answer settled the matte; the record says what was done.
    assert step.maps["lesion_uncertainty"][row, col] < 0.1 * first.maps["lesion_uncertainty"][row, col]
    assert following.interactions[0] == {**following.interactions[0], "kind": "probe", "row": row, "col": col,
                                         "value": 1.0}
    assert following.summary()["probes"] == [{"kind": "probe", "row": row, "col": col, "value": 1.0}]
    # Undo restores the first step itself.
    assert following.undo() is first


@pytest.mark.parametrize("row, col, value, message", [
    (3, 3, 0.3, "not one of the levels"),
    (3, 3, -0.25, "lies outside \\[0, 1\\]"),
    (3, 3, float("nan"), "finite number"),
    (64, 3, 0.5, "probe at row 64, column 3 lies outside the 64 x 64 image"),
    ("3", 3, 0.5, "probe row must be a number"),
])
def test_bad_probes_are_one_line_errors_and_change_nothing(following, row, col, value, message):
    following.probe(*_border_pixel(following.current), 0.5)
    before, summary = list(following.history), following.summary()
    with pytest.raises(MedmatError, match=message) as refused:
        following.probe(row, col, value)
    assert "\n" not in str(refused.value)
    assert following.history == before and following.summary() == summary


def test_saved_actions_replay_to_the_same_matte(following, image_following_run, tmp_path):
    row, col = _border_pixel(following.current)
    following.probe(row, col, 0.75)
    following.paint_stroke([(5, 5), (5, 20)], 2, "foreground")
    record = following.save(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "case_interactions.json").read_text())
    assert written["actions"] == record["actions"] and [a["kind"] for a in written["actions"]] == ["probe", "stroke"]
    assert written["fusion"]["smoothness"] == following.fusion_params.smoothness
    again = MattingSession.from_run(image_following_run, own_size=True)
    again.open_image((tmp_path / "case.png").read_bytes(), "case.png")
    step = again.replay(written["actions"])
    np.testing.assert_allclose(step.maps["alpha"], following.current.maps["alpha"], atol=1e-5)
    with pytest.raises(MedmatError, match="action 1: a stroke needs at least one point"):
        again.replay([written["actions"][0], {**written["actions"][1], "points": []}])
    assert len(again.history) == 2
    again.close()


def test_a_probe_on_a_nig_model_is_fused_into_its_nig_prediction(session):
    labelled = session.label_patch(0, "foreground")
    row, col = _border_pixel(labelled)
    step = session.probe(row, col, 0.0)
    assert step.prior is labelled.prior and step.nig is labelled.nig and step.actions == (Probe(row, col, 0.0),)
    assert step.maps["alpha"][row, col] < 0.01 < labelled.maps["alpha"][row, col]
    # A later patch label predicts again with the user map and fuses the probe into the new prediction.
    after = session.label_patch(0, "background")
    assert after.prior is not step.prior and after.actions == step.actions
    assert after.maps["alpha"][row, col] < 0.01


def test_switching_runs_predicts_the_open_image_again_or_changes_nothing(session, tmp_path):
    session.label_patch(0, "foreground")
    nig_model = session.model
    with pytest.raises(MedmatError, match="not a medmat run"):
        session.load_run(tmp_path)
    assert session.model is nig_model and len(session.history) == 2
    session.load_run(save_run(tmp_path / "medical", MEDICAL_TINY))
    assert session.model_name == "medical_matting" and len(session.history) == 1
    assert session.opened.shape == (64, 64)


@pytest.mark.parametrize("column", [20, 21])
def test_a_one_pixel_stroke_reaches_a_nig_model_that_sees_the_image_at_half_size(wired_nig_run, tmp_path, column):
    """The wired run was trained at data.resize 32: a 64 x 64 upload's user map is shrunk for it. A
    one-pixel transition stroke (user map only) must reach the model whichever column it is on;
    the nearest pixel kept only every other column."""
    session = MattingSession.from_run(wired_nig_run, num_proposals=3, patch_size=16)
    assert session.trained_sizes["resize"] == (32, 32)
    session.open_image(phantom_png(tmp_path / "case.png").read_bytes(), "case.png")
    before = session.current.maps["alpha"].copy()
    step = session.paint_stroke([(row, column) for row in range(8, 56)], radius=0.5, label="transition")
    assert (step.user_map == 0.5).sum() == 48 and (step.user_map[8:56, column] == 0.5).all()
    moved = np.abs(step.maps["alpha"] - before) > 1e-3
    assert moved[8:56, column - 2:column + 3].mean() > 0.5
    assert not moved[:, :column - 4].any() and not moved[:, column + 5:].any()
    session.close()


def test_resample_user_map_keeps_every_said_label_when_shrinking_and_takes_the_nearest_when_growing():
    user_map = np.zeros((64, 64), np.float32)
    user_map[:, 5] = 1.0          # a one-pixel stroke: nearest-exact at 1/4 would drop it
    user_map[40:42, 40:60] = -1.0
    user_map[0, 0] = 0.5
    user_map[20:24, 20:24] = 1.0  # a footprint mostly foreground with one background pixel wins foreground
    user_map[20, 20] = -1.0
    small = resample_user_map(user_map, (16, 16))
    assert small.dtype == np.float32 and set(np.unique(small)) <= {-1.0, 0.0, 0.5, 1.0}
    assert (small[:, 1] == 1.0).all() and small[0, 0] == 0.5 and small[5, 5] == 1.0
    assert (small[10, 10:15] == -1.0).all()
    assert (small == 0.0).sum() == 16 * 16 - (16 + 1 + 5 + 1)  # nothing said anywhere else
    grown = resample_user_map(user_map, (128, 128))
    np.testing.assert_array_equal(grown, resize_planes(user_map, (128, 128), label=True))

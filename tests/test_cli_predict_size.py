"""``medmat predict --output-size H W`` / ``--scale FACTOR``: resolution-free predictions from the CLI.

A tiny region-aware model is trained for one epoch on phantoms resized to 32 x 32 (``data.resize``),
then asked for mattes at other sizes; models whose ``predict`` takes no output size are refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medmat.cli.main import main
from medmat.engine import load_run, predict, predict_as_trained, train
from medmat.engine.checkpoint import save_checkpoint
from medmat.engine.dataset import resize_planes
from medmat.engine.inference import build_model_from_config
from medmat.io.images import read_alpha, read_image, read_mask, write_nifti, write_png
from tiny_configs import load_benchmark, tiny_model, tiny_phantom_config


@pytest.fixture(scope="module")
def region_aware_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("region-aware") / "run"
    train(tiny_phantom_config(tiny_model("region_aware_matting")), run)
    return run


@pytest.fixture()
def inputs(tmp_path):
    """A 32 x 24 grey PNG in its own folder."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    rows, cols = np.mgrid[:32, :24]
    write_png(folder / "case.png", (rows + cols) / (31 + 23))
    return folder


def _alpha_size(path) -> tuple[int, int]:
    with Image.open(path) as picture:
        return picture.height, picture.width


def test_output_size_sets_the_alpha_size(region_aware_run, inputs, tmp_path):
    out = tmp_path / "out"
    args = ["predict", "-i", str(inputs), "-o", str(out), "-m", str(region_aware_run), "--samples", "2"]
    assert main([*args, "--output-size", "48", "40"]) == 0
    assert _alpha_size(out / "case_alpha.png") == (48, 40)
    assert _alpha_size(out / "case_uncertainty.png") == (48, 40)
    assert sorted(p.name for p in out.glob("case_mask-*.png")) == ["case_mask-0.png", "case_mask-1.png"]


def test_scale_multiplies_each_image_size(region_aware_run, inputs, tmp_path):
    out = tmp_path / "out"
    args = ["predict", "-i", str(inputs), "-o", str(out), "-m", str(region_aware_run), "--samples", "2"]
    assert main([*args, "--scale", "2"]) == 0
    assert _alpha_size(out / "case_alpha.png") == (64, 48)
    assert main([*args, "--scale", "0.5"]) == 0
    assert _alpha_size(out / "case_alpha.png") == (16, 12)


def test_nifti_output_at_another_size_keeps_the_field_of_view(region_aware_run, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    affine = np.array([[0.0, 2.0, 0, 5.0], [3.0, 0.0, 0, -7.0], [0, 0, 1.5, 1.0], [0, 0, 0, 1]])
    write_nifti(inputs / "scan.nii.gz", np.random.default_rng(0).random((32, 24)).astype(np.float32), affine)
    source = read_image(inputs / "scan.nii.gz")[1]["affine"]
    out = tmp_path / "out"
    assert main(["predict", "-i", str(inputs), "-o", str(out), "-m", str(region_aware_run), "--samples", "2",
                 "--scale", "2"]) == 0
    alpha, geometry = read_image(out / "scan_alpha.nii.gz")
    assert alpha.shape == (1, 64, 48)
    written = geometry["affine"]
    # Half-size pixels: one output step is half an input step, and output pixel (0, 0) sits a
    # quarter of an input pixel before input pixel (0, 0)'s centre, at the input's corner + 1/4.
    np.testing.assert_allclose(written[:3, 0], source[:3, 0] / 2, atol=1e-5)
    np.testing.assert_allclose(written[:3, 1], source[:3, 1] / 2, atol=1e-5)
    np.testing.assert_allclose(written[:3, 3], (source @ [-0.25, -0.25, 0, 1])[:3], atol=1e-5)


def test_models_without_output_size_and_conflicting_options_are_refused(region_aware_run, inputs, tmp_path, capsys):
    config = tiny_phantom_config({"name": "medical_matting", "unet_filters": [4, 8], "matting_channels": [4, 4]})
    checkpoint = tmp_path / "medical.pt"
    save_checkpoint(checkpoint, model=build_model_from_config(config).state_dict(), config=config)
    args = ["predict", "-i", str(inputs), "-o", str(tmp_path / "out")]
    assert main([*args, "-m", str(checkpoint), "--output-size", "48", "40"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medmat: error:") and "'medical_matting'" in lines[0]
    assert "output_size" in lines[0]
    assert not (tmp_path / "out").exists()

    assert main([*args, "-m", str(region_aware_run), "--output-size", "48", "40", "--scale", "2"]) == 2
    assert "mutually exclusive" in capsys.readouterr().err


def test_a_grey_scan_stored_as_rgb_predicts_as_the_grey_one_and_colour_is_refused(region_aware_run, inputs, tmp_path):
    """Exporters often write a grey scan as RGB with three equal channels: a grey model reads it as grey."""
    with Image.open(inputs / "case.png") as picture:
        grey = np.asarray(picture)
    rgb_folder, colour_folder = tmp_path / "rgb", tmp_path / "colour"
    rgb_folder.mkdir()
    colour_folder.mkdir()
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(rgb_folder / "case.png")
    colour = np.repeat(grey[..., None], 3, axis=2)
    colour[0, 0, 1] ^= 1  # one value of one channel off: a colour picture
    Image.fromarray(colour).save(colour_folder / "case.png")
    written = {}
    for name, folder in (("grey", inputs), ("rgb", rgb_folder)):
        out = tmp_path / f"out-{name}"
        assert main(["predict", "-i", str(folder), "-o", str(out), "-m", str(region_aware_run), "--samples", "2"]) == 0
        written[name] = [np.asarray(Image.open(out / f"case_{kind}.png")) for kind in ("alpha", "uncertainty")]
    assert all(np.array_equal(a, b) for a, b in zip(written["grey"], written["rgb"]))
    args = ["predict", "-i", str(colour_folder), "-o", str(tmp_path / "out-colour"), "-m", str(region_aware_run)]
    assert main(args) == 1


def test_a_folder_of_tiff_bmp_and_jpeg_pictures_predicts_each_as_the_png_would(region_aware_run, inputs, tmp_path):
    """Lossless pictures in another container predict exactly as the PNG; a JPEG of it closely; a
    folder of pictures is not mistaken for a DICOM series."""
    with Image.open(inputs / "case.png") as picture:
        grey = np.asarray(picture)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.fromarray(grey).save(pictures / "scan.tif")
    Image.fromarray(grey).save(pictures / "scan-b.bmp")
    Image.fromarray(grey).save(pictures / "photo.jpg", quality=95)
    out_png, out = tmp_path / "out-png", tmp_path / "out"
    assert main(["predict", "-i", str(inputs), "-o", str(out_png), "-m", str(region_aware_run), "--samples", "2"]) == 0
    assert main(["predict", "-i", str(pictures), "-o", str(out), "-m", str(region_aware_run), "--samples", "2"]) == 0
    reference = np.asarray(Image.open(out_png / "case_alpha.png"), dtype=np.float64)
    for stem in ("scan", "scan-b"):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{stem}_alpha.png")), reference)
    from_jpeg = np.asarray(Image.open(out / "photo_alpha.png"), dtype=np.float64)
    assert np.abs(from_jpeg - reference).mean() < 0.05 * 255


def test_each_page_of_a_tiff_stack_predicts_as_that_page_alone(region_aware_run, inputs, tmp_path):
    with Image.open(inputs / "case.png") as picture:
        grey = np.asarray(picture)
    pages = [Image.fromarray(grey), Image.fromarray(255 - grey), Image.fromarray(grey[::-1].copy())]
    stack, alone = tmp_path / "stack", tmp_path / "alone"
    stack.mkdir()
    alone.mkdir()
    pages[0].save(stack / "scan.tif", save_all=True, append_images=pages[1:])
    pages[1].save(alone / "scan.png")
    args = ["-m", str(region_aware_run), "--samples", "2"]
    assert main(["predict", "-i", str(stack), "-o", str(tmp_path / "out-stack"), *args]) == 0
    assert main(["predict", "-i", str(alone), "-o", str(tmp_path / "out-alone"), *args]) == 0
    assert sorted(p.name for p in (tmp_path / "out-stack").glob("*_alpha.png")) == [
        f"scan_slice-00{k}_alpha.png" for k in range(3)
    ]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out-stack" / "scan_slice-001_alpha.png")),
                                  np.asarray(Image.open(tmp_path / "out-alone" / "scan_alpha.png")))


def test_a_run_trained_on_resized_cases_predicts_new_images_at_that_size(tmp_path):
    """data.resize resampled every training case: predict resamples a new image the same way and
    brings every map back to the image's own size (the demo's 128² phantoms, trained at 64²)."""
    run = tmp_path / "run"
    train(tiny_phantom_config(tiny_model("medical_matting")), run)  # data.resize: 32
    model, _ = load_run(run)
    rows, cols = np.mgrid[:64, :48]
    image = ((np.hypot(rows - 30, cols - 22) < 14) * 0.6 + 0.2).astype(np.float32)
    folder = tmp_path / "inputs"
    folder.mkdir()
    write_nifti(folder / "case.nii.gz", image)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(folder), "-o", str(out), "-m", str(run), "--samples", "2"]) == 0
    torch.manual_seed(0)
    small = predict(model, resize_planes(read_image(folder / "case.nii.gz")[0], (32, 32)), num_samples=2)
    expected = resize_planes(small["alpha"], (64, 48))
    written = read_alpha(out / "case_alpha.nii.gz")
    assert written.shape == (64, 48)
    np.testing.assert_allclose(written, expected, atol=1e-6)
    for k in range(2):  # the resampled score map, > 0.5
        np.testing.assert_array_equal(read_mask(out / f"case_mask-{k}.nii.gz"),
                                      resize_planes(small["sample_masks"][k], (64, 48)) > 0.5)
    own = tmp_path / "own"
    assert main(["predict", "-i", str(folder), "-o", str(own), "-m", str(run), "--samples", "2", "--own-size"]) == 0
    torch.manual_seed(0)
    at_own_size = predict(model, read_image(folder / "case.nii.gz")[0], num_samples=2)["alpha"]
    np.testing.assert_allclose(read_alpha(own / "case_alpha.nii.gz"), at_own_size, atol=1e-6)


def test_predict_flip_averages_the_views_the_option_names(region_aware_run, inputs, tmp_path):
    args = ["predict", "-i", str(inputs), "-m", str(region_aware_run), "--samples", "2", "--format", "nifti"]
    alphas = {}
    for flag in ([], ["--flip", "none"], ["--flip"], ["--flip", "dihedral"]):
        out = tmp_path / ("out" + "-".join(flag))
        assert main([*args, "-o", str(out), *flag]) == 0
        alphas[" ".join(flag)] = read_alpha(out / "case_alpha.nii.gz")
    model, _ = load_run(region_aware_run)
    image = read_image(inputs / "case.png")[0]
    torch.manual_seed(0)
    expected = predict_as_trained(model, image, 2, None, None, "dihedral", resize=(32, 32))["alpha"]
    np.testing.assert_allclose(alphas["--flip dihedral"], expected, atol=1e-6)
    np.testing.assert_array_equal(alphas[""], alphas["--flip none"])  # the run's eval.flip: false
    assert not np.allclose(alphas["--flip"], alphas[""]) and not np.allclose(alphas["--flip dihedral"], alphas["--flip"])


def test_predict_size_benchmark_scores_both_paths(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_phantom_config(tiny_model("medical_matting")), run)  # data.resize: 32; phantoms are 64²
    assert main(["phantoms", "--cases", "2", "--seed", "50", "--output", str(tmp_path / "new")]) == 0
    assert load_benchmark("predict_size").main(["--run", str(run), "--data", str(tmp_path / "new"), "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 cases, data.resize (32, 32)" in printed
    errors = [float(line.split(":")[1]) for line in printed.splitlines() if line.startswith("  ")]
    assert len(errors) == 2 and all(0 < error < 1 for error in errors)  # as trained, own size

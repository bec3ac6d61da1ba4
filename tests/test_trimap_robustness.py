"""Trimap robustness (AdaMatting Table 4): dilated trimaps, trimap accuracy / mIoU, and the benchmark."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from medmat.data.phantom import make_phantom_dataset
from medmat.engine import crossval, load_config, load_run
from medmat.errors import MedmatError
from medmat.labels.training_trimaps import dilate_unknown
from medmat.labels.trimap import trimap_from_masks
from medmat.metrics import trimap_accuracy, trimap_miou
from tiny_configs import load_benchmark

B, U, F = 0, 128, 255


# --- dilate_unknown -------------------------------------------------------------------------------


def test_dilate_unknown_grows_the_band_into_foreground_and_background_by_exactly_n_pixels():
    # Background | one unknown column | foreground, left to right.
    trimap = np.array([[B, B, B, B, U, F, F, F, F]] * 3, dtype=np.uint8)
    np.testing.assert_array_equal(dilate_unknown(trimap, 1)[0], [B, B, B, U, U, U, F, F, F])
    np.testing.assert_array_equal(dilate_unknown(trimap, 3)[0], [B, U, U, U, U, U, U, U, F])
    # The band reaches the border and stops there.
    np.testing.assert_array_equal(dilate_unknown(trimap, 6)[0], [U] * 9)
    assert (dilate_unknown(trimap, 3) == dilate_unknown(trimap, 3)[0]).all()


def test_dilate_unknown_uses_chessboard_distance_and_keeps_the_input():
    # One unknown pixel in foreground: +2 px is the 5 x 5 square around it, corners included.
    trimap = np.full((7, 7), F, dtype=np.uint8)
    trimap[3, 3] = U
    before = trimap.copy()
    expected = np.full((7, 7), F, dtype=np.uint8)
    expected[1:6, 1:6] = U
    np.testing.assert_array_equal(dilate_unknown(trimap, 2), expected)
    np.testing.assert_array_equal(trimap, before)


def test_dilate_unknown_by_zero_is_the_standard_trimap_and_a_bandless_trimap_stays():
    # Resampled grey levels: <= 25 background, >= 230 foreground, unknown between.
    grey = np.array([[3, 25, 26, 127, 129, 229, 230, 250]], dtype=np.uint8)
    np.testing.assert_array_equal(dilate_unknown(grey, 0), [[B, B, U, U, U, U, F, F]])
    bandless = np.array([[B, B, F, F]] * 2, dtype=np.uint8)
    np.testing.assert_array_equal(dilate_unknown(bandless, 5), bandless)
    with pytest.raises(MedmatError, match="pixels must be >= 0"):
        dilate_unknown(bandless, -1)


# --- trimap accuracy and mIoU ---------------------------------------------------------------------


def test_trimap_accuracy_and_miou_by_hand():
    predicted = np.array([[0, 0, 0], [1, 1, 2]])
    target = np.array([[0, 0, 1], [1, 1, 1]])
    assert trimap_accuracy(predicted, target) == pytest.approx(4 / 6)
    # IoU: class 0 2/3, class 1 2/4, class 2 (predicted only) 0/1.
    assert trimap_miou(predicted, target) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert trimap_miou(target, target) == 1.0 and trimap_accuracy(target, target) == 1.0


def test_trimap_miou_leaves_classes_absent_from_both_maps_out():
    predicted = np.array([[0, 0, 1]], dtype=np.uint8)
    target = np.array([[0, 1, 1]], dtype=np.int64)
    # No foreground anywhere: mean of class 0 (1/2) and class 1 (1/2) only, not (1/2 + 1/2 + x) / 3.
    assert trimap_miou(predicted, target) == pytest.approx(0.5)
    assert trimap_accuracy(predicted, target) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "predicted, target, message",
    [
        (np.zeros((2, 2), int), np.zeros((2, 3), int), "predicted classes are"),
        (np.zeros((2, 2)), np.zeros((2, 2), int), "must be integer class indices"),
        (np.full((2, 2), 3), np.zeros((2, 2), int), r"must lie in 0..2"),
        (np.zeros((0, 2), int), np.zeros((0, 2), int), "no pixels"),
    ],
)
def test_trimap_metrics_refuse_bad_class_maps(predicted, target, message):
    with pytest.raises(MedmatError, match=message):
        trimap_miou(predicted, target)


# --- the benchmark end to end ---------------------------------------------------------------------


def _benchmark():
    return load_benchmark("trimap_robustness")


def _optimal_classes(alpha: np.ndarray) -> np.ndarray:
    return np.where(alpha <= 0, 0, np.where(alpha >= 1, 2, 1))


def _dilated_classes(trimap: np.ndarray, pixels: int) -> np.ndarray:
    """Classes of the trimap with every known pixel within chessboard distance ``pixels`` of the band unknown."""
    classes = np.where(trimap == U, 1, np.where(trimap == F, 2, 0))
    distance = ndimage.distance_transform_cdt(classes != 1, metric="chessboard")
    return np.where(distance <= pixels, 1, classes)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-fold, 1-epoch AdaMatting of 2 x 4 width on six 32-pixel phantoms with annotator trimaps."""
    samples = make_phantom_dataset(6, size=32, n_annotators=3)
    samples = [dataclasses.replace(s, trimap=trimap_from_masks(s.masks)) for s in samples]
    config = load_config("adamatting_lite", [
        "model.encoder_channels=[4,4,8,8,8]", "model.propagation_channels=4", "data.dataset=phantom:6",
        "data.trimaps=null", "data.input_size=32", "split.scheme=kfold", "split.k=2", "optim.epochs=1",
        "eval.every=0", "eval.num_samples=2", "train.progress=false", "train.tensorboard=false", "train.num_threads=1",
    ])
    run = tmp_path_factory.mktemp("robustness") / "ada"
    crossval(config, run, samples=samples)
    return run, samples


def test_benchmark_scores_dilated_trimaps_against_independent_values(tiny_run, tmp_path):
    run, samples = tiny_run
    output = tmp_path / "out"
    report = _benchmark().main(
        ["--run", str(run), "--output", str(output), "--dilations", "0", "2", "--figure-cases", "2"], samples
    )
    assert list(report["rows"]) == [
        "adamatting, unknown +0 px", "adamatting, unknown +2 px", "Closed-form, unknown +0 px", "Closed-form, unknown +2 px",
    ]
    by_id = {s.id: s for s in samples}
    targets = {s.id: _optimal_classes(s.alpha) for s in samples}

    # Undilated, the model row reproduces the run's own Table IV evaluation (metrics.json of each fold).
    metrics = [json.loads((run / f"fold-{fold}" / "metrics.json").read_text()) for fold in (0, 1)]
    evaluated = [case["region"] for record in metrics for case in record["cases"]]
    undilated = report["rows"]["adamatting, unknown +0 px"]
    assert undilated["n"] == 6
    for metric in ("SAD", "MSE", "Grad", "Conn"):
        assert undilated["mean"][metric] == pytest.approx(np.mean([c[metric] for c in evaluated]))

    # The given trimap's accuracy after +2 px, from a chessboard distance transform.
    given = [np.mean(_dilated_classes(s.trimap, 2) == targets[s.id]) for s in samples]
    assert report["rows"]["adamatting, unknown +2 px"]["mean"]["given Acc"] == pytest.approx(np.mean(given))

    # The adapted trimap of one case, from the fold model's own forward pass.
    record = next(
        r for r in report["cases"] if r["fold"] == "fold-0" and r["dilation"] == 2 and r["method"] == "adamatting"
    )
    sample = by_id[record["id"]]
    model, _ = load_run(run / "fold-0")
    levels = _dilated_classes(sample.trimap, 2).astype(np.float32) / 2
    with torch.no_grad():
        batch = {"image": torch.from_numpy(sample.image)[None], "trimap": torch.from_numpy(levels)[None, None]}
        adapted = model(batch)
    adapted_classes = np.rint(adapted["adapted_trimap"][0, 0].numpy() * 2).astype(int)
    assert record["adapted Acc"] == pytest.approx(np.mean(adapted_classes == targets[sample.id]))

    # Closed-form scores every case with a known label left (one label: that constant), no adapted trimap.
    dilated = [_dilated_classes(s.trimap, 2) for s in samples]
    closed_form = report["rows"]["Closed-form, unknown +2 px"]
    assert closed_form["n"] == sum(bool((classes == 0).any() or (classes == 2).any()) for classes in dilated)
    assert "adapted Acc" not in closed_form["mean"] and report["rows"]["Closed-form, unknown +0 px"]["n"] == 6

    assert json.loads((output / "robustness.json").read_text())["rows"] == json.loads(json.dumps(report["rows"]))
    markdown = (output / "robustness.md").read_text()
    assert "| adamatting, unknown +2 px | 6 |" in markdown and "adapted mIoU" in markdown
    assert (output / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_refuses_unfinished_or_missing_folds_and_runs_the_chosen_ones(tiny_run, tmp_path):
    run, samples = tiny_run
    benchmark = _benchmark()
    final = run / "fold-1" / "final.pt"
    final.rename(final.with_name("held.pt"))
    try:
        with pytest.raises(MedmatError, match="fold-1 not finished"):
            benchmark.main(["--run", str(run), "--output", str(tmp_path), "--methods"], samples)
        report = benchmark.main(["--run", str(run), "--output", str(tmp_path), "--folds", "0", "--dilations", "1",
                                 "--methods", "--figure-cases", "0"], samples)
    finally:
        final.with_name("held.pt").rename(final)
    assert report["folds"] == ["fold-0"] and list(report["rows"]) == ["adamatting, unknown +1 px"]
    assert report["rows"]["adamatting, unknown +1 px"]["n"] == 3
    with pytest.raises(MedmatError, match="no fold-7"):
        benchmark.main(["--run", str(run), "--output", str(tmp_path), "--folds", "7"], samples)

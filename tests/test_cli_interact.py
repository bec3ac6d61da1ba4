"""``medmat interact`` and ``medmat evaluate --uncertainty`` on a tiny "nig" run, and the engine's user maps.

A tiny dugMatting model (Medical Matting base with a few channels) is trained for one epoch on 8
phantoms resized to 32 x 32 (2 folds: 4 training and 4 held-out cases); phantoms have no trimaps,
so the Table IV region is the whole image. The fusion protocols (probe, binary, brush, patch) run
on it and on tiny_configs' image-following model, which is sure of a phantom's background and
lesion like a trained model; the benchmarks of the fusion (its ceiling, cost and parameters) too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from medmat.cli.main import main
from medmat.engine import load_run, train
from medmat.engine.distributed import DistributedContext
from medmat.engine.inference import predict_as_trained
from medmat.data.user_maps import USER_MAP_VALUES
from medmat.engine.loop import build_training
from medmat.engine.trainer import load_samples
from medmat.interaction.step import predict_nig
from medmat.data.user_maps import LABEL_TOLERANCE
from medmat.reporting import example_grid
from medmat.interaction.actions import PROBE_LEVELS
from medmat.interaction.fusion import DEFAULT_PARAMS
from tiny_configs import (
    IMAGE_FOLLOWING,
    MEDICAL_TINY,
    NIG_TINY,
    finished_run,
    image_following_run,
    load_benchmark,
    nig_config,
    save_run,
    tiny_phantom_config,
)

#: example_grid's tile side (inches) and resolution: a grid of R x C pictures is (C, R) * 1.8 * 110 pixels.
TILE_PIXELS = 1.8 * 110


# Tiny networks: a second thread only waits on a shared CPU. The "nig" run (nig_run) is conftest's.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory):
    """An untrained Medical Matting "run": its final.pt and a metrics.json naming 4 held-out phantoms."""
    run = save_run(tmp_path_factory.mktemp("medical") / "run", MEDICAL_TINY, loss={"name": "medical_matting"},
                   two_folds=True)
    return finished_run(run, MEDICAL_TINY)


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as picture:
        return picture.width, picture.height


def test_interact_writes_one_row_per_round_and_the_figure(nig_run, tmp_path):
    out = tmp_path / "interact"
    args = ["interact", "--run", str(nig_run), "--simulate", "2", "--proposals", "2", "--patch-size", "16"]
    assert main([*args, "-o", str(out)]) == 0
    test_ids = json.loads((nig_run / "metrics.json").read_text())["test_ids"]
    record = json.loads((out / "interaction.json").read_text())
    cases = record["simulation"]["cases"]
    assert [case["id"] for case in cases] == test_ids

    for group in ("region", "whole"):
        table = json.loads((out / f"table_iv_{group}.json").read_text())
        rounds = ["0 interactions", "1 interaction", "2 interactions"]
        assert [name for name in table["rows"] if "," not in name] == rounds
        assert "1 interaction, labels applied" in table["rows"]
        assert "2 interactions, ground truth in the labelled patches (bound)" in table["rows"]
        for index, name in enumerate(rounds):
            expected = np.mean([case[f"round-{index}"][group]["SAD"] for case in cases])
            row = table["rows"][name]
            assert row["n"] == len(test_ids) and row["mean"]["SAD"] == pytest.approx(expected)
        markdown = (out / f"table_iv_{group}.md").read_text()
        assert "| 1 interaction | 4 |" in markdown
        assert (out / f"table_iv_{group}.csv").read_text().splitlines()[0] == "method,n,SAD,MSE,Grad,Conn"
    # Without trimaps the Table IV region is the whole image.
    assert "whole image" in (out / "table_iv_region.md").read_text().splitlines()[0]
    region_rows = json.loads((out / "table_iv_region.json").read_text())["rows"]
    assert region_rows == json.loads((out / "table_iv_whole.json").read_text())["rows"]
    # A 32 x 32 image is a 2 x 2 grid of 16-pixel patches: 2 proposals label half of it, then the
    # other half (labelled patches are not proposed again).
    for case in cases:
        fractions = [case[f"round-{index}"]["labelled_fraction"] for index in range(3)]
        assert fractions == [0.0, 0.5, 1.0]
    # 4 cases; image, ground truth, 3 alphas and 2 epistemic maps.
    assert _png_size(out / "interaction.png") == (round(7 * TILE_PIXELS), round(4 * TILE_PIXELS))


def test_interact_with_refinement_adds_the_refined_row(nig_run, tmp_path):
    out = tmp_path / "refined"
    args = ["interact", "-r", str(nig_run), "--simulate", "1", "--proposals", "1", "--refine-steps", "2"]
    assert main([*args, "--figure", "1", "-o", str(out)]) == 0
    table = json.loads((out / "table_iv_whole.json").read_text())
    assert [name for name in table["rows"] if "," not in name] == ["0 interactions", "1 interaction", "after refinement"]
    record = json.loads((out / "interaction.json").read_text())
    assert len(record["refiner_losses"]) == 1 and len(record["refiner_losses"][0]) == 2
    assert all("refined_patches" in case["refined"] for case in record["simulation"]["cases"])
    # 1 case; image, ground truth, 2 alphas, the refined alpha and 1 epistemic map.
    assert _png_size(out / "interaction.png") == (round(6 * TILE_PIXELS), round(1 * TILE_PIXELS))


def test_interact_refuses_a_run_that_is_not_nig_in_one_line(medical_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["interact", "--run", str(medical_run), "--simulate", "1", "-o", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medmat: error:")
    assert "'medical_matting'" in lines[0] and "not a 'nig' model" in lines[0]
    assert not out.exists()


def test_evaluate_uncertainty_reports_aurocs_and_calibration_of_a_nig_run(nig_run, tmp_path):
    out = tmp_path / "evaluate"
    assert main(["evaluate", "--run", str(nig_run), "-o", str(out), "--samples", "2", "--uncertainty"]) == 0
    report = json.loads((out / "uncertainty.json").read_text())
    names = ("prob_unet_entropy", "alpha_entropy", "epistemic", "aleatoric")
    assert set(report["auroc"]) == {f"{name}/{kind}" for name in names for kind in ("error", "disagreement")}
    values = [value for value in report["auroc"].values() if value is not None]
    assert values and all(0.0 <= value <= 1.0 for value in values)
    assert set(report["calibration"]) == {"one_sided", "central", "one_sided_recalibrated", "central_recalibrated"}
    assert all(0.0 <= curve["ece"] <= 1.0 for curve in report["calibration"].values())
    assert (out / "reliability.png").is_file() and "| epistemic |" in (out / "uncertainty.md").read_text()

    # The same AUROC, computed independently: the run's model, the command's seeding, sklearn.
    model, config = load_run(nig_run)
    by_id = {sample.id: sample for sample in load_samples(config)}
    cases = [by_id[i] for i in report["test_ids"]]
    torch.manual_seed(0)
    maps = [predict_nig(model, case.image, None, case.trimap, num_samples=2)[0] for case in cases]
    errors = np.concatenate([np.abs(m["alpha"] - c.alpha).ravel() > 0.1 for m, c in zip(maps, cases)])
    epistemic = np.concatenate([m["epistemic"].ravel() for m in maps])
    assert report["num_pixels"] == 4 * 32 * 32
    assert errors.any() and not errors.all()
    assert report["auroc"]["epistemic/error"] == pytest.approx(roc_auc_score(errors, epistemic))


def test_evaluate_uncertainty_scores_the_alpha_the_tables_score_with_their_views(nig_run, tmp_path):
    # The AUROC for |error| > 0.1 is about the tables' errors: with --flip, those of the views' mean alpha.
    reports = {}
    for flip in ("none", "dihedral"):
        out = tmp_path / flip
        assert main(["evaluate", "--run", str(nig_run), "-o", str(out), "--samples", "2", "--uncertainty",
                     "--flip", flip]) == 0
        reports[flip] = json.loads((out / "uncertainty.json").read_text())
    model, config = load_run(nig_run)
    by_id = {sample.id: sample for sample in load_samples(config)}
    cases = [by_id[i] for i in reports["dihedral"]["test_ids"]]
    torch.manual_seed(0)
    maps = [predict_as_trained(model, case.image, 2, case.trimap, flip="dihedral") for case in cases]
    errors = np.concatenate([np.abs(m["alpha"] - c.alpha).ravel() > 0.1 for m, c in zip(maps, cases)])
    entropy = np.concatenate([m["lesion_uncertainty"].ravel() for m in maps])
    epistemic = np.concatenate([m["epistemic"].ravel() for m in maps])
    assert errors.any() and not errors.all()
    assert reports["dihedral"]["auroc"]["alpha_entropy/error"] == pytest.approx(roc_auc_score(errors, entropy))
    assert reports["dihedral"]["auroc"]["epistemic/error"] == pytest.approx(roc_auc_score(errors, epistemic))
    assert reports["dihedral"]["auroc"]["alpha_entropy/error"] != reports["none"]["auroc"]["alpha_entropy/error"]


def test_evaluate_uncertainty_of_a_model_without_nig_has_no_calibration(medical_run, tmp_path):
    out = tmp_path / "evaluate"
    assert main(["evaluate", "-r", str(medical_run), "-o", str(out), "--samples", "2", "--uncertainty"]) == 0
    report = json.loads((out / "uncertainty.json").read_text())
    assert {key.split("/")[0] for key in report["auroc"]} == {"prob_unet_entropy", "alpha_entropy"}
    assert report["calibration"] == {} and not (out / "reliability.png").exists()
    assert "expected calibration error" not in (out / "uncertainty.md").read_text()


def test_training_items_of_nig_models_carry_user_maps_drawn_from_their_alpha():
    config = nig_config()
    samples = load_samples(config)[:4]
    training = build_training(config, samples, (32, 32), DistributedContext())
    labelled = 0
    for epoch in range(3):
        training.dataset.set_epoch(epoch)
        for index in range(len(samples)):
            item = training.dataset[index]
            user_map, alpha = item["user_map"], item["alpha"]
            assert user_map.shape == (1, 32, 32) and user_map.dtype == torch.float32
            assert set(torch.unique(user_map).tolist()) <= set(USER_MAP_VALUES)
            # Foreground and background labels hold for every pixel of their patch of the
            # (augmented) alpha; transition patches are mixed.
            assert torch.all(alpha[user_map == 1.0] >= 1.0 - LABEL_TOLERANCE)
            assert torch.all(alpha[user_map == -1.0] <= LABEL_TOLERANCE)
            labelled += bool(user_map.any())
    assert labelled > 0
    # The model reads the batch's map instead of drawing its own.
    batch = {key: value[None] for key, value in item.items()}
    assert torch.equal(training.model.train().user_map_for(batch), batch["user_map"])

    plain = tiny_phantom_config(MEDICAL_TINY, {"name": "medical_matting"})
    assert "user_map" not in build_training(plain, samples, (32, 32), DistributedContext()).dataset[0]
    without = tiny_phantom_config({**NIG_TINY, "random_user_maps": False}, nig_config()["loss"])
    assert "user_map" not in build_training(without, samples, (32, 32), DistributedContext()).dataset[0]


def test_example_grid_outlines_boxes(tmp_path):
    black = np.zeros((32, 32), np.float32)  # magma maps 0 to black: any colour comes from the outline

    def coloured_pixels(boxes):
        path = tmp_path / "grid.png"
        example_grid(path, [{"epistemic": black}], boxes=boxes, tile_inches=2.0)
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return (pixels[..., 1] > 150) & (pixels[..., 2] > 150) & (pixels[..., 0] < 100)  # cyan

    assert not coloured_pixels(None).any()
    outlined = coloured_pixels([{"epistemic": [(0, 0, 16, 16)]}])
    assert outlined.any()
    rows, cols = np.nonzero(outlined)
    # The box covers the top-left quarter of the picture, so its outline spans about a quarter of the figure.
    assert 0.15 < (cols.max() - cols.min()) / outlined.shape[1] < 0.5
    with pytest.raises(ValueError, match="one entry per row"):
        example_grid(tmp_path / "bad.png", [{"epistemic": black}], boxes=[{}, {}])


def test_interact_simulates_on_the_view_the_model_was_trained_on(tmp_path):
    config = nig_config()
    config["data"]["input_size"] = 16  # the 32 x 32 phantoms' centre, as training and evaluate see them
    train(config, tmp_path / "run")
    out = tmp_path / "interact"
    args = ["interact", "--run", str(tmp_path / "run"), "--simulate", "1", "--proposals", "1", "--patch-size", "8"]
    assert main([*args, "-o", str(out), "--figure", "0"]) == 0
    cases = json.loads((out / "interaction.json").read_text())["simulation"]["cases"]
    # One 8 x 8 patch labels a quarter of a 16 x 16 view (a sixteenth of the 32 x 32 case).
    assert cases and all(case["round-1"]["labelled_fraction"] == 0.25 for case in cases)


# --- the fusion protocols (any model) --------------------------------------------------------------


@pytest.fixture(scope="module")
def following_run(tmp_path_factory):
    """tiny_configs' image-following model as a finished run: sure of a phantom's background and
    lesion, unsure on its border; a metrics.json naming 4 held-out phantoms of 32 x 32."""
    return finished_run(image_following_run(tmp_path_factory.mktemp("following") / "run"), IMAGE_FOLLOWING)


def test_probe_clicks_on_any_run_give_rounds_noisy_rows_noc_and_the_figure(following_run, tmp_path):
    out = tmp_path / "probe"
    args = ["interact", "--run", str(following_run), "--protocol", "probe", "--simulate", "3", "--figure", "2"]
    assert main([*args, "-o", str(out)]) == 0
    record = json.loads((out / "interaction.json").read_text())
    cases = record["simulation"]["cases"]
    assert len(cases) == 4 and record["settings"]["fusion"]["smoothness"] == DEFAULT_PARAMS.smoothness
    table = json.loads((out / "table_iv_region.json").read_text())
    rounds = [f"{k} interaction{'' if k == 1 else 's'}" for k in range(4)]
    assert list(table["rows"]) == rounds + [f"{name}, noisy user" for name in rounds[1:]]
    for k, name in enumerate(rounds):
        assert table["rows"][name]["mean"]["SAD"] == pytest.approx(np.mean([c[f"round-{k}"]["region"]["SAD"]
                                                                           for c in cases]))
    # (Whether the clicks help is measured on phantoms with a coherent error, tests/test_interaction_fusion.py;
    # this toy model at 32 x 32 is unsure of most of the image.) The summary counts what the cases say.
    summary = record["summary"]
    worse = [c["id"] for c in cases if max(c[f"round-{k}"]["whole"]["SAD"] for k in (1, 2, 3))
             > c["round-0"]["whole"]["SAD"]]
    assert summary["round"]["whole_worse_ids"] == worse and summary["round"]["whole_worse"] == len(worse)
    assert summary["round"]["seconds"]["count"] == sum(c[f"round-{k}"]["acted"] for c in cases for k in (1, 2, 3))
    for case in cases:
        assert all(action["kind"] == "probe" and action["value"] in PROBE_LEVELS for action in case["actions"]["round"])
        assert all(1 <= case["noc"][prefix][goal] <= 4 for prefix in ("round", "noisy") for goal in ("40", "60"))
        reached = next((k for k in range(1, 4) if case[f"round-{k}"]["region"]["SAD"]
                        <= 0.6 * case["round-0"]["region"]["SAD"]), 4)
        assert case["noc"]["round"]["40"] == reached
    noc = (out / "noc.md").read_text()
    assert "| clean | 4 |" in noc and "| noisy | 4 |" in noc
    # 2 cases; image, ground truth and the alpha after 0..3 interactions.
    assert _png_size(out / "interaction.png") == (round(6 * TILE_PIXELS), round(2 * TILE_PIXELS))


@pytest.mark.parametrize("flip", ["none", "flips"])
def test_round_0_of_a_fusion_protocol_is_evaluates_table_iv(medical_run, tmp_path, flip):
    """Round 0 predicts each held-out case as `medmat evaluate` does (the test-time views, the
    sampled latents from the same seed), so with one seed the two tables agree."""
    evaluated, interacted = tmp_path / "evaluate", tmp_path / "interact"
    common = ["--run", str(medical_run), "--samples", "2", "--flip", flip, "--seed", "3"]
    assert main(["evaluate", *common, "-o", str(evaluated), "--figure", "0"]) == 0
    assert main(["interact", *common, "--protocol", "probe", "--simulate", "1", "--no-noisy", "--figure", "0",
                 "-o", str(interacted)]) == 0
    table_iv = json.loads((evaluated / "summary.json").read_text())["table_iv"]["mean"]
    round_0 = json.loads((interacted / "table_iv_region.json").read_text())["rows"]["0 interactions"]["mean"]
    assert round_0["SAD"] == pytest.approx(table_iv["SAD"], rel=1e-6)
    assert round_0["Grad"] == pytest.approx(table_iv["Grad"], rel=1e-6)
    settings = json.loads((interacted / "interaction.json").read_text())["settings"]
    assert settings["flip"] == {"none": False, "flips": "flips"}[flip]


@pytest.mark.parametrize("protocol, kinds", [("binary", {"probe"}), ("brush", {"stroke"}), ("patch", {"patch"})])
def test_the_controls_run_through_the_same_fusion_on_a_nig_run(nig_run, tmp_path, protocol, kinds):
    out = tmp_path / protocol
    args = ["interact", "-r", str(nig_run), "--protocol", protocol, "--simulate", "2", "--no-noisy",
            "--proposals", "2", "--patch-size", "16", "--samples", "2", "--figure", "0"]
    assert main([*args, "-o", str(out)]) == 0
    record = json.loads((out / "interaction.json").read_text())
    table = json.loads((out / "table_iv_whole.json").read_text())
    assert list(table["rows"]) == ["0 interactions", "1 interaction", "2 interactions"]
    for case in record["simulation"]["cases"]:
        actions = case["actions"]["round"]
        assert {action["kind"] for action in actions} <= kinds and set(case["noc"]) == {"round"}
        if protocol == "binary":
            assert {action["value"] for action in actions} <= {0.0, 1.0}
        if protocol == "patch":
            assert len(actions) == 4  # 2 patches per interaction: the whole 32 x 32 image after 2
    assert not (out / "interaction.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--refine-steps", "2"], "--refine-steps and --threshold belong to --protocol dugmatting"),
    (["--fusion", "smoothness=-1"], "fusion parameter smoothness must be a positive number"),
    (["--fusion", "lamda=3"], "unknown fusion parameter lamda"),
    (["--fusion", "smoothness=much"], "--fusion smoothness needs a number"),
    (["--fusion", "smoothness"], "--fusion takes KEY=VALUE"),
])
def test_fusion_protocols_refuse_bad_settings_in_one_line(following_run, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["interact", "-r", str(following_run), "--protocol", "probe", "--simulate", "1", *extra,
                 "-o", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and not out.exists()


def test_the_ceiling_benchmark_finds_the_best_offset_of_each_held_out_case(following_run, tmp_path, capsys):
    script = load_benchmark("interaction_ceiling")
    assert script.main(["--run", str(following_run), "--output", str(tmp_path / "ceiling")]) == 0
    record = json.loads((tmp_path / "ceiling" / "ceiling.json").read_text())
    assert len(record["cases"]) == 4
    for case in record["cases"]:
        before = case["prediction"]["whole"]["SAD"]
        assert case["offset"]["metrics"]["whole"]["SAD"] <= before
        assert case["offset_temperature"]["metrics"]["whole"]["SAD"] <= case["offset"]["metrics"]["whole"]["SAD"] + 1e-3
        pasted = [case["regions"]["pasted_levels"][k]["whole"]["SAD"] for k in ("1", "3", "5")]
        assert pasted == sorted(pasted, reverse=True)  # each further region fixed lowers the error
    printed = capsys.readouterr().out
    assert "| best global logit offset |" in printed and (tmp_path / "ceiling" / "ceiling.md").is_file()
    assert "| truth at the 5 probe levels pasted into the k worst error regions |" in printed
    assert script.main(["--run", str(tmp_path / "nowhere")]) == 1


def test_the_cost_and_parameter_benchmarks_report_what_they_measured(following_run, tmp_path):
    cost = load_benchmark("fusion_cost")
    assert cost.main(["--sizes", "64", "256", "--actions", "2", "--repeats", "1", "--json", str(tmp_path / "c.json")]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    for size, entry in report["sizes"].items():
        assert len(entry["seconds"]) == 2 and entry["median"] == pytest.approx(np.median(entry["seconds"]))
        assert entry["ratio"] == (None if size == "64" else pytest.approx(entry["median"] / 0.2))
        assert all(0 < fraction < 0.5 for fraction in entry["band_fraction"])
    sweep = load_benchmark("fusion_params")
    arguments = ["--run", str(following_run), "--steps", "2", "--grid", "smoothness=10,100", "--json",
                 str(tmp_path / "p.json")]
    assert sweep.main(arguments) == 0
    results = json.loads((tmp_path / "p.json").read_text())["results"]
    assert [r["parameters"] for r in results] == [{"smoothness": 10}, {"smoothness": 100}]
    assert all(r["mean_ratio"][0] == 1.0 and len(r["mean_ratio"]) == 3 for r in results)
    everything = json.loads((tmp_path / "p.json").read_text())["cases"]
    assert sweep.main([*arguments[:-2], "--skip", "1", "--json", str(tmp_path / "s.json")]) == 0
    skipped = json.loads((tmp_path / "s.json").read_text())
    assert skipped["cases"] == everything - 1 and skipped["skip"] == 1
    assert sweep.main([*arguments[:-2], "--skip", "-1"]) == 1

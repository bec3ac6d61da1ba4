"""benchmarks/model_cost.py: one cost table (parameters, step and epoch time, throughput) for every model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from medmat.engine.config import load_config
from medmat.engine.inference import build_model_from_config
from tiny_configs import load_benchmark

REPO = Path(__file__).resolve().parents[1]
LITE_CONFIGS = {"lite", "region_aware_matting_lite", "adamatting_lite", "tcp_matting_lite", "nig_medical_matting_lite",
               "nig_adamatting_lite"}
#: Models whose predict takes an output_size (the "pred 2x/s" column).
RESOLUTION_FREE = {"region_aware_matting_lite"}


@pytest.fixture
def script(single_thread):
    """The benchmark module (torch threads restored after the test by conftest's fixture)."""
    return load_benchmark("model_cost")


def _run(script, capsys, tmp_path, *arguments) -> tuple[dict, list[str]]:
    path = tmp_path / "cost.json"
    assert script.main([*arguments, "--size", "16", "--repeats", "1", "--samples", "2", "--json", str(path)]) == 0
    return json.loads(path.read_text()), capsys.readouterr().out.splitlines()


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(math.prod(parameter.shape) for parameter in module.parameters())


def test_training_batch_trimap_is_the_alphas(script):
    batch = script.training_batch(batch_size=2, size=16)
    alpha, trimap = batch["alpha"], batch["trimap"]
    assert trimap.shape == alpha.shape == (2, 1, 16, 16) and trimap.dtype == torch.float32
    expected = torch.where(alpha == 0, 0.0, torch.where(alpha == 1, 1.0, 0.5))
    torch.testing.assert_close(trimap, expected)
    assert set(trimap.unique().tolist()) == {0.0, 0.5, 1.0}
    assert trimap[0, 0, 8, 8] == 1 and trimap[0, 0, 0, 0] == 0  # the disc's centre and a corner


def test_every_lite_model_is_measured(script, capsys, tmp_path):
    report, lines = _run(script, capsys, tmp_path)
    labels = [row["model"] for row in report["rows"]]
    assert labels[0] == "lite" and LITE_CONFIGS <= set(labels)
    table = {line.split()[0]: line.split() for line in lines[2 : 2 + len(labels)]}
    assert set(table) == set(labels)
    for row in report["rows"]:
        model = build_model_from_config(load_config(row["model"]))
        assert row["parameters"] == _parameter_count(model)
        assert int(table[row["model"]][1]) == row["parameters"]
        owner = model.base if row["model"] == "nig_medical_matting_lite" else model  # NIG: its base's
        matting = getattr(owner, "matting_net", None)
        if matting is None:
            assert row["matting_parameters"] is None and table[row["model"]][2] == "-"
        else:
            assert row["matting_parameters"] == _parameter_count(matting) < row["parameters"]
            assert int(table[row["model"]][2]) == row["matting_parameters"]
        assert row["step_s"] > 0 and row["predict_per_s"] > 0
        assert row["epoch_s"] == pytest.approx(row["step_s"] * math.ceil(29 / 2))
        has_double = row["model"] in RESOLUTION_FREE
        assert (row["predict_2x_per_s"] is not None) == has_double
        assert (table[row["model"]][6] != "-") == has_double
    header = lines.index("ratio to lite:")
    assert lines[header + 2].split() == ["lite", "1.00", "1.00", "1.00"]
    tcp = next(row for row in report["rows"] if row["model"] == "tcp_matting_lite")
    tcp_ratios = next(line.split() for line in lines[header + 2 :] if line.startswith("tcp_matting_lite"))
    assert float(tcp_ratios[1]) == pytest.approx(tcp["parameters"] / report["rows"][0]["parameters"], abs=0.005)


def test_yaml_configs_and_overrides_apply_to_every_model(script, capsys, tmp_path):
    yaml_path = REPO / "medmat" / "configs" / "tcp_matting_lite.yaml"
    # Both trimap-guided models take encoder_channels: half widths shrink both.
    overrides = ["optim.batch_size=3", "model.encoder_channels=[8,8,16,32,48]"]
    report, lines = _run(script, capsys, tmp_path, "--configs", "adamatting_lite", str(yaml_path),
                         "--set", overrides[0], "--set", overrides[1])
    assert [row["model"] for row in report["rows"]] == ["adamatting_lite", "tcp_matting_lite"]
    assert report["batch_size"] == 3 and report["epoch_steps"] == 10 and report["overrides"] == overrides
    for row, config in zip(report["rows"], ("adamatting_lite", yaml_path)):
        narrow = build_model_from_config(load_config(config, overrides))
        assert row["parameters"] == _parameter_count(narrow) < _parameter_count(build_model_from_config(load_config(config)))
        assert row["epoch_s"] == pytest.approx(10 * row["step_s"])  # ceil(29 / 3) steps
    assert lines[0].startswith("16x16, batch 3, 2 samples")


def test_a_variant_is_the_first_config_with_one_more_override(script, capsys, tmp_path):
    wide = "model.matting_channels=[32,64]"
    report, lines = _run(script, capsys, tmp_path, "--configs", "lite", "--variant", wide)
    assert [row["model"] for row in report["rows"]] == ["lite", f"lite {wide}"] and report["variants"] == [wide]
    reference, variant = report["rows"]
    assert variant["parameters"] == _parameter_count(build_model_from_config(load_config("lite", [wide])))
    assert variant["matting_parameters"] > reference["matting_parameters"]  # only the matting network widened
    assert variant["parameters"] - variant["matting_parameters"] == reference["parameters"] - reference["matting_parameters"]
    assert report["ratios"][1]["step_s"] == pytest.approx(variant["step_s"] / reference["step_s"])
    assert any(line.startswith(f"lite {wide}") for line in lines)

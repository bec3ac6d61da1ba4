"""benchmarks/case_spread.py: Table V over folds, over patients, and per lesion size."""

from __future__ import annotations

import json

import pytest
from tiny_configs import load_benchmark


def _records():
    # Patient A: two small lesions scored badly; patient B: one large lesion scored well.
    return [
        {"fold": 0, "id": "A/nodule-0/slice-0", "GED": 0.8, "Dice": 0.4, "SAD": 0.01},
        {"fold": 0, "id": "A/nodule-0/slice-1", "GED": 0.6, "Dice": 0.6, "SAD": 0.03},
        {"fold": 1, "id": "B/nodule-0/slice-0", "GED": 0.2, "Dice": 0.9, "SAD": 0.10},
    ]


def test_patients_are_averaged_first_and_sizes_are_binned():
    script = load_benchmark("case_spread")
    areas = {"A/nodule-0/slice-0": 30.0, "A/nodule-0/slice-1": 60.0, "B/nodule-0/slice-0": 250.0}
    lines, summary = script.spread_lines(_records(), areas, [50.0, 100.0, 200.0])
    dice = summary["metrics"]["Dice"]
    assert dice["case_mean"] == pytest.approx((0.4 + 0.6 + 0.9) / 3)
    assert dice["patient_mean"] == pytest.approx((0.5 + 0.9) / 2)  # A's two slices count once
    assert dice["patient_std"] == pytest.approx(0.2)
    assert dice["fold_means"] == pytest.approx([0.5, 0.9])
    sizes = {(s["low"], s["high"]): s for s in summary["sizes"]}
    assert sizes[(0.0, 50.0)]["cases"] == 1 and sizes[(0.0, 50.0)]["Dice"] == pytest.approx(0.4)
    assert sizes[(200.0, None)]["GED"] == pytest.approx(0.2)
    assert any(line.startswith("| 100–200 | 0 |") for line in lines)  # an empty bin is shown, not dropped


def test_fold_records_read_every_fold_and_refuse_an_unfinished_run(tmp_path):
    script = load_benchmark("case_spread")
    for fold in (0, 1):
        (tmp_path / f"fold-{fold}").mkdir()
        case = {"id": f"P{fold}/s", "GED": 0.1, "Dice": 0.9, "whole": {"SAD": 0.02}}
        (tmp_path / f"fold-{fold}" / "metrics.json").write_text(json.dumps({"fold": fold, "cases": [case]}))
    assert [r["id"] for r in script.fold_records(tmp_path)] == ["P0/s", "P1/s"]
    with pytest.raises(script.MedmatError, match="no metrics.json"):
        script.fold_records(tmp_path / "empty")


def test_worst_cases_come_lowest_dice_first_with_their_brightness_against_the_median():
    script = load_benchmark("case_spread")
    areas = {"A/nodule-0/slice-0": 30.0, "A/nodule-0/slice-1": 60.0, "B/nodule-0/slice-0": 250.0}
    # A fourth, unscored case of the dataset still counts in the median brightness (0.75).
    brightness = {"A/nodule-0/slice-0": 0.4, "A/nodule-0/slice-1": 0.8, "B/nodule-0/slice-0": 0.9, "C": 0.7}
    lines, rows = script.worst_lines(_records(), areas, brightness, 2)
    assert [r["id"] for r in rows] == ["A/nodule-0/slice-0", "A/nodule-0/slice-1"]
    assert rows[0]["relative_brightness"] == pytest.approx(0.4 / 0.75)
    assert rows[0]["alpha_area"] == 30.0
    assert lines[-2].startswith("| A/nodule-0/slice-0 | 0 | 0.8000 | 0.4000 | 0.0100 | 30 | 0.53 |")

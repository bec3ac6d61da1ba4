"""How a cross-validation's results spread over patients and over lesion sizes, not only over folds.

Reads the per-case metrics every fold wrote (``fold-*/metrics.json``: each held-out case scored by
the model that did not train on it) and the ground-truth alphas of the run's dataset, then prints:

- Table V (whole image) GED, Dice and SAD as the mean over cases, the mean ± std over folds, and
  the mean ± std over patients (each patient's cases averaged first; the patient is the case id up
  to its first "/", as LIDC's ``LIDC-IDRI-0011/nodule-0/slice-0``) with the 10th, 50th and 90th
  percentiles of the patients' means;
- the same metrics per lesion size: the alpha area (sum of the ground-truth alpha, in pixels at
  the size the run scored) in the bins of ``--size-bins``;
- with ``--worst N``, the N cases of lowest Dice, with their alpha area and their image's
  brightness (99th-percentile intensity) against the median case's: a scan darker or brighter
  than the others shows there.

    python benchmarks/case_spread.py --run runs/lidc-all-bf16 [--size-bins 50,100,200] [--worst 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from machine import describe_machine, finish_report, machine_line  # benchmarks/ is the script's folder
from medmat.engine.held_out import run_config
from medmat.engine.inference import METRICS_NAME, crossval_folds
from medmat.engine.config import input_size
from medmat.engine.dataset import fit_sample
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from medmat.metrics.tables import mean_std_cell

METRICS = ("GED", "Dice", "SAD")


def fold_records(run: Path) -> list[dict]:
    """Every held-out case of a crossval folder (or one run): ``{"fold", "id", "GED", "Dice", "SAD"}``."""
    paths = [folder / METRICS_NAME for folder in crossval_folds(run)] or [run / METRICS_NAME]
    records = []
    for path in paths:
        if not path.is_file():
            raise MedmatError("not a finished medmat run or crossval folder: no metrics.json", run)
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            for case in result["cases"]:
                records.append({"fold": result.get("fold", 0), "id": case["id"], "GED": case["GED"],
                                "Dice": case["Dice"], "SAD": case["whole"]["SAD"]})
        except (ValueError, KeyError, TypeError) as error:
            raise MedmatError(f"unreadable metrics.json ({type(error).__name__}: {error})", path) from None
    return records


def patient_of(case_id: str) -> str:
    """The patient of a case id: its text up to the first "/" (the whole id when it has none)."""
    return case_id.split("/", 1)[0]


def spread_lines(records: list[dict], areas: dict[str, float], bins: list[float]) -> tuple[list[str], dict]:
    """The report's markdown lines and its JSON summary."""
    by_fold, by_patient = {}, {}
    for record in records:
        by_fold.setdefault(record["fold"], []).append(record)
        by_patient.setdefault(patient_of(record["id"]), []).append(record)
    summary = {"cases": len(records), "patients": len(by_patient), "folds": len(by_fold), "metrics": {}, "sizes": []}
    lines = [f"{len(records)} held-out cases, {len(by_patient)} patients, {len(by_fold)} folds", "",
             "| Table V (whole image) | mean over cases | mean ± std over folds | mean ± std over patients "
             "| patients' 10th / 50th / 90th percentile |", "|---|---|---|---|---|"]
    for metric in METRICS:
        folds = [np.mean([r[metric] for r in group]) for group in by_fold.values()]
        patients = [np.mean([r[metric] for r in group]) for group in by_patient.values()]
        percentiles = np.percentile(patients, [10, 50, 90])
        lines.append(f"| {metric} | {np.mean([r[metric] for r in records]):.4f} | {mean_std_cell(folds)} | "
                     f"{mean_std_cell(patients)} | {' / '.join(f'{p:.4f}' for p in percentiles)} |")
        summary["metrics"][metric] = {"case_mean": float(np.mean([r[metric] for r in records])),
                                      "fold_means": [float(v) for v in folds],
                                      "patient_mean": float(np.mean(patients)),
                                      "patient_std": float(np.std(patients)),
                                      "patient_percentiles_10_50_90": [float(p) for p in percentiles]}
    edges = [0.0, *bins, np.inf]
    lines += ["", "| alpha area (pixels) | cases | patients | " + " | ".join(METRICS) + " |",
              "|---|---|---|" + "---|" * len(METRICS)]
    for low, high in zip(edges[:-1], edges[1:]):
        chosen = [r for r in records if low <= areas[r["id"]] < high]
        name = f"{low:g}–{high:g}" if np.isfinite(high) else f"≥ {low:g}"
        if not chosen:
            lines.append(f"| {name} | 0 | 0 |" + " — |" * len(METRICS))
            continue
        means = {m: float(np.mean([r[m] for r in chosen])) for m in METRICS}
        lines.append(f"| {name} | {len(chosen)} | {len({patient_of(r['id']) for r in chosen})} | "
                     + " | ".join(f"{means[m]:.4f}" for m in METRICS) + " |")
        summary["sizes"].append({"low": low, "high": None if not np.isfinite(high) else high,
                                 "cases": len(chosen), **means})
    return lines, summary


def worst_lines(records: list[dict], areas: dict[str, float], brightness: dict[str, float], count: int) -> tuple[list[str], list]:
    """The ``count`` cases of lowest Dice as markdown lines, and as JSON rows.

    ``brightness``: each case's 99th-percentile image intensity; the table gives it relative to the
    median over every case of the dataset the run read (1.00: a typical scan).
    """
    typical = float(np.median(list(brightness.values())))
    worst = sorted(records, key=lambda r: r["Dice"])[:count]
    lines = ["", f"| the {len(worst)} cases of lowest Dice | fold | GED | Dice | SAD | alpha area | brightness / median |",
             "|---|---|---|---|---|---|---|"]
    rows = []
    for record in worst:
        relative = brightness[record["id"]] / typical if typical > 0 else float("nan")
        lines.append(f"| {record['id']} | {record['fold']} | {record['GED']:.4f} | {record['Dice']:.4f} | "
                     f"{record['SAD']:.4f} | {areas[record['id']]:.0f} | {relative:.2f} |")
        rows.append({**record, "alpha_area": areas[record["id"]], "relative_brightness": relative})
    return lines, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a crossval folder (or one train run)")
    parser.add_argument("--data", default=None, help="dataset (default: the run's data.dataset)")
    parser.add_argument("--size-bins", default="50,100,200", help="alpha-area bin edges in pixels")
    parser.add_argument("--worst", type=int, default=0, help="also list this many cases of lowest Dice")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    try:
        bins = sorted(float(v) for v in args.size_bins.split(","))
        run = Path(args.run)
        records = fold_records(run)
        config = run_config(args.run, args.data, None)
        wanted = {r["id"] for r in records}
        size = input_size(config)
        samples = load_samples(config)
        areas = {sample.id: float(np.sum(fit_sample(sample, size).alpha)) for sample in samples if sample.id in wanted}
        brightness = {sample.id: float(np.percentile(sample.image, 99)) for sample in samples} if args.worst > 0 else {}
        missing = wanted - set(areas)
        if missing:
            raise MedmatError(f"{len(missing)} scored cases are not in the dataset, e.g. {sorted(missing)[0]}", args.run)
    except (MedmatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lines, summary = spread_lines(records, areas, bins)
    if args.worst > 0:
        worst, summary["worst"] = worst_lines(records, areas, brightness, args.worst)
        lines += worst
    lines.append(machine_line())
    return finish_report({"run": args.run, **summary, "machine": describe_machine()}, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())

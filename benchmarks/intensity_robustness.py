"""How a run's held-out scores move when its test scans are darker or brighter than its training scans.

    python benchmarks/intensity_robustness.py "plain"=runs/cpu-e150-s0 "intensity"=runs/cpu-intensity-s0 \\
        [--scales 0.7,0.85,1,1.15] [--gamma 1] [--seed 0] [--mean NAME] [--threads 2] [--json PATH]

Every held-out case is predicted by the fold model that did not train on it, as ``medmat evaluate``
scores it (:func:`medmat.engine.held_out.evaluate_fold`, the run's own input size, region, flip and
mask seed), once per scale, its image replaced by ``clip(scale * image ** gamma, 0, 1)``: scale 1
and gamma 1 is the run's own evaluation. Printed per run and scale, over all held-out cases
pooled: Table IV (SAD / MSE / Grad / Conn on the unknown band) and Table V (GED, Dice).

A model that learnt the anatomy, not the scanner's intensity scale, keeps its scores as the scale
moves; MRI in particular has no absolute intensity between scanners and protocols.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import torch

from machine import describe_machine, finish_report, machine_line  # benchmarks/ is the script's folder
from medmat.data.transforms import change_intensity
from medmat.engine.evaluation import mean_case_metrics
from medmat.engine.held_out import evaluate_fold, run_config, runs_and_cases
from medmat.engine.inference import load_run
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from medmat.metrics.tables import mean_std_cell
from options import named_runs

TABLE_IV = ("SAD", "MSE", "Grad", "Conn")


def scored_run(run: str, scales: Sequence[float], gamma: float, seed: int) -> dict[float, dict]:
    """``{scale: mean_case_metrics of every held-out case}`` of one train or crossval run."""
    config = run_config(run, None, None)
    samples = load_samples(config)
    cases_by_scale = {scale: [] for scale in scales}
    for fold, (folder, held_out) in enumerate(runs_and_cases(run, samples)):
        model, fold_config = load_run(folder)
        for scale in scales:
            changed = [dataclasses.replace(case, image=change_intensity(case.image, scale, gamma)) for case in held_out]
            record = evaluate_fold(model, fold_config, changed, fold_config["eval"]["num_samples"], seed, fold)
            cases_by_scale[scale].extend(record["cases"])
    return {scale: mean_case_metrics(cases) for scale, cases in cases_by_scale.items()}


def metric_values(mean: dict) -> list[float | None]:
    """Table IV (region) then GED and Dice of one :func:`mean_case_metrics` record."""
    region = mean["region"] or {}
    return [region.get(m) for m in TABLE_IV] + [mean["GED"], mean["Dice"]]


def table_lines(results: dict[str, dict[float, dict]], gamma: float, mean_name: str | None = None) -> list[str]:
    """One markdown row per run and scale; with ``mean_name``, then per scale the mean ± std over the runs."""
    lines = [f"| run | scale (gamma {gamma:g}) | cases | IV SAD | IV MSE | IV Grad | IV Conn | V GED | V Dice |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, by_scale in results.items():
        for scale, mean in by_scale.items():
            cells = ["—" if value is None else f"{value:.4f}" for value in metric_values(mean)]
            lines.append(f"| {name} | {scale:g} | {mean['num_cases']} | " + " | ".join(cells) + " |")
    if mean_name:
        for scale in next(iter(results.values())):
            columns = zip(*(metric_values(by_scale[scale]) for by_scale in results.values()))
            cells = [mean_std_cell(list(values)) for values in columns]
            cases = sum(by_scale[scale]["num_cases"] for by_scale in results.values())
            lines.append(f"| **{mean_name}** | {scale:g} | {cases} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--scales", default="0.7,0.85,1,1.15", help="comma-separated brightness factors")
    parser.add_argument("--gamma", type=float, default=1.0, help="exponent applied before the scale (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the sampled masks (as medmat evaluate)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mean", default=None, metavar="NAME", help="add per scale a row NAME: mean ± std over the runs")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    try:
        scales = [float(value) for value in args.scales.split(",") if value.strip()]
        if not scales or min(scales) <= 0 or args.gamma <= 0:
            raise MedmatError(f"--scales and --gamma must be positive, got {args.scales!r} and {args.gamma}")
        runs = dict(named_runs(args.runs))
        torch.set_num_threads(args.threads)
        results = {name: scored_run(run, scales, args.gamma, args.seed) for name, run in runs.items()}
    except (MedmatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lines = table_lines(results, args.gamma, args.mean) + [machine_line()]
    report = {"runs": runs, "scales": scales, "gamma": args.gamma, "seed": args.seed,
              "results": {name: {str(scale): mean for scale, mean in by_scale.items()} for name, by_scale in results.items()},
              "machine": describe_machine()}
    return finish_report(report, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())

"""The ceiling of one coherent correction: the best global logit offset (and temperature) per held-out case.

For every held-out case of a run (a train run, a crossval fold, or a crossval folder: each fold's
model on its own test cases), the prediction's alpha is corrected by the one logit offset ``b``
(``sigmoid(logit(alpha) + b)``), and by the offset with a temperature (``sigmoid(a logit(alpha) + b)``,
temperature ``1 / a``), that minimise the case's Table IV SAD with the ground truth
(:mod:`medmat.interaction.ceiling`: an oracle, not a method). The table gives the mean Table IV
SAD before and after each correction and the change, and the whole-image SAD; what one coherent
answer per case could remove, and so what a well-spread probe can hope for.

A second table bounds what k = 1, 3, 5 answers could do at most when each fixes one error region
(:func:`~medmat.interaction.ceiling.region_oracles`: each region's own best offset and temperature;
the truth quantised to the five probe levels pasted into the regions; the best global correction,
then the pasted truth), as changes of the mean Table IV SAD, the way ``medmat interact`` reports
its rounds.

    python benchmarks/interaction_ceiling.py --run runs/brain-lite [--data D --trimaps T] [--samples 8]
        [--seed 0] [--output results/brain-lite-ceiling]

Writes ``ceiling.json`` (every case) and ``ceiling.md`` under ``--output`` when given; prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from machine import describe_machine, machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.engine.held_out import run_config, runs_and_cases
from medmat.engine import load_run
from medmat.engine.config import input_size
from medmat.engine.dataset import fit_sample
from medmat.engine.inference import predict
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from medmat.interaction.ceiling import offset_ceiling, region_oracles
from medmat.io.atomic import atomic_write_json, atomic_write_text
from options import add_run_options

#: The corrections of the table, in order: key of offset_ceiling's result and the row name.
ROWS = {"prediction": "prediction", "offset": "best global logit offset", "offset_temperature": "best offset + temperature"}

#: The region oracles of the second table: key of region_oracles' result and the row name.
ORACLE_ROWS = {
    "region_offset_temperature": "own best offset + temperature in each of the k worst error regions",
    "pasted_levels": "truth at the 5 probe levels pasted into the k worst error regions",
    "global_then_pasted": "best global offset + temperature, then the pasted truth in k regions",
}
ORACLE_COUNTS = (1, 3, 5)


def held_out_predictions(run: str, data: str | None = None, trimaps: str | None = None, num_samples: int = 8,
                         seed: int = 0) -> list[tuple]:
    """``(sample, prediction, region)`` of every held-out case of ``run``: each fold's model on its
    own test cases, at the size it was trained on (as ``medmat evaluate`` and ``medmat interact``)."""
    config = run_config(run, data, trimaps)
    found = []
    for model_dir, cases in runs_and_cases(run, load_samples(config)):
        model, fold_config = load_run(model_dir)
        region = fold_config["eval"].get("region", "unknown")
        torch.manual_seed(seed)  # the Prob. U-Net's sampled latents
        for sample in (fit_sample(case, input_size(fold_config)) for case in cases):
            found.append((sample, predict(model, sample.image, sample.trimap, num_samples=num_samples), region))
    return found


def ceiling_cases(run: str, data: str | None, trimaps: str | None, num_samples: int, seed: int) -> list[dict]:
    """``offset_ceiling`` of every held-out case of ``run``, with its id (fold order)."""
    records = []
    for sample, prediction, region in held_out_predictions(run, data, trimaps, num_samples, seed):
        ceiling = offset_ceiling(prediction["alpha"], sample.alpha, sample.trimap, region)
        # The oracles' global step starts from the ceiling's own correction (searched once).
        found = ceiling["offset_temperature"]
        regions = region_oracles(prediction["alpha"], sample.alpha, sample.trimap, region, ORACLE_COUNTS,
                                 global_correction=(found["offset"], found["scale"]))
        records.append({"id": sample.id, **ceiling, "regions": regions})
    return records


def ceiling_markdown(records: list[dict]) -> str:
    """The mean Table IV SAD (and whole-image SAD) before and after each correction, with the changes."""
    group = "region" if all(r["prediction"]["region"] is not None for r in records) else "whole"
    lines = [f"| {len(records)} cases | Table IV SAD ({group}) | change | whole-image SAD | change | "
             "median offset | median temperature |", "|---|---|---|---|---|---|---|"]
    base = {g: np.mean([r["prediction"][g]["SAD"] for r in records]) for g in (group, "whole")}
    for key, name in ROWS.items():
        metrics = [r[key] if key == "prediction" else r[key]["metrics"] for r in records]
        values = {g: float(np.mean([m[g]["SAD"] for m in metrics])) for g in (group, "whole")}
        change = {g: "" if key == "prediction" else f"{100 * (values[g] / base[g] - 1):+.1f} %" for g in values}
        offset = "" if key == "prediction" else f"{np.median([r[key]['offset'] for r in records]):+.2f}"
        temperature = f"{np.median([1 / r[key]['scale'] for r in records]):.2f}" if key == "offset_temperature" else ""
        lines.append(f"| {name} | {values[group]:.4f} | {change[group]} | {values['whole']:.4f} | {change['whole']} | "
                     f"{offset} | {temperature} |")
    return "\n".join(lines) + "\n"


def oracle_markdown(records: list[dict]) -> str:
    """The change of the mean Table IV SAD after k answers that each fix one error region (oracles)."""
    group = "region" if all(r["prediction"]["region"] is not None for r in records) else "whole"
    base = float(np.mean([r["prediction"][group]["SAD"] for r in records]))
    header = " | ".join(f"k = {k}" for k in ORACLE_COUNTS)
    lines = [f"| Table IV SAD ({group}) change, {len(records)} cases | {header} |",
             "|---|" + "---|" * len(ORACLE_COUNTS)]
    for key, name in ORACLE_ROWS.items():
        changes = [100 * (np.mean([r["regions"][key][str(k)][group]["SAD"] for r in records]) / base - 1)
                   for k in ORACLE_COUNTS]
        lines.append(f"| {name} | " + " | ".join(f"{c:+.1f} %" for c in changes) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, "a train run, crossval fold or crossval folder", "folder for ceiling.json and ceiling.md")
    args = parser.parse_args(argv)
    if args.run is None:
        parser.error("--run is required")
    start = time.perf_counter()
    try:
        records = ceiling_cases(args.run, args.data, args.trimaps, args.samples, args.seed)
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not records:
        print(f"error: {args.run}: no held-out case to score", file=sys.stderr)
        return 1
    text = ceiling_markdown(records) + "\n" + oracle_markdown(records) + f"\n{machine_line()}; {time.perf_counter() - start:.1f} s\n"
    print(text)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        atomic_write_json(Path(args.output, "ceiling.json"), {
            "run": args.run, "samples": args.samples, "seed": args.seed, "cases": records,
            "machine": describe_machine(), "seconds": time.perf_counter() - start,
        })
        atomic_write_text(Path(args.output, "ceiling.md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

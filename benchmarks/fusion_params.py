"""Which fusion parameters? A small grid of FusionParams on a run's held-out cases with the simulated users.

Every held-out case is predicted once; then for each combination of the ``--grid`` values (the
other parameters at their defaults, :data:`medmat.interaction.fusion.DEFAULT_PARAMS`) the clean
probe user (``--protocol``) makes ``--steps`` interactions on every case, fused by
:func:`~medmat.interaction.fusion.fuse`. One line per combination: the mean Table IV SAD after 1,
3 and ``--steps`` interactions relative to the prediction's, the cases whose whole-image SAD rose
at some interaction, and the median fusion time. This is the measurement behind the defaults
(docs/interaction.md).

    python benchmarks/fusion_params.py --run runs/brain-lite/fold-0 --steps 5 \\
        --grid smoothness=3,10,30 --grid confidence_power=1,2,4 [--protocol probe] [--skip N] [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
import torch

from interaction_ceiling import held_out_predictions  # benchmarks/ is the script's folder, first on sys.path
from machine import describe_machine, finish_report, machine_line
from medmat.errors import MedmatError
from medmat.interaction.fusion import fusion_params
from medmat.interaction.simulate import FUSION_PROTOCOLS, make_user, simulate_fusion


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """``["smoothness=3,10"]`` -> ``{"smoothness": [3.0, 10.0]}`` (ints stay ints)."""
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        grid[key] = [int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in values.split(",")]
    return grid


def score(cases: list[tuple], protocol: str, steps: int, params) -> dict:
    """Mean relative Table IV SAD per step, whole-image SAD rises, fusion times of one parameter set."""
    sads, worse, seconds = [], 0, []
    for sample, prediction, region in cases:
        history = simulate_fusion(sample, prediction, make_user(protocol, prediction), steps, params, region)
        group = "region" if history[0].metrics["region"] is not None else "whole"
        sads.append([state.metrics[group]["SAD"] for state in history])
        worse += any(state.metrics["whole"]["SAD"] > history[0].metrics["whole"]["SAD"] for state in history[1:])
        seconds += [state.metrics["seconds"] for state in history[1:] if state.metrics["acted"]]
    # The change of the mean SAD over cases, as the tables report it.
    means = np.mean(sads, axis=0)
    return {"mean_ratio": (means / means[0]).tolist(), "mean_sad": means.tolist(), "whole_worse": int(worse),
            "median_seconds": float(np.median(seconds)) if seconds else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--protocol", default="probe", choices=FUSION_PROTOCOLS)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="Values of one parameter.")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N held-out cases (after --skip).")
    parser.add_argument("--skip", type=int, default=0,
                        help="Leave out the first N held-out cases (fold order): score on cases not chosen on.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        grid = parse_grid(args.grid)
        combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
        params = [fusion_params(**combination) for combination in combinations]
        if args.skip < 0 or (args.limit is not None and args.limit < 1):
            raise ValueError("--skip must be >= 0 and --limit >= 1")
        cases = held_out_predictions(args.run, num_samples=args.samples, seed=args.seed)[args.skip:][: args.limit]
    except (MedmatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    shown = sorted({1, 3, args.steps} & set(range(1, args.steps + 1)))
    lines = [f"{len(cases)} cases (from held-out case {args.skip}), {args.protocol} user, mean Table IV SAD relative to the prediction's",
             "| parameters | " + " | ".join(f"after {k}" for k in shown) + " | whole-image worse | median s |",
             "|---|" + "---|" * (len(shown) + 2)]
    results = []
    for combination, setting in zip(combinations, params):
        result = score(cases, args.protocol, args.steps, setting)
        results.append({"parameters": combination, **result})
        name = ", ".join(f"{k}={v}" for k, v in combination.items()) or "defaults"
        timing = "—" if result["median_seconds"] is None else f"{result['median_seconds']:.3f}"
        lines.append(f"| {name} | " + " | ".join(f"{result['mean_ratio'][k]:.3f}" for k in shown)
                     + f" | {result['whole_worse']} | {timing} |")
        print(lines[-1], flush=True)
    lines.append(machine_line())
    report = {"run": args.run, "protocol": args.protocol, "steps": args.steps, "cases": len(cases), "skip": args.skip,
              "results": results, "machine": describe_machine()}
    return finish_report(report, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())

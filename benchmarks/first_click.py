"""Anatomy of the first probe click: where the clean simulated user clicks and what the fusion's spread does.

For every held-out case of a run: the prior alpha and the ground truth at the first click of
:class:`~medmat.interaction.users.ProbeUser`, the size of the fusion's solved domain, and the change
of the sum of absolute differences on the Table IV band (``trimap == 128``; the whole image without
trimaps) and on the rest of the image after that one click. The summary counts the *confident wrong*
clicks (prior at most 0.13 where the truth is at least 0.7, or the reverse) and the cases that lose
on either part. docs/interaction.md reads it.

    python benchmarks/first_click.py --run runs/brain-lite-bf16 [--json PATH]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from interaction_ceiling import held_out_predictions  # benchmarks/ is the script's folder, first on sys.path
from machine import describe_machine, finish_report, machine_line
from medmat.errors import MedmatError
from medmat.interaction.simulate import make_user, simulate_fusion
from medmat.interaction.users import user_band

#: A click is "confident wrong" when the prior lies this close to 0 (or 1) and the truth this far from it.
CONFIDENT_PRIOR = 0.13
WRONG_TRUTH = 0.7


def first_click(sample, prediction) -> dict | None:
    """The first clean probe click of one case and the SAD changes it causes (None: nothing to click)."""
    start, clicked = simulate_fusion(sample, prediction, make_user("probe", prediction), steps=1)
    if clicked.fusion is None:
        return None
    prior = np.asarray(start.alpha, dtype=np.float64)
    fusion, actions = clicked.fusion, clicked.actions
    band = user_band(sample)
    truth = np.asarray(sample.alpha, dtype=np.float64)
    change = np.abs(fusion.alpha - truth) - np.abs(prior - truth)
    click = actions[0]
    prior_at, truth_at = float(prior[click.row, click.col]), float(truth[click.row, click.col])
    confident_wrong = ((prior_at <= CONFIDENT_PRIOR and truth_at >= WRONG_TRUTH)
                       or (prior_at >= 1 - CONFIDENT_PRIOR and truth_at <= 1 - WRONG_TRUTH))
    return {"id": sample.id, "answer": click.value, "prior": prior_at, "truth": truth_at,
            "confident_wrong": confident_wrong, "domain_pixels": int(fusion.domain.sum()),
            "band_change": float(change[band].sum()), "outside_change": float(change[~band].sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a train run, crossval fold or crossval folder")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cases = held_out_predictions(args.run, num_samples=args.samples, seed=args.seed)
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    records = [record for record in (first_click(s, p) for s, p, _ in cases) if record is not None]
    if not records:
        print("error: no case had an error region to click", file=sys.stderr)
        return 1
    domain = [r["domain_pixels"] for r in records]
    pixels = int(np.prod(cases[0][0].shape))
    lines = [
        f"{len(records)} cases, first clean probe click, default fusion ({args.run})",
        f"confident wrong clicks (prior <= {CONFIDENT_PRIOR} and truth >= {WRONG_TRUTH}, or the reverse): "
        f"{sum(r['confident_wrong'] for r in records)} of {len(records)}",
        f"solved domain: {min(domain)}-{max(domain)} pixels (the first case has {pixels})",
        f"SAD change summed over cases, in the tables' units (/1000): band {sum(r['band_change'] for r in records) / 1000:+.3f}, "
        f"rest of the image {sum(r['outside_change'] for r in records) / 1000:+.3f}",
        f"cases worse on the band: {sum(r['band_change'] > 0 for r in records)}, "
        f"outside it: {sum(r['outside_change'] > 0 for r in records)}, "
        f"on the whole image: {sum(r['band_change'] + r['outside_change'] > 0 for r in records)}",
        machine_line(),
    ]
    report = {"run": args.run, "cases": records, "machine": describe_machine()}
    return finish_report(report, "\n".join(lines), args.json)


if __name__ == "__main__":
    sys.exit(main())

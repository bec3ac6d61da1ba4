"""Where Table V's GED comes from: the model's sampled masks against level sets of its own alpha.

Table V scores a model's N sampled masks (score maps > 0.5) against 8 target masks that threshold
the ground-truth alpha at equidistant levels of its range (:func:`~medmat.engine.evaluation.label_masks_from_alpha`),
by the generalised energy distance ``GED = 2 E d(S, Y) - E d(S, S') - E d(Y, Y')`` (d = 1 - IoU)
and the adapted Dice. This script splits each held-out case's GED into its three terms and scores
three other sets of masks made from the same prediction's alpha:

- ``sampled``: the model's own masks (what ``medmat evaluate`` scores);
- ``alpha level sets``: the predicted alpha thresholded at the targets' levels of *its* range (the
  targets' construction applied to the prediction: a perfect alpha gives GED 0 and Dice 1);
- ``alpha at fixed levels``: thresholds 0.2, 0.2625, ..., 0.6375 (the training pseudo masks'
  range, [0.2, 0.7), stratified);
- ``alpha at random levels``: N thresholds drawn uniformly from [0.2, 0.7) (as the pseudo masks
  the mask generator trains on).

A diagnostic, not a method of the paper: it says how much of a GED is the masks' diversity
(``E d(S, S')``; near 0 when the sampler's latent is unused) and how much their distance to the
targets.

    python benchmarks/mask_sources.py --run runs/cpu [--data D --trimaps T] [--samples 8] [--seed 0]
        [--output results/cpu-mask-sources]

Writes ``mask_sources.json`` (every case) and ``mask_sources.md`` under ``--output`` when given;
prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from interaction_ceiling import held_out_predictions  # benchmarks/ is the script's folder, first on sys.path
from machine import describe_machine, machine_line
from medmat.engine.evaluation import SAMPLE_MASK_THRESHOLD, label_masks_from_alpha
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json, atomic_write_text
from medmat.metrics import adapted_dice, ged_terms
from options import add_run_options

#: The training pseudo masks' threshold range (the `cpu` config's data.pseudo_mask_range).
PSEUDO_MASK_RANGE = (0.2, 0.7)
SOURCES = ("sampled", "alpha level sets", "alpha at fixed levels", "alpha at random levels")


def scored(masks: np.ndarray, targets: np.ndarray) -> dict:
    """:func:`~medmat.metrics.ged_terms` of bool (N, H, W) masks against (M, H, W) targets, with the adapted "Dice"."""
    return {**ged_terms(masks, targets), "Dice": adapted_dice(masks, targets)}


def mask_sources(alpha: np.ndarray, sample_masks: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> dict:
    """The four sets of masks of one case (module docstring), scored against the truth's targets.

    Args:
        alpha: predicted float (H, W) in [0, 1].
        sample_masks: the model's (N, H, W) sampled score maps in [0, 1].
        truth: ground-truth alpha (H, W) in [0, 1].
        rng: draws the random levels.

    Returns:
        ``{source: scored}`` for each of :data:`SOURCES`.
    """
    targets = label_masks_from_alpha(truth)
    count = sample_masks.shape[0]
    low, high = PSEUDO_MASK_RANGE
    fixed = low + (high - low) * np.arange(count) / count
    masks = {
        "sampled": sample_masks > SAMPLE_MASK_THRESHOLD,
        "alpha level sets": label_masks_from_alpha(alpha, num_levels=count),
        "alpha at fixed levels": alpha[None] >= fixed[:, None, None],
        "alpha at random levels": alpha[None] >= rng.uniform(low, high, count)[:, None, None],
    }
    return {source: scored(masks[source], targets) for source in SOURCES}


def markdown(records: list[dict]) -> str:
    """Mean GED, its terms and Dice of each source over the cases."""
    lines = [f"| {len(records)} cases, mean | GED | 2 E d(S, Y) | E d(S, S') | E d(Y, Y') | Dice |",
             "|---|---|---|---|---|---|"]
    for source in SOURCES:
        mean = {key: np.mean([r["sources"][source][key] for r in records])
                for key in ("GED", "cross", "within_pred", "within_labels", "Dice")}
        lines.append(f"| {source} | {mean['GED']:.4f} | {2 * mean['cross']:.4f} | {mean['within_pred']:.4f} | "
                     f"{mean['within_labels']:.4f} | {mean['Dice']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, "a train run, a crossval fold or a crossval folder (each fold's model on its held-out cases)",
                    "folder for mask_sources.json and mask_sources.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.run is None:
            raise MedmatError("--run is required")
        predictions = held_out_predictions(args.run, args.data, args.trimaps, args.samples, args.seed)
        rng = np.random.default_rng(args.seed)
        records = []
        for sample, prediction, _ in predictions:
            if "sample_masks" not in prediction:
                raise MedmatError(f"the model of {args.run} does not sample masks: no GED to split")
            sources = mask_sources(np.clip(prediction["alpha"], 0.0, 1.0), prediction["sample_masks"], sample.alpha, rng)
            records.append({"id": sample.id, "sources": sources})
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = f"{markdown(records)}\n\n{machine_line()}"
    print(text)
    if args.output:
        folder = Path(args.output)
        atomic_write_json(folder / "mask_sources.json", {"run": args.run, "samples": args.samples, "seed": args.seed,
                                                         "cases": records, "machine": describe_machine()})
        atomic_write_text(folder / "mask_sources.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

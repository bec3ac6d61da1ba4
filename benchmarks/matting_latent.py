"""Score a Prob. U-Net run's matte with the matting network reading the prior's mean code.

A Medical Matting model's matting network reads the Fcomb features of one latent code: prior
sample 0 at prediction (``model.matting_latent: sample``, the paper's). When the latent carries
information (a small ``loss.kl_weight``, docs/medical-matting.md) the matte then changes with the
draw. This script evaluates a trained run's held-out cases twice at the same seed, as trained and
with ``matting_latent`` switched to "mean" (the prior's mean code; no retraining, no new weights),
and prints both Table IV / V summaries (the sampled masks, hence GED and Dice, are the same draws).

    python benchmarks/matting_latent.py --run runs/cpu-kl0001-p10 [--samples 8] [--seed 0] [--output results/x]

Writes ``sample/`` and ``mean/`` summaries (``medmat evaluate``'s files) under ``--output`` when given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from machine import machine_line
from medmat.engine import load_run
from medmat.engine.held_out import evaluate_fold, run_config, runs_and_cases
from medmat.engine.summary import write_summary
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from options import add_run_options


#: The codes a trained run is scored with ("prior_mean" predicts as "mean" does).
SCORED_LATENTS = ("sample", "mean")


def evaluate_both(run: str, config: dict, num_samples: int, seed: int) -> dict[str, list[dict]]:
    """Per matting latent, the per-fold records of ``medmat evaluate`` (``write_summary``'s input);
    ``config`` is :func:`~medmat.engine.held_out.run_config` of ``run`` (its data are scored)."""
    samples = load_samples(config)
    records: dict[str, list[dict]] = {latent: [] for latent in SCORED_LATENTS}
    for fold, (model_dir, cases) in enumerate(runs_and_cases(run, samples)):
        model, fold_config = load_run(model_dir)
        prob_unet = getattr(model, "prob_unet", None)
        if prob_unet is None:
            raise MedmatError("the run's model has no Prob. U-Net (prob_unet)", model_dir)
        for latent in SCORED_LATENTS:
            prob_unet.matting_latent = latent
            records[latent].append(evaluate_fold(model, fold_config, cases, num_samples, seed, fold))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser, "a train run or crossval folder of a Prob. U-Net model", "folder for the two summaries")
    args = parser.parse_args(argv)
    if args.run is None:
        parser.error("--run is required")
    try:
        config = run_config(args.run, args.data, args.trimaps)
        records = evaluate_both(args.run, config, args.samples, args.seed)
        with tempfile.TemporaryDirectory() as scratch:
            for latent, latent_records in records.items():
                folder = Path(args.output or scratch) / latent
                write_summary(latent_records, {**config, "evaluated_by": " ".join(sys.argv)}, folder)
                print(f"## matting network reads the {latent} code\n")
                print((folder / "summary.md").read_text(encoding="utf-8"))
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(machine_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""dugMatting measurements of a trained "nig" run: interaction rounds, refinement, trustworthy uncertainty.

For the run's held-out cases (``metrics.json`` test ids; its training ids train the refiner):

1. Table IV-style SAD/MSE/Grad/Conn (trimap unknown region, and whole image) without
   interaction, after 1 .. R rounds of N uncertainty-proposed patches labelled by a simulated user
   from the ground truth (NIG summation of Eq. 2 across rounds), and after the aleatoric refinement
   (§3.4) of the last round, with a refiner trained for ``--refine-steps`` steps on the training
   cases (first stage frozen);
2. AUROC of each uncertainty map (Prob. U-Net entropy, alpha entropy, epistemic, aleatoric) for
   the pixels with |alpha error| > 0.1 and for the pixels where the annotators disagree, and the
   calibration of the NIG predictive intervals (one-sided, Kuleshov et al., and central) with their
   expected calibration error, from the prediction without interaction; a reliability plot.

Writes ``table_iv_region.{md,csv,json}``, ``table_iv_whole.*``, ``uncertainty.{json,md}``,
``results.json`` and ``reliability.png`` under ``--output`` and prints the tables.

    python benchmarks/interaction_eval.py --run runs/nig-lite --output runs/nig-lite/interaction
    python benchmarks/interaction_eval.py --smoke          # tiny random model on phantoms, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import medmat.losses.nig  # noqa: F401  (registers "nig" until medmat.losses imports it)
import medmat.models.nig  # noqa: F401  (registers "nig" until medmat.models imports it)
from medmat.data.phantom import make_phantom_dataset
from medmat.errors import MedmatError
from medmat.interaction.evaluation import (
    evaluate_uncertainty,
    require_nig_config,
    run_case_ids,
    uncertainty_markdown,
    write_interaction_tables,
    write_uncertainty_report,
)
from medmat.interaction.refinement import train_refiner
from medmat.interaction.simulate import simulate_dataset
from medmat.io.atomic import atomic_write_json
from medmat.models import build_model

#: The smoke test's network: Medical Matting with a few channels.
SMOKE_BASE = {"name": "medical_matting", "unet_filters": [4, 8], "matting_channels": [4, 4], "num_samples": 4}


def run_cases(run: str, data: str | None, trimaps: str | None):
    """(model, config, training cases, test cases) of a finished run folder."""
    from medmat.engine import load_run
    from medmat.engine.trainer import load_samples

    model, config = load_run(run)
    require_nig_config(config, run)
    if data is not None:
        config["data"].update(dataset=data, trimaps=trimaps)
    train_ids, test_ids = run_case_ids(run)
    from medmat.engine.config import input_size
    from medmat.engine.dataset import fit_sample

    size = input_size(config)  # the view the model was trained and evaluated on, as `medmat evaluate`
    by_id = {sample.id: fit_sample(sample, size) for sample in load_samples(config)}
    return model, config, [by_id[i] for i in train_ids if i in by_id], [by_id[i] for i in test_ids if i in by_id]


def smoke_cases():
    """A tiny randomly initialised "nig" model and 6 phantoms of 64 x 64 (4 training, 2 test)."""
    torch.manual_seed(0)
    model = build_model("nig", base=SMOKE_BASE).eval()
    samples = make_phantom_dataset(6, size=64, n_annotators=3, seed=0)
    return model, {"model": {"name": "nig", "base": SMOKE_BASE}}, samples[:4], samples[4:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="A finished train run folder of a 'nig' model.")
    parser.add_argument("--data", default=None, help="Dataset (default: the run's data.dataset).")
    parser.add_argument("--trimaps", default=None, help="Trimaps with --data.")
    parser.add_argument("--output", default=None, help="Results folder (default: RUN/interaction).")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--proposals", type=int, default=4, help="N patches proposed per round.")
    parser.add_argument("--patch-size", type=int, default=16, help="Side of the proposal grid's patches.")
    parser.add_argument("--threshold", type=float, default=0.0, help="t: least mean epistemic uncertainty.")
    parser.add_argument("--refine-steps", type=int, default=300, help="Refiner training steps (0: no refinement).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="Tiny random model on phantoms (seconds).")
    args = parser.parse_args(argv)
    if not args.smoke and not args.run:
        parser.error("give --run (or --smoke)")
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        if args.smoke:
            model, config, train_cases, test_cases = smoke_cases()
            refine_steps = min(args.refine_steps, 3)
            output = Path(args.output or tempfile.mkdtemp(prefix="interaction-smoke-"))
        else:
            model, config, train_cases, test_cases = run_cases(args.run, args.data, args.trimaps)
            refine_steps = args.refine_steps
            output = Path(args.output or Path(args.run) / "interaction")
        os.makedirs(output, exist_ok=True)
        refiner, refiner_losses = None, []
        if refine_steps > 0:
            refiner, refiner_losses = train_refiner(model, train_cases, refine_steps, seed=args.seed)
        torch.manual_seed(args.seed)  # the Prob. U-Net's prior samples
        simulation = simulate_dataset(
            model, test_cases, args.rounds, args.proposals, args.patch_size, args.threshold,
            refiner=refiner, seed=args.seed,
        )
        torch.manual_seed(args.seed)
        report = evaluate_uncertainty(model, test_cases)
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_uncertainty_report(report, output)
    text = write_interaction_tables(simulation, output, args.proposals) + uncertainty_markdown(report)
    settings = {key: getattr(args, key) for key in ("run", "rounds", "proposals", "patch_size", "threshold", "seed")}
    settings.update(refine_steps=refine_steps, smoke=args.smoke, model=config["model"])
    atomic_write_json(output / "results.json", {
        "settings": settings,
        "simulation": simulation,
        "uncertainty": report,
        "refiner_losses": refiner_losses,
        "train_ids": [s.id for s in train_cases],
        "test_ids": [s.id for s in test_cases],
        "seconds": time.perf_counter() - start,
    })
    print(text)
    print(f"{len(test_cases)} test cases, {time.perf_counter() - start:.1f} s; results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

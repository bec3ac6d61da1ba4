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

Writes ``table_iv_region.{md,csv,json}``, ``table_iv_whole.*``, ``uncertainty.md``,
``results.json`` and ``reliability.png`` under ``--output`` and prints the tables.

    python benchmarks/interaction_eval.py --run runs/nig-lite --output runs/nig-lite/interaction
    python benchmarks/interaction_eval.py --smoke          # tiny random model on phantoms, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import medmat.losses.nig  # noqa: F401  (registers "nig" until medmat.losses imports it)
import medmat.models.nig  # noqa: F401  (registers "nig" until medmat.models imports it)
from medmat.data.phantom import make_phantom_dataset
from medmat.errors import MedmatError
from medmat.interaction.refinement import train_refiner
from medmat.interaction.simulate import predict_nig, simulate_dataset
from medmat.io.atomic import atomic_write_json, atomic_write_text
from medmat.metrics.uncertainty import reliability_plot, uncertainty_report
from medmat.models import build_model
from medmat.reporting import summarise, write_tables

#: The smoke test's network: Medical Matting with a few channels.
SMOKE_BASE = {"name": "medical_matting", "unet_filters": [4, 8], "matting_channels": [4, 4], "num_samples": 4}


def run_cases(run: str, data: str | None, trimaps: str | None):
    """(model, config, training cases, test cases) of a finished run folder."""
    from medmat.engine import load_run
    from medmat.engine.trainer import load_samples

    model, config = load_run(run)
    if config["model"]["name"] != "nig":
        raise MedmatError(f"run trains {config['model']['name']!r}, not a 'nig' model", run)
    if data is not None:
        config["data"].update(dataset=data, trimaps=trimaps)
    metrics_path = Path(run) / "metrics.json"
    if not metrics_path.is_file():
        raise MedmatError("not a finished run: no metrics.json (test ids)", run)
    record = json.loads(metrics_path.read_text(encoding="utf-8"))
    by_id = {sample.id: sample for sample in load_samples(config)}
    train = [by_id[i] for i in record["train_ids"] if i in by_id]
    test = [by_id[i] for i in record["test_ids"] if i in by_id]
    return model, config, train, test


def smoke_cases():
    """A tiny randomly initialised "nig" model and 6 phantoms of 64 x 64 (4 training, 2 test)."""
    torch.manual_seed(0)
    model = build_model("nig", base=SMOKE_BASE).eval()
    samples = make_phantom_dataset(6, size=64, n_annotators=3, seed=0)
    return model, {"model": {"name": "nig", "base": SMOKE_BASE}}, samples[:4], samples[4:]


def stage_label(stage: str, num_proposals: int) -> str:
    """Row name of a stage: "round-0" -> "no interaction", "round-2" -> "2 rounds x N proposals"."""
    if stage == "refined":
        return "last round + refinement"
    rounds = int(stage.split("-")[1])
    return "no interaction" if rounds == 0 else f"{rounds} round{'s' * (rounds > 1)} x {num_proposals} proposals"


def matting_tables(simulation: dict, num_proposals: int, output: Path) -> str:
    """Write and return (as Markdown) the Table IV rows of every stage, region and whole image."""
    text = ""
    for group in ("region", "whole"):
        rows = {}
        for stage in simulation["mean"]:
            per_case = {case["id"]: case[stage][group] for case in simulation["cases"] if case[stage][group]}
            rows[stage_label(stage, num_proposals)] = summarise(per_case)
        title = f"Table IV ({'trimap unknown region' if group == 'region' else 'whole image'})"
        write_tables(output / f"table_iv_{group}", rows, title=title)
        text += (output / f"table_iv_{group}.md").read_text(encoding="utf-8") + "\n"
    return text


def uncertainty_tables(report: dict) -> str:
    """Markdown of the AUROC and ECE results."""
    names = sorted({key.split("/")[0] for key in report["auroc"]})
    lines = ["### Uncertainty: AUROC", "", "| map | errors > 0.1 | annotator disagreement |", "|---|---|---|"]
    for name in names:
        cells = [report["auroc"].get(f"{name}/{kind}") for kind in ("error", "disagreement")]
        lines.append(f"| {name} | " + " | ".join("—" if c is None else f"{c:.4f}" for c in cells) + " |")
    lines += ["", "### NIG predictive intervals: expected calibration error", "", "| intervals | ECE |", "|---|---|"]
    for interval, curve in report["calibration"].items():
        lines.append(f"| {interval} | {curve['ece']:.4f} |")
    return "\n".join(lines) + f"\n\n{report['num_pixels']} pixels pooled.\n"


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
        predictions = [predict_nig(model, s.image, None, s.trimap) for s in test_cases]
        report = uncertainty_report(predictions, [s.alpha for s in test_cases], [s.masks for s in test_cases])
    except MedmatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    curves = {name: (np.array(c["expected"]), np.array(c["observed"])) for name, c in report["calibration"].items()}
    reliability_plot(output / "reliability.png", curves, title="NIG predictive intervals")
    text = matting_tables(simulation, args.proposals, output) + uncertainty_tables(report)
    atomic_write_text(output / "uncertainty.md", uncertainty_tables(report))
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

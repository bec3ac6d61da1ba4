"""dugMatting's interaction sub-command: ``interact``.

``medmat interact`` scores a trained "nig" run the way Table IV of dugMatting does: every held-out
case is predicted without interaction, then for N rounds the K patches of highest epistemic
uncertainty are proposed to a simulated user who labels them from the ground truth, the model
predicts again with the user map and the NIGs are summed (:mod:`medmat.interaction.simulate`);
optionally the last round is refined by an aleatoric refiner trained on the fold's training cases
(:mod:`medmat.interaction.refinement`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from medmat.cli.model_commands import run_config, runs_and_cases
from medmat.cli.options import command_line, machine_description


@click.command("interact")
@click.option("--run", "-r", "run", required=True, help="A train run folder or a crossval folder of a 'nig' model.")
@click.option("--simulate", "rounds", required=True, type=click.IntRange(min=0), metavar="N",
              help="Interaction rounds simulated on every held-out case.")
@click.option("--proposals", default=4, show_default=True, type=click.IntRange(min=1), metavar="K",
              help="Patches proposed to the user per round (Algorithm 1's N).")
@click.option("--patch-size", default=16, show_default=True, type=click.IntRange(min=1), metavar="P",
              help="Side in pixels of the proposal grid's patches.")
@click.option("--threshold", default=0.0, show_default=True, type=click.FloatRange(min=0), metavar="T",
              help="Least mean epistemic uncertainty of a proposed patch (exclusive).")
@click.option("--refine-steps", default=0, show_default=True, type=click.IntRange(min=0), metavar="S",
              help="Train the aleatoric refiner for S steps on each fold's training cases and add an "
                   "'after refinement' row (0: no refinement).")
@click.option("--data", "-d", default=None, help="Dataset (default: the run's data.dataset).")
@click.option("--trimaps", default=None, help="Trimaps for the Table IV region (default: the run's data.trimaps).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder for tables and the figure.")
@click.option("--figure", "figure_cases", default=4, show_default=True, type=click.IntRange(min=0),
              help="Cases shown in interaction.png.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sampled latents and the refiner.")
def interact_command(run, rounds, proposals, patch_size, threshold, refine_steps, data, trimaps, output,
                     figure_cases, seed):
    """Simulate uncertainty-guided interaction on a 'nig' run's held-out cases (dugMatting, Table IV).

    Writes table_iv_region.{md,csv,json} (SAD/MSE/Grad/Conn on trimap == 128, the whole image for
    cases without a trimap) and table_iv_whole.* with rows "0 interactions", "1 interaction", ...,
    "after refinement"; interaction.json (every case and round); and interaction.png: image, ground
    truth, alpha after each round, and the epistemic maps with the patches proposed from them outlined.
    """
    import numpy as np
    import torch

    from medmat.engine import load_run
    from medmat.engine.trainer import load_samples
    from medmat.interaction.evaluation import (
        interaction_figure_row,
        pool_simulations,
        require_nig_config,
        run_case_ids,
        write_interaction_tables,
    )
    from medmat.interaction.refinement import refine_alpha, train_refiner
    from medmat.interaction.simulate import simulate_dataset, simulate_interactions
    from medmat.engine.config import input_size
    from medmat.engine.dataset import fit_sample
    from medmat.io.atomic import atomic_write_json
    from medmat.reporting import example_grid

    start = time.perf_counter()
    config = run_config(run, data, trimaps)
    require_nig_config(config, run)
    samples = load_samples(config)
    by_id = {sample.id: sample for sample in samples}
    settings = {"rounds": rounds, "proposals": proposals, "patch_size": patch_size, "threshold": threshold,
                "refine_steps": refine_steps, "seed": seed}
    simulations, folds, refiner_losses, figure_rows, figure_boxes, labels = [], [], [], [], [], []
    for model_dir, cases in runs_and_cases(run, samples):
        model, fold_config = load_run(model_dir)
        require_nig_config(fold_config, model_dir)
        region = fold_config["eval"].get("region", "unknown")
        # The view the model was trained and evaluated on (data.input_size), as `medmat evaluate`.
        size = input_size(fold_config)
        cases = [fit_sample(sample, size) for sample in cases]
        refiner = None
        if refine_steps:
            training_cases = [fit_sample(by_id[i], size) for i in run_case_ids(model_dir)[0] if i in by_id]
            refiner, losses = train_refiner(model, training_cases, refine_steps, seed=seed)
            refiner_losses.append(losses)
        torch.manual_seed(seed)  # the Prob. U-Net bases sample their latents
        simulations.append(simulate_dataset(
            model, cases, rounds, proposals, patch_size, threshold, region, refiner=refiner, seed=seed
        ))
        folds.append([case.id for case in cases])
        # The figure's cases are simulated again with the same settings, keeping every round.
        for sample in cases[: max(0, figure_cases - len(figure_rows))]:
            torch.manual_seed(seed)
            history = simulate_interactions(model, sample, rounds, proposals, patch_size, threshold, region)
            refined = None
            if refiner is not None:
                refined = refine_alpha(refiner, sample.image, history[-1].maps, np.random.default_rng(seed))["alpha"]
            pictures, boxes = interaction_figure_row(sample, history, refined)
            figure_rows.append(pictures)
            figure_boxes.append(boxes)
            labels.append(sample.id)
    simulation = pool_simulations(simulations)
    os.makedirs(output, exist_ok=True)
    extra = {"command": command_line(), "machine": machine_description(), **settings}
    text = write_interaction_tables(simulation, output, proposals, folds if len(folds) > 1 else None, extra)
    atomic_write_json(Path(output, "interaction.json"), {
        "settings": {**settings, "run": str(run), "model": config["model"]},
        "simulation": simulation,
        "folds": folds,
        "refiner_losses": refiner_losses,
        "seconds": time.perf_counter() - start,
    })
    if figure_rows:
        title = f"medmat interact {run}: {proposals} proposed patches of {patch_size} px per interaction"
        example_grid(Path(output, "interaction.png"), figure_rows, labels, title=title, boxes=figure_boxes)
    click.echo(text)
    click.echo(f"tables, interaction.json and interaction.png written to {output} ({len(simulation['cases'])} cases)")


COMMANDS = [interact_command]

"""The interaction sub-command: ``interact``.

``medmat interact`` simulates a user correcting a trained run's held-out cases and scores every
interaction with Table IV's metrics. ``--protocol`` chooses the interaction:

- ``probe`` (any model): the user clicks the centre of the largest error region and answers the
  alpha there at one of five levels (0, ¼, ½, ¾, 1); a noisy user (one level off with probability
  0.2, the click up to ±2 px off) is simulated beside the clean one. Every answer is fused into the
  model's alpha by an uncertainty-weighted, edge-aware solve (:mod:`medmat.interaction.fusion`);
- ``binary`` (any model): the same clicks answered 0 or 1 only (a segmentation click), the control;
- ``brush`` (any model): a foreground or background stroke along the largest error region's skeleton;
- ``patch`` (any model): dugMatting's answers (foreground / background / transition) for the N
  most uncertain patches, through the same fusion;
- ``dugmatting`` (the default; "nig" runs only): dugMatting's own loop, as before: the N patches of
  highest epistemic uncertainty labelled from the ground truth, the model predicting again with the
  user map and the NIGs summed (:mod:`medmat.interaction.simulate`); optionally the last round is
  refined by an aleatoric refiner trained on the fold's training cases
  (:mod:`medmat.interaction.refinement`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import click
import numpy as np
import torch

from medmat.cli.options import command_line, flip_option, machine_description
from medmat.engine import load_run, load_runs
from medmat.engine.config import input_size, model_input_size
from medmat.engine.dataset import fit_sample
from medmat.engine.held_out import ensemble_runs_and_cases, run_config, runs_and_cases
from medmat.engine.inference import flip_setting, runs_label
from medmat.engine.trainer import load_samples
from medmat.errors import MedmatError
from medmat.interaction.evaluation import (
    fusion_figure_row,
    fusion_summary,
    fusion_summary_markdown,
    interaction_figure_row,
    pool_simulations,
    require_nig_config,
    run_case_ids,
    write_interaction_tables,
)
from medmat.interaction.fusion import fusion_params
from medmat.interaction.refinement import refine_alpha, train_refiner
from medmat.interaction.simulate import simulate_dataset, simulate_fusion_dataset, simulate_interactions
from medmat.io.atomic import atomic_write_json, atomic_write_text
from medmat.reporting import example_grid


PROTOCOLS = ("dugmatting", "probe", "binary", "brush", "patch")


@click.command("interact")
@click.option("--run", "-r", "runs", required=True, multiple=True,
              help="A train run folder or a crossval folder (any model; a 'nig' model for --protocol dugmatting); "
                   "given several times with a fusion protocol, the runs predict as one deep ensemble.")
@click.option("--protocol", default="dugmatting", show_default=True, type=click.Choice(PROTOCOLS),
              help="probe: clicks answered at five alpha levels; binary: clicks answered 0 or 1; brush: strokes; "
                   "patch: dugMatting's answers for proposed patches; all four fused into any model's alpha. "
                   "dugmatting: dugMatting's NIG loop ('nig' runs).")
@click.option("--simulate", "rounds", required=True, type=click.IntRange(min=0), metavar="N",
              help="Interactions simulated on every held-out case.")
@click.option("--proposals", default=4, show_default=True, type=click.IntRange(min=1), metavar="K",
              help="Patches proposed to the user per round (Algorithm 1's N; patch and dugmatting).")
@click.option("--patch-size", default=16, show_default=True, type=click.IntRange(min=1), metavar="P",
              help="Side in pixels of the proposal grid's patches (patch and dugmatting).")
@click.option("--threshold", default=0.0, show_default=True, type=click.FloatRange(min=0), metavar="T",
              help="Least mean epistemic uncertainty of a proposed patch (exclusive; dugmatting).")
@click.option("--refine-steps", default=0, show_default=True, type=click.IntRange(min=0), metavar="S",
              help="Train the aleatoric refiner for S steps on each fold's training cases and add an "
                   "'after refinement' row (0: no refinement; dugmatting).")
@click.option("--noisy/--no-noisy", default=True, show_default=True,
              help="Also simulate the noisy user (probe and binary): one level off with probability 0.2, "
                   "clicks up to 2 px off.")
@click.option("--fusion", "fusion_settings", multiple=True, metavar="KEY=VALUE",
              help="A fusion parameter (medmat.interaction.fusion.FusionParams), e.g. smoothness=20; repeatable.")
@click.option("--samples", "num_samples", default=8, show_default=True, type=click.IntRange(min=1),
              help="Masks drawn by models that sample (the fusion protocols).")
@click.option("--data", "-d", default=None, help="Dataset (default: the run's data.dataset).")
@click.option("--trimaps", default=None, help="Trimaps for the Table IV region (default: the run's data.trimaps).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Folder for tables and the figure.")
@click.option("--figure", "figure_cases", default=4, show_default=True, type=click.IntRange(min=0),
              help="Cases shown in interaction.png.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sampled latents, the noisy "
              "user and the refiner.")
@flip_option("each fold's eval.flip, as `medmat evaluate`; fusion protocols")
def interact_command(runs, protocol, rounds, proposals, patch_size, threshold, refine_steps, noisy, fusion_settings,
                     num_samples, data, trimaps, output, figure_cases, seed, flip):
    """Simulate a user correcting a run's held-out cases and score every interaction (Table IV).

    Writes table_iv_region.{md,csv,json} (SAD/MSE/Grad/Conn on trimap == 128, the whole image for
    cases without a trimap) and table_iv_whole.* with rows "0 interactions", "1 interaction", ...;
    interaction.json (every case and round); and interaction.png: image, ground truth and the alpha
    after each interaction. The fusion protocols add the noisy user's rows, noc.md (interactions to
    cut the Table IV SAD by 40 % and 60 %, whole-image SAD checks, time per action) and draw the
    actions on the figure; dugmatting adds "after refinement" and the epistemic maps with the
    proposed patches outlined.
    """
    if protocol != "dugmatting":
        if refine_steps or threshold:
            raise MedmatError("--refine-steps and --threshold belong to --protocol dugmatting")
        _interact_with_fusion(runs, protocol, rounds, proposals, patch_size, noisy, fusion_settings, num_samples,
                              data, trimaps, output, figure_cases, seed, flip)
        return
    if flip is not None:
        raise MedmatError("--flip belongs to the fusion protocols (probe, binary, brush, patch)")

    if len(runs) > 1:
        raise MedmatError("--protocol dugmatting takes one run: a deep ensemble gives no NIG maps")
    (run,) = runs
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
    title = f"medmat interact {run}: {proposals} proposed patches of {patch_size} px per interaction"
    text = write_results(output, run, config, settings, simulation, folds, proposals, start,
                         (figure_rows, figure_boxes, labels, title), {"refiner_losses": refiner_losses})
    click.echo(text)
    click.echo(f"tables, interaction.json and interaction.png written to {output} ({len(simulation['cases'])} cases)")


def write_results(output, run, config, settings, simulation, folds, proposals, start, figure, record,
                  what=None) -> str:
    """Write a simulation's tables, ``interaction.json`` (with ``record``'s entries) and, when
    ``figure = (rows, boxes, labels, title)`` has rows, ``interaction.png`` under ``output``.
    Returns the tables' Markdown."""
    os.makedirs(output, exist_ok=True)
    extra = {"command": command_line(), "machine": machine_description(), **settings}
    text = write_interaction_tables(simulation, output, proposals, folds if len(folds) > 1 else None, extra,
                                    what=what)
    atomic_write_json(Path(output, "interaction.json"), {
        "settings": {**settings, "run": str(run), "model": config["model"]},
        "simulation": simulation,
        **record,
        "folds": folds,
        "seconds": time.perf_counter() - start,
    })
    rows, boxes, labels, title = figure
    if rows:
        example_grid(Path(output, "interaction.png"), rows, labels, title=title, boxes=boxes)
    return text


def fusion_overrides(settings) -> dict:
    """``("smoothness=20", ...)`` -> ``{"smoothness": 20.0}`` (ints stay ints), or a MedmatError."""
    overrides = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or not key.strip():
            raise MedmatError(f"--fusion takes KEY=VALUE, got {setting!r}")
        try:
            value = int(text) if text.strip().lstrip("-").isdigit() else float(text)
        except ValueError:
            raise MedmatError(f"--fusion {key.strip()} needs a number, got {text!r}") from None
        overrides[key.strip()] = value
    return overrides


def _interact_with_fusion(runs, protocol, steps, proposals, patch_size, noisy, fusion_settings, num_samples, data,
                          trimaps, output, figure_cases, seed, flip):
    """``medmat interact`` with a fusion protocol (probe, binary, brush, patch) on any run."""
    start = time.perf_counter()
    params = fusion_params(**fusion_overrides(fusion_settings))
    run = runs_label(runs)  # how the results name the model
    config = run_config(runs[0], data, trimaps)
    samples = load_samples(config)
    if flip is not None:
        flip = flip_setting(flip, config)
    settings = {"protocol": protocol, "steps": steps, "noisy": noisy, "samples": num_samples, "seed": seed,
                "flip": "each fold's eval.flip" if flip is None else flip, "fusion": dataclasses.asdict(params)}
    if protocol == "patch":
        settings.update(proposals=proposals, patch_size=patch_size)
    simulations, folds, figure_rows, figure_boxes, labels = [], [], [], [], []
    for model_dirs, cases in ensemble_runs_and_cases(runs, samples):
        model, fold_config = load_runs(model_dirs)
        region = fold_config["eval"].get("region", "unknown")
        # The view the model was trained and evaluated on (data.input_size), as `medmat evaluate`.
        cases = [fit_sample(sample, input_size(fold_config)) for sample in cases]
        torch.manual_seed(seed)  # the Prob. U-Net bases sample their latents
        simulation, histories = simulate_fusion_dataset(
            model, cases, protocol, steps, params, region, num_samples, noisy, seed, proposals, patch_size,
            keep=max(0, figure_cases - len(figure_rows)),
            flip=fold_config["eval"]["flip"] if flip is None else flip, model_input_size=model_input_size(fold_config),
        )
        simulations.append(simulation)
        folds.append([case.id for case in cases])
        for sample, history in histories:
            pictures, boxes = fusion_figure_row(sample, history)
            figure_rows.append(pictures)
            figure_boxes.append(boxes)
            labels.append(sample.id)
    simulation = pool_simulations(simulations)
    summary = fusion_summary(simulation, steps)
    what = {"probe": "probe clicks (5 alpha levels)", "binary": "binary clicks (alpha 0 or 1)",
            "brush": "brush strokes", "patch": f"answers for {proposals} proposed patches"}[protocol]
    title = f"medmat interact {run}: {what} fused into the alpha (boxes: the actions so far)"
    text = write_results(output, run, config, settings, simulation, folds, proposals, start,
                         (figure_rows, figure_boxes, labels, title), {"summary": summary}, what=f"{what}, fused")
    noc = fusion_summary_markdown(summary, steps, protocol)
    atomic_write_text(Path(output, "noc.md"), noc)
    click.echo(text + noc)
    click.echo(f"tables, noc.md, interaction.json and interaction.png written to {output} "
               f"({len(simulation['cases'])} cases)")


COMMANDS = [interact_command]

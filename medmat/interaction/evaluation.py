"""Scoring trained models the dugMatting way: interaction tables, uncertainty reports, interaction figures.

Shared by ``medmat interact``, ``medmat evaluate --uncertainty`` and
``benchmarks/interaction_eval.py``:

- :func:`write_interaction_tables`: Table IV rows (SAD/MSE/Grad/Conn) of every stage of
  :func:`~medmat.interaction.simulate.simulate_dataset` ("0 interactions", "1 interaction", ...,
  "after refinement"), on the Table IV region and on the whole image;
- :func:`uncertainty_maps` + :func:`write_uncertainty_report`: the uncertainty maps a model gives
  for a case and the AUROC / calibration report of :func:`~medmat.metrics.uncertainty.uncertainty_report`;
- :func:`interaction_figure_row`: one case's row of the interaction figure (alpha after every
  round, epistemic maps with the proposed patches outlined).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medmat.data.sample import Sample
from medmat.errors import MedmatError
from medmat.models import MattingModel
from medmat.engine.inference import predict_as_trained
from medmat.interaction.actions import action_box
from medmat.interaction.simulate import CLEAN, NOISY, NOC_TARGETS, FusionRound, InteractionRound, mean_round_metrics
from medmat.io.atomic import atomic_write_json, atomic_write_text
from medmat.metrics.uncertainty import uncertainty_report
from medmat.reporting.figures import reliability_plot
from medmat.metrics.tables import summarise, write_tables

#: Stage name of :func:`~medmat.interaction.simulate.simulate_dataset` for the refined matte.
REFINED_STAGE = "refined"
#: Table IV groups of :func:`~medmat.interaction.simulate.round_metrics` and their titles.
TABLE_GROUPS = {"region": "Table IV region", "whole": "whole image"}
#: Region names of :func:`~medmat.interaction.simulate.round_metrics`, as the tables describe them.
REGION_DESCRIPTIONS = {"unknown": "trimap == 128", "whole": "whole image"}


def require_nig_config(config: Mapping, run: str | os.PathLike) -> None:
    """Raise a one-line MedmatError naming ``run`` unless its config trains one "nig" model per fold."""
    name = config["model"]["name"]
    if name != "nig":
        raise MedmatError(f"run trains {name!r}, not a 'nig' model: dugMatting's interaction needs its NIG outputs "
                          "(--protocol probe, binary, brush and patch work with any model)", run)
    members = config.get("ensemble", {}).get("members", 1)  # configs saved before ensembles lack the section
    if members > 1:
        raise MedmatError(f"run trains a deep ensemble of {members} 'nig' models per fold, which gives no NIG maps: "
                          "dugMatting's interaction takes one model (--protocol probe, binary, brush and patch "
                          "take ensembles)", run)


def run_case_ids(run_dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(train_ids, test_ids)`` of a finished train run (or crossval fold) folder, from its ``metrics.json``."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise MedmatError("not a finished medmat run: no metrics.json", run_dir)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return list(record["train_ids"]), list(record["test_ids"])
    except (ValueError, KeyError, TypeError) as error:
        raise MedmatError(f"unreadable metrics.json ({type(error).__name__}: {error})", path) from None


#: Row-name suffixes of the extra readings of a round (:mod:`medmat.interaction.simulate`).
READING_LABELS = {"labels": ", labels applied", "oracle": ", ground truth in the labelled patches (bound)"}


#: Row-name suffixes of the stage prefixes other than "round" (:mod:`medmat.interaction.simulate`).
PREFIX_LABELS = {NOISY: ", noisy user"}


def stage_label(stage: str) -> str:
    """Row name of a simulation stage: "round-0" -> "0 interactions", "round-1" -> "1 interaction",
    "round-2" -> "2 interactions", "round-1+labels" -> "1 interaction, labels applied",
    "round-1+oracle" -> "1 interaction, ground truth in the labelled patches (bound)",
    "noisy-3" -> "3 interactions, noisy user", "refined" -> "after refinement"."""
    if stage == REFINED_STAGE:
        return "after refinement"
    stage, _, reading = stage.partition("+")
    prefix, _, rounds = stage.rpartition("-")
    rounds = int(rounds)
    return (f"{rounds} interaction{'' if rounds == 1 else 's'}" + PREFIX_LABELS.get(prefix, "")
            + READING_LABELS.get(reading, reading))


def pool_simulations(simulations: Sequence[Mapping]) -> dict:
    """Several :func:`~medmat.interaction.simulate.simulate_dataset` results (e.g. one per fold) as one.

    Returns:
        ``{"cases": every case in order, "mean": mean_round_metrics over all of them}``.
    """
    cases = [case for simulation in simulations for case in simulation["cases"]]
    return {"cases": cases, "mean": mean_round_metrics(cases) if cases else {}}


def interaction_rows(simulation: Mapping, group: str, folds: Sequence[Sequence[str]] | None = None) -> dict:
    """Table rows of one metric group ("region" or "whole"): stage label -> :func:`~medmat.reporting.summarise` row.

    Args:
        simulation: ``{"cases": [...], "mean": {...}}`` of :func:`~medmat.interaction.simulate.simulate_dataset`
            or :func:`pool_simulations`.
        group: "region" (the Table IV region of each case) or "whole".
        folds: test ids of each fold, for the mean ± std over folds (None: no fold columns).

    Returns:
        Rows in stage order; a case whose region is empty is left out of that stage's row.
    """
    rows = {}
    for stage in simulation["mean"]:
        per_case = {case["id"]: case[stage][group] for case in simulation["cases"] if case[stage][group] is not None}
        rows[stage_label(stage)] = summarise(per_case, folds=folds)
    return rows


def region_description(simulation: Mapping) -> str:
    """The Table IV region of the simulated cases in words, e.g. "trimap == 128" or "whole image"."""
    names = sorted({case["round-0"]["region_name"] for case in simulation["cases"]})
    return ", ".join(REGION_DESCRIPTIONS.get(name, name) for name in names)


def write_interaction_tables(
    simulation: Mapping,
    output: str | os.PathLike,
    num_proposals: int,
    folds: Sequence[Sequence[str]] | None = None,
    extra: Mapping | None = None,
    what: str | None = None,
) -> str:
    """Write ``table_iv_region.{md,csv,json}`` and ``table_iv_whole.*`` of a simulation under ``output``.

    Args:
        simulation: see :func:`interaction_rows`.
        output: an existing folder.
        num_proposals: patches proposed per interaction (for the titles).
        folds: test ids of each fold (crossval), or None.
        extra: settings stored with the tables (:func:`~medmat.reporting.write_tables`).
        what: the interactions in the titles' words (default: "interactions of N proposed patches").

    Returns:
        The Markdown of both tables, region first.
    """
    text = ""
    what = what or f"interactions of {num_proposals} proposed patches"
    for group, name in TABLE_GROUPS.items():
        where = region_description(simulation) if group == "region" else name
        title = f"Table IV ({where}) after {what}"
        prefix = Path(output) / f"table_iv_{group}"
        write_tables(prefix, interaction_rows(simulation, group, folds), title=title, extra=extra)
        text += prefix.with_suffix(".md").read_text(encoding="utf-8") + "\n"
    return text


def uncertainty_maps(
    model: MattingModel, sample: Sample, num_samples: int = 8, model_input_size: Sequence[int] | None = None,
    flip: bool | str = False,
) -> dict[str, np.ndarray]:
    """The alpha and uncertainty maps of one eval-mode prediction, without interaction, predicted
    as the run's tables predict it (:func:`~medmat.engine.inference.predict_as_trained`), so that the
    errors the maps are scored against are the tables' errors.

    Args:
        model: any medmat model (its trimap, when the case has one, goes to trimap-based models).
        sample: the case.
        num_samples: N, masks drawn by models that sample.
        model_input_size: (h, w) a resolution-free run sees (``data.model_input_size``); None = as it is.
        flip: the test-time views (``eval.flip``): the alpha and the Prob. U-Net map are the views'
            mean and the alpha entropy that mean's; the NIG maps are the image's own prediction's.

    Returns:
        float32 (H, W) maps, every map the model gives but its sampled masks: "alpha" always;
        "uncertainty_map" (Prob. U-Net entropy, nats), "lesion_uncertainty" (alpha entropy,
        nats), "epistemic", "aleatoric", "nig_*" when it gives them.
    """
    prediction = predict_as_trained(model, sample.image, num_samples, sample.trimap, model_input_size, flip)
    return {key: value for key, value in prediction.items() if key != "sample_masks"}


def uncertainty_markdown(report: Mapping) -> str:
    """Markdown of an :func:`~medmat.metrics.uncertainty.uncertainty_report`: AUROCs, then the ECEs (NIG models)."""
    names = sorted({key.split("/")[0] for key in report["auroc"]})
    lines = ["### Uncertainty: AUROC", "", "| map | errors > 0.1 | annotator disagreement |", "|---|---|---|"]
    for name in names:
        cells = [report["auroc"].get(f"{name}/{kind}") for kind in ("error", "disagreement")]
        lines.append(f"| {name} | " + " | ".join("—" if c is None else f"{c:.4f}" for c in cells) + " |")
    if report["calibration"]:
        lines += ["", "### NIG predictive intervals: expected calibration error", "", "| intervals | ECE |", "|---|---|"]
        lines += [f"| {interval} | {curve['ece']:.4f} |" for interval, curve in report["calibration"].items()]
    return "\n".join(lines) + f"\n\n{report['num_pixels']} pixels pooled.\n"


def write_uncertainty_report(report: Mapping, output: str | os.PathLike, extra: Mapping | None = None) -> list[str]:
    """Write ``uncertainty.json``, ``uncertainty.md`` and, for NIG models, ``reliability.png`` under ``output``.

    Args:
        report: :func:`~medmat.metrics.uncertainty.uncertainty_report` result.
        output: an existing folder.
        extra: more entries for the JSON (settings, case ids, ...).

    Returns:
        The written paths.
    """
    output = Path(output)
    paths = [output / "uncertainty.json", output / "uncertainty.md"]
    atomic_write_json(paths[0], {**report, **(extra or {})})
    atomic_write_text(paths[1], uncertainty_markdown(report))
    if report["calibration"]:
        curves = {name: (np.array(c["expected"]), np.array(c["observed"])) for name, c in report["calibration"].items()}
        paths.append(output / "reliability.png")
        reliability_plot(paths[-1], curves, title="NIG predictive intervals")
    return [str(path) for path in paths]


def evaluate_uncertainty(
    model: MattingModel, samples: Sequence[Sample], num_samples: int = 8, model_input_size: Sequence[int] | None = None,
    flip: bool | str = False,
) -> dict:
    """:func:`~medmat.metrics.uncertainty.uncertainty_report` of ``model`` on cases with alpha mattes (pixels
    pooled), each predicted by :func:`uncertainty_maps` with ``model_input_size`` and ``flip``."""
    predictions = [uncertainty_maps(model, sample, num_samples, model_input_size, flip) for sample in samples]
    return uncertainty_report(predictions, [s.alpha for s in samples], [s.masks for s in samples])


def _scaled_to_range(values: np.ndarray) -> np.ndarray:
    """``(values - min) / (max - min)`` in [0, 1], float32 (a constant map gives 0).

    Epistemic variances are tiny and, before training converges, nearly constant: only their
    spread within the picture shows where the patches were proposed.
    """
    values = np.asarray(values, dtype=np.float32)
    spread = float(np.ptp(values)) if values.size else 0.0
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def interaction_figure_row(
    sample: Sample, history: Sequence[InteractionRound], refined_alpha: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[int, int, int, int]]]]:
    """One case's pictures and outlined boxes for :func:`~medmat.reporting.example_grid`.

    Args:
        sample: the case (image, ground-truth alpha).
        history: :func:`~medmat.interaction.simulate.simulate_interactions` rounds, round 0 first.
        refined_alpha: the refined matte (H, W) of the last round, or None.

    Returns:
        ``(pictures, boxes)``: pictures "image", "ground truth", "alpha, <stage>" for every round
        (and "after refinement"), then "epistemic, round r" (scaled to its range) for every round
        that proposed patches to the next (round 0 alone without interactions); boxes maps each
        epistemic column to the ``(top, left, height, width)`` of the patches proposed from it.
    """
    pictures = {"image": sample.image, "ground truth": sample.alpha}
    for index, state in enumerate(history):
        pictures[f"alpha, {stage_label(f'round-{index}')}"] = state.alpha
    if refined_alpha is not None:
        pictures[f"alpha, {stage_label(REFINED_STAGE)}"] = refined_alpha
    boxes = {}
    for index in range(max(len(history) - 1, 1)):
        column = f"epistemic, round {index}"
        pictures[column] = _scaled_to_range(history[index].maps["epistemic"])
        proposed = history[index + 1].proposals if index + 1 < len(history) else []
        boxes[column] = [tuple(patch[:4]) for patch in proposed]
    return pictures, boxes


def fusion_summary(simulation: Mapping, steps: int) -> dict:
    """What a fusion protocol's simulation says beside its Table IV rows, per user ("round": the
    clean user, "noisy": the noisy one).

    Args:
        simulation: :func:`~medmat.interaction.simulate.simulate_fusion_dataset`'s result (or several pooled).
        steps: K, the interactions simulated per case.

    Returns:
        ``{prefix: {"n", "noc": {"40": mean, "60": mean}, "reached": {"40": cases, "60": cases},
        "whole_worse": cases whose whole-image SAD rose above round 0's after some interaction,
        "whole_worse_ids", "seconds": {"mean", "median", "max", "count"} of the fusions (one per
        interaction the user made)}}``; NoC counts K + 1 for a case that never reached the goal.
    """
    cases = simulation["cases"]
    summary = {}
    for prefix in (CLEAN, NOISY):
        if not cases or prefix not in cases[0]["noc"]:
            continue
        noc = {key: [case["noc"][prefix][key] for case in cases] for key in cases[0]["noc"][prefix]}
        worse = [case["id"] for case in cases
                 if any(case[f"{prefix}-{step}"]["whole"]["SAD"] > case["round-0"]["whole"]["SAD"]
                        for step in range(1, steps + 1))]
        seconds = [case[f"{prefix}-{step}"]["seconds"] for case in cases for step in range(1, steps + 1)
                   if case[f"{prefix}-{step}"]["acted"]]
        summary[prefix] = {
            "n": len(cases),
            "noc": {key: float(np.mean(values)) for key, values in noc.items()},
            "reached": {key: int(sum(value <= steps for value in values)) for key, values in noc.items()},
            "whole_worse": len(worse),
            "whole_worse_ids": worse,
            "seconds": {"mean": float(np.mean(seconds)) if seconds else None,
                        "median": float(np.median(seconds)) if seconds else None,
                        "max": float(np.max(seconds)) if seconds else None, "count": len(seconds)},
        }
    return summary


def fusion_summary_markdown(summary: Mapping, steps: int, protocol: str) -> str:
    """Markdown of :func:`fusion_summary`: one line per user."""
    goals = [f"{round(100 * fraction)}" for fraction in NOC_TARGETS]
    header = ["user", "n"] + [f"NoC to −{goal} % SAD (reached)" for goal in goals]
    header += ["whole-image SAD worse than before", "fusion s per action: mean / max"]
    lines = [f"### {protocol}: interactions to cut the Table IV SAD (mean over cases; {steps + 1} when not reached "
             f"within {steps})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for prefix, row in summary.items():
        timing = row["seconds"]
        time_cell = "—" if timing["mean"] is None else f"{timing['mean']:.3f} / {timing['max']:.3f}"
        cells = ["clean" if prefix == CLEAN else "noisy", str(row["n"])]
        cells += [f"{row['noc'][goal]:.2f} ({row['reached'][goal]})" for goal in goals]
        cells += [f"{row['whole_worse']} of {row['n']}", time_cell]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fusion_figure_row(sample: Sample, history: Sequence[FusionRound]
                      ) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[int, int, int, int]]]]:
    """One case's pictures and outlined actions for :func:`~medmat.reporting.example_grid`.

    Returns:
        ``(pictures, boxes)``: "image", "ground truth", then "alpha, <k interactions>" for every
        round; each alpha column outlines the actions made so far (:func:`~medmat.interaction.actions.action_box`:
        a 5-pixel square around a click, a stroke's or a patch's box).
    """
    pictures = {"image": sample.image, "ground truth": sample.alpha}
    boxes = {}
    for index, state in enumerate(history):
        column = f"alpha, {stage_label(f'{CLEAN}-{index}')}"
        pictures[column] = state.alpha
        boxes[column] = [action_box(action) for action in state.actions]
    return pictures, boxes

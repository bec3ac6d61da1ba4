"""Cross-validation summaries: Table IV / V of Medical Matting from the folds' ``metrics.json`` records."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from medmat.io.atomic import atomic_write_json, atomic_write_text
from medmat.metrics.tables import MATTING_METRICS, summarise, table_markdown

SUMMARY_PREFIX = "summary"
#: Matting metrics of the evaluation, then the mask-distribution metrics of Table V.
SUMMARY_METRICS = ("SAD", "MSE", "Grad", "Conn", "GED", "Dice")


def _present(per_case: dict, metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if any(m in case for case in per_case.values())]


def write_summary(
    records: Sequence[dict], config: dict, run_dir: str | Path, members: Mapping[str, Sequence[dict]] | None = None,
) -> dict:
    """Summarise fold records (``metrics.json`` contents) into ``summary.{md,csv,json}``.

    - Table IV style: SAD/MSE/Grad/Conn on the evaluation region (the trimap's unknown pixels,
      or the whole image for cases without a trimap), mean over all test predictions;
    - Table V style: whole-image SAD/MSE/Grad/Conn, GED and Dice, mean over predictions and
      mean ± std (ddof 0) over the folds' means.

    Args:
        members: for a deep-ensemble run, each member's fold records by a label (e.g. ``"member 0
            (seed 16)"``): each is a row of its own under the ensemble's in both tables, and the
            record's ``"members"`` maps the labels to their tables.

    Returns:
        The summary record.
    """
    run_dir = Path(run_dir)
    table_iv, table_v, regions = summary_tables(records)
    model = config["model"]["name"]
    member_tables = {label: summary_tables(rows)[:2] for label, rows in (members or {}).items()}
    name = f"{model} (ensemble)" if member_tables else model
    iv_rows = {name: table_iv, **{label: tables[0] for label, tables in member_tables.items()}}
    v_rows = {name: table_v, **{label: tables[1] for label, tables in member_tables.items()}}
    iv_title = f"Table IV style: region {'/'.join(regions)}, mean over {table_iv['n']} test predictions"
    v_title = f"Table V style: whole image, mean over predictions and mean ± std over {len(records)} folds"
    markdown = (
        f"# Cross-validation of {model} ({len(records)} folds)\n\n"
        + table_markdown(iv_rows, list(table_iv["mean"]), iv_title)
        + "\n"
        + table_markdown(v_rows, list(table_v["mean"]), v_title)
        + "\nSAD, Grad and Conn are divided by 1000, as in the paper's tables.\n"
        + ("Each member is the single-model run of its seed, scored with its own seed's masks.\n" if member_tables else "")
        + "".join(f"{line}\n" for line in left_out_lines(records))
        + "".join(f"{line}\n" for line in fit_lines(records, members))
    )
    summary = {
        "run_dir": str(run_dir),
        "model": model,
        "folds": [record["fold"] for record in records],
        "regions": regions,
        "table_iv": table_iv,
        "table_v": table_v,
        "per_fold": [{"fold": r["fold"], "test_ids": r["test_ids"], "mean": r["mean"]} for r in records],
        "config": config,
    }
    if member_tables:
        summary["members"] = {label: {"table_iv": iv, "table_v": v} for label, (iv, v) in member_tables.items()}
    atomic_write_text(run_dir / f"{SUMMARY_PREFIX}.md", markdown)
    atomic_write_text(run_dir / f"{SUMMARY_PREFIX}.csv", summary_csv(table_iv, table_v))
    atomic_write_json(run_dir / f"{SUMMARY_PREFIX}.json", summary)
    return summary


def left_out_lines(records: Sequence[dict]) -> list[str]:
    """One line per fold whose ensemble left a member out (``ensemble.unfit_ratio``), with the
    members' SAD on the fold's training cases."""
    lines = []
    for record in records:
        kept = record.get("kept_members")
        if kept is None or len(kept) == len(record["members"]):
            continue
        left_out = [Path(folder).name for folder in record["members"] if folder not in kept]
        sad = ", ".join(f"{Path(f).name} {v:.4f}" for f, v in zip(record["members"], record["members_training_SAD"]))
        lines.append(f"Fold {record['fold']}: {' and '.join(left_out)} left out of the ensemble, "
                     f"failing to fit its training cases (their whole-image SAD: {sad}).")
    return lines


def fit_lines(records: Sequence[dict], members: Mapping[str, Sequence[dict]] | None = None) -> list[str]:
    """One line per fold (or ensemble member) that failed to fit its training cases
    (``train.core_alpha_floor``): trained again (``train.refit_capped``), or kept capped."""
    labelled = [(f"Fold {r['fold']}", r) for r in records]
    labelled += [(f"Fold {r['fold']}, {label}", r) for label, rows in (members or {}).items() for r in rows]
    lines = []
    for name, record in labelled:
        for refit in record.get("refits", []):
            lines.append(f"{name}: the run with seed {refit['seed']} failed to fit its training cases (core alpha "
                         f"at most {refit['core_alpha_max']:.2f}), set aside in {Path(refit['folder']).name}/ and "
                         "trained again.")
        fit = record.get("training_fit") or {}
        if fit.get("capped"):
            lines.append(f"{name}: the model failed to fit its training cases: its alpha stays below "
                         f"{fit['floor']:.2f} in the lesion core (at most {fit['core_alpha_max']:.2f}).")
    return lines


def summary_tables(records: Sequence[dict]) -> tuple[dict, dict, list[str]]:
    """Table IV (region, mean over predictions), Table V (whole image, GED, Dice; with the folds'
    mean ± std) and the region names of fold records (see :func:`write_summary`)."""
    folds = [record["test_ids"] for record in records]
    region_cases = {c["id"]: c["region"] for r in records for c in r["cases"] if c.get("region")}
    whole_cases = {
        c["id"]: {**c["whole"], **{k: c[k] for k in ("GED", "Dice") if c.get(k) is not None}}
        for r in records
        for c in r["cases"]
    }
    regions = sorted({c["region_name"] for r in records for c in r["cases"]})
    table_iv = summarise(region_cases, _present(region_cases, MATTING_METRICS))
    table_v = summarise(whole_cases, _present(whole_cases, SUMMARY_METRICS), folds)
    return table_iv, table_v, regions


def summary_csv(table_iv: dict, table_v: dict) -> str:
    """Long-format CSV: ``table, metric, mean, fold_mean, fold_std, n`` (fold cells empty for Table IV)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "metric", "mean", "fold_mean", "fold_std", "n"])
    for name, row in (("IV", table_iv), ("V", table_v)):
        for metric, mean in row["mean"].items():
            fold_mean = row.get("fold_mean", {}).get(metric)
            fold_std = row.get("fold_std", {}).get(metric)
            writer.writerow([name, metric, mean, fold_mean, fold_std, row["n"]])
    return buffer.getvalue()

"""Result tables like Table IV / V of Medical Matting: mean over images and mean ± std over folds.

Per-case metrics are kept as ``{method: {case_id: {metric: value}}}``; :func:`summarise` turns
one method's cases into its row, and :func:`write_tables` writes all rows as Markdown, CSV and
JSON (atomically).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from medmat.io.atomic import atomic_write_json, atomic_write_text

MATTING_METRICS = ("SAD", "MSE", "Grad", "Conn")


def summarise(
    per_case: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] = MATTING_METRICS,
    folds: Sequence[Sequence[str]] | None = None,
) -> dict:
    """One method's row.

    Args:
        per_case: case id -> {metric: value}.
        metrics: which metrics to summarise.
        folds: test case ids of each fold; when given, the row also has the mean ± std over folds
            of the per-fold means (std with ddof=0, as numpy's default).

    Returns:
        {"n": number of cases, "mean": {metric: mean over cases},
         "fold_mean": {...}, "fold_std": {...}} (fold entries only when ``folds`` is given).
    """
    row = {"n": len(per_case), "mean": {}}
    for metric in metrics:
        values = [case[metric] for case in per_case.values() if metric in case]
        row["mean"][metric] = float(np.mean(values)) if values else math.nan
    if folds:
        fold_means = {metric: [] for metric in metrics}
        for test_ids in folds:
            present = [per_case[case_id] for case_id in test_ids if case_id in per_case]
            for metric in metrics:
                values = [case[metric] for case in present if metric in case]
                if values:
                    fold_means[metric].append(float(np.mean(values)))
        row["fold_mean"] = {m: float(np.mean(v)) if v else math.nan for m, v in fold_means.items()}
        row["fold_std"] = {m: float(np.std(v)) if v else math.nan for m, v in fold_means.items()}
    return row


def _format(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def mean_std_cell(values: Sequence[float]) -> str:
    """``"mean ± std"`` (ddof 0, 4 decimals) of the finite ``values``; "—" when none is finite."""
    finite = [float(value) for value in values if value is not None and math.isfinite(value)]
    return f"{np.mean(finite):.4f} ± {np.std(finite):.4f}" if finite else "—"


def table_markdown(rows: Mapping[str, dict], metrics: Sequence[str] = MATTING_METRICS, title: str = "") -> str:
    """Markdown table: one line per method, mean over images then (when known) fold mean ± std."""
    with_folds = any("fold_mean" in row for row in rows.values())
    header = ["method", "n"] + [f"{m}" for m in metrics]
    if with_folds:
        header += [f"{m} (folds)" for m in metrics]
    lines = ([f"### {title}", ""] if title else []) + [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    for name, row in rows.items():
        cells = [name, str(row["n"])] + [_format(row["mean"].get(m)) for m in metrics]
        if with_folds:
            cells += [
                f"{_format(row['fold_mean'][m])} ± {_format(row['fold_std'][m])}" if "fold_mean" in row else "—"
                for m in metrics
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows: Mapping[str, dict], metrics: Sequence[str] = MATTING_METRICS) -> str:
    """CSV with columns method, n, <metric>, and fold_mean/fold_std columns when known."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    with_folds = any("fold_mean" in row for row in rows.values())
    header = ["method", "n", *metrics]
    if with_folds:
        header += [f"{m}_fold_mean" for m in metrics] + [f"{m}_fold_std" for m in metrics]
    writer.writerow(header)
    for name, row in rows.items():
        line = [name, row["n"], *(row["mean"].get(m) for m in metrics)]
        if with_folds:
            line += [row.get("fold_mean", {}).get(m) for m in metrics]
            line += [row.get("fold_std", {}).get(m) for m in metrics]
        writer.writerow(line)
    return buffer.getvalue()


def write_tables(
    prefix: str | os.PathLike,
    rows: Mapping[str, dict],
    metrics: Sequence[str] = MATTING_METRICS,
    title: str = "",
    extra: Mapping | None = None,
) -> list[str]:
    """Write ``prefix.md``, ``prefix.csv`` and ``prefix.json``; returns the paths.

    ``extra`` (command line, machine, seconds per image, ...) goes into the JSON and, as a
    list of lines, under the Markdown table.
    """
    prefix = os.fspath(prefix)
    markdown = table_markdown(rows, metrics, title)
    if extra:
        markdown += "\n" + "".join(f"- {key}: {value}\n" for key, value in extra.items())
    paths = [prefix + ".md", prefix + ".csv", prefix + ".json"]
    atomic_write_text(paths[0], markdown)
    atomic_write_text(paths[1], table_csv(rows, metrics))
    atomic_write_json(paths[2], {"title": title, "metrics": list(metrics), "rows": rows, **(extra or {})})
    return paths

"""One table from several cross-validation runs: Table IV and Table V of Medical Matting side by side.

Reads each run's finished folds (``fold-*/metrics.json``, written by ``medmat crossval`` as each
fold ends, so a run still going or stopped early can be compared on the folds it has; or the
``summary.json`` of a ``medmat evaluate`` output, e.g. several runs scored as one deep ensemble)
and prints a Markdown table:
Table IV (region trimap == 128, mean over all test predictions of the chosen folds) and Table V
(whole image; GED, Dice, SAD, MSE, Grad as mean ± std over the chosen folds). ``--folds`` keeps
only some folds, so a full cross-validation can be compared with ablations run on fewer folds.

Seeds of one configuration: ``--mean NAME`` adds a row with the mean ± standard deviation over the
runs (ddof 0) of each run's Table IV and Table V figures, so a claimed gain can be held against the
spread over seeds; ``--per-fold`` adds a table of every run's folds (Table IV on the fold's
predictions, GED and Dice). ``--members`` adds, after a run trained as a deep ensemble
(``ensemble.members`` > 1: ``fold-*/member-*/``), a row for each of its members across the folds:
the single-model cross-validation of that member's seed, beside the ensemble it joins.

    python benchmarks/compare_runs.py full=runs/brain-lite prob-unet=runs/ablation/prob-unet-alone \
        --folds 0 [--output table.md]
    python benchmarks/compare_runs.py s0=runs/cpu-s0 s1=runs/cpu-s1 s2=runs/cpu-s2 --mean "cpu, 3 seeds" --per-fold
    python benchmarks/compare_runs.py "cpu_ensemble s8"=runs/cpu-ensemble-s8 --members
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medmat.engine.config import CONFIG_NAME, load_config
from medmat.engine.evaluation import METRICS_NAME, read_metrics
from medmat.engine.inference import MEMBER_PREFIX, crossval_folds, ensemble_members, folder_number
from medmat.metrics.tables import mean_std_cell
from options import named_runs_or_exit  # benchmarks/ is the script's folder, first on sys.path

TABLE_IV = ("SAD", "MSE", "Grad", "Conn")
TABLE_V = ("GED", "Dice", "SAD", "MSE", "Grad")


def finished_folds(run_dir: str) -> list[dict]:
    """The record ("fold", "test_ids", "mean") of every finished fold of a crossval folder
    (``fold-*/metrics.json``), or of every fold a ``medmat evaluate`` output scored (its
    ``summary.json``: a run rescored, or several runs as a deep ensemble)."""
    paths = [folder / METRICS_NAME for folder in crossval_folds(run_dir) if (folder / METRICS_NAME).is_file()]
    if paths:
        return [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    summary = Path(run_dir) / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text(encoding="utf-8"))["per_fold"]
    raise SystemExit(f"error: {run_dir}: no finished fold (fold-*/metrics.json) and no summary.json of medmat evaluate")


def member_runs(run_dir: str) -> list[tuple[int, int, list[dict]]]:
    """Each member of a crossval folder trained as a deep ensemble, as a single run:
    ``(member index, its seed, the records of its finished folds)``; [] for any other folder."""
    members: dict[int, list[Path]] = {}
    for fold_dir in crossval_folds(run_dir):
        for folder in ensemble_members(fold_dir, every_member=True):  # a member left out is still a run
            if (folder / METRICS_NAME).is_file():
                members.setdefault(folder_number(folder, MEMBER_PREFIX), []).append(folder)
    return [
        (index, load_config(folders[0] / CONFIG_NAME)["seed"], [read_metrics(folder) for folder in folders])
        for index, folders in sorted(members.items())
    ]


def fold_rows(records: list[dict], folds: list[int] | None, run_dir: str = "") -> list[dict]:
    """The per-fold records restricted to ``folds`` (all when None)."""
    rows = [row for row in records if folds is None or row["fold"] in folds]
    if not rows:
        raise SystemExit(f"error: {run_dir}: none of the folds {folds} is finished")
    return rows


def table_iv(rows: list[dict]) -> dict[str, float]:
    """Mean over all test predictions = per-fold means weighted by the fold's number of cases."""
    weights = np.array([len(row["test_ids"]) for row in rows], dtype=float)
    return {
        metric: float(np.average([row["mean"]["region"][metric] for row in rows], weights=weights))
        for metric in TABLE_IV
    }


def table_v(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Mean ± std (ddof 0) over folds of the folds' whole-image means, GED and Dice."""
    values = {}
    for metric in TABLE_V:
        per_fold = [row["mean"][metric] if metric in ("GED", "Dice") else row["mean"]["whole"][metric] for row in rows]
        per_fold = [value for value in per_fold if value is not None]
        values[metric] = (float(np.mean(per_fold)), float(np.std(per_fold))) if per_fold else (float("nan"),) * 2
    return values


def per_fold_table(runs: list[tuple[str, list[dict]]]) -> str:
    """One row per fold of every run: Table IV on its predictions, GED and Dice."""
    header = ["run", "fold", "cases", *(f"IV {m}" for m in TABLE_IV), "GED", "Dice"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in runs:
        for row in rows:
            cells = [name, str(row["fold"]), str(len(row["test_ids"]))]
            cells += [f"{row['mean']['region'][m]:.4f}" for m in TABLE_IV]
            cells += ["—" if row["mean"].get(m) is None else f"{row['mean'][m]:.4f}" for m in ("GED", "Dice")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_row(name: str, rows: list[dict], iv: dict[str, float], v: dict[str, tuple[float, float]]) -> str:
    """One run's line of the main table: its folds, Table IV, Table V as mean ± std over folds."""
    cells = [name, ",".join(str(row["fold"]) for row in rows)]
    cells += [f"{iv[m]:.4f}" for m in TABLE_IV]
    # A trimap-guided model samples no masks: no GED or Dice.
    cells += ["—" if np.isnan(v[m][0]) else f"{v[m][0]:.4f} ± {v[m][1]:.4f}" for m in TABLE_V]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--folds", default=None, help="comma-separated folds to keep (default: all)")
    parser.add_argument("--mean", default=None, metavar="NAME",
                        help="add a row NAME: mean ± std over the runs (seeds of one config)")
    parser.add_argument("--per-fold", action="store_true", help="add a table of every run's folds")
    parser.add_argument("--members", action="store_true",
                        help="after a deep-ensemble run, a row for each member (its seed's single-model run); "
                             "--mean stays over the runs given")
    parser.add_argument("--output", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    folds = None if args.folds is None else [int(f) for f in args.folds.split(",")]
    header = ["run", "folds", *(f"IV {m}" for m in TABLE_IV), *(f"V {m}" for m in TABLE_V)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    runs, summaries = [], []
    named = named_runs_or_exit(args.runs)
    for name, run_dir in named:
        rows = fold_rows(finished_folds(run_dir), folds, run_dir)
        iv, v = table_iv(rows), table_v(rows)
        runs.append((name, rows))
        summaries.append((iv, v))
        lines.append(table_row(name, rows, iv, v))
        for index, seed, records in member_runs(run_dir) if args.members else ():
            member_rows = fold_rows(records, folds, f"{run_dir} member {index}")
            member_name = f"{name}, member {index} (seed {seed})"
            runs.append((member_name, member_rows))
            lines.append(table_row(member_name, member_rows, table_iv(member_rows), table_v(member_rows)))
    if args.mean:
        cells = [f"**{args.mean}**", f"{len(summaries)} runs"]
        cells += [mean_std_cell([iv[m] for iv, _ in summaries]) for m in TABLE_IV]
        cells += [mean_std_cell([v[m][0] for _, v in summaries]) for m in TABLE_V]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    if args.per_fold:
        table += "\n" + per_fold_table(runs)
    print(table)
    if args.output:
        from medmat.io.atomic import atomic_write_text

        atomic_write_text(args.output, table)


if __name__ == "__main__":
    main()

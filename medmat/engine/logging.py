"""Per-epoch training records: ``log.csv``, optional TensorBoard events, and a ``curves.png`` plot.

Every file is rewritten atomically from the rows held in memory, so the log is always whole and,
on resume, rows of epochs after the checkpoint (written before the interruption) are dropped.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from medmat.errors import MedmatError
from medmat.io.atomic import atomic_path, atomic_write_text

LOG_NAME = "log.csv"
CURVES_NAME = "curves.png"
#: Columns that come first, in this order; the loss parts and validation metrics follow, then
#: the trailing columns.
LEADING_COLUMNS = ("epoch", "lr", "loss")
TRAILING_COLUMNS = ("seconds",)


def tensorboard_writer(run_dir: str | os.PathLike, setting="auto"):
    """A ``SummaryWriter`` for ``run_dir``, or None.

    Args:
        setting: ``train.tensorboard``: ``"auto"`` (when the ``tensorboard`` package is
            installed), True (required) or False.
    """
    if setting is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if setting is True:
            raise MedmatError("train.tensorboard is true but the tensorboard package is not installed") from None
        return None
    return SummaryWriter(log_dir=os.fspath(run_dir))


def read_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``log.csv`` as dicts of floats (``epoch`` as int; empty cells left out)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row = {key: float(value) for key, value in raw.items() if value not in ("", None)}
            row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


def rows_to_csv(rows: list[dict]) -> str:
    """CSV text of ``rows``: :data:`LEADING_COLUMNS`, every other key in first-seen order, :data:`TRAILING_COLUMNS`."""
    edges = LEADING_COLUMNS + TRAILING_COLUMNS
    columns = [key for key in LEADING_COLUMNS if any(key in row for row in rows)]
    for row in rows:
        columns += [key for key in row if key not in columns and key not in edges]
    columns += [key for key in TRAILING_COLUMNS if any(key in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def plot_curves(rows: list[dict], path: str | os.PathLike) -> None:
    """Plot the loss parts (left) and validation metrics (right) against the epoch into ``path`` (PNG)."""
    # Imported on first use: matplotlib costs a second of start-up in every training process.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in rows]
    keys = [key for key in rows[-1] if key not in ("epoch", "lr", "seconds")]
    losses = [key for key in keys if not key.startswith("val_")]
    metrics = [key for key in keys if key.startswith("val_")]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, names, title in ((axes[0], losses, "training loss"), (axes[1], metrics, "validation (held-out fold)")):
        for name in names:
            points = [(e, row[name]) for e, row in zip(epochs, rows) if _finite(row.get(name))]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.has_data():
            ax.legend(fontsize="small")
            if names is losses:
                # The first epochs' KL dwarfs everything else; weights start at 0, so symlog, not log.
                ax.set_yscale("symlog", linthresh=1e-2)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class RunLogger:
    """Keeps the epoch rows of one run and writes them out; silent on processes other than rank 0.

    Args:
        run_dir: the run folder.
        enabled: write files (rank 0) or only keep rows.
        tensorboard: ``train.tensorboard`` setting.
        plot: redraw ``curves.png`` after every epoch.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard="auto", plot: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.plot = plot
        self.rows: list[dict] = []
        self.writer = tensorboard_writer(self.run_dir, tensorboard) if enabled else None

    def resume(self, completed_epochs: int) -> None:
        """Reload ``log.csv`` and keep the rows of the epochs a checkpoint holds (``epoch <= completed_epochs``)."""
        self.rows = [row for row in read_log(self.run_dir / LOG_NAME) if row["epoch"] <= completed_epochs]
        if self.enabled:
            self._write_files()

    def log_epoch(self, row: dict) -> None:
        """Record one epoch's row (``epoch``, ``lr``, ``loss`` and any other floats) and rewrite the files."""
        self.rows.append(dict(row))
        if not self.enabled:
            return
        self._write_files()
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and _finite(value):
                    self.writer.add_scalar(key.replace("val_", "val/", 1), value, row["epoch"])
            self.writer.flush()

    def _write_files(self) -> None:
        if not self.rows:
            return
        atomic_write_text(self.run_dir / LOG_NAME, rows_to_csv(self.rows))
        if self.plot:
            plot_curves(self.rows, self.run_dir / CURVES_NAME)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

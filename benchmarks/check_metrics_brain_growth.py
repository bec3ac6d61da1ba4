"""Check medmat's matting metrics against independent measurements on Brain-growth.

Two predictions are scored against the Medical Matting release's alpha mattes over the released
trimaps' unknown pixels (``trimap == 128``), averaged over the 39 cases:

- ``closed-form``: pymatting 1.1.16 ``estimate_alpha_cf`` with its defaults on the greyscale image
  repeated to RGB and the trimap as given (pymatting treats 0.1 < t < 0.9 as unknown);
- ``mean of masks``: the mean of the 7 annotators' masks.

The reference values were measured independently with the DIM evaluation conventions. Prints
each metric beside its reference with the relative difference and exits 1 when any differs by
more than 2 %.

Usage::

    python benchmarks/check_metrics_brain_growth.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from medmat.data.safe_pickle import safe_load
from medmat.metrics import matting_metrics, region_mask

REFERENCE = {
    "closed-form": {"SAD": 0.567, "MSE": 0.079, "Grad": 1.017, "Conn": 0.599},
    "mean of masks": {"SAD": 0.5445, "MSE": 0.0796, "Grad": 1.291},
}
TOLERANCE = 0.02

REPO = Path(__file__).resolve().parents[1]


def default_data_root() -> Path:
    return Path(os.environ.get("MEDMAT_SHARED", REPO.parent / "shared")) / "data"


def load_brain_growth(data_root: Path) -> tuple[dict, dict]:
    """The release's cases and their trimaps.

    Returns:
        ``cases``: ``{case_id: {'image', 'masks', 'alpha', ...}}`` as released (uint8 arrays);
        ``trimaps``: ``{case_id: uint8 (H, W)}`` greyscale trimaps.
    """
    folder = Path(data_root) / "medical-matting"
    cases = safe_load(folder / "brain_growth_alpha.zip")
    with zipfile.ZipFile(folder / "trimap_brain.zip") as archive:
        trimaps = {
            case_id: np.asarray(Image.open(io.BytesIO(archive.read(f"trimap/{case_id}.png"))).convert("L"))
            for case_id in cases
        }
    return cases, trimaps


def mean_of_masks(case: dict) -> np.ndarray:
    """The annotators' agreement, float64 (H, W) in [0, 1]."""
    return np.mean(np.stack(case["masks"]).astype(np.float64), axis=0)


def closed_form(case: dict, trimap: np.ndarray) -> np.ndarray:
    """pymatting's closed-form matte with its default parameters, float64 (H, W) in [0, 1]."""
    from pymatting import estimate_alpha_cf

    image = np.repeat(case["image"][..., None] / 255.0, 3, axis=2)
    return estimate_alpha_cf(image, trimap / 255.0)


def mean_metrics(cases: dict, trimaps: dict, predict) -> dict[str, float]:
    """Mean over the cases of :func:`matting_metrics` of ``predict(case, trimap)``."""
    per_case = [
        matting_metrics(predict(case, trimaps[case_id]), case["alpha"], region_mask(trimaps[case_id]))
        for case_id, case in sorted(cases.items())
    ]
    return {name: float(np.mean([metrics[name] for metrics in per_case])) for name in per_case[0]}


def brain_growth_rows(data_root: Path, rows=tuple(REFERENCE)) -> dict[str, dict[str, float]]:
    """Measured metrics for the requested rows of :data:`REFERENCE`."""
    cases, trimaps = load_brain_growth(data_root)
    predictors = {"closed-form": closed_form, "mean of masks": lambda case, trimap: mean_of_masks(case)}
    return {row: mean_metrics(cases, trimaps, predictors[row]) for row in rows}


def relative_difference(measured: float, reference: float) -> float:
    return abs(measured - reference) / abs(reference)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_root(), help="the shared data folder")
    args = parser.parse_args(argv)

    measured = brain_growth_rows(args.data)
    failures = 0
    print(f"{'row':<14} {'metric':<5} {'medmat':>9} {'reference':>9} {'rel.diff':>9}")
    for row, references in REFERENCE.items():
        for name, reference in references.items():
            difference = relative_difference(measured[row][name], reference)
            flag = "" if difference <= TOLERANCE else "  FAIL"
            failures += bool(flag)
            print(f"{row:<14} {name:<5} {measured[row][name]:9.4f} {reference:9.4f} {difference:9.2%}{flag}")
    print(f"{failures} of {sum(map(len, REFERENCE.values()))} values differ by more than {TOLERANCE:.0%}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

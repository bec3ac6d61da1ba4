"""Classical matting on the alphamatting.com low-resolution training set: SAD and seconds per image.

Runs each method (one at a time, serially) on GT01..GT13 with trimap1 and trimap2 and prints
the mean SAD over each trimap's unknown region (``medmat.metrics.sad``: Σ|p - g| / 1000 with
both mattes read as 8-bit, as the Deep Image Matting code does) and the mean wall-clock
seconds per image, then the per-image SADs.

    python benchmarks/classical_alphamatting.py [--methods cf,if] [--limit N]
        [--data ../shared/data/alphamatting-lowres] [--json results.json]

Set OMP_NUM_THREADS=1 to time on one core.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from machine import finish_report, machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.classical import CLASSICAL_METHODS, METHOD_NAMES, estimate_alpha
from medmat.data.readers.alphamatting import read_alphamatting
from medmat.labels.build import matting_image
from medmat.metrics import region_mask, sad

TRIMAPS = ("trimap1", "trimap2")
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "alphamatting-lowres")


def run_method(name: str, samples_by_trimap: dict) -> dict:
    """SAD and seconds of one method on every (trimap, image): {trimap: {image id: (sad, s)}}."""
    results = {}
    for trimap_name, samples in samples_by_trimap.items():
        results[trimap_name] = {}
        for sample in samples:
            start = time.perf_counter()
            alpha = estimate_alpha(name, matting_image(sample.image), sample.trimap)
            seconds = time.perf_counter() - start
            error = sad(alpha, sample.alpha, region_mask(sample.trimap, "unknown"))
            results[trimap_name][sample.id] = (error, seconds)
            print(f"  {name:6s} {trimap_name} {sample.id}: SAD {error:7.3f}  {seconds:6.1f} s", flush=True)
    return results


def summary_table(results: dict) -> str:
    """Markdown table: method, mean SAD per trimap and overall, mean seconds per image."""
    lines = [
        "| method | SAD trimap1 | SAD trimap2 | SAD mean | s / image |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, by_trimap in results.items():
        sads = {t: [error for error, _ in cases.values()] for t, cases in by_trimap.items()}
        seconds = [s for cases in by_trimap.values() for _, s in cases.values()]
        every = [error for values in sads.values() for error in values]
        cells = [f"{np.mean(sads[t]):.3f}" if t in sads else "-" for t in TRIMAPS]
        lines.append(f"| {METHOD_NAMES[name]} | {' | '.join(cells)} | {np.mean(every):.3f} | {np.mean(seconds):.1f} |")
    return "\n".join(lines)


def per_image_table(results: dict) -> str:
    """Markdown table of SADs: one row per image and trimap, one column per method."""
    names = list(results)
    lines = ["| image | trimap | " + " | ".join(METHOD_NAMES[n] for n in names) + " |", "|---|---|" + "---:|" * len(names)]
    first = results[names[0]]
    for trimap_name, cases in first.items():
        for case_id in cases:
            cells = [f"{results[n][trimap_name][case_id][0]:.3f}" for n in names]
            lines.append(f"| {case_id} | {trimap_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="cf,if", help=f"comma-separated, from {','.join(CLASSICAL_METHODS)}")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--data", default=os.path.normpath(DEFAULT_DATA))
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    names = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in CLASSICAL_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; use {', '.join(CLASSICAL_METHODS)}")

    samples_by_trimap = {t: read_alphamatting(args.data, t)[: args.limit] for t in TRIMAPS}
    results = {}
    for name in names:
        print(f"{METHOD_NAMES[name]} ...", flush=True)
        results[name] = run_method(name, samples_by_trimap)

    count = len(samples_by_trimap[TRIMAPS[0]])
    text = (f"\nalphamatting-lowres, {count} images x {len(TRIMAPS)} trimaps, {machine_line()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n\n"
            f"{summary_table(results)}\n\n{per_image_table(results)}")
    finish_report({"data": args.data, "images": count, "results": results}, text, args.json)


if __name__ == "__main__":
    main()

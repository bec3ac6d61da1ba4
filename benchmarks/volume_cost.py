"""Cost of predicting a whole CT-sized volume: slices per second and peak memory of ``medmat predict``.

Writes (in a temporary folder, never the repository) a synthetic 512 x 512 x 300 int16 volume in
Hounsfield units (lung-like noise, three soft spherical lesions of different sizes) and its label
volume, builds a run of the ``lite`` Medical Matting config with random weights (cost does not
depend on the weights), then times ``medmat predict --input VOLUME --roi LABELS`` in a child
process and reads that process's peak resident memory (``ru_maxrss``). Optionally the coarse pass
(no ``--roi``) on a thinner volume of the same slice size.

    python benchmarks/volume_cost.py [--slices 300] [--size 512] [--samples 8] [--coarse-slices 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel
import numpy as np
import torch

from machine import machine_line  # benchmarks/ is the script's folder, first on sys.path
from medmat.engine import load_config
from medmat.engine.checkpoint import save_checkpoint
from medmat.engine.inference import build_model_from_config

#: (centre z, y, x), radius in voxels: three lesions of 13 to 41 slices.
LESIONS = (((60, 200, 180), 6.5), ((150, 300, 330), 12.0), ((240, 140, 380), 20.5))
AFFINE = np.diag([0.7, 0.7, 1.25, 1.0])


def write_volume(folder: Path, size: int, slices: int, lesions=LESIONS) -> tuple[Path, Path]:
    """The synthetic volume (int16 HU) and its label volume, written slice range by slice range."""
    rng = np.random.default_rng(0)
    volume = np.empty((size, size, slices), dtype=np.int16)  # NIfTI order (y, x, z)
    labels = np.zeros((size, size, slices), dtype=np.uint8)
    rows, cols = np.mgrid[:size, :size]
    for z in range(slices):
        plane = -800.0 + 60.0 * rng.standard_normal((size, size))
        for number, ((cz, cy, cx), radius) in enumerate(lesions, start=1):
            distance = np.sqrt((rows - cy) ** 2 + (cols - cx) ** 2 + ((z - cz) * 1.25 / 0.7) ** 2)
            alpha = np.clip((radius - distance) / 3.0 + 0.5, 0.0, 1.0)  # a 3-voxel soft border
            plane = plane * (1 - alpha) + 40.0 * alpha
            labels[..., z][alpha > 0.5] = number
        volume[..., z] = np.round(plane).astype(np.int16)
    paths = folder / "ct.nii.gz", folder / "lesions.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, AFFINE), paths[0])
    nibabel.save(nibabel.Nifti1Image(labels, AFFINE), paths[1])
    return paths


def lite_run(folder: Path) -> Path:
    """A run folder of the lite config (input_size 128) with random weights (seed 0)."""
    config = load_config("lite")
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "final.pt", model=model.state_dict(), config=config)
    return folder


def timed_predict(arguments: list[str]) -> tuple[float, float, str]:
    """(seconds, peak resident GiB, error line or "") of ``medmat predict ARGUMENTS`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "medmat", "predict", *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:  # ru_maxrss of children is the largest child so far; say so rather than guess
        print("note: peak memory is the largest child's so far")
    error = "" if finished.returncode == 0 else finished.stderr.strip().splitlines()[-1]
    return seconds, peak / 2**20, error  # kB -> GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--coarse-slices", type=int, default=0, help="also time the coarse pass on this many slices")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="volume-cost-") as folder:
        folder = Path(folder)
        started = time.perf_counter()
        volume, labels = write_volume(folder, args.size, args.slices)
        print(f"synthetic {args.size}x{args.size}x{args.slices} volume written in {time.perf_counter() - started:.1f} s "
              f"({os.path.getsize(volume) / 2**20:.0f} MiB gzip)")
        run = lite_run(folder / "run")
        out = folder / "out"
        seconds, peak, error = timed_predict(["-i", str(volume), "-m", str(run), "-o", str(out), "--roi", str(labels),
                                              "--window", "lung", "--samples", str(args.samples)])
        if error:
            raise SystemExit(error)
        record = json.loads((out / "ct_lesions.json").read_text())
        crops = sum(lesion["last_slice"] - lesion["first_slice"] + 1 for lesion in record["lesions"])
        print(f"--roi labels: {len(record['lesions'])} lesions, {crops} lesion slices of {args.slices}: "
              f"{seconds:.1f} s, {args.slices / seconds:.1f} volume slices/s, {crops / seconds:.2f} lesion slices/s, "
              f"peak memory {peak:.2f} GiB (child process, lite model, {args.samples} samples)")
        for lesion in record["lesions"]:
            print(f"  lesion {lesion['id']}: slices {lesion['first_slice']}-{lesion['last_slice']}, "
                  f"soft volume {lesion['soft_volume_mm3']:.0f} mm3")
        if args.coarse_slices:
            thin = folder / "thin"
            thin.mkdir()
            centre = [((args.coarse_slices // 2, 256, 256), 10.0)]
            thin_volume, _ = write_volume(thin, args.size, args.coarse_slices, centre)
            seconds, peak, error = timed_predict(["-i", str(thin_volume), "-m", str(run), "-o", str(thin / "out"),
                                                  "--window", "lung", "--samples", str(args.samples)])
            found = error or json.loads((thin / "out" / "ct_lesions.json").read_text())["lesions"]
            print(f"coarse pass (no --roi) then the lesions it found on {args.size}x{args.size}x{args.coarse_slices}: "
                  f"{seconds:.1f} s, {args.coarse_slices / seconds:.3f} slices/s, peak memory {peak:.2f} GiB; "
                  f"found: {found if error else [lesion['bounding_box'] for lesion in found]}")


if __name__ == "__main__":
    main()

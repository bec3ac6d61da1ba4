"""Which dilation radius turns the annotators' disagreement into the authors' released trimaps?

Compares, on Brain-growth, the unknown region of ``medmat.labels.trimap_from_masks`` at radii
0..8 with the unknown region of the released evaluation trimaps (grey level in (25, 230), since
they carry resampled intermediate values), and prints the mean IoU per radius.

    python benchmarks/label_trimap_radius.py [--data ../shared/data/medical-matting]
"""

from __future__ import annotations

import argparse

import numpy as np

from medmat.data.readers import read_medical_matting, read_trimaps
from medmat.data.trimap import UNKNOWN
from medmat.labels.trimap import trimap_from_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/medical-matting")
    args = parser.parse_args()
    samples = read_medical_matting(f"{args.data}/brain_growth_alpha.zip")
    trimaps = read_trimaps(f"{args.data}/trimap_brain.zip", [s.id for s in samples])
    print("radius  mean IoU with the released unknown region")
    for radius in range(9):
        ious = []
        for sample in samples:
            ours = trimap_from_masks(sample.masks, radius) == UNKNOWN
            released = (trimaps[sample.id] > 25) & (trimaps[sample.id] < 230)
            ious.append((ours & released).sum() / max((ours | released).sum(), 1))
        print(f"{radius:6d}  {np.mean(ious):.3f}")


if __name__ == "__main__":
    main()

"""LIDC nodule stacks as a medmat folder dataset of volumes, for 2.5-D training and volume evaluation.

Every ``LIDC-IDRI-XXXX/nodule-N`` folder becomes one volume case: its consecutive ``slice-K.png``
as a uint8 NIfTI volume, the four radiologists' masks as mask volumes and, from a label folder
that ``medmat label`` wrote for every slice (``--min-annotators 1``; a slice that no radiologist
marked, which ``medmat label`` skips, has alpha 0), the alpha volume. The
PNG crops carry no spacing, so the volumes have 1 mm voxels (an identity affine). Cases are
grouped by patient, so a split keeps a patient's nodules together.

    medmat label --data ../shared/data/lidc-idri-slices --min-annotators 1 --output results/lidc-labels-every-slice
    python benchmarks/lidc_volumes.py --lidc ../shared/data/lidc-idri-slices \\
        --labels results/lidc-labels-every-slice --output results/lidc-volumes
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from medmat.data.readers import natural_key
from medmat.data.readers.folder import read_folder, write_volume_folder
from medmat.data.readers.lidc import PATIENT_PREFIX, read_lidc_nodule
from medmat.errors import MedmatError


def nodule_cases(lidc: str, labels: dict[str, np.ndarray], limit: int | None = None):
    """Yield the volume case of every nodule folder (``limit``: the first N patients)."""
    patients = sorted((p for p in os.listdir(lidc) if p.startswith(PATIENT_PREFIX)), key=natural_key)[:limit]
    for patient in patients:
        for nodule in sorted((n for n in os.listdir(os.path.join(lidc, patient)) if n.startswith("nodule-")), key=natural_key):
            case = f"{patient}/{nodule}"
            images, masks = read_lidc_nodule(os.path.join(lidc, case))
            ids = [f"{case}/slice-{z}" for z in range(len(images))]
            alphas = []
            for z, slice_id in enumerate(ids):
                if slice_id in labels:
                    alphas.append(labels[slice_id])
                elif not masks[:, z].any():
                    # No radiologist marked the nodule on this slice: every annotator says background.
                    alphas.append(np.zeros(images.shape[1:], dtype=np.float32))
                else:
                    raise MedmatError(f"no alpha label for {slice_id} (label every slice: --min-annotators 1)")
            yield {"case": case, "image": images, "masks": masks, "alpha": np.stack(alphas), "group": patient}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lidc", required=True, help="the LIDC-IDRI slices folder")
    parser.add_argument("--labels", required=True, help="a medmat label output holding every slice's alpha")
    parser.add_argument("--output", required=True)
    parser.add_argument("--patients", type=int, default=None, help="only the first N patients")
    args = parser.parse_args()
    labels = {sample.id: sample.alpha for sample in read_folder(args.labels)}
    root = write_volume_folder(nodule_cases(args.lidc, labels, args.patients), args.output,
                               name="lidc-volumes", modality="CT")
    print(f"volume dataset written to {root}")


if __name__ == "__main__":
    main()

"""Cross-fitting: a wrapped base model's held-out predictions of the training cases (``train.cross_fit_from``).

A model that refines a frozen base (:mod:`medmat.models.probe_refiner`) learns from the base's
errors; on the base's own training cases those errors are smaller than on a new patient, so the
refiner sees too few of them. A cross-validation of the base already holds, for every case, the
fold model that did not train on it: :func:`held_out_base_maps` predicts each training case with
that model, and the dataset hands the maps to the refiner (``held_out_base_alpha``,
``held_out_base_uncertainty``), which reads them in training instead of running its base.

What this is not: a nested cross-validation. The fold models that predict the training cases of
fold k trained on fold k's test cases; no prediction of a test case, and no test label, reaches
the refiner, but the base weights that made its training inputs did see those labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medmat.data.sample import Sample
from medmat.data.splits import load_split
from medmat.engine.checkpoint import FINAL_NAME
from medmat.engine.config import model_input_size
from medmat.engine.dataset import fit_to_size, unfit_from_size
from medmat.engine.inference import ensemble_members, fold_folder, load_run, predict_as_trained
from medmat.errors import MedmatError
from medmat.uncertainty import lesion_uncertainty

#: The split file of a cross-validation folder (as :mod:`medmat.engine.trainer` writes it).
SPLIT_FILE = "split.json"


def held_out_base_maps(
    source: str | os.PathLike,
    samples: Sequence[Sample],
    split: Sequence[dict],
    size: tuple[int, int],
    num_samples: int,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Each case's prediction by the fold model of ``source`` that held it out.

    Args:
        source: a cross-validation folder of the base (``split.json`` and ``fold-<i>/``).
        samples: the cases to predict (a run's training cases).
        split: this run's folds; ``source`` must have been split the same way, so that no base
            fold model predicts a case it trained on.
        size: (H, W) every case is centre-cropped or padded to for the prediction, as evaluation
            predicts it (:func:`medmat.engine.evaluation.evaluate_samples`).
        num_samples: N, masks the base draws (models that sample).
        seed: the draws of case i are seeded with ``seed + i``; torch's global random state is
            left as it was.

    Returns:
        ``{case id: {"held_out_base_alpha": float32 (H, W) in [0, 1], "held_out_base_uncertainty":
        float32 (H, W) in nats}}`` at each case's own shape; the uncertainty is the base's
        "uncertainty_map" when it gives one, else the binary entropy of its alpha.

    Raises:
        MedmatError: no split there, a fold model missing or unfinished (no ``final.pt``), another
            split, or a case no fold held out.
    """
    folder = Path(source)
    record = load_split(folder / SPLIT_FILE)
    theirs = {int(fold["fold"]): sorted(fold["test"]) for fold in record["folds"]}
    mine = {int(fold["fold"]): sorted(fold["test"]) for fold in split}
    if theirs != mine:
        raise MedmatError("train.cross_fit_from was split another way than this run: its fold models may have "
                          "trained on the cases they would predict", folder / SPLIT_FILE)
    fold_of = {case: fold for fold, cases in theirs.items() for case in cases}
    missing = [sample.id for sample in samples if sample.id not in fold_of]
    if missing:
        raise MedmatError(f"train.cross_fit_from holds out no fold with case {missing[0]!r}", folder / SPLIT_FILE)
    maps: dict[str, dict[str, np.ndarray]] = {}
    with torch.random.fork_rng(devices=[]):
        for fold in sorted({fold_of[sample.id] for sample in samples}):
            fold_dir = fold_folder(folder, fold)
            members = ensemble_members(fold_dir)  # a fold trained as a deep ensemble predicts as one
            unfinished = [run for run in members or [fold_dir] if not (run / FINAL_NAME).is_file()]
            if unfinished:
                raise MedmatError(f"train.cross_fit_from: fold {fold} has not finished (no {FINAL_NAME})", unfinished[0])
            model, config = load_run(fold_dir)
            small = model_input_size(config)
            for index, sample in enumerate(samples):
                if fold_of[sample.id] != fold:
                    continue
                torch.manual_seed(seed + index)
                trimap = None if sample.trimap is None else fit_to_size(sample.trimap, size)
                prediction = predict_as_trained(model, fit_to_size(sample.image, size), num_samples, trimap, small)
                alpha = np.clip(unfit_from_size(prediction["alpha"], sample.shape), 0.0, 1.0).astype(np.float32)
                uncertainty = prediction.get("uncertainty_map")
                uncertainty = lesion_uncertainty(alpha) if uncertainty is None else unfit_from_size(uncertainty, sample.shape)
                maps[sample.id] = {
                    "held_out_base_alpha": alpha,
                    "held_out_base_uncertainty": np.asarray(uncertainty, dtype=np.float32),
                }
    return maps

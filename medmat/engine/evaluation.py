"""Scoring a model on cases with ground-truth alpha mattes, as the Medical Matting paper does.

- :func:`evaluate_samples` predicts every case at the training size and scores it: Table IV
  (SAD / MSE / Grad / Conn on the trimap's unknown band) and Table V (whole image, GED and Dice of
  the sampled masks against :func:`label_masks_from_alpha`);
- :func:`mean_case_metrics` averages the cases; :func:`validation_metrics` and
  :func:`final_metrics` are what a training run logs every few epochs and writes at its end;
  :func:`training_fit` says whether a trained model fits its own training cases (its whole-image
  SAD, and whether its alpha reaches the lesion core at all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medmat.data.sample import Sample
from medmat.engine.config import model_input_size
from medmat.engine.dataset import common_size, fit_to_size, unfit_from_size
from medmat.engine.inference import METRICS_NAME, predict_as_trained
from medmat.engine.seeding import seeded_rng
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json
from medmat.metrics import adapted_dice, ged, matting_metrics, mean_table_iv_metrics, region_mask, table_iv_metrics
from medmat.models import MattingModel

#: Table V: 8 target masks threshold the alpha at equidistant levels in [0.2, 0.7) of its range.
LABEL_LEVELS = 8
LABEL_RANGE = (0.2, 0.7)
#: Sampled score maps are binarised at this level for GED and Dice (the authors' evaluation).
SAMPLE_MASK_THRESHOLD = 0.5
#: Label alpha at or above which a pixel is the lesion's core (every annotator's lesion).
CORE_LEVEL = 0.98


def label_masks_from_alpha(
    alpha: np.ndarray, num_levels: int = LABEL_LEVELS, low: float = LABEL_RANGE[0], high: float = LABEL_RANGE[1]
) -> np.ndarray:
    """The target masks of Table V: the alpha thresholded at equidistant levels.

    Mask ``l`` is ``alpha >= min + range * (low + (high - low) * l / num_levels)``, l = 0..num_levels-1
    (with the defaults: ``min + range * (0.2 + 0.0625 l)``), as the authors' ``generate_masks_by_alpha``.

    Args:
        alpha: float (H, W) in [0, 1].

    Returns:
        bool (num_levels, H, W), from the largest mask to the smallest. A constant alpha has no
        range to divide: every mask is ``alpha > 0`` (empty for a case without lesion, whole for
        one that is lesion everywhere).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    floor, span = alpha.min(), alpha.max() - alpha.min()
    if span == 0:
        return np.broadcast_to(alpha > 0, (num_levels, *alpha.shape)).copy()
    fractions = low + (high - low) * np.arange(num_levels) / num_levels
    thresholds = floor + span * fractions
    return alpha[None] >= thresholds[:, None, None]


def evaluate_samples(
    model: MattingModel,
    samples: Sequence[Sample],
    num_samples: int = 8,
    region: str = "unknown",
    size: tuple[int, int] | None = None,
    with_region: bool = True,
    model_input_size: tuple[int, int] | None = None,
    flip: bool | str = False,
) -> list[dict]:
    """Score a model on cases with ground-truth alpha mattes, as the paper does.

    Each case is fitted to ``size`` (the training size), predicted, and the prediction put back
    at the case's own size. With ``model_input_size`` (h, w) (``data.model_input_size``) the fitted
    image is first resampled to (h, w) and a resolution-free model reads its alpha at ``size``
    (``output_size``), as it was trained; ``flip`` (``eval.flip``) averages the alpha with the
    mirror image's (:func:`~medmat.engine.inference.predict`). Then:

    - ``region``: SAD/MSE/Grad/Conn on the trimap's unknown pixels (Table IV); on the whole image
      when ``region="whole"`` or the case has no trimap (``region_name`` says which);
    - ``whole``: SAD/MSE/Grad/Conn on the whole image (Table V);
    - ``GED``, ``Dice``: the sampled masks (score maps > 0.5) against :func:`label_masks_from_alpha`
      (Table V); None for models that do not sample;
    - ``core_alpha``: the median predicted alpha where the label alpha is >= :data:`CORE_LEVEL`
      (None for a case without such pixels): near 1 for a model that has learnt the lesion.

    Returns:
        One dict per case: ``{"id", "region_name", "region", "whole", "GED", "Dice", "core_alpha"}``;
        a metric dict is None when its region is empty.
    """
    size = common_size(samples, size)
    was_training = model.training
    model.eval()
    try:
        return [
            _evaluate_case(model, sample, num_samples, region, size, with_region, model_input_size, flip)
            for sample in samples
        ]
    finally:
        model.train(was_training)


def _evaluate_case(
    model: MattingModel, sample: Sample, num_samples: int, region: str, size, with_region: bool, model_input_size=None,
    flip: bool | str = False,
) -> dict:
    """One case of :func:`evaluate_samples`."""
    if sample.alpha is None:
        raise MedmatError("cannot evaluate a case without an alpha matte", sample.source or sample.id)
    trimap = None if sample.trimap is None else fit_to_size(sample.trimap, size)
    prediction = predict_as_trained(model, fit_to_size(sample.image, size), num_samples, trimap, model_input_size, flip)
    alpha = np.clip(unfit_from_size(prediction["alpha"], sample.shape), 0.0, 1.0)
    if with_region:
        case = {"id": sample.id, **table_iv_metrics(alpha, sample.alpha, sample.trimap, region)}
    else:
        case = {"id": sample.id, "whole": matting_metrics(alpha, sample.alpha, region_mask(None, "whole", sample.shape))}
    core = sample.alpha >= CORE_LEVEL
    case["core_alpha"] = float(np.median(alpha[core])) if core.any() else None
    case["GED"] = case["Dice"] = None
    if "sample_masks" in prediction:
        predicted = unfit_from_size(prediction["sample_masks"], sample.shape) > SAMPLE_MASK_THRESHOLD
        labels = label_masks_from_alpha(sample.alpha)
        case["GED"] = ged(predicted, labels)
        case["Dice"] = adapted_dice(predicted, labels)
    return case


def mean_case_metrics(cases: Sequence[dict]) -> dict:
    """Means over cases of :func:`evaluate_samples` results, skipping None.

    Returns:
        ``{"region": {name: mean}, "whole": {...}, "GED": mean, "Dice": mean, "num_cases": n}``;
        a mean is None when no case has the value.
    """
    return {**mean_table_iv_metrics(cases, ("GED", "Dice")), "num_cases": len(cases)}


def _whole_image_cases(model: MattingModel, samples: Sequence[Sample], config: dict, size) -> list[dict]:
    """:func:`evaluate_samples` on the whole image, predicted as the run is evaluated
    (``eval.num_samples``, ``eval.flip``, ``data.model_input_size``), sampling from its own
    generator seeded by ``config["seed"]`` so that scoring leaves training untouched."""
    with seeded_rng(config["seed"], model):
        return evaluate_samples(
            model, samples, config["eval"]["num_samples"], "whole", size, with_region=False,
            model_input_size=model_input_size(config), flip=config["eval"]["flip"],
        )


def _whole_image_means(cases: Sequence[dict]) -> dict[str, float]:
    mean = mean_case_metrics(cases)
    scores = dict(mean["whole"] or {})
    scores.update({name: mean[name] for name in ("GED", "Dice") if mean[name] is not None})
    return scores


def whole_image_scores(model: MattingModel, samples: Sequence[Sample], config: dict, size) -> dict[str, float]:
    """Mean whole-image SAD/MSE/Grad/Conn, GED and Dice of a model on cases with alpha mattes,
    predicted as the run is evaluated (``eval.num_samples``, ``eval.flip``, ``data.model_input_size``).

    Sampling uses its own generator seeded by ``config["seed"]``, so that scoring leaves training
    untouched. A metric no case has (GED and Dice of a model that does not sample) is absent.
    """
    return _whole_image_means(_whole_image_cases(model, samples, config, size))


def training_fit(model: MattingModel, samples: Sequence[Sample], config: dict, size, floor: float | None) -> dict:
    """How a trained model fits the cases it trained on, in one prediction of each, as
    :func:`whole_image_scores` predicts them.

    A model whose alpha never reaches the lesion core of its own training cases failed to fit:
    for example an alpha layer whose weights all turned non-positive behind a ReLU, which caps the
    alpha at sigmoid(bias) everywhere and receives no gradient to recover (docs/medical-matting.md).

    Args:
        floor: the core alpha in [0, 1] a fitted model reaches (``train.core_alpha_floor``); None =
            no verdict.

    Returns:
        ``{"scores": whole_image_scores' dict, "core_alpha": [each case's median alpha in its core
        (cases with a core only)], "core_alpha_max": the largest of those or None, "floor": floor,
        "capped": core_alpha_max < floor}`` (``capped`` False without a floor or a core).
    """
    cases = _whole_image_cases(model, samples, config, size)
    core = [case["core_alpha"] for case in cases if case["core_alpha"] is not None]
    largest = max(core) if core else None
    return {
        "scores": _whole_image_means(cases),
        "core_alpha": core,
        "core_alpha_max": largest,
        "floor": floor,
        "capped": floor is not None and largest is not None and largest < floor,
    }


def validation_metrics(model: MattingModel, samples: Sequence[Sample], config: dict, size) -> dict[str, float]:
    """:func:`whole_image_scores` on the held-out cases, as ``val_*`` floats."""
    return {f"val_{name}": value for name, value in whole_image_scores(model, samples, config, size).items()}


def final_metrics(
    model: MattingModel, train_samples: Sequence[Sample], test_samples: Sequence[Sample], config: dict, size,
    run_dir: Path, extra: dict | None = None,
) -> dict:
    """Evaluate the trained model on the fold's test cases and write ``metrics.json`` (with ``extra``'s keys)."""
    with seeded_rng(config["seed"], model):
        cases = evaluate_samples(
            model, test_samples, config["eval"]["num_samples"], config["eval"]["region"], size,
            model_input_size=model_input_size(config), flip=config["eval"]["flip"],
        )
    record = {
        "fold": config["split"]["fold"],
        "epochs": config["optim"]["epochs"],
        "model": config["model"]["name"],
        "num_samples": config["eval"]["num_samples"],
        "region": config["eval"]["region"],
        "train_ids": [sample.id for sample in train_samples],
        "test_ids": [sample.id for sample in test_samples],
        **(extra or {}),
        "mean": mean_case_metrics(cases),
        "cases": cases,
    }
    atomic_write_json(Path(run_dir) / METRICS_NAME, record)
    return record


def read_metrics(run_dir: str | Path) -> dict:
    """The ``metrics.json`` record of a finished run."""
    path = Path(run_dir) / METRICS_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MedmatError("run has no metrics.json (not finished?)", path) from None
    except (OSError, ValueError) as error:
        raise MedmatError(f"cannot read metrics: {error}", path) from None

"""Prediction with trained runs, and the paper's evaluation of predictions against alpha mattes.

- :func:`load_run` rebuilds a trained model from a run folder or checkpoint file;
- :func:`predict_sample` / :func:`predict_samples` run it on (C,H,W) images and return numpy,
  at the image's size or, for resolution-free models, at any ``output_size``;
- :func:`label_masks_from_alpha` makes the 8 target masks of Table V from a ground-truth alpha;
- :func:`evaluate_samples` scores a model on cases with alpha mattes (Tables IV and V).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medmat.data.sample import Sample
from medmat.engine.checkpoint import CHECKPOINT_NAME, FINAL_NAME, load_checkpoint
from medmat.engine.config import load_config
from medmat.engine.dataset import common_size, fit_to_size, resize_planes, trimap_levels, unfit_from_size
from medmat.errors import MedmatError
from medmat.metrics import adapted_dice, ged, matting_metrics, region_mask, table_iv_metrics

#: Outputs returned by the prediction functions, when the model produces them ("adapted_trimap":
#: AdaMatting's adapted trimap, levels 0 / 0.5 / 1).
PREDICTION_KEYS = ("alpha", "uncertainty_map", "lesion_uncertainty", "sample_masks", "adapted_trimap")
#: Spatial sizes are padded to a multiple of this before the forward pass: the U-Nets halve the
#: resolution up to four times.
SIZE_MULTIPLE = 16
#: Table V: 8 target masks threshold the alpha at equidistant levels in [0.2, 0.7) of its range.
LABEL_LEVELS = 8
LABEL_RANGE = (0.2, 0.7)
#: Sampled score maps are binarised at this level for GED and Dice (the authors' evaluation).
SAMPLE_MASK_THRESHOLD = 0.5


def build_model_from_config(config: dict) -> nn.Module:
    """The model named by ``config["model"]["name"]``, built with the section's other keys as kwargs."""
    # Importing the package registers every bundled model.
    importlib.import_module("medmat.models")
    from medmat.models.registry import build_model

    kwargs = {key: value for key, value in config["model"].items() if key != "name"}
    return build_model(config["model"]["name"], **kwargs)


def find_checkpoint(run: str | os.PathLike) -> Path:
    """The checkpoint of a run folder (``final.pt``, else ``checkpoint.pt``) or ``run`` itself if it is a file."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise MedmatError("run folder or checkpoint not found", run)
    for name in (FINAL_NAME, CHECKPOINT_NAME):
        if (run / name).is_file():
            return run / name
    raise MedmatError(f"not a medmat run: no {FINAL_NAME} or {CHECKPOINT_NAME} in the folder", run)


def load_run(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the trained model of a run.

    Args:
        run: a run folder (its ``final.pt``, else its latest ``checkpoint.pt``) or a checkpoint file.
        device: where to put the model.

    Returns:
        ``(model, config)``: the model in eval mode with the trained weights, and the run's config.

    Raises:
        MedmatError: no run there, not a medmat checkpoint, or weights that do not fit the model.
    """
    path = find_checkpoint(run)
    payload = load_checkpoint(path)
    if "config" not in payload or "model" not in payload:
        raise MedmatError("not a medmat run checkpoint (no config or model weights)", path)
    config = load_config(payload["config"])
    model = build_model_from_config(config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise MedmatError(f"weights do not fit model {config['model']['name']!r}: {first_line}", path) from None
    return model.to(device).eval(), config


def fit_channels(image: np.ndarray, expected: int, where: str) -> np.ndarray:
    """A (C, H, W) image with the model's ``expected`` channels: grey is repeated for a colour
    model; any other mismatch (colour for a grey model) is a MedmatError."""
    channels = image.shape[0]
    if channels == expected:
        return image
    if channels == 1 and expected == 3:
        return np.repeat(image, 3, axis=0)
    kinds = {1: "grey", 3: "colour"}
    raise MedmatError(
        f"the image is {kinds.get(channels, str(channels) + '-channel')} ({channels} channel"
        f"{'s' if channels != 1 else ''}) but the model was trained on {expected}-channel images",
        where,
    )


def _padding_for(size: int, multiple: int) -> tuple[int, int]:
    extra = math.ceil(size / multiple) * multiple - size
    return extra // 2, extra - extra // 2


def accepts_output_size(model: nn.Module) -> bool:
    """Whether ``model.predict`` takes an ``output_size`` (resolution-free models, e.g. region_aware_matting)."""
    predict = getattr(model, "predict", None)
    if predict is None:
        return False
    try:
        return "output_size" in inspect.signature(predict).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a readable signature
        return False


def require_output_size(model: nn.Module, name: str | None = None) -> None:
    """Raise a MedmatError naming the model (``name``, else its class) unless it accepts ``output_size``."""
    if not accepts_output_size(model):
        name = name or type(model).__name__
        raise MedmatError(
            f"model {name!r} predicts at its input's size only: its predict() takes no output_size "
            "(resolution-free models such as region_aware_matting do)"
        )


def forward_for_inference(model: nn.Module, batch: dict[str, torch.Tensor], num_samples: int) -> dict[str, torch.Tensor]:
    """``model.predict(image, num_samples)`` when the model has it, else an eval-mode forward of ``batch``."""
    if hasattr(model, "predict"):
        return model.predict(batch["image"], num_samples=num_samples)
    model.eval()
    return model(batch)


def predict_batch(
    model: nn.Module,
    images: np.ndarray,
    num_samples: int = 8,
    trimaps: np.ndarray | None = None,
    output_size: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Predict a batch of same-size images.

    Args:
        model: a contract model (in eval mode; this function does not change its mode unless it
            has no ``predict``).
        images: float32 (B, C, H, W) in [0, 1].
        num_samples: number of sampled masks for models that sample (Prob. U-Net: N).
        trimaps: optional (B, H, W) uint8 or [0,1] trimaps, for trimap-based models without ``predict``.
        output_size: (H', W') of the predictions, for models whose ``predict`` takes an
            ``output_size``; the image is then passed unpadded (these models take any size).
            None = (H, W).

    Returns:
        float32 numpy arrays: ``alpha`` (B,H',W') and, when the model makes them,
        ``uncertainty_map`` (B,H',W'), ``lesion_uncertainty`` (B,H',W'), ``sample_masks`` (B,N,H',W'),
        ``adapted_trimap`` (B,H',W') with levels 0 / 0.5 / 1.

    Raises:
        MedmatError: ``output_size`` for a model whose ``predict`` does not take it.
    """
    device = next(model.parameters()).device
    image = torch.as_tensor(np.asarray(images, dtype=np.float32), device=device)
    if output_size is not None:
        require_output_size(model)
        with torch.no_grad():
            outputs = model.predict(image, num_samples=num_samples, output_size=tuple(int(v) for v in output_size))
        rows = cols = slice(None)
    else:
        height, width = images.shape[-2:]
        top, bottom = _padding_for(height, SIZE_MULTIPLE)
        left, right = _padding_for(width, SIZE_MULTIPLE)
        # Replicated borders continue the anatomy instead of adding an artificial dark frame.
        pad = (left, right, top, bottom)
        batch = {"image": F.pad(image, pad, mode="replicate") if any(pad) else image}
        if trimaps is not None:
            levels = np.stack([trimap_levels(t) for t in trimaps])[:, None]
            trimap = torch.as_tensor(levels, device=device)
            batch["trimap"] = F.pad(trimap, pad, mode="replicate") if any(pad) else trimap
        with torch.no_grad():
            outputs = forward_for_inference(model, batch, num_samples)
        rows, cols = slice(top, top + height), slice(left, left + width)
    if "alpha" not in outputs:
        raise ValueError(f"model {type(model).__name__} returned no 'alpha' (got {sorted(outputs)})")
    predictions = {}
    for key in PREDICTION_KEYS:
        if key in outputs:
            value = outputs[key][..., rows, cols]
            value = value.detach().float().cpu().numpy()
            predictions[key] = value if key == "sample_masks" else value[:, 0]
    return predictions


def predict_sample(
    model: nn.Module,
    image: np.ndarray,
    num_samples: int = 8,
    trimap: np.ndarray | None = None,
    output_size: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Predict one image.

    Args:
        model: a contract model in eval mode (see :func:`load_run`).
        image: float32 (C, H, W) in [0, 1].
        num_samples: sampled masks to draw (N).
        trimap: optional (H, W) trimap for trimap-based models.
        output_size: (H', W') of the outputs, for models whose ``predict`` takes it (see
            :func:`predict_batch`); None = (H, W).

    Returns:
        ``alpha`` (H',W') in [0,1] and, when the model makes them, ``uncertainty_map`` (H',W'),
        ``lesion_uncertainty`` (H',W'), ``sample_masks`` (N,H',W') in [0,1] and ``adapted_trimap``
        (H',W'); float32 numpy.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise MedmatError(f"image must have shape (C, H, W), got {image.shape}")
    trimaps = None if trimap is None else np.asarray(trimap)[None]
    batched = predict_batch(model, image[None], num_samples, trimaps, output_size)
    return {key: value[0] for key, value in batched.items()}


def predict_as_trained(
    model: nn.Module,
    image: np.ndarray,
    num_samples: int = 8,
    trimap: np.ndarray | None = None,
    model_input_size: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`predict_sample` of a (C, H, W) image as the model was trained to see it.

    With ``model_input_size`` (h, w) (``data.model_input_size``: a LIIF-style run) the image is
    resampled to (h, w) as training resampled it and the resolution-free model reads its outputs
    at (H, W); resolution-free models take no trimap. Otherwise the image is predicted as it is.
    """
    if model_input_size is None:
        return predict_sample(model, image, num_samples, trimap)
    small = np.clip(resize_planes(image, tuple(model_input_size)), 0.0, 1.0)
    return predict_sample(model, small, num_samples, output_size=tuple(np.shape(image)[-2:]))


def predict_samples(
    model: nn.Module,
    images: Sequence[np.ndarray],
    num_samples: int = 8,
    batch_size: int = 8,
    trimaps: Sequence[np.ndarray] | None = None,
    output_size: Sequence[int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Predict many (C, H, W) images, ``batch_size`` at a time (consecutive images of one size share a batch).

    ``output_size``: one (H', W') for every prediction (see :func:`predict_batch`); None = each image's size.

    Returns:
        One :func:`predict_sample` dict per image, in order.
    """
    predictions: list[dict[str, np.ndarray]] = []
    start = 0
    while start < len(images):
        stop = start + 1
        shape = np.shape(images[start])
        while stop < len(images) and stop - start < batch_size and np.shape(images[stop]) == shape:
            stop += 1
        stacked = np.stack([np.asarray(image, dtype=np.float32) for image in images[start:stop]])
        chunk_trimaps = None if trimaps is None else np.stack([np.asarray(t) for t in trimaps[start:stop]])
        batched = predict_batch(model, stacked, num_samples, chunk_trimaps, output_size)
        predictions += [{key: value[i] for key, value in batched.items()} for i in range(stop - start)]
        start = stop
    return predictions


def label_masks_from_alpha(
    alpha: np.ndarray, num_levels: int = LABEL_LEVELS, low: float = LABEL_RANGE[0], high: float = LABEL_RANGE[1]
) -> np.ndarray:
    """The target masks of Table V: the alpha thresholded at equidistant levels.

    Mask ``l`` is ``alpha >= min + range * (low + (high - low) * l / num_levels)``, l = 0..num_levels-1
    (with the defaults: ``min + range * (0.2 + 0.0625 l)``), as the authors' ``generate_masks_by_alpha``.

    Args:
        alpha: float (H, W) in [0, 1].

    Returns:
        bool (num_levels, H, W), from the largest mask to the smallest.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    floor, span = alpha.min(), alpha.max() - alpha.min()
    fractions = low + (high - low) * np.arange(num_levels) / num_levels
    thresholds = floor + span * fractions
    return alpha[None] >= thresholds[:, None, None]


def evaluate_samples(
    model: nn.Module,
    samples: Sequence[Sample],
    num_samples: int = 8,
    region: str = "unknown",
    size: tuple[int, int] | None = None,
    with_region: bool = True,
    model_input_size: tuple[int, int] | None = None,
) -> list[dict]:
    """Score a model on cases with ground-truth alpha mattes, as the paper does.

    Each case is fitted to ``size`` (the training size), predicted, and the prediction put back
    at the case's own size. With ``model_input_size`` (h, w) (``data.model_input_size``) the fitted
    image is first resampled to (h, w) and a resolution-free model reads its alpha at ``size``
    (``output_size``), as it was trained. Then:

    - ``region``: SAD/MSE/Grad/Conn on the trimap's unknown pixels (Table IV); on the whole image
      when ``region="whole"`` or the case has no trimap (``region_name`` says which);
    - ``whole``: SAD/MSE/Grad/Conn on the whole image (Table V);
    - ``GED``, ``Dice``: the sampled masks (score maps > 0.5) against :func:`label_masks_from_alpha`
      (Table V); None for models that do not sample.

    Returns:
        One dict per case: ``{"id", "region_name", "region", "whole", "GED", "Dice"}``; a metric
        dict is None when its region is empty.
    """
    size = common_size(samples, size)
    was_training = model.training
    model.eval()
    try:
        return [
            _evaluate_case(model, sample, num_samples, region, size, with_region, model_input_size)
            for sample in samples
        ]
    finally:
        model.train(was_training)


def _evaluate_case(
    model: nn.Module, sample: Sample, num_samples: int, region: str, size, with_region: bool, model_input_size=None
) -> dict:
    """One case of :func:`evaluate_samples`."""
    if sample.alpha is None:
        raise MedmatError("cannot evaluate a case without an alpha matte", sample.source or sample.id)
    trimap = None if sample.trimap is None else fit_to_size(sample.trimap, size)
    prediction = predict_as_trained(model, fit_to_size(sample.image, size), num_samples, trimap, model_input_size)
    alpha = np.clip(unfit_from_size(prediction["alpha"], sample.shape), 0.0, 1.0)
    if with_region:
        case = {"id": sample.id, **table_iv_metrics(alpha, sample.alpha, sample.trimap, region)}
    else:
        case = {"id": sample.id, "whole": matting_metrics(alpha, sample.alpha, region_mask(None, "whole", sample.shape))}
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
    summary = {}
    for group in ("region", "whole"):
        dicts = [case[group] for case in cases if case.get(group) is not None]
        names = dicts[0].keys() if dicts else ()
        summary[group] = {name: float(np.mean([d[name] for d in dicts])) for name in names} if dicts else None
    for name in ("GED", "Dice"):
        values = [case[name] for case in cases if case.get(name) is not None]
        summary[name] = float(np.mean(values)) if values else None
    summary["num_cases"] = len(cases)
    return summary

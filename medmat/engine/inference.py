"""Prediction with medmat models: the one path every caller (CLI, evaluation, interaction, app,
benchmarks) takes.

- :func:`load_run` rebuilds a trained model from a run folder or checkpoint file, :func:`load_runs`
  several as one deep ensemble;
- :func:`predict` runs any :class:`~medmat.models.contract.MattingModel` on one image or a batch,
  reading what to feed and what comes back from the model's :class:`~medmat.models.contract.ModelSpec`;
- :func:`predict_samples` predicts many images in batches; :func:`predict_as_trained` predicts an
  image the way a run was trained to see it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medmat.data.probe_maps import probe_map as draw_probe_map
from medmat.data.trimap import trimap_levels
from medmat.data.user_maps import UNKNOWN, USER_MAP_VALUES
from medmat.engine.checkpoint import CHECKPOINT_NAME, FINAL_NAME, load_checkpoint
from medmat.engine.config import CONFIG_NAME, input_size, load_config, model_input_size, resize_size
from medmat.engine.dataset import resize_planes
from medmat.errors import MedmatError
from medmat.io.atomic import atomic_write_json
from medmat.io.images import is_grey
from medmat.models import MattingModel, build_model
from medmat.models.ensemble import DeepEnsemble
from medmat.uncertainty import lesion_uncertainty


def build_model_from_config(config: dict) -> MattingModel:
    """The model named by ``config["model"]["name"]``, built with the section's other keys as kwargs."""
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


#: The folders of a cross-validation run (``medmat crossval``): ``fold-<k>/``.
FOLD_PREFIX = "fold-"
#: The folders of a fold trained as a deep ensemble (config ``ensemble.members`` > 1): ``member-<i>/``.
MEMBER_PREFIX = "member-"
#: Which members of an ensemble fold predict, when training left one out (config ``ensemble.unfit_ratio``).
KEPT_MEMBERS_NAME = "members.json"
#: The file a finished run writes its held-out metrics (and its ``training_fit``) to.
METRICS_NAME = "metrics.json"

LOG = logging.getLogger("medmat.engine")
#: Runs this process has already warned about (:func:`_warn_if_unfit`).
_WARNED_UNFIT: set[str] = set()


def numbered_folders(root: str | os.PathLike, prefix: str) -> list[Path]:
    """The sub-folders ``<prefix><n>`` of ``root`` (n a non-negative integer), by n: a crossval's
    ``fold-<k>/``, an ensemble fold's ``member-<i>/``, a refitted run's ``capped-<attempt>/``."""
    found = [d for d in Path(root).glob(prefix + "*") if d.is_dir() and d.name[len(prefix):].isdigit()]
    return sorted(found, key=lambda d: folder_number(d, prefix))


def folder_number(folder: str | os.PathLike, prefix: str) -> int:
    """n of a folder named ``<prefix><n>`` (one that :func:`numbered_folders` lists)."""
    return int(Path(folder).name[len(prefix):])


def fold_folder(run_dir: str | os.PathLike, fold: int) -> Path:
    """Where fold ``fold`` of a cross-validation run ``run_dir`` trains."""
    return Path(run_dir) / f"{FOLD_PREFIX}{fold}"


def crossval_folds(run_dir: str | os.PathLike) -> list[Path]:
    """The fold folders of a cross-validation run, by fold number; [] for any other folder."""
    return numbered_folders(run_dir, FOLD_PREFIX)


def first_model_folder(run: str | os.PathLike) -> Path:
    """The run folder that stands for ``run``: its lowest-numbered fold for a cross-validation
    folder (whose folds share one config), else ``run`` itself."""
    folds = crossval_folds(run)
    return folds[0] if folds else Path(run)


def member_folder(run_dir: str | os.PathLike, member: int) -> Path:
    """Where member ``member`` of an ensemble fold ``run_dir`` trains."""
    return Path(run_dir) / f"{MEMBER_PREFIX}{member}"


def ensemble_members(run: str | os.PathLike, every_member: bool = False) -> list[Path]:
    """The member folders of a fold trained as a deep ensemble, in member order; [] for any other run.

    Such a folder holds no checkpoint of its own, only ``member-<i>/`` run folders (and the
    ensemble's ``config.yaml`` and ``metrics.json``). When training left a member out of the
    ensemble (``ensemble.unfit_ratio``; :data:`KEPT_MEMBERS_NAME`), only the members kept are given,
    unless ``every_member``.

    Raises:
        MedmatError: a ``members.json`` that cannot be read or names a member that is not there.
    """
    run = Path(run)
    if not run.is_dir() or any((run / name).is_file() for name in (FINAL_NAME, CHECKPOINT_NAME)):
        return []
    found = numbered_folders(run, MEMBER_PREFIX)
    if every_member or not found or not (run / KEPT_MEMBERS_NAME).is_file():
        return found
    kept = read_kept_members(run / KEPT_MEMBERS_NAME)["kept"]
    missing = [index for index in kept if member_folder(run, index) not in found]
    if missing:
        raise MedmatError(f"names member {missing[0]}, which has no folder", run / KEPT_MEMBERS_NAME)
    return [member_folder(run, index) for index in kept]


def read_kept_members(path: str | os.PathLike) -> dict:
    """The record of an ensemble fold's ``members.json`` (:func:`write_kept_members`).

    Raises:
        MedmatError: the file cannot be read, or its ``"kept"`` is not a non-empty list of member indices.
    """
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MedmatError(f"cannot read the ensemble's kept members: {error}", path) from None
    kept = record.get("kept") if isinstance(record, dict) else None
    if not isinstance(kept, list) or not kept or not all(isinstance(i, int) and i >= 0 for i in kept):
        raise MedmatError('"kept" must be a non-empty list of member indices', path)
    return record


def write_kept_members(run_dir: str | os.PathLike, training_sad: Sequence[float], unfit_ratio: float) -> list[int]:
    """Keep the members of an ensemble fold that fitted their training cases, in ``members.json``.

    Args:
        run_dir: the ensemble fold's folder.
        training_sad: each member's mean whole-image SAD on the fold's training cases, in member order.
        unfit_ratio: a member above ``unfit_ratio`` x the lowest of them failed to fit and is left out.

    Returns:
        The indices of the members kept (never empty: the best member always is).
    """
    best = min(training_sad)
    kept = [index for index, sad in enumerate(training_sad) if sad <= unfit_ratio * best]
    record = {
        "kept": kept,
        "left_out": [index for index in range(len(training_sad)) if index not in kept],
        "training_SAD": [float(sad) for sad in training_sad],
        "unfit_ratio": unfit_ratio,
        "rule": "a member whose whole-image SAD on the fold's training cases is above unfit_ratio x the "
                "lowest member's failed to fit and does not predict with the ensemble",
    }
    atomic_write_json(Path(run_dir) / KEPT_MEMBERS_NAME, record)
    return kept


def load_run(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[MattingModel, dict]:
    """Rebuild the trained model of a run.

    Args:
        run: a run folder (its ``final.pt``, else its latest ``checkpoint.pt``), a checkpoint file,
            or the folder of a fold trained as a deep ensemble (:func:`ensemble_members`: its
            members predict as one, :func:`load_runs`).
        device: where to put the model.

    Returns:
        ``(model, config)``: the model in eval mode with the trained weights, and the run's config
        (an ensemble fold's: its ``config.yaml``, else its first member's).

    Raises:
        MedmatError: no run there, not a medmat checkpoint, or weights that do not fit the model.
    """
    if ensemble_members(run):
        model, config = load_runs([run], device)
        saved = Path(run) / CONFIG_NAME  # the ensemble's own config (its seed, its members)
        return model, (load_config(saved) if saved.is_file() else config)
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
    _warn_if_unfit(path.parent)
    return model.to(device).eval(), config


def _warn_if_unfit(run_dir: Path) -> None:
    """Say so when the run's own training found that it failed to fit (``train.core_alpha_floor``):
    its mattes stop below the lesion core wherever it is used."""
    try:
        fit = json.loads((run_dir / METRICS_NAME).read_text(encoding="utf-8")).get("training_fit") or {}
    except (OSError, ValueError, AttributeError):
        return  # no record (an unfinished run, a bare checkpoint): nothing to say
    if fit.get("capped") and str(run_dir) not in _WARNED_UNFIT:
        _WARNED_UNFIT.add(str(run_dir))  # a command that loads the run twice says it once
        warn_unfit(run_dir, fit)


def warn_unfit(run_dir: str | os.PathLike, fit: dict) -> None:
    """The warning for a run whose ``training_fit`` (:func:`~medmat.engine.evaluation.training_fit`) is capped."""
    LOG.warning("medmat: %s failed to fit its training cases (its alpha stays below %.2f in the lesion core, "
                "at most %.2f): its mattes are capped; train it again (train.refit_capped)",
                run_dir, fit.get("floor", 0.0), fit.get("core_alpha_max", 0.0))


def runs_label(runs: Sequence[str | os.PathLike]) -> str:
    """How results name the model of one run (its path) or of several as one ensemble ("A + B + C")."""
    return " + ".join(str(run) for run in runs)


def _image_view(config: dict) -> tuple:
    """How a run's model sees its images: (resize, input size, model input size, eval region)."""
    return resize_size(config), input_size(config), model_input_size(config), config["eval"]["region"]


def load_runs(runs: Sequence[str | os.PathLike], device: str | torch.device = "cpu") -> tuple[MattingModel, dict]:
    """Rebuild one run's model (:func:`load_run`), or several runs' models as one :class:`DeepEnsemble`.

    The members must see their images alike: the same ``data.resize``, ``data.input_size``,
    ``data.model_input_size`` and ``eval.region``. The first run's config stands for the ensemble.
    A fold trained as a deep ensemble (:func:`ensemble_members`) gives its members, so that every
    member counts once in the mean whatever folder it was named by.

    Raises:
        MedmatError: no runs, or what :func:`load_run` raises, or a member trained to see its
            images otherwise than the first (naming it and the setting).
    """
    runs = [member for run in runs for member in (ensemble_members(run) or [run])]
    if not runs:
        raise MedmatError("no run to load")
    loaded = [load_run(run, device) for run in runs]
    if len(loaded) == 1:
        return loaded[0]
    config = loaded[0][1]
    for run, (_, other) in zip(runs[1:], loaded[1:]):
        if _image_view(other) != _image_view(config):
            raise MedmatError(
                f"an ensemble's runs must see images alike: (resize, input size, model input size, eval region) "
                f"{_image_view(other)} here, {_image_view(config)} in {runs[0]}", run,
            )
    return DeepEnsemble([model for model, _ in loaded]).to(device).eval(), config


def load_initial_weights(model: MattingModel, config: dict) -> Path | None:
    """Load ``config["train"]["init_from"]``'s weights into ``model`` before training.

    The source is a run folder or checkpoint; ``{fold}`` in it stands for this run's fold, so a
    cross-validation starts every fold from the same fold of another run. The weights go into the
    model when they fit it, else into the model it wraps (:meth:`MattingModel.base_model`:
    :mod:`medmat.models.probe_refiner` refines a trained model). The source must have held out the
    same cases: its split and dataset must be this run's, or its weights would have seen this
    fold's test cases.

    Returns:
        The checkpoint read, or None when ``init_from`` is not set.

    Raises:
        MedmatError: no run there, another split or dataset, or weights that fit neither.
    """
    source = config["train"]["init_from"]
    if not source:
        return None
    path = find_checkpoint(str(source).replace("{fold}", str(config["split"]["fold"])))
    payload = load_checkpoint(path)
    saved = payload.get("config")
    if not isinstance(saved, dict) or "model" not in payload:
        raise MedmatError("not a medmat run checkpoint (no config or model weights)", path)
    for section, key in (("split", None), ("data", "dataset"), ("data", "resize")):
        mine, theirs = config[section], saved.get(section, {})
        mine, theirs = (mine, theirs) if key is None else (mine.get(key), theirs.get(key))
        if mine != theirs:
            raise MedmatError(f"train.init_from was trained with another {section}{'.' + key if key else ''} "
                              f"({theirs!r}, this run {mine!r}): its weights may have seen this fold's test cases", path)
    base = model.base_model()
    for target in (model,) if base is None else (model, base):
        try:
            target.load_state_dict(payload["model"])
            return path
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0]
    raise MedmatError(f"train.init_from weights fit neither model {config['model']['name']!r} nor its base: {first_line}", path)


def fit_channels(image: np.ndarray, expected: int, where: str) -> np.ndarray:
    """A (C, H, W) image with the model's ``expected`` channels: grey is repeated for a colour
    model, and a grey picture stored as RGB (three equal channels, as many exporters and screen
    captures write a scan) is read as grey; any other mismatch (colour for a grey model) is a
    MedmatError."""
    channels = image.shape[0]
    if channels == expected:
        return image
    if channels == 1 and expected == 3:
        return np.repeat(image, 3, axis=0)
    if channels == 3 and expected == 1 and is_grey(np.moveaxis(image, 0, -1)):
        return image[:1]
    kinds = {1: "grey", 3: "colour"}
    raise MedmatError(
        f"the image is {kinds.get(channels, str(channels) + '-channel')} ({channels} channel"
        f"{'s' if channels != 1 else ''}) but the model was trained on {expected}-channel images",
        where,
    )


def _padding_for(size: int, multiple: int) -> tuple[int, int]:
    extra = math.ceil(size / multiple) * multiple - size
    return extra // 2, extra - extra // 2


def require_output_size(model: MattingModel, name: str | None = None) -> None:
    """Raise a MedmatError naming the model (``name``, else its class) unless it is resolution-free."""
    if not model.spec.resolution_free:
        name = name or type(model).__name__
        raise MedmatError(
            f"model {name!r} predicts at its input's size only, so an output_size (--output-size, --scale, "
            "data.model_input_size) does not apply: it is not resolution-free (region_aware_matting is)"
        )


def _batched(array, ndim: int, what: str) -> np.ndarray:
    """``array`` as float32 with a leading batch axis: it must have ``ndim`` or ``ndim + 1`` axes."""
    array = np.asarray(array)
    if array.ndim not in (ndim, ndim + 1):
        raise MedmatError(f"{what} must have {ndim} axes (or {ndim + 1} with a batch axis), got shape {array.shape}")
    return array[None] if array.ndim == ndim else array


def predict(
    model: MattingModel,
    image: np.ndarray,
    trimap: np.ndarray | None = None,
    user_map: np.ndarray | None = None,
    output_size: Sequence[int] | None = None,
    num_samples: int | None = None,
    flip: bool | str = False,
    probe_map: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Predict one image or a batch of same-size images with any medmat model.

    The model's :class:`~medmat.models.contract.ModelSpec` decides everything model-specific:
    which of ``trimap`` / ``user_map`` / ``probe_map`` it reads (the others are ignored), which it
    requires, the multiple its input size is padded to (replicated borders continue the anatomy;
    user and probe maps are padded with 0, "nothing said"), whether it takes ``output_size``, and
    which maps come back.

    Args:
        model: a medmat model (its train/eval mode is restored afterwards; no gradients).
        image: float (C, H, W) or (B, C, H, W) in [0, 1].
        trimap: (H, W) or (B, H, W) trimap, uint8 0 / 128 / 255 or levels in [0, 1].
        user_map: (H, W) or (B, H, W) float in {-1, 0, 0.5, 1}; None = no interaction.
        probe_map: (2, H, W) or (B, 2, H, W) float (:mod:`medmat.data.probe_maps`); None = no probes.
        output_size: (H', W') of the outputs, for resolution-free models; the image is then not
            padded. None = (H, W).
        num_samples: N, masks drawn by models that sample (None: the model's configured N).
        flip: test-time flip (``eval.flip``): True or "lr" predicts the image and its mirror image
            (left-right), "flips" also its up-down mirror and half turn, "dihedral" all eight
            views of the square (:data:`TEST_TIME_VIEWS`); the alpha and the uncertainty map are
            the views' mean (the lesion uncertainty is the entropy of that mean); the other maps
            and the sampled masks are the image's own prediction's, and torch's generator is left
            as without views (they draw from a fork of it). False or "none": no views.

    Returns:
        float32 numpy arrays, one per map the model gives (``model.spec.map_outputs``: "alpha"
        always; "uncertainty_map", "lesion_uncertainty", "sample_masks", "adapted_trimap", the NIG
        maps... when it gives them): (H', W') each ("sample_masks" (N, H', W')), with a leading B
        when ``image`` had one. Maps a resolution-free model gives at its input's size are
        resized bilinearly to (H', W').

    Raises:
        MedmatError: a required input missing, ``output_size`` for a model that is not
            resolution-free, or arrays of the wrong rank.
    """
    single = np.ndim(image) == 3
    images = _batched(np.asarray(image, dtype=np.float32), 3, "image")
    planes = {
        name: None if plane is None else _batched(plane, ndim, name)
        for name, plane, ndim in (("trimap", trimap, 2), ("user_map", user_map, 2), ("probe_map", probe_map, 3))
    }
    views = flip_views(flip)
    predictions = _predict_batch(model, images, planes, output_size, num_samples)
    if len(views) > 1:
        averaged = [name for name in ("alpha", "uncertainty_map") if name in predictions]
        totals = {name: predictions[name] for name in averaged}
        # The views draw their latents from a fork of torch's generator (the model's device's):
        # after them it is where the image's own prediction left it, so the next image's masks are
        # those drawn without views.
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
            for turns, mirrored in views[1:]:
                seen = {name: None if plane is None else _view(plane, turns, mirrored) for name, plane in planes.items()}
                size = None if output_size is None else tuple(output_size)[:: -1 if turns % 2 else 1]
                other = _predict_batch(model, _view(images, turns, mirrored), seen, size, num_samples)
                for name in averaged:
                    totals[name] = totals[name] + _unview(other[name], turns, mirrored)
        for name in averaged:
            predictions[name] = totals[name] / len(views)
        _lesion_uncertainty_of_alpha(predictions)
    return {name: value[0] if single else value for name, value in predictions.items()}


def _lesion_uncertainty_of_alpha(maps: dict[str, np.ndarray]) -> None:
    """Set ``maps["lesion_uncertainty"]``, when the model gives one, to the entropy of ``maps["alpha"]``
    (after the alpha was averaged or resampled, its entropy is recomputed, not averaged)."""
    if "lesion_uncertainty" in maps:
        maps["lesion_uncertainty"] = lesion_uncertainty(maps["alpha"]).astype(np.float32)


#: Test-time augmentation (``eval.flip``): the views of an image predicted and averaged, each as
#: (quarter turns counter-clockwise, mirrored left-right first). Training flips both ways and
#: rotates by any angle, so every view of the square's symmetry group is an image it has seen.
TEST_TIME_VIEWS = {
    "none": ((0, False),),
    "lr": ((0, False), (0, True)),
    "flips": ((0, False), (0, True), (2, True), (2, False)),  # (2, True) is the up-down mirror
    "dihedral": ((0, False), (0, True), (2, True), (2, False), (1, False), (1, True), (3, False), (3, True)),
}


def flip_views(flip: bool | str) -> tuple[tuple[int, bool], ...]:
    """The views :func:`predict` averages for ``flip``: False = "none", True = "lr" (the mirror
    image), or a name of :data:`TEST_TIME_VIEWS`."""
    name = ("lr" if flip else "none") if isinstance(flip, bool) else flip
    if name not in TEST_TIME_VIEWS:
        raise MedmatError(f"test-time flip must be true, false or one of {', '.join(TEST_TIME_VIEWS)}, got {flip!r}")
    return TEST_TIME_VIEWS[name]


def flip_setting(flip: bool | str | None, config: dict) -> bool | str:
    """The ``eval.flip`` a prediction follows: ``flip`` (a ``--flip`` value or a setting), else the
    run's own when None; "none" / "lr" as false / true, as configs write them."""
    if flip is None:
        return config["eval"]["flip"]
    return {"none": False, "lr": True}.get(flip, flip) if isinstance(flip, str) else flip


def _view(array: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """``array`` (..., H, W) mirrored left-right (when asked), then turned ``turns`` quarters."""
    array = array[..., ::-1] if mirrored else array
    return np.ascontiguousarray(np.rot90(array, turns, axes=(-2, -1)))


def _unview(array: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    """The inverse of :func:`_view`: a prediction of the view mapped back onto the image."""
    array = np.rot90(array, -turns, axes=(-2, -1))
    return np.ascontiguousarray(array[..., ::-1] if mirrored else array)


def _predict_batch(
    model: MattingModel, images: np.ndarray, planes: dict, output_size, num_samples: int | None
) -> dict[str, np.ndarray]:
    """:func:`predict` of a (B, C, H, W) batch with ``planes`` ("trimap", "user_map" (B, H, W); "probe_map"
    (B, 2, H, W); None absent)."""
    spec = model.spec
    trimap = planes["trimap"]
    if "trimap" in spec.requires and trimap is None:
        raise MedmatError(
            f"model {type(model).__name__} needs a trimap for every image: give data.trimaps (training, "
            "evaluation) or --trimaps (prediction)"
        )
    device = next(model.parameters()).device
    batch = {"image": torch.as_tensor(np.ascontiguousarray(images), device=device)}
    for name, plane in planes.items():
        if plane is not None and name in spec.takes:
            values = np.stack([trimap_levels(t) for t in plane]) if name == "trimap" else plane.astype(np.float32)
            values = values if name == "probe_map" else values[:, None]
            batch[name] = torch.as_tensor(np.ascontiguousarray(values), device=device)
    height, width = images.shape[-2:]
    if output_size is not None:
        require_output_size(model)
        size = tuple(int(v) for v in output_size)
        batch["output_size"] = torch.tensor([size] * images.shape[0], dtype=torch.int64, device=device)
        rows = cols = slice(None)
    else:
        size = (height, width)
        top, bottom = _padding_for(height, spec.size_multiple)
        left, right = _padding_for(width, spec.size_multiple)
        pad = (left, right, top, bottom)
        if any(pad):
            for name, value in batch.items():
                batch[name] = F.pad(value, pad, mode="constant" if name in ("user_map", "probe_map") else "replicate")
        rows, cols = slice(top, top + height), slice(left, left + width)
    model.check_batch(batch)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(batch, num_samples)
    finally:
        model.train(was_training)
    predictions = {}
    for name in spec.map_outputs:
        value = outputs[name][..., rows, cols]
        if tuple(value.shape[-2:]) != size:
            value = F.interpolate(value, size=size, mode="bilinear", align_corners=False)
        value = value.detach().float().cpu().numpy()
        predictions[name] = value if name == "sample_masks" else value[:, 0]
    return predictions


def predict_as_trained(
    model: MattingModel,
    image: np.ndarray,
    num_samples: int | None = None,
    trimap: np.ndarray | None = None,
    model_input_size: Sequence[int] | None = None,
    flip: bool | str = False,
    resize: Sequence[int] | None = None,
    user_map: np.ndarray | None = None,
    probes: Sequence[tuple[int, int, float]] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`predict` of a (C, H, W) image (or a (B, C, H, W) batch) as the model was trained to see it.

    With ``resize`` (h, w) (``data.resize``: every training case was resampled to it when loaded)
    the image, its trimap by the nearest pixel and its user map by :func:`resample_user_map`, are
    resampled to (h, w) first, and every map is resampled back to (H, W) (bilinear when growing,
    the area mean when shrinking; the lesion uncertainty is then the entropy of the resampled alpha). With ``model_input_size`` (h, w)
    (``data.model_input_size``: a LIIF-style run) the image is resampled to (h, w) as training
    resampled it and the resolution-free model reads its outputs at the size it was given;
    resolution-free models take no trimap. Otherwise the image is predicted as it is.

    ``user_map``: (H, W) in {-1, 0, 0.5, 1} for a model that reads one (dugMatting's "nig").
    ``probes``: for one image, the (row, col, level) clicks of a model that reads a probe map (pixels
    of the (H, W) image, levels in [0, 1]); the map is drawn at the size the model sees, each click at the
    pixel its own falls in, so that its disc has the radius training drew (None: no probe map).
    """
    shape = tuple(np.shape(image)[-2:])
    if resize is not None and tuple(resize) != shape:
        size = tuple(int(v) for v in resize)
        small, small_user_map, small_probes = _inputs_resampled(size, image, user_map, probes)
        small_trimap = None if trimap is None else resize_planes(trimap, size, label=True).astype(np.asarray(trimap).dtype)
        maps = predict_as_trained(model, small, num_samples, small_trimap, model_input_size, flip,
                                  user_map=small_user_map, probes=small_probes)
        maps = {name: resize_planes(value, shape) for name, value in maps.items()}
        _lesion_uncertainty_of_alpha(maps)
        return maps
    if model_input_size is None:
        planes = None if probes is None else draw_probe_map(shape, probes)
        return predict(model, image, trimap, user_map, num_samples=num_samples, flip=flip, probe_map=planes)
    size = tuple(int(v) for v in model_input_size)
    small, small_user_map, small_probes = _inputs_resampled(size, image, user_map, probes)
    planes = None if small_probes is None else draw_probe_map(size, small_probes)
    return predict(model, small, user_map=small_user_map, output_size=shape, num_samples=num_samples, flip=flip,
                   probe_map=planes)


def _inputs_resampled(size: tuple[int, int], image: np.ndarray, user_map: np.ndarray | None, probes) -> tuple:
    """An (H, W) image's model inputs resampled to ``size`` (h, w): ``(image, user_map, probes)``, the
    image clipped to [0, 1], the user map by :func:`resample_user_map`, each (row, col, level) probe
    moved to the pixel whose footprint holds its centre (the pixel centres of :func:`resize_planes`);
    None stays None."""
    (height, width), (rows, cols) = np.shape(image)[-2:], size
    small = np.clip(resize_planes(image, size), 0.0, 1.0)
    small_user_map = None if user_map is None else resample_user_map(user_map, size)
    small_probes = None if probes is None else [
        (min(int((row + 0.5) * rows / height), rows - 1), min(int((col + 0.5) * cols / width), cols - 1), level)
        for row, col, level in probes]
    return small, small_user_map, small_probes


def resample_user_map(user_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (H, W) user map (values :data:`~medmat.data.user_maps.USER_MAP_VALUES`) resampled to ``size`` (h, w).

    Shrunk (no axis grows), each pixel takes the label the user gave (-1, 0.5 or 1) that covers most
    of its footprint, and 0 (unknown) only where nothing was said in it, so that a brush stroke
    thinner than a footprint survives (the nearest pixel would drop it); otherwise the nearest pixel.

    Returns:
        float32 (h, w), values among the user map values.
    """
    user_map = np.asarray(user_map, dtype=np.float32)
    height, width = user_map.shape[-2:]
    if size[0] > height or size[1] > width:
        return resize_planes(user_map, size, label=True)
    said = np.asarray([value for value in USER_MAP_VALUES if value != UNKNOWN], dtype=np.float32)
    shares = np.stack([resize_planes((user_map == value).astype(np.float32), size) for value in said])
    return np.where(shares.max(axis=0) > 0, said[shares.argmax(axis=0)], UNKNOWN).astype(np.float32)


def predict_samples(
    model: MattingModel,
    images: Sequence[np.ndarray],
    num_samples: int = 8,
    batch_size: int = 8,
    trimaps: Sequence[np.ndarray] | None = None,
    output_size: Sequence[int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """:func:`predict` of many (C, H, W) images, ``batch_size`` at a time (consecutive images of one
    size share a batch).

    ``output_size``: one (H', W') for every prediction; None = each image's size.

    Returns:
        One :func:`predict` dict per image, in order.
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
        batched = predict(model, stacked, chunk_trimaps, output_size=output_size, num_samples=num_samples)
        predictions += [{key: value[i] for key, value in batched.items()} for i in range(stop - start)]
        start = stop
    return predictions

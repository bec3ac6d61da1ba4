"""One image's interactive matting state for the browser app: pure logic, no HTTP.

A :class:`MattingSession` holds a trained run's model and, once an image is opened (a PNG, a NIfTI
or a DICOM; one slice of a volume), the history of its states as a stack of :class:`Step` s:

- step 0 is the prediction without interaction;
- with **any model**, the user clicks a pixel and answers its alpha with one of five levels
  (0, ¼, ½, ¾, 1), paints a foreground or background brush stroke, or answers a proposed patch
  (the patches of highest mean uncertainty, :func:`~medmat.uncertainty.proposals.propose_patches`)
  foreground, background or transition. Each answer is an action
  (:mod:`medmat.interaction.actions`); the step's matte is the prediction with every action so far
  fused in (:func:`~medmat.interaction.fusion.fuse`: an uncertainty-weighted, edge-aware solve that
  moves the uncertain band near an answer and leaves confident pixels exactly as predicted), and
  the uncertainty maps fall where the actions settle the matte (:func:`~medmat.interaction.fusion.fused_maps`);
- with a "nig" (dugMatting) model, a patch answer and a stroke also go into the user map as
  dugMatting does: the model predicts again with it and the new NIG is fused with the previous one
  by the NIG summation of Eq. 2 (:func:`~medmat.uncertainty.nig.nig_sum`); the actions are then
  fused into that prediction. The patches are proposed from its epistemic map;
- each interaction pushes a step; undo pops the last one, which restores the previous state exactly
  (it is kept, not recomputed).

:meth:`MattingSession.save` writes alpha and uncertainty maps as PNG and float NIfTI (the input's
geometry kept), the user map, and a JSON record of the interactions with the list of actions (which
:meth:`MattingSession.replay` applies again), every file atomically.

Every problem caused by the user's input (an unreadable upload, a run that is not a medmat run,
an image whose channels or modality the model was not trained on, a patch that is not proposed, a
probe outside the image or at a value that is not a level) is a :class:`~medmat.errors.MedmatError`
with a one-line message, raised before the session changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from medmat import __version__
from medmat.data.readers.folder import read_dataset_json
from medmat.data.readers.lidc import is_lidc_folder
from medmat.data.user_maps import BACKGROUND, FOREGROUND, TRANSITION
from medmat.engine.config import model_input_size, resize_size
from medmat.engine.inference import (
    fit_channels,
    flip_setting,
    flip_views,
    load_run,
    load_runs,
    predict_as_trained,
    runs_label,
)
from medmat.errors import MedmatError
from medmat.interaction.actions import (
    PROBE_LEVELS,
    Action,
    PatchAnswer,
    Probe,
    Stroke,
    actions_from_json,
    actions_probes,
    actions_to_json,
    check_action,
    stroke_mask,
)
from medmat.interaction.fusion import DEFAULT_PARAMS, Fusion, FusionParams, fuse, fused_maps, fusion_uncertainty
from medmat.interaction.step import interaction_step, predict_nig
from medmat.models.contract import ENTROPY_FILES, VARIANCE_OUTPUTS
from medmat.uncertainty.proposals import Patch, propose_patches
from medmat.io.atomic import atomic_write_json
from medmat.io.images import FORMATS, count_slices, image_format, read_image, slice_name, write_like
from medmat.uncertainty import lesion_uncertainty
from medmat.uncertainty.nig import NIG, nig_moments

#: The user's three answers (dugMatting Fig. 3) and their user-map values (App. B.1).
LABELS = {"foreground": FOREGROUND, "background": BACKGROUND, "transition": TRANSITION}
#: Algorithm 1's N (patches proposed at a time) and the side of the proposal grid's patches.
DEFAULT_PROPOSALS = 4
DEFAULT_PATCH_SIZE = 16
#: Largest image the app predicts: the models are fully convolutional, but a photo of tens of
#: megapixels would take minutes on a CPU and gigabytes of activations.
MAX_PIXELS = 2048 * 2048
#: DICOM Modality codes of the names datasets give their modality (dataset.json's "modality").
MODALITY_CODES = {"MRI": "MR", "MR": "MR", "CT": "CT", "PET": "PT", "PT": "PT", "US": "US", "ULTRASOUND": "US"}


@dataclass(frozen=True)
class Step:
    """One state of an image's prediction: step 0 without interaction, then one per interaction.

    Attributes:
        user_map: float32 (H, W) in {-1, 0, 0.5, 1}, every dugMatting label given so far ("nig" models).
        maps: float32 numpy maps shown: "alpha" (H, W) in [0, 1], the prediction with every action
            fused in, and the uncertainty maps the model gives, lowered where the actions settle the
            matte: "uncertainty_map" (Prob. U-Net entropy, nats), "lesion_uncertainty" (binary
            entropy of the alpha, nats), "epistemic" Var[μ] and "aleatoric" E[σ²] of the fused NIG;
            "sample_masks" (N, H, W) in [0, 1] of the newest prediction.
        prior: the maps before the actions: the model's prediction (for "nig" models with the
            user map, its NIGs fused by Eq. 2).
        nig: the fused NIG of "nig" models (four (H, W) arrays), else None.
        proposals: the patches proposed for the next interaction, highest uncertainty first.
        interaction: the record of the interaction that led here (None for step 0).
        seconds: time of the prediction and fusion that made this step.
        actions: every action so far, oldest first (:mod:`medmat.interaction.actions`).
        fusion: the fusion of ``actions`` into ``prior`` (None without actions).
    """

    user_map: np.ndarray
    maps: dict[str, np.ndarray]
    prior: dict[str, np.ndarray] = field(default_factory=dict)
    nig: NIG | None = None
    proposals: tuple[Patch, ...] = ()
    interaction: dict | None = None
    seconds: float = 0.0
    actions: tuple[Action, ...] = ()
    fusion: Fusion | None = None


@dataclass
class OpenedImage:
    """An uploaded image: its name, a private copy of the file (to read other slices), one slice.

    Attributes:
        name: the upload's file name (no folder).
        path: the private copy, in a temporary folder owned by the session.
        source: float32 (C, H, W) in [0, 1] as read (C = 1 grey, 3 colour).
        image: ``source`` with the model's channel count (grey repeated for a colour model).
        geometry: as :func:`medmat.io.images.read_image` returns it (its affine goes into NIfTI outputs).
        slice_index: the slice shown (0 for a 2-D image).
        num_slices: slices of the file (1 for a 2-D image).
        folder: the temporary folder holding ``path``, removed by :meth:`MattingSession.close`.
    """

    name: str
    path: str
    source: np.ndarray
    image: np.ndarray
    geometry: dict
    slice_index: int = 0
    num_slices: int = 1
    folder: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(int(v) for v in self.image.shape[-2:])


def upload_name(filename: str) -> str:
    """The file name of an upload without any folder (browsers may send a path), checked to be one medmat reads."""
    name = os.path.basename(str(filename).replace("\\", "/")).strip()
    if not name or name in (".", ".."):
        raise MedmatError("the upload has no file name")
    image_format(name)  # a MedmatError naming the file for an ending medmat does not read
    return name


def training_modality(config: dict) -> str | None:
    """The DICOM Modality code of the images a run was trained on, when its dataset says it.

    A medmat folder dataset names its modality in dataset.json; the LIDC-IDRI slices are CT.
    None when the dataset is not found from here or names no imaging modality (phantoms, photos).
    """
    dataset = str(config.get("data", {}).get("dataset", ""))
    if not os.path.isdir(dataset):
        return None
    if os.path.isfile(os.path.join(dataset, "dataset.json")):
        try:
            named = read_dataset_json(dataset)["modality"]
        except MedmatError:
            return None
        return MODALITY_CODES.get(named.strip().upper())
    return "CT" if is_lidc_folder(dataset) else None


def check_modality(geometry: dict, expected: str | None, where: str) -> None:
    """Refuse a DICOM whose Modality tag differs from the modality the model was trained on."""
    header = geometry.get("header") if geometry.get("format") == "dicom" else None
    code = str((header or {}).get("Modality", "")).strip().upper()
    found = MODALITY_CODES.get(code, code)
    if expected is not None and found and found != expected:
        raise MedmatError(f"the image is {found} but the model was trained on {expected} images", where)


def _label_value(label: str) -> float:
    if label not in LABELS:
        raise MedmatError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    return LABELS[label]


class MattingSession:
    """A trained run and one opened image with its prediction history (module docstring).

    Args:
        model: a contract model in eval mode (see :func:`~medmat.engine.inference.load_run`).
        config: the run's config.
        run: where the run was loaded from (recorded in saves).
        num_samples: masks drawn by models that sample (a "nig" model hands it to its base).
        num_proposals: N, patches proposed at a time.
        patch_size: side of the proposal grid's patches in pixels.
        seed: torch's seed before every prediction, so the Prob. U-Net's sampled latents (and the
            maps) are the same each time the same image and user map are predicted.
        fusion: the fusion's parameters (:class:`~medmat.interaction.fusion.FusionParams`).
        flip: the test-time views averaged (``eval.flip``'s values); None: the run's ``eval.flip``.
        own_size: predict each image at its own size even when the run trained on cases resized
            to ``data.resize`` (as ``medmat predict --own-size``).
    """

    def __init__(
        self,
        model: nn.Module,
        config: dict,
        run: str | os.PathLike = "",
        num_samples: int = 8,
        num_proposals: int = DEFAULT_PROPOSALS,
        patch_size: int = DEFAULT_PATCH_SIZE,
        seed: int = 0,
        fusion: FusionParams = DEFAULT_PARAMS,
        flip: bool | str | None = None,
        own_size: bool = False,
    ):
        if num_samples < 1 or num_proposals < 1 or patch_size < 1:
            raise MedmatError("samples, proposals and patch size must be at least 1")
        if flip is not None:
            flip_views(flip)  # a MedmatError for a name that is not a set of views
        self.model, self.config, self.run = model, config, str(run)
        self.num_samples, self.num_proposals, self.patch_size, self.seed = num_samples, num_proposals, patch_size, seed
        self.fusion_params = fusion
        self.flip_setting, self.own_size = flip, own_size
        self.opened: OpenedImage | None = None
        self.history: list[Step] = []

    @classmethod
    def from_run(cls, run: str | os.PathLike | Sequence[str | os.PathLike], **options) -> "MattingSession":
        """A session on the model of a run folder or checkpoint, or on several runs as one deep ensemble
        (:func:`~medmat.engine.inference.load_runs`; MedmatError when one is not a medmat run)."""
        runs = [run] if isinstance(run, (str, os.PathLike)) else list(run)
        model, config = load_runs(runs)
        return cls(model, config, runs_label(runs), **options)

    # ----------------------------------------------------------------------------------------
    # What the session shows
    # ----------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The registered name of the run's model (e.g. "nig", "medical_matting")."""
        return str(self.config["model"]["name"])

    @property
    def interactive(self) -> bool:
        """Whether the user can interact: always, every model's alpha takes the fused actions."""
        return True

    @property
    def nig(self) -> bool:
        """Whether the model gives a NIG and takes a user map (dugMatting's "nig" wrapper): patch
        labels and strokes then also re-predict with the user map."""
        return self.model.spec.gives_nig

    @property
    def reads_probes(self) -> bool:
        """Whether the model re-predicts with the user's probes ("probe_map" among its inputs,
        :mod:`medmat.models.probe_refiner`): every probe then predicts again before the fusion."""
        return "probe_map" in self.model.spec.takes

    @property
    def current(self) -> Step:
        """The newest step (a MedmatError before an image is opened)."""
        if not self.history:
            raise MedmatError("no image is open: open a PNG, NIfTI or DICOM image first")
        return self.history[-1]

    @property
    def interactions(self) -> list[dict]:
        """The records of the interactions behind the current step, oldest first."""
        return [step.interaction for step in self.history[1:]]

    def summary(self) -> dict:
        """A JSON-able description of the session (no pictures): run, image, proposals, counts."""
        state = {
            "run": self.run,
            "model": self.model_name,
            "interactive": self.interactive,
            "nig": self.nig,
            "probe_levels": list(PROBE_LEVELS),
            "settings": self.settings(),
            "image": None,
        }
        if self.opened is None or not self.history:
            return state
        step = self.current
        state["image"] = {
            "name": self.opened.name,
            "format": self.opened.geometry.get("format"),
            "shape": list(self.opened.shape),
            "channels": int(self.opened.image.shape[0]),
            "slice_index": self.opened.slice_index,
            "num_slices": self.opened.num_slices,
        }
        state["proposals"] = [
            {"rank": rank, "top": p.top, "left": p.left, "height": p.height, "width": p.width,
             "uncertainty": p.uncertainty}
            for rank, p in enumerate(step.proposals)
        ]
        state["probes"] = [action.to_json() for action in step.actions if isinstance(action, Probe)]
        state["num_actions"] = len(step.actions)
        state["num_interactions"] = len(self.history) - 1
        state["can_undo"] = len(self.history) > 1
        state["seconds"] = step.seconds
        state["maps"] = sorted(key for key in step.maps if key != "sample_masks")
        state["num_masks"] = int(len(step.maps.get("sample_masks", ())))
        return state

    # ----------------------------------------------------------------------------------------
    # Run and image
    # ----------------------------------------------------------------------------------------

    def load_run(self, run: str | os.PathLike) -> None:
        """Switch to another run's model; an open image is predicted again (its interactions are dropped).

        On any error (not a medmat run, an image the new model cannot take) the session is unchanged.
        """
        model, config = load_run(run)
        previous = (self.model, self.config, self.run)
        self.model, self.config, self.run = model, config, str(run)
        if self.opened is None:
            return
        try:
            image = self._model_image(self.opened.source, self.opened.geometry, self.opened.name)
            first = self._first_step(image)
        except BaseException:
            self.model, self.config, self.run = previous
            raise
        self.opened.image = image
        self.history = [first]

    def open_image(self, data: bytes, filename: str, slice_index: int | None = None) -> None:
        """Open an uploaded image and predict it without interaction.

        Args:
            data: the file's bytes (PNG, NIfTI ``.nii`` / ``.nii.gz``, DICOM ``.dcm``).
            filename: its name; the ending says the format.
            slice_index: the slice of a volume; None = the middle slice (the only one of a 2-D image).

        Raises:
            MedmatError: an empty or unreadable file, an unsupported ending, too many pixels, channels
                or a modality the model was not trained on. The session is then unchanged.
        """
        name = upload_name(filename)
        if not data:
            raise MedmatError("the upload is empty", name)
        folder = tempfile.TemporaryDirectory(prefix="medmat-app-")
        try:
            path = os.path.join(folder.name, name)
            # A private scratch copy for the readers (which take paths), not an output: no atomic write.
            with open(path, "wb") as handle:
                handle.write(data)
            num_slices = count_slices(path)
            index = num_slices // 2 if slice_index is None else int(slice_index)
            source, geometry = self._read_slice(path, name, index, num_slices)
            image = self._model_image(source, geometry, name)
            first = self._first_step(image)
        except BaseException:
            folder.cleanup()
            raise
        self.close()
        self.opened = OpenedImage(name, path, source, image, geometry, index, num_slices, folder)
        self.history = [first]

    def select_slice(self, slice_index: int) -> None:
        """Show another slice of the open volume, predicted without interaction (its interactions start anew)."""
        opened = self.opened
        if opened is None:
            raise MedmatError("no image is open: open a PNG, NIfTI or DICOM image first")
        source, geometry = self._read_slice(opened.path, opened.name, int(slice_index), opened.num_slices)
        image = self._model_image(source, geometry, opened.name)
        first = self._first_step(image)
        opened.source, opened.image, opened.geometry, opened.slice_index = source, image, geometry, int(slice_index)
        self.history = [first]

    def close(self) -> None:
        """Forget the open image and remove its private copy."""
        if self.opened is not None and self.opened.folder is not None:
            self.opened.folder.cleanup()
        self.opened, self.history = None, []

    def _read_slice(self, path: str, name: str, index: int, num_slices: int) -> tuple[np.ndarray, dict]:
        """Read slice ``index`` of the private copy; errors name the upload, not the copy."""
        if not 0 <= index < num_slices:
            raise MedmatError(f"slice {index} outside the image's 0..{num_slices - 1}", name)
        try:
            return read_image(path, index if num_slices > 1 else None)
        except MedmatError as error:
            # Decoders quote the file they failed on: the user knows the upload, not the copy.
            raise MedmatError(error.problem.replace(path, name), name) from None

    def _model_image(self, image: np.ndarray, geometry: dict, name: str) -> np.ndarray:
        """The image as the model takes it: checked size, modality and channels."""
        height, width = image.shape[-2:]
        if height * width > MAX_PIXELS:
            raise MedmatError(f"the image is {height} x {width} pixels; the app predicts images of up to "
                              f"{MAX_PIXELS} pixels (2048 x 2048)", name)
        check_modality(geometry, training_modality(self.config), name)
        return fit_channels(image, self.model.spec.in_channels, name)

    # ----------------------------------------------------------------------------------------
    # Prediction and interaction
    # ----------------------------------------------------------------------------------------

    @property
    def trained_sizes(self) -> dict:
        """The sizes the run's model saw its images at (``data.resize``, unless :attr:`own_size`, and
        ``data.model_input_size``; None each when it saw them at their own size): every prediction
        resamples the image to them and its maps back, as ``medmat predict`` does, so that clicks
        still land on the pixels shown."""
        return {"resize": None if self.own_size else resize_size(self.config),
                "model_input_size": model_input_size(self.config)}

    def settings(self) -> dict:
        """The settings every prediction and proposal of the session follows (shown and saved)."""
        return {"samples": self.num_samples, "proposals": self.num_proposals, "patch_size": self.patch_size,
                "seed": self.seed, "flip": self.flip, "resize": self.trained_sizes["resize"]}

    @property
    def flip(self) -> bool | str:
        """The test-time views predictions average: the session's ``flip``, else the run's ``eval.flip``."""
        return flip_setting(self.flip_setting, self.config)

    def _predict(self, image: np.ndarray, user_map: np.ndarray,
                 probes: list[tuple[int, int, float]] | None = None) -> tuple[dict[str, np.ndarray], NIG | None]:
        """One prediction as the run was trained and evaluated (:attr:`trained_sizes`, ``eval.flip``'s
        test-time views), every one from the same seed: the model's maps and, for "nig" models, its
        NIG; ``probes`` are the (row, col, level) clicks of a model that reads them (:attr:`reads_probes`)."""
        torch.manual_seed(self.seed)
        if self.nig:
            return predict_nig(self.model, image, user_map, num_samples=self.num_samples, **self.trained_sizes)
        return predict_as_trained(self.model, image, self.num_samples, flip=self.flip, probes=probes,
                                  **self.trained_sizes), None

    @staticmethod
    def _prior(prediction: dict, nig: NIG | None) -> dict[str, np.ndarray]:
        """The maps of a prediction before any action: for "nig" models the fused NIG's alpha (γ),
        its alpha entropy, epistemic and aleatoric maps."""
        maps = {key: np.asarray(value, dtype=np.float32) for key, value in prediction.items()}
        if nig is not None:
            moments = nig_moments(nig)
            maps["alpha"] = np.asarray(moments["alpha"], dtype=np.float32)
            maps["lesion_uncertainty"] = np.asarray(lesion_uncertainty(maps["alpha"]), dtype=np.float32)
            for key in VARIANCE_OUTPUTS:
                maps[key] = np.asarray(moments[key], dtype=np.float32)
        return maps

    def _step(self, image: np.ndarray, prior: dict, nig: NIG | None, user_map: np.ndarray,
              actions: tuple[Action, ...], started: float) -> Step:
        """A step: the actions fused into the prior, and the patches to propose next.

        The patches are proposed from the epistemic map ("nig" models) or the fusion's uncertainty,
        as lowered by the actions; patches the user answered (in the user map or as actions) are
        not proposed again.
        """
        fusion, maps = None, prior
        if actions:
            fusion = fuse(image, prior["alpha"], fusion_uncertainty(prior), actions, self.fusion_params,
                          with_influence=True)
            maps = fused_maps(prior, fusion)
        answered = user_map != 0
        for action in actions:
            if isinstance(action, PatchAnswer):
                answered[action.window] = True
        source = maps["epistemic"] if nig is not None else fusion_uncertainty(maps)
        proposals = tuple(propose_patches(source, self.num_proposals, self.patch_size, labelled=answered))
        return Step(user_map, maps, prior, nig, proposals, None, time.perf_counter() - started, actions, fusion)

    def _first_step(self, image: np.ndarray) -> Step:
        start = time.perf_counter()
        user_map = np.zeros(image.shape[-2:], dtype=np.float32)
        prediction, nig = self._predict(image, user_map)
        return self._step(image, self._prior(prediction, nig), nig, user_map, (), start)

    def label_patch(self, rank: int, label: str) -> Step:
        """Answer the proposed patch of rank ``rank`` (0 = most uncertain) foreground, background or transition.

        A "nig" model gets the answer in its user map (every pixel of the patch ``LABELS[label]``),
        predicts again and fuses the new NIG with the current one (Eq. 2); any other model gets it
        as a :class:`~medmat.interaction.actions.PatchAnswer` fused into its alpha ("transition"
        carries no value: the matte stays, the patch is not proposed again). Returns the new step.
        """
        step = self.current
        value = _label_value(label)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < len(step.proposals):
            raise MedmatError(f"patch {rank!r} is not proposed; the proposals are ranked 0..{len(step.proposals) - 1}")
        patch = step.proposals[rank]
        record = {"kind": "patch", "label": label, "value": value, "rank": rank,
                  "box": [patch.top, patch.left, patch.height, patch.width], "uncertainty": patch.uncertainty,
                  "pixels": int(patch.height * patch.width)}
        if self.nig:
            user_map = step.user_map.copy()
            user_map[patch.window] = value
            return self._interact(record, user_map=user_map)
        return self._interact(record, new=(PatchAnswer(patch.top, patch.left, patch.height, patch.width, label),))

    def paint_stroke(self, points, radius: float, label: str) -> Step:
        """Paint a brush stroke of ``label`` along (row, col) ``points`` with ``radius`` pixels.

        "foreground" and "background" strokes are fused into the alpha (a
        :class:`~medmat.interaction.actions.Stroke`); a "nig" model also gets every label, "transition"
        too, in its user map and predicts again. Returns the new step.
        """
        step = self.current
        value = _label_value(label)
        if label == "transition" and not self.nig:
            raise MedmatError("a transition stroke says nothing about the alpha; it needs a 'nig' model's user map")
        # Every stroke is checked as the fused ones are (points, radius, inside the image); a
        # transition stroke has no alpha to fuse and only goes into the user map.
        stroke = check_action(Stroke(points, radius, "foreground" if label == "transition" else label),
                              step.user_map.shape)
        new = () if label == "transition" else (stroke,)
        covered = stroke_mask(step.user_map.shape, stroke.points, stroke.radius)
        record = {"kind": "stroke", "label": label, "value": value, "radius": stroke.radius,
                  "points": np.round(stroke.points, 2).tolist(), "pixels": int(covered.sum())}
        user_map = None
        if self.nig:
            user_map = step.user_map.copy()
            user_map[covered] = value
        return self._interact(record, new=new, user_map=user_map)

    def probe(self, row, col, value) -> Step:
        """Answer the alpha at pixel (``row``, ``col``) with ``value``, one of the five levels
        (:data:`~medmat.interaction.actions.PROBE_LEVELS`), fused into the alpha. Returns the new step."""
        step = self.current
        probe = check_action(Probe(row, col, value), step.user_map.shape)
        record = {"kind": "probe", "row": probe.row, "col": probe.col, "value": probe.value,
                  "alpha_before": float(step.maps["alpha"][probe.row, probe.col])}
        return self._interact(record, new=(probe,))

    def replay(self, records) -> Step:
        """Apply saved actions (the "actions" of a saved record, :func:`~medmat.interaction.actions.actions_to_json`)
        to the open image as one interaction, fused into the current prediction (a "nig" model's
        user map is not part of them). Every record is checked before anything changes."""
        step = self.current
        actions = actions_from_json(records, step.user_map.shape)
        if not actions:
            raise MedmatError("no action to replay")
        return self._interact({"kind": "replay", "actions": len(actions)}, new=actions)

    def _interact(self, record: dict, new: tuple[Action, ...] = (), user_map: np.ndarray | None = None) -> Step:
        """Push the step of one interaction: ``new`` actions, and for "nig" models a changed user map
        (the model predicts again with it and the NIGs are summed); then every action is fused."""
        start = time.perf_counter()
        step = self.current
        prior, nig = step.prior, step.nig
        actions = step.actions + tuple(new)
        if user_map is not None:
            torch.manual_seed(self.seed)
            prediction, nig = interaction_step(self.model, self.opened.image, user_map, step.nig,
                                               num_samples=self.num_samples, **self.trained_sizes)
            prior = self._prior(prediction, nig)
        else:
            user_map = step.user_map
        if self.reads_probes and any(isinstance(action, Probe) for action in new):
            # The same seed as the first prediction: the matte changes by the probes alone.
            prior = self._prior(*self._predict(self.opened.image, user_map, actions_probes(actions)))
        new_step = self._step(self.opened.image, prior, nig, user_map, actions, start)
        record = {"index": len(self.history), **record, "seconds": round(new_step.seconds, 4),
                  "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        new_step = dataclasses.replace(new_step, interaction=record)
        self.history.append(new_step)
        return new_step

    def undo(self) -> Step:
        """Drop the last interaction; the previous step is current again, exactly as it was."""
        self.current  # a MedmatError when no image is open
        if len(self.history) < 2:
            raise MedmatError("nothing to undo")
        self.history.pop()
        return self.current

    # ----------------------------------------------------------------------------------------
    # Saving
    # ----------------------------------------------------------------------------------------

    def output_stem(self) -> str:
        """The base name of saved files: the upload's name without ending (and its slice, for a volume)."""
        self.current  # a MedmatError when no image is open
        name = self.opened.name
        # FORMATS lists ".nii.gz" before ".nii"; upload_name made sure one ending matches.
        stem = next(name[: -len(ending)] for ending in FORMATS if name.lower().endswith(ending))
        return slice_name(stem, self.opened.slice_index) if self.opened.num_slices > 1 else stem

    def save(self, output: str | os.PathLike) -> dict:
        """Write the current step into the folder ``output``; returns the JSON record (also written).

        Files, each written atomically, ``<stem>`` from :meth:`output_stem`:

        - ``<stem>_alpha.png`` / ``.nii.gz``: alpha in [0, 1] (PNG round(255 a), NIfTI float32);
        - ``<stem>_uncertainty.*`` (Prob. U-Net entropy) and ``<stem>_lesion_uncertainty.*`` (alpha
          entropy), in bits clipped to [0, 1], when the model gives them;
        - ``<stem>_epistemic.*`` and ``<stem>_aleatoric.*`` ("nig" models): NIfTI the variances as
          they are; PNG divided by the record's ``png_scale`` (the map's maximum);
        - ``<stem>_user_map.nii.gz`` (float32 -1 / 0 / 0.5 / 1) and ``<stem>_user_map.png``
          (round(255 (U + 1) / 2): 0 background, 128 unknown, 191 transition, 255 foreground);
        - ``<stem>_interactions.json``, last: run, image, settings, every interaction, the actions
          (:func:`~medmat.interaction.actions.actions_to_json`; :meth:`replay` applies them again),
          the fusion's parameters, the files.

        NIfTI files carry the input's affine (its spacing, or the identity for a PNG).
        """
        step = self.current
        base = os.path.join(os.fspath(output), self.output_stem())
        geometry = {key: self.opened.geometry.get(key) for key in ("format", "affine", "spacing")}
        pictures = {"alpha": (np.clip(step.maps["alpha"], 0, 1), None)}
        # Entropies in bits (nats / ln 2, so 1 = a 50/50 pixel) as `medmat predict` writes them.
        for key, name in ENTROPY_FILES.items():
            if key in step.maps:
                pictures[name] = (np.clip(step.maps[key] / math.log(2), 0, 1).astype(np.float32), None)
        for key in VARIANCE_OUTPUTS:
            if key in step.maps:
                peak = float(np.max(step.maps[key]))
                pictures[key] = (step.maps[key], peak if peak > 0 else 1.0)
        files, scales = {}, {}
        for name, (values, scale) in pictures.items():
            png = values if scale is None else np.clip(values / scale, 0, 1)
            files[name] = [os.path.basename(write_like(f"{base}_{name}", png, geometry, "png")),
                           os.path.basename(write_like(f"{base}_{name}", values.astype(np.float32), geometry, "nifti"))]
            if scale is not None:
                scales[name] = scale
        user_png = np.round(255 * (step.user_map + 1) / 2).astype(np.uint8)
        files["user_map"] = [os.path.basename(write_like(f"{base}_user_map", user_png, geometry, "png")),
                             os.path.basename(write_like(f"{base}_user_map", step.user_map.astype(np.float32),
                                                         geometry, "nifti"))]
        files["interactions"] = [os.path.basename(f"{base}_interactions.json")]
        record = self._record(files, scales)
        atomic_write_json(f"{base}_interactions.json", record)
        return record

    def _record(self, files: dict, scales: dict) -> dict:
        """The JSON record of a save."""
        return {
            "medmat_version": __version__,
            "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run": self.run,
            "model": self.config["model"],
            "image": {"name": self.opened.name, "format": self.opened.geometry.get("format"),
                      "shape": list(self.opened.shape), "slice_index": self.opened.slice_index,
                      "num_slices": self.opened.num_slices},
            "settings": self.settings(),
            "user_map_values": {**LABELS, "unknown": 0.0},
            "num_interactions": len(self.history) - 1,
            "interactions": self.interactions,
            "actions": actions_to_json(self.current.actions),
            "fusion": dataclasses.asdict(self.fusion_params),
            "files": files,
            "png_scale": scales,
            "entropy_unit": "bits (clipped to [0, 1])",
        }

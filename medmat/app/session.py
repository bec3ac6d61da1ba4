"""One image's interactive matting state for the browser app: pure logic, no HTTP.

A :class:`MattingSession` holds a trained run's model and, once an image is opened (a PNG, a NIfTI
or a DICOM; one slice of a volume), the history of its predictions as a stack of :class:`Step` s:

- step 0 is the prediction without interaction;
- with a "nig" (dugMatting) model, the user labels one of the proposed patches (Algorithm 1: the
  patches of highest mean epistemic uncertainty, :func:`~medmat.uncertainty.proposals.propose_patches`)
  as foreground, background or transition, or paints a brush stroke; the label goes into the user
  map, the model predicts again with it, and the new NIG is fused with the previous one by the
  NIG summation of Eq. 2 (:func:`~medmat.uncertainty.nig.nig_sum`), as the simulated user of
  :mod:`medmat.interaction.simulate` does; each interaction pushes a step;
- undo pops the last step, which restores the previous state exactly (it is kept, not recomputed).

Other models show their alpha, uncertainty maps and sampled masks; interaction is refused with a
message. :meth:`MattingSession.save` writes alpha and uncertainty maps as PNG and float NIfTI (the
input's geometry kept), the user map, and a JSON record of the interactions, every file atomically.

Every problem caused by the user's input (an unreadable upload, a run that is not a medmat run,
an image whose channels or modality the model was not trained on, a patch that is not proposed)
is a :class:`~medmat.errors.MedmatError` with a one-line message.
"""

from __future__ import annotations

import datetime
import math
import os
import tempfile
import time
from dataclasses import dataclass, field

import nibabel
import numpy as np
import pydicom
import torch
from torch import nn

from medmat import __version__
from medmat.data.readers.folder import read_dataset_json
from medmat.data.readers.lidc import is_lidc_folder
from medmat.data.user_maps import BACKGROUND, FOREGROUND, TRANSITION
from medmat.engine.inference import fit_channels, load_run, predict
from medmat.errors import MedmatError
from medmat.interaction.step import interaction_step, predict_nig
from medmat.models.contract import ENTROPY_FILES, VARIANCE_OUTPUTS
from medmat.uncertainty.proposals import Patch, propose_patches
from medmat.io.atomic import atomic_write_json
from medmat.io.images import FORMATS, image_format, read_image, write_like
from medmat.uncertainty import lesion_uncertainty
from medmat.uncertainty.nig import NIG, nig_moments

#: The user's three answers (dugMatting Fig. 3) and their user-map values (App. B.1).
LABELS = {"foreground": FOREGROUND, "background": BACKGROUND, "transition": TRANSITION}
#: Algorithm 1's N (patches proposed at a time) and the side of the proposal grid's patches.
DEFAULT_PROPOSALS = 4
DEFAULT_PATCH_SIZE = 16
#: Brush radii accepted for a stroke, in pixels.
BRUSH_RADIUS_RANGE = (0.5, 64.0)
#: Most points in one stroke (a long drag at 60 events a second for about three minutes).
MAX_STROKE_POINTS = 10_000
#: Largest image the app predicts: the models are fully convolutional, but a photo of tens of
#: megapixels would take minutes on a CPU and gigabytes of activations.
MAX_PIXELS = 2048 * 2048
#: DICOM Modality codes of the names datasets give their modality (dataset.json's "modality").
MODALITY_CODES = {"MRI": "MR", "MR": "MR", "CT": "CT", "PET": "PT", "PT": "PT", "US": "US", "ULTRASOUND": "US"}


@dataclass(frozen=True)
class Step:
    """One state of an image's prediction: step 0 without interaction, then one per interaction.

    Attributes:
        user_map: float32 (H, W) in {-1, 0, 0.5, 1}, every label given so far.
        maps: float32 numpy maps of the fused prediction: "alpha" (H, W) in [0, 1] (= fused γ for
            "nig" models), and when the model gives them "uncertainty_map" (Prob. U-Net entropy,
            nats) and "sample_masks" (N, H, W) in [0, 1] of the newest prediction,
            "lesion_uncertainty" (binary entropy of the alpha, nats), "epistemic" Var[μ] and
            "aleatoric" E[σ²] of the fused NIG.
        nig: the fused NIG of "nig" models (four (H, W) arrays), else None.
        proposals: the patches proposed for the next interaction, highest uncertainty first.
        interaction: the record of the interaction that led here (None for step 0).
        seconds: time of the prediction (and fusion) that made this step.
    """

    user_map: np.ndarray
    maps: dict[str, np.ndarray]
    nig: NIG | None = None
    proposals: tuple[Patch, ...] = ()
    interaction: dict | None = None
    seconds: float = 0.0


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


def count_slices(path: str | os.PathLike) -> int:
    """Slices of an image file: the third axis of a 3-D NIfTI, the frames of a DICOM, else 1.

    Only the header is read. A file whose header cannot be read counts as 1: reading its pixels
    next reports the problem in :func:`~medmat.io.images.read_image`'s words.
    """
    fmt = image_format(path)
    try:
        if fmt == "nifti":
            shape = nibabel.load(os.fspath(path)).shape
            return int(shape[2]) if len(shape) == 3 else 1
        if fmt == "dicom":
            header = pydicom.dcmread(os.fspath(path), stop_before_pixels=True)
            return max(1, int(header.get("NumberOfFrames", 1) or 1))
    except Exception:  # noqa: BLE001 - any decoding failure is reported by the pixel read that follows
        return 1
    return 1


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


def stroke_mask(shape: tuple[int, int], points, radius: float) -> np.ndarray:
    """Pixels covered by a brush stroke: those whose centre lies within ``radius`` of the polyline.

    Args:
        shape: (H, W) of the image.
        points: sequence of (row, col) in pixel coordinates (pixel (i, j) has its centre at
            (i, j)); one point paints a disc. Points may lie outside the image.
        radius: brush radius in pixels (> 0).

    Returns:
        bool (H, W).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    segments = zip(points, points[1:]) if len(points) > 1 else [(points[0], points[0])]
    for start, end in segments:
        low = np.floor(np.minimum(start, end) - radius).astype(int)
        high = np.ceil(np.maximum(start, end) + radius).astype(int) + 1
        top, left = max(low[0], 0), max(low[1], 0)
        bottom, right = min(high[0], height), min(high[1], width)
        if top >= bottom or left >= right:
            continue
        rows, cols = np.mgrid[top:bottom, left:right].astype(np.float64)
        mask[top:bottom, left:right] |= squared_segment_distance(rows, cols, start, end) <= radius**2
    return mask


def squared_segment_distance(rows: np.ndarray, cols: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Squared distance of the points (``rows``, ``cols``), float arrays of one shape, to the
    segment from ``start`` to ``end`` ((row, col) each); same shape as ``rows``."""
    direction = end - start
    length2 = float(direction @ direction)
    # The projection of each point on the segment's line, clamped to the segment's ends.
    along = (rows - start[0]) * direction[0] + (cols - start[1]) * direction[1]
    t = np.clip(along / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return (rows - start[0] - t * direction[0]) ** 2 + (cols - start[1] - t * direction[1]) ** 2


def _label_value(label: str) -> float:
    if label not in LABELS:
        raise MedmatError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    return LABELS[label]


def _brush_radius(radius) -> float:
    low, high = BRUSH_RADIUS_RANGE
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not low <= radius <= high:
        raise MedmatError(f"brush radius must be a number in [{low}, {high}] pixels, got {radius!r}")
    return float(radius)


def _stroke_points(points) -> np.ndarray:
    """(P, 2) float64 of a stroke's (row, col) points, or a MedmatError saying what is wrong."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise MedmatError("a stroke is a list of [row, column] points") from None
    if array.ndim != 2 or array.shape[1] != 2 or not 1 <= len(array) <= MAX_STROKE_POINTS:
        raise MedmatError(f"a stroke is a list of 1 to {MAX_STROKE_POINTS} [row, column] points")
    if not np.all(np.isfinite(array)):
        raise MedmatError("a stroke's points must be finite numbers")
    return array


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
    ):
        if num_samples < 1 or num_proposals < 1 or patch_size < 1:
            raise MedmatError("samples, proposals and patch size must be at least 1")
        self.model, self.config, self.run = model, config, str(run)
        self.num_samples, self.num_proposals, self.patch_size, self.seed = num_samples, num_proposals, patch_size, seed
        self.opened: OpenedImage | None = None
        self.history: list[Step] = []

    @classmethod
    def from_run(cls, run: str | os.PathLike, **options) -> "MattingSession":
        """A session on the model of a run folder or checkpoint (MedmatError when it is not a medmat run)."""
        model, config = load_run(run)
        return cls(model, config, run, **options)

    # ----------------------------------------------------------------------------------------
    # What the session shows
    # ----------------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The registered name of the run's model (e.g. "nig", "medical_matting")."""
        return str(self.config["model"]["name"])

    @property
    def interactive(self) -> bool:
        """Whether the model takes a user map and gives a NIG (dugMatting's "nig" wrapper)."""
        return self.model.spec.gives_nig

    @property
    def interaction_message(self) -> str | None:
        """Why interaction is off (a model without NIG outputs), or None."""
        if self.interactive:
            return None
        return (f"interaction needs a 'nig' (dugMatting) run; this run trains {self.model_name!r}, "
                "so its alpha, uncertainty maps and sampled masks are shown without interaction")

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
            "interaction_message": self.interaction_message,
            "settings": {"samples": self.num_samples, "proposals": self.num_proposals,
                         "patch_size": self.patch_size, "seed": self.seed},
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

    def _predict(self, image: np.ndarray, user_map: np.ndarray) -> tuple[dict[str, np.ndarray], NIG | None]:
        """One prediction: the model's maps and, for "nig" models, its NIG."""
        torch.manual_seed(self.seed)
        if self.interactive:
            return predict_nig(self.model, image, user_map, num_samples=self.num_samples)
        return predict(self.model, image, num_samples=self.num_samples), None

    def _step(self, prediction: dict, nig: NIG | None, user_map: np.ndarray, interaction: dict | None,
              seconds: float) -> Step:
        """A step from the newest prediction and the fused NIG (None for models without one)."""
        maps = {key: np.asarray(value, dtype=np.float32) for key, value in prediction.items()}
        proposals: tuple[Patch, ...] = ()
        if nig is not None:
            moments = nig_moments(nig)
            maps["alpha"] = np.asarray(moments["alpha"], dtype=np.float32)
            maps["lesion_uncertainty"] = np.asarray(lesion_uncertainty(maps["alpha"]), dtype=np.float32)
            for key in VARIANCE_OUTPUTS:
                maps[key] = np.asarray(moments[key], dtype=np.float32)
            proposals = tuple(propose_patches(maps["epistemic"], self.num_proposals, self.patch_size,
                                              labelled=user_map != 0))
        return Step(user_map, maps, nig, proposals, interaction, seconds)

    def _first_step(self, image: np.ndarray) -> Step:
        start = time.perf_counter()
        user_map = np.zeros(image.shape[-2:], dtype=np.float32)
        prediction, nig = self._predict(image, user_map)
        return self._step(prediction, nig, user_map, None, time.perf_counter() - start)

    def _require_interaction(self) -> Step:
        step = self.current
        if not self.interactive:
            raise MedmatError(self.interaction_message)
        return step

    def label_patch(self, rank: int, label: str) -> Step:
        """Label the proposed patch of rank ``rank`` (0 = most uncertain) and predict again.

        Every pixel of the patch gets ``LABELS[label]`` in the user map; the new NIG is fused with
        the current one (Eq. 2). Returns the new current step.
        """
        step = self._require_interaction()
        value = _label_value(label)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < len(step.proposals):
            raise MedmatError(f"patch {rank!r} is not proposed; the proposals are ranked 0..{len(step.proposals) - 1}")
        patch = step.proposals[rank]
        user_map = step.user_map.copy()
        user_map[patch.window] = value
        record = {"kind": "patch", "label": label, "value": value, "rank": rank,
                  "box": [patch.top, patch.left, patch.height, patch.width], "uncertainty": patch.uncertainty,
                  "pixels": int(patch.height * patch.width)}
        return self._interact(user_map, record)

    def paint_stroke(self, points, radius: float, label: str) -> Step:
        """Paint a brush stroke of ``label`` along (row, col) ``points`` with ``radius`` pixels, and predict again."""
        step = self._require_interaction()
        value = _label_value(label)
        points = _stroke_points(points)
        radius = _brush_radius(radius)
        covered = stroke_mask(step.user_map.shape, points, radius)
        if not covered.any():
            raise MedmatError("the stroke lies outside the image")
        user_map = step.user_map.copy()
        user_map[covered] = value
        record = {"kind": "stroke", "label": label, "value": value, "radius": radius,
                  "points": np.round(points, 2).tolist(), "pixels": int(covered.sum())}
        return self._interact(user_map, record)

    def _interact(self, user_map: np.ndarray, record: dict) -> Step:
        start = time.perf_counter()
        torch.manual_seed(self.seed)
        prediction, fused = interaction_step(self.model, self.opened.image, user_map, self.current.nig,
                                             num_samples=self.num_samples)
        seconds = time.perf_counter() - start
        record = {"index": len(self.history), **record, "seconds": round(seconds, 4),
                  "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        step = self._step(prediction, fused, user_map, record, seconds)
        self.history.append(step)
        return step

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
        return f"{stem}_slice-{self.opened.slice_index:03d}" if self.opened.num_slices > 1 else stem

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
        - ``<stem>_interactions.json``, last: run, image, settings, every interaction, the files.

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
            "settings": {"samples": self.num_samples, "proposals": self.num_proposals,
                         "patch_size": self.patch_size, "seed": self.seed},
            "user_map_values": {**LABELS, "unknown": 0.0},
            "num_interactions": len(self.history) - 1,
            "interactions": self.interactions,
            "files": files,
            "png_scale": scales,
            "entropy_unit": "bits (clipped to [0, 1])",
        }

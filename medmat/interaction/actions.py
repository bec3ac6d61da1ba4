"""What a user says about a matte, as plain data: alpha probes, brush strokes and patch answers.

An *action* is a frozen dataclass that carries an alpha value (or a bound on it) for some pixels;
the fusion (:mod:`medmat.interaction.fusion`) spreads it through the image. A session is a tuple
of actions: it is saved as JSON (:func:`actions_to_json`), replayed by fusing the same tuple
again, and undone by dropping the last one.

- :class:`Probe`: one click at pixel (row, col) answering the alpha there with one of the five
  levels :data:`PROBE_LEVELS` (0, ¼, ½, ¾, 1): what a person can read from a blurred border.
- :class:`Stroke`: a brush stroke (a polyline of (row, col) points and a radius in pixels) saying
  "foreground" (alpha 1) or "background" (alpha 0) for every pixel it covers.
- :class:`PatchAnswer`: dugMatting's answer for a proposed patch, "foreground", "background" or
  "transition" (Fig. 3); "transition" says nothing about the value of alpha.

Every action is checked when it is made (a value that is not a level, a NaN, an empty stroke or
one of more than :data:`MAX_STROKE_POINTS` points) and against the image it is meant for
(:func:`check_action`: outside the image); each problem is a one-line
:class:`~medmat.errors.MedmatError`, raised before anything changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Union

import numpy as np

from medmat.data.probe_maps import PROBE_LEVELS, disc_mask
from medmat.errors import MedmatError

#: A brush stroke's labels and the alpha each says.
STROKE_LABELS: dict[str, float] = {"foreground": 1.0, "background": 0.0}
#: dugMatting's three answers for a patch and the alpha each says (None: no value).
PATCH_LABELS: dict[str, float | None] = {"foreground": 1.0, "background": 0.0, "transition": None}
#: Brush radii accepted for a stroke, in pixels.
BRUSH_RADIUS_RANGE = (0.5, 64.0)
#: Most points in one stroke: far more than a person draws (a drag at 60 events a second for
#: four hours), few enough that a stroke's mask is made in seconds.
MAX_STROKE_POINTS = 1_000_000
#: Pixels of the windows evaluated at once when a stroke's mask is drawn (memory, not results).
_STROKE_CHUNK_PIXELS = 4_000_000


def _number(value, what: str) -> float:
    """``value`` as a finite float, or a MedmatError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise MedmatError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise MedmatError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _pixel(value, what: str) -> int:
    """A pixel index given as a whole number (an int, or a float without a fraction)."""
    number = _number(value, what)
    if number != round(number):
        raise MedmatError(f"{what} must be a whole pixel index, got {value!r}")
    return int(round(number))


def _label(label, labels: Mapping, what: str) -> str:
    if label not in labels:
        raise MedmatError(f"{what} label must be one of {', '.join(labels)}, got {label!r}")
    return str(label)


@dataclass(frozen=True)
class Probe:
    """A click answering the alpha at pixel (``row``, ``col``) with ``value``, one of :data:`PROBE_LEVELS`.

    The fusion makes the alpha of a small disc around the pixel equal ``value``.
    """

    row: int
    col: int
    value: float
    kind: ClassVar[str] = "probe"

    def __post_init__(self):
        object.__setattr__(self, "row", _pixel(self.row, "probe row"))
        object.__setattr__(self, "col", _pixel(self.col, "probe column"))
        value = _number(self.value, "probe value")
        if not 0.0 <= value <= 1.0:
            raise MedmatError(f"probe value {value:g} lies outside [0, 1]")
        if value not in PROBE_LEVELS:
            levels = ", ".join(f"{level:g}" for level in PROBE_LEVELS)
            raise MedmatError(f"probe value {value:g} is not one of the levels {levels}")
        object.__setattr__(self, "value", value)

    def to_json(self) -> dict:
        return {"kind": self.kind, "row": self.row, "col": self.col, "value": self.value}


@dataclass(frozen=True)
class Stroke:
    """A brush stroke: the pixels within ``radius`` of the polyline through ``points`` ((row, col)
    pairs, pixel centres at integers; one point paints a disc) are ``label`` ("foreground" = alpha 1,
    "background" = alpha 0)."""

    points: tuple[tuple[float, float], ...]
    radius: float
    label: str
    kind: ClassVar[str] = "stroke"

    def __post_init__(self):
        object.__setattr__(self, "points", tuple(map(tuple, stroke_points(self.points).tolist())))
        radius = _number(self.radius, "brush radius")
        low, high = BRUSH_RADIUS_RANGE
        if not low <= radius <= high:
            raise MedmatError(f"brush radius must lie in [{low:g}, {high:g}] pixels, got {radius:g}")
        object.__setattr__(self, "radius", radius)
        _label(self.label, STROKE_LABELS, "stroke")

    @property
    def value(self) -> float:
        """The alpha the stroke says: 1 for foreground, 0 for background."""
        return STROKE_LABELS[self.label]

    def to_json(self) -> dict:
        return {"kind": self.kind, "points": [list(point) for point in self.points], "radius": self.radius,
                "label": self.label}


@dataclass(frozen=True)
class PatchAnswer:
    """dugMatting's answer for the patch of rows ``top:top + height``, columns ``left:left + width``."""

    top: int
    left: int
    height: int
    width: int
    label: str
    kind: ClassVar[str] = "patch"

    def __post_init__(self):
        for name in ("top", "left", "height", "width"):
            object.__setattr__(self, name, _pixel(getattr(self, name), f"patch {name}"))
        if self.height < 1 or self.width < 1:
            raise MedmatError(f"a patch needs a height and width of at least 1, got {self.height} x {self.width}")
        _label(self.label, PATCH_LABELS, "patch")

    @property
    def value(self) -> float | None:
        """The alpha the answer says: 1, 0, or None for "transition"."""
        return PATCH_LABELS[self.label]

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    def to_json(self) -> dict:
        return {"kind": self.kind, "top": self.top, "left": self.left, "height": self.height,
                "width": self.width, "label": self.label}


Action = Union[Probe, Stroke, PatchAnswer]
#: The action classes by their JSON "kind".
ACTION_KINDS: dict[str, type] = {cls.kind: cls for cls in (Probe, Stroke, PatchAnswer)}


def stroke_points(points) -> np.ndarray:
    """(P, 2) float64 of a stroke's (row, col) points, or a MedmatError saying what is wrong
    (not a list of pairs, empty, more than :data:`MAX_STROKE_POINTS`, NaN or infinite)."""
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise MedmatError("a stroke is a list of [row, column] points") from None
    if array.size == 0:
        raise MedmatError("a stroke needs at least one point, got none")
    if array.ndim != 2 or array.shape[1] != 2:
        raise MedmatError("a stroke is a list of [row, column] points")
    if not 1 <= len(array) <= MAX_STROKE_POINTS:
        raise MedmatError(f"a stroke has 1 to {MAX_STROKE_POINTS} points, got {len(array)}")
    if not np.all(np.isfinite(array)):
        raise MedmatError("a stroke's points must be finite numbers")
    return array


def squared_segment_distance(rows: np.ndarray, cols: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Squared distance of the points (``rows``, ``cols``) to the segments from ``start`` to ``end``.

    Args:
        rows, cols: float arrays of one shape (..., N).
        start, end: (..., 2) (row, col) ends, broadcast against ``rows[..., None]``'s leading axes.

    Returns:
        Same shape as ``rows``.
    """
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    direction = end - start
    length2 = np.sum(direction**2, axis=-1)
    d_row, d_col = direction[..., 0, None], direction[..., 1, None]
    s_row, s_col = start[..., 0, None], start[..., 1, None]
    # The projection of each point on the segment's line, clamped to the segment's ends.
    along = (rows - s_row) * d_row + (cols - s_col) * d_col
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(length2[..., None] > 0, np.clip(along / length2[..., None], 0.0, 1.0), 0.0)
    return (rows - s_row - t * d_row) ** 2 + (cols - s_col - t * d_col) ** 2


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
    starts, ends = (points[:-1], points[1:]) if len(points) > 1 else (points, points)
    # Long segments are cut into pieces of at most `piece` pixels (the union is the same
    # polyline), so that every piece's window has one small size and the pieces are evaluated
    # together, a chunk at a time, instead of one Python iteration per segment.
    piece = max(2.0, radius)
    lengths = np.hypot(*(ends - starts).T)
    counts = np.maximum(1, np.ceil(lengths / piece).astype(int))
    which = np.repeat(np.arange(len(starts)), counts)
    first = np.cumsum(counts) - counts
    step = (np.arange(len(which)) - first[which]) / counts[which]
    delta = (ends - starts)[which]
    piece_starts = starts[which] + delta * step[:, None]
    piece_ends = starts[which] + delta * (step + 1.0 / counts[which])[:, None]
    low = np.floor(np.minimum(piece_starts, piece_ends) - radius).astype(int)
    side = int(math.ceil(piece + 2 * radius)) + 2
    grid_rows, grid_cols = np.divmod(np.arange(side * side), side)
    keep = (low[:, 0] < height) & (low[:, 1] < width) & (low[:, 0] + side > 0) & (low[:, 1] + side > 0)
    low, piece_starts, piece_ends = low[keep], piece_starts[keep], piece_ends[keep]
    chunk = max(1, _STROKE_CHUNK_PIXELS // (side * side))
    for begin in range(0, len(low), chunk):
        part = slice(begin, begin + chunk)
        rows = low[part, 0, None] + grid_rows[None]
        cols = low[part, 1, None] + grid_cols[None]
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        close = squared_segment_distance(rows, cols, piece_starts[part], piece_ends[part]) <= radius**2
        hit = inside & close
        mask[rows[hit], cols[hit]] = True
    return mask


def probe_disc(shape: tuple[int, int], row: int, col: int, radius: float) -> np.ndarray:
    """bool (H, W): the pixels whose centre lies within ``radius`` of pixel (``row``, ``col``) (the pixel itself always)."""
    return disc_mask(shape, row, col, radius)


def check_action(action: Action, shape: tuple[int, int]) -> Action:
    """``action`` if it lies in an image of ``shape`` (H, W), else a one-line MedmatError.

    A probe's pixel must be inside; a stroke must cover at least one pixel; a patch must overlap
    the image.
    """
    height, width = (int(v) for v in shape)
    if isinstance(action, Probe):
        if not (0 <= action.row < height and 0 <= action.col < width):
            raise MedmatError(f"probe at row {action.row}, column {action.col} lies outside the "
                              f"{height} x {width} image")
    elif isinstance(action, Stroke):
        if not stroke_mask(shape, action.points, action.radius).any():
            raise MedmatError(f"the stroke lies outside the {height} x {width} image")
    elif isinstance(action, PatchAnswer):
        if action.top >= height or action.left >= width or action.top + action.height <= 0 \
                or action.left + action.width <= 0:
            raise MedmatError(f"patch at row {action.top}, column {action.left} lies outside the "
                              f"{height} x {width} image")
    else:
        raise MedmatError(f"not an action: {type(action).__name__}")
    return action


def action_mask(action: Action, shape: tuple[int, int], click_radius: float) -> np.ndarray:
    """bool (H, W): the pixels an action speaks about (a probe: the disc of ``click_radius``)."""
    if isinstance(action, Probe):
        return probe_disc(shape, action.row, action.col, click_radius)
    if isinstance(action, Stroke):
        return stroke_mask(shape, action.points, action.radius)
    mask = np.zeros(shape, dtype=bool)
    mask[action.window] = True
    return mask


def actions_probes(actions: Iterable[Action]) -> list[tuple[int, int, float]]:
    """(row, col, value) of each :class:`Probe` among ``actions``, oldest first: what a model that
    re-predicts with the probes reads of them; strokes and patch answers are not among them."""
    return [(action.row, action.col, action.value) for action in actions if isinstance(action, Probe)]


def action_box(action: Action, half_size: int = 2) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the box a figure outlines for an action: a square of
    ``2 half_size + 1`` pixels around a probe, the bounding box of a stroke's points (and radius), a patch."""
    if isinstance(action, Probe):
        return action.row - half_size, action.col - half_size, 2 * half_size + 1, 2 * half_size + 1
    if isinstance(action, Stroke):
        points = np.asarray(action.points)
        low = np.floor(points.min(axis=0) - action.radius).astype(int)
        high = np.ceil(points.max(axis=0) + action.radius).astype(int)
        return int(low[0]), int(low[1]), int(high[0] - low[0] + 1), int(high[1] - low[1] + 1)
    return action.top, action.left, action.height, action.width


def action_from_json(record: Mapping, shape: tuple[int, int] | None = None) -> Action:
    """The action of a JSON record (:meth:`Probe.to_json` ...), checked against ``shape`` when given."""
    if not isinstance(record, Mapping):
        raise MedmatError(f"an action is a JSON object, got {type(record).__name__}")
    kind = record.get("kind")
    if kind not in ACTION_KINDS:
        raise MedmatError(f"action kind must be one of {', '.join(ACTION_KINDS)}, got {kind!r}")
    fields = {"probe": ("row", "col", "value"), "stroke": ("points", "radius", "label"),
              "patch": ("top", "left", "height", "width", "label")}[kind]
    missing = [name for name in fields if name not in record]
    if missing:
        raise MedmatError(f"a {kind} action needs {', '.join(missing)}")
    action = ACTION_KINDS[kind](**{name: record[name] for name in fields})
    return action if shape is None else check_action(action, shape)


def actions_to_json(actions: Iterable[Action]) -> list[dict]:
    """JSON records of actions, in order."""
    return [action.to_json() for action in actions]


def actions_from_json(records: Sequence[Mapping], shape: tuple[int, int] | None = None) -> tuple[Action, ...]:
    """Actions of JSON records (:func:`actions_to_json`), each checked; a MedmatError names the first bad one."""
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise MedmatError("actions are a JSON list")
    actions = []
    for index, record in enumerate(records):
        try:
            actions.append(action_from_json(record, shape))
        except MedmatError as error:
            raise MedmatError(f"action {index}: {error.problem}") from None
    return tuple(actions)

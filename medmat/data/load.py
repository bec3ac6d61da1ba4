"""The one entry every command uses to read a dataset: :func:`load_dataset`.

Accepted forms of ``spec``:

- ``phantom`` or ``phantom:N`` — N built-in synthetic phantoms (:mod:`medmat.data.phantom`);
- a ``.pkl`` / ``.pickle`` / ``.zip`` file — a Medical Matting release;
- a folder with ``dataset.json`` — a medmat folder dataset (docs/data-format.md);
- a folder of ``LIDC-IDRI-*`` patient folders — the LIDC-IDRI slices;
- a folder with ``input/`` and ``gt/`` — the alphamatting.com benchmark.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

import numpy as np

from medmat.data.phantom import make_phantom_dataset
from medmat.data.readers import read_folder, read_lidc, read_medical_matting
from medmat.data.readers.alphamatting import is_alphamatting_folder, read_alphamatting
from medmat.data.readers.lidc import is_lidc_folder
from medmat.data.sample import Sample
from medmat.data.validate import validate_dataset
from medmat.errors import MedmatError

ACCEPTED_FORMS = (
    "phantom[:N], a Medical Matting .pkl/.zip, a folder with dataset.json, "
    "a folder of LIDC-IDRI-* patients, or an alphamatting.com folder (input/, gt/)"
)
_RELEASE_ENDINGS = (".pkl", ".pickle", ".zip")


def load_dataset(spec: str | os.PathLike, **options) -> list[Sample]:
    """Read a dataset from any accepted form (see the module docstring) into validated samples.

    Args:
        spec: what to read.
        **options: passed to the chosen reader (``trimaps=`` for a release, ``min_annotators=``,
            ``patients=``, ``limit=`` for LIDC, ``subset=`` for a folder, ``n_annotators=``,
            ``seed=`` for phantoms). Options set to None are dropped, so a command can forward
            its flags unconditionally; an option the reader does not take is a user error.

    Returns:
        ``list[Sample]``, validated (:func:`medmat.data.validate.validate_dataset`).
    """
    options = {key: value for key, value in options.items() if value is not None}
    text = os.fspath(spec)
    if text == "phantom" or text.startswith("phantom:"):
        return _load_phantom(text, options)
    if not os.path.exists(text):
        raise MedmatError(f"no such file or folder; a dataset is {ACCEPTED_FORMS}", text)
    reader, kind = _reader_for(text)
    _check_options(reader, kind, options, text)
    return reader(text, **options)


def _reader_for(path: str) -> tuple[Callable[..., list[Sample]], str]:
    if os.path.isfile(path):
        if path.lower().endswith(_RELEASE_ENDINGS):
            return read_medical_matting, "a Medical Matting release"
    elif os.path.isfile(os.path.join(path, "dataset.json")):
        return read_folder, "a folder dataset"
    elif is_lidc_folder(path):
        return read_lidc, "the LIDC-IDRI slices"
    elif is_alphamatting_folder(path):
        return read_alphamatting, "the alphamatting.com benchmark"
    raise MedmatError(f"not a dataset medmat recognises; a dataset is {ACCEPTED_FORMS}", path)


def _check_options(reader: Callable, kind: str, options: dict, where: str, takes_spec: bool = True) -> None:
    accepted = list(inspect.signature(reader).parameters)[1 if takes_spec else 0 :]
    for key in options:
        if key not in accepted:
            taken = ", ".join(accepted) or "none"
            raise MedmatError(f"option {key!r} does not apply to {kind} (it takes: {taken})", where)


def _load_phantom(text: str, options: dict) -> list[Sample]:
    count = text.partition(":")[2]
    if count and not (count.isdigit() and int(count) > 0):
        raise MedmatError(f"phantom count must be a positive whole number, got {count!r} (use phantom:N)", text)
    if count:
        options["n_cases"] = int(count)
    _check_options(make_phantom_dataset, "phantoms", options, text, takes_spec=False)
    return validate_dataset(make_phantom_dataset(**options), text)


def describe_dataset(samples: list[Sample]) -> str:
    """One line for logs: ``39 cases, 7 annotators, 128x128, 1 channel, alpha: yes``."""
    if not samples:
        return "0 cases"
    annotators = sorted({sample.num_annotators for sample in samples})
    shapes = sorted({sample.shape for sample in samples})
    channels = sorted({sample.image.shape[0] for sample in samples})
    with_alpha = sum(sample.alpha is not None for sample in samples)
    parts = [
        f"{len(samples)} case{'s' if len(samples) != 1 else ''}",
        f"{_span(annotators)} annotator{'s' if annotators != [1] else ''}",
        "x".join(map(str, shapes[0])) if len(shapes) == 1 else f"{len(shapes)} sizes ({_size_range(shapes)})",
        f"{_span(channels)} channel{'s' if channels != [1] else ''}",
        "alpha: " + ("yes" if with_alpha == len(samples) else "no" if with_alpha == 0 else f"{with_alpha} of {len(samples)}"),
    ]
    return ", ".join(parts)


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _size_range(shapes: list[tuple[int, int]]) -> str:
    areas = np.array([h * w for h, w in shapes])
    smallest, largest = shapes[int(areas.argmin())], shapes[int(areas.argmax())]
    return f"{smallest[0]}x{smallest[1]} to {largest[0]}x{largest[1]}"

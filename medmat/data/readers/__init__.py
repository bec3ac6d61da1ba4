"""Dataset readers: each returns a validated ``list[Sample]``.

- :func:`read_medical_matting` — the Medical Matting release (``.pkl`` or ``.zip``), read with
  the restricted unpickler only.
- :func:`read_lidc` — the LIDC-IDRI slice folders (four radiologists' masks per slice).
- :func:`read_folder` / :func:`write_folder` — medmat's own nnU-Net-like folder layout
  (``docs/data-format.md``).
- :func:`read_trimaps` — trimap PNGs in a folder or a zip, by case id.

:func:`medmat.data.load.load_dataset` picks the right one from what it is given.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``slice-2`` before ``slice-10``."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(text))


# Imported after natural_key, which the reader modules take from this package.
from medmat.data.readers.folder import read_dataset_json, read_folder, write_folder  # noqa: E402
from medmat.data.readers.lidc import read_lidc  # noqa: E402
from medmat.data.readers.medical_matting import read_medical_matting  # noqa: E402
from medmat.data.readers.trimaps import read_trimaps  # noqa: E402

__all__ = [
    "natural_key",
    "read_dataset_json",
    "read_folder",
    "read_lidc",
    "read_medical_matting",
    "read_trimaps",
    "write_folder",
]

"""The one sample model every reader returns and every entry point consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """One 2-D image with its annotators' masks and, when known, its alpha matte and trimap.

    Attributes:
        id: case identifier, unique within a dataset (``case01``, ``LIDC-IDRI-0001/nodule-0/slice-3``).
        image: float32 (C, H, W) in [0, 1]; C = 1 for CT/MRI, 3 for colour.
        masks: bool (K, H, W), one binary mask per annotator; K may be 0 only for images to predict.
        alpha: float32 (H, W) in [0, 1] or None.
        trimap: uint8 (H, W) or None; 0 background, 255 foreground, 128 unknown. Released trimaps
            may carry resampled intermediate values; :func:`medmat.data.trimap.trimap_regions`
            documents how they are read.
        group: what must stay together in a split (LIDC: the patient); defaults to ``id``.
        spacing: pixel spacing (row, column) in mm, where the format has it.
        affine: 4x4 voxel-to-world matrix, where the format has it (NIfTI, DICOM).
        source: the file or folder the sample came from, named in error messages.
        meta: anything else a reader knows (series UID, slice index, ...).
    """

    id: str
    image: np.ndarray
    masks: np.ndarray
    alpha: np.ndarray | None = None
    trimap: np.ndarray | None = None
    group: str | None = None
    spacing: tuple[float, float] | None = None
    affine: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.group is None:
            self.group = self.id

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return tuple(self.image.shape[-2:])

    @property
    def num_annotators(self) -> int:
        return int(self.masks.shape[0])

    def to_dict(self) -> dict:
        """The named arrays for dictionary transforms (``image``, ``masks``, ``alpha``, ``trimap``)."""
        named = {"image": self.image, "masks": self.masks}
        if self.alpha is not None:
            named["alpha"] = self.alpha
        if self.trimap is not None:
            named["trimap"] = self.trimap
        return named

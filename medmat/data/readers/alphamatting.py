"""The alphamatting.com benchmark layout (Rhemann et al., CVPR 2009), low-resolution training set.

``root/input/GTnn.png`` RGB images, ``root/trimap1/`` and ``root/trimap2/`` the two trimaps per
image, ``root/gt/GTnn.png`` the ground-truth alpha (RGB with three equal channels). Natural
images have no annotators: samples carry zero masks (K = 0) and the chosen trimap.
"""

from __future__ import annotations

import os

import numpy as np

from medmat.data.sample import Sample
from medmat.data.validate import validate_dataset
from medmat.errors import MedmatError
from medmat.io.images import read_alpha, read_image, read_trimap


def is_alphamatting_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` has the ``input/`` and ``gt/`` folders of the benchmark."""
    return os.path.isdir(os.path.join(root, "input")) and os.path.isdir(os.path.join(root, "gt"))


def read_alphamatting(root: str | os.PathLike, trimap: str = "trimap1") -> list[Sample]:
    """Read the benchmark: one :class:`Sample` per image (id ``GT01`` ...) with alpha and trimap.

    Args:
        root: the benchmark folder.
        trimap: which trimap folder to attach (``trimap1`` or ``trimap2``).
    """
    root = os.fspath(root)
    inputs = os.path.join(root, "input")
    if not os.path.isdir(inputs):
        raise MedmatError("not an alphamatting folder (no input/)", root)
    if not os.path.isdir(os.path.join(root, trimap)):
        raise MedmatError(f"no {trimap}/ folder", root)
    samples = []
    for name in sorted(os.listdir(inputs)):
        if not name.lower().endswith(".png"):
            continue
        case_id = os.path.splitext(name)[0]
        image, geometry = read_image(os.path.join(inputs, name))
        if image.shape[0] == 1:
            image = np.repeat(image, 3, axis=0)
        samples.append(
            Sample(
                id=case_id,
                image=image,
                masks=np.zeros((0, *image.shape[1:]), dtype=bool),
                alpha=read_alpha(os.path.join(root, "gt", name)),
                trimap=read_trimap(os.path.join(root, trimap, name)),
                source=os.path.join(inputs, name),
                meta={"trimap": trimap},
            )
        )
    return validate_dataset(samples, root, require_masks=False, require_alpha=True)

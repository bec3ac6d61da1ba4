"""Trimaps and alpha-matte labels built from several annotators' masks.

- :mod:`medmat.labels.trimap`: the trimap of the annotators' masks (consensus + dilation);
- :mod:`medmat.labels.training_trimaps`: random training trimaps drawn from the ground truth;
- :mod:`medmat.labels.build`: alpha labels, a classical matting solver run on that trimap.

Only the trimap functions are re-exported here. :mod:`medmat.labels.build` loads the classical
solvers (pymatting, numba), and every import of a ``medmat.labels`` module runs this file first:
re-exporting it would load them into every training process that draws trimaps. Import
``alpha_label``, ``build_alpha_labels`` and ``matting_image`` from :mod:`medmat.labels.build`.
"""

from medmat.labels.trimap import DEFAULT_DILATION_RADIUS, disagreement_region, trimap_from_masks

__all__ = [
    "DEFAULT_DILATION_RADIUS",
    "disagreement_region",
    "trimap_from_masks",
]

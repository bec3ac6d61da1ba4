"""Alpha-matte labels built from several annotators' masks."""

from medmat.labels.build import alpha_label, build_alpha_labels, matting_image
from medmat.labels.trimap import DEFAULT_DILATION_RADIUS, disagreement_region, trimap_from_masks

__all__ = [
    "DEFAULT_DILATION_RADIUS",
    "alpha_label",
    "build_alpha_labels",
    "disagreement_region",
    "matting_image",
    "trimap_from_masks",
]

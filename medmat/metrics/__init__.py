"""Evaluation metrics: SAD / MSE / Grad / Conn of the Deep Image Matting protocol, GED and Dice,
trimap accuracy and mIoU."""

from medmat.metrics.matting import (
    connectivity_error,
    gradient_error,
    matting_metrics,
    mean_table_iv_metrics,
    mse,
    quantize_alpha,
    region_mask,
    sad,
    table_iv_metrics,
)
from medmat.metrics.segmentation import adapted_dice, ged, ged_terms, pairwise_dice, pairwise_iou, trimap_accuracy, trimap_miou

__all__ = [
    "adapted_dice",
    "connectivity_error",
    "ged",
    "ged_terms",
    "gradient_error",
    "matting_metrics",
    "mean_table_iv_metrics",
    "mse",
    "pairwise_dice",
    "pairwise_iou",
    "quantize_alpha",
    "region_mask",
    "sad",
    "table_iv_metrics",
    "trimap_accuracy",
    "trimap_miou",
]

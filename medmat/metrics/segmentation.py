"""Distances between a set of predicted masks and a set of annotators' masks.

Used for the mask side of Medical Matting (Wang et al., 2023, Table V, eqs. 12-13):

- :func:`ged`, the generalised energy distance of the Probabilistic U-Net (Kohl et al., 2018),
  ``D^2 = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')]`` with ``d = 1 - IoU``. S, S' (and Y, Y') are
  independent draws from the empirical distribution of the predicted (annotated) masks, so each
  expectation is the mean over ALL ordered pairs, the pairs of a mask with itself included (they
  contribute d = 0). This is the convention of the Probabilistic U-Net evaluation code, and it
  makes ``ged(A, A) == 0`` for any set A. Leaving the i == j pairs out would give a different,
  larger value for small sets (7 annotators).
- :func:`adapted_dice`, for each predicted mask the best Dice against any annotator, averaged
  over the predicted masks.

Two empty masks agree perfectly: IoU = Dice = 1.

For trimaps as class maps (AdaMatting, Cai et al. 2019, Table 4: an adapted trimap against the
optimal trimap T_opt): :func:`trimap_accuracy`, the fraction of pixels in the right class, and
:func:`trimap_miou`, the mean IoU over the classes either map holds.
"""

from __future__ import annotations

import numpy as np

from medmat.errors import MedmatError


def _mask_stack(masks: np.ndarray, what: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise MedmatError(f"{what} must be a non-empty bool array of shape (N, H, W), got shape {masks.shape}")
    if masks.dtype != bool:
        raise MedmatError(f"{what} must be boolean, got {masks.dtype}")
    return masks.reshape(masks.shape[0], -1)


def _check_pair(pred_masks: np.ndarray, label_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if np.shape(pred_masks)[1:] != np.shape(label_masks)[1:]:
        raise MedmatError(
            f"predicted masks are {np.shape(pred_masks)[1:]} but the label masks are {np.shape(label_masks)[1:]}"
        )
    return _mask_stack(pred_masks, "predicted masks"), _mask_stack(label_masks, "label masks")


def _overlaps(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersections and sizes of flattened bool masks (N, P) and (M, P)."""
    intersection = first.astype(np.int64) @ second.T.astype(np.int64)
    return intersection, first.sum(axis=1)[:, None], second.sum(axis=1)[None, :]


def pairwise_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``first`` (N, H, W) with every mask of ``second`` (M, H, W).

    Args:
        first, second: bool mask stacks of the same H, W.

    Returns:
        float64 (N, M) in [0, 1]; 1 where both masks are empty.
    """
    first, second = _check_pair(first, second)
    intersection, first_size, second_size = _overlaps(first, second)
    union = first_size + second_size - intersection
    return np.where(union == 0, 1.0, intersection / np.maximum(union, 1))


def pairwise_dice(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dice of every mask of ``first`` (N, H, W) with every mask of ``second`` (M, H, W).

    Returns:
        float64 (N, M) in [0, 1]; 1 where both masks are empty.
    """
    first, second = _check_pair(first, second)
    intersection, first_size, second_size = _overlaps(first, second)
    total = first_size + second_size
    return np.where(total == 0, 1.0, 2 * intersection / np.maximum(total, 1))


def ged_terms(pred_masks: np.ndarray, label_masks: np.ndarray) -> dict[str, float]:
    """The generalised energy distance and its three terms (d = 1 - IoU, means over all ordered pairs,
    self-pairs included).

    Args:
        pred_masks: bool (N, H, W) samples of the predicted distribution.
        label_masks: bool (M, H, W) annotators' masks.

    Returns:
        ``{"GED": 2 cross - within_pred - within_labels, "cross": mean d(S_i, Y_j), "within_pred":
        mean d(S_i, S_k) (the samples' spread), "within_labels": mean d(Y_j, Y_l)}``.
    """
    cross = float(np.mean(1 - pairwise_iou(pred_masks, label_masks)))
    within_pred = float(np.mean(1 - pairwise_iou(pred_masks, pred_masks)))
    within_labels = float(np.mean(1 - pairwise_iou(label_masks, label_masks)))
    return {"GED": 2 * cross - within_pred - within_labels, "cross": cross, "within_pred": within_pred,
            "within_labels": within_labels}


def ged(pred_masks: np.ndarray, label_masks: np.ndarray) -> float:
    """Generalised energy distance D^2 between predicted and annotated masks (d = 1 - IoU).

    Args:
        pred_masks: bool (N, H, W) samples of the predicted distribution.
        label_masks: bool (M, H, W) annotators' masks.

    Returns:
        D^2 = 2 mean d(S_i, Y_j) - mean d(S_i, S_k) - mean d(Y_j, Y_l), means over all ordered
        pairs (self-pairs included); 0 for identical sets, at most 2 (:func:`ged_terms`).
    """
    return ged_terms(pred_masks, label_masks)["GED"]


def adapted_dice(pred_masks: np.ndarray, label_masks: np.ndarray) -> float:
    """Mean over the predicted masks of the best Dice against any annotator's mask.

    Args:
        pred_masks: bool (N, H, W).
        label_masks: bool (M, H, W).

    Returns:
        float in [0, 1].
    """
    return float(pairwise_dice(pred_masks, label_masks).max(axis=1).mean())


def _class_map_pair(predicted: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check two class maps of the same shape, integer dtype and at least one pixel; return them as arrays."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape:
        raise MedmatError(f"predicted classes are {predicted.shape} but the target classes are {target.shape}")
    if predicted.size == 0:
        raise MedmatError("class maps have no pixels")
    for what, classes in (("predicted classes", predicted), ("target classes", target)):
        if not np.issubdtype(classes.dtype, np.integer):
            raise MedmatError(f"{what} must be integer class indices, got {classes.dtype}")
    return predicted, target


def trimap_accuracy(predicted_classes: np.ndarray, target_classes: np.ndarray) -> float:
    """Fraction of pixels whose predicted class is the target's (AdaMatting's "Acc").

    Args:
        predicted_classes: int (H, W) class indices (trimaps: 0 background, 1 unknown, 2 foreground).
        target_classes: int (H, W) of the same shape, e.g. T_opt of the ground-truth alpha.

    Returns:
        float in [0, 1].
    """
    predicted, target = _class_map_pair(predicted_classes, target_classes)
    return float(np.mean(predicted == target))


def trimap_miou(predicted_classes: np.ndarray, target_classes: np.ndarray, num_classes: int = 3) -> float:
    """Mean intersection over union of the classes 0 .. ``num_classes - 1`` (AdaMatting's "mIoU").

    A class absent from both maps has no IoU (0 / 0) and is left out of the mean, so a case
    without foreground is scored on its background and unknown classes alone. A class present in
    only one map counts, with IoU 0.

    Args:
        predicted_classes: int (H, W) class indices in 0 .. ``num_classes - 1``.
        target_classes: int (H, W) of the same shape.
        num_classes: number of classes (3 for a trimap).

    Returns:
        float in [0, 1].

    Raises:
        MedmatError: different shapes, non-integer maps, or a class index outside the range.
    """
    predicted, target = _class_map_pair(predicted_classes, target_classes)
    for what, classes in (("predicted classes", predicted), ("target classes", target)):
        if classes.min() < 0 or classes.max() >= num_classes:
            raise MedmatError(f"{what} must lie in 0..{num_classes - 1}, got {classes.min()}..{classes.max()}")
    ious = []
    for label in range(num_classes):
        in_predicted, in_target = predicted == label, target == label
        union = np.count_nonzero(in_predicted | in_target)
        if union:
            ious.append(np.count_nonzero(in_predicted & in_target) / union)
    return float(np.mean(ious))

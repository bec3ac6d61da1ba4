"""One interaction step with a NIG model, shared by the simulated user and the browser app.

:func:`predict_nig` predicts an image with the user's map (dugMatting §3.3: ``F_θ(x | U)``) and
reads the NIG of the prediction; :func:`interaction_step` fuses it with the NIG before the
interaction by the NIG summation of Eq. 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medmat.engine.inference import predict_as_trained
from medmat.models import MattingModel
from medmat.models.nig import nig_from_outputs
from medmat.uncertainty.nig import NIG, nig_sum


def predict_nig(
    model: MattingModel,
    image: np.ndarray,
    user_map: np.ndarray | None = None,
    trimap: np.ndarray | None = None,
    num_samples: int | None = None,
    resize: Sequence[int] | None = None,
    model_input_size: Sequence[int] | None = None,
) -> tuple[dict[str, np.ndarray], NIG]:
    """One prediction of a NIG model (``model.spec.gives_nig``) with a user map.

    Args:
        model: a model that gives the NIG parameters.
        image: float32 (C, H, W) in [0, 1].
        user_map: float (H, W) in {-1, 0, 0.5, 1}; None = no interaction.
        trimap: (H, W) trimap for trimap-based bases.
        num_samples: masks drawn by a sampling base (None: its configured count).
        resize, model_input_size: the run's ``data.resize`` and ``data.model_input_size``, for an
            image the run's dataset did not resample (:func:`~medmat.engine.inference.predict_as_trained`;
            the NIG's maps are then resampled back to (H, W)). None: predicted as it is.

    Returns:
        ``(maps, nig)``: :func:`~medmat.engine.inference.predict`'s float32 maps and the
        :class:`~medmat.uncertainty.nig.NIG` of its four (H, W) parameter maps.
    """
    maps = predict_as_trained(model, image, num_samples, trimap, model_input_size, resize=resize, user_map=user_map)
    return maps, nig_from_outputs(maps)


def interaction_step(
    model: MattingModel,
    image: np.ndarray,
    user_map: np.ndarray,
    previous: NIG | None,
    trimap: np.ndarray | None = None,
    num_samples: int | None = None,
    resize: Sequence[int] | None = None,
    model_input_size: Sequence[int] | None = None,
) -> tuple[dict[str, np.ndarray], NIG]:
    """Predict again with the updated user map and fuse the new NIG with ``previous`` (Eq. 2)
    (``resize``, ``model_input_size``: as :func:`predict_nig`).

    Returns:
        ``(maps, fused)``: the new prediction's maps and the fused NIG (the new one alone when
        ``previous`` is None).
    """
    maps, new = predict_nig(model, image, user_map, trimap, num_samples, resize, model_input_size)
    return maps, new if previous is None else nig_sum(previous, new)

"""Image gradients for the matting gradient loss (Medical Matting Eq. 8).

The paper does not name the operator; the authors' release uses the 3x3 Sobel kernels, so
:func:`sobel_gradients` does too. Borders are replicate-padded: zero padding would invent a
step at the image edge wherever alpha is non-zero there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Sobel kernel for d/dx (columns increase to the right); d/dy is its transpose.
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel responses of each channel.

    Args:
        image: (B, C, H, W) float tensor.

    Returns:
        ``(gx, gy)``, each (B, C, H, W): unnormalised Sobel responses (a ramp rising by ``s``
        per pixel to the right gives ``gx = 8 s``, ``gy = 0``), differentiable in ``image``.
    """
    channels = image.shape[1]
    kernel_x = _SOBEL_X.to(device=image.device, dtype=image.dtype)
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None].repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)
    padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
    responses = F.conv2d(padded, kernels, groups=channels)  # channel c -> (gx_c, gy_c)
    return responses[:, 0::2], responses[:, 1::2]

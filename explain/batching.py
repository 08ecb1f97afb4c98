"""Running the model over uint8 image arrays in batches, on the chosen device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float32 in [0, 1] on ``device``."""
    batch = torch.from_numpy(np.array(images))  # a writable copy (memmaps are read-only)
    return batch.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W float in [0, 1] -> N x H x W x 3 uint8 (clipped, rounded)."""
    scaled = images.detach().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def batched_logits(
    logit_fn: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
) -> np.ndarray:
    """Logits (N,) float64 of ``logit_fn`` over N x H x W x 3 uint8 ``images``."""
    out = np.empty(len(images), dtype=np.float64)
    for part in batches(len(images), batch_size):
        out[part] = logit_fn(to_tensor(images[part], device)).double().cpu().numpy()
    return out

"""Image helpers for the bundle: PNG encoding and concept heatmap overlays (no torch)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] (any shape ending in 3) -> uint8, clipped and rounded."""
    array = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """Encode one H x W x 3 uint8 image as PNG bytes (deterministic, so hashes are stable)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> H x W x 3 uint8."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def heatmap_overlay(
    image: np.ndarray,
    heat: np.ndarray,
    out_size: int,
    vmax: float,
    alpha: float = 0.55,
    colormap: str = "magma",
) -> np.ndarray:
    """Overlay a coarse heatmap on an image, both upscaled to ``out_size``.

    ``image`` H x W x 3 uint8; ``heat`` h x w float (concept scores, >= 0 shown);
    ``vmax`` the score that maps to full colour (shared across a concept's strip so
    prototypes are comparable). The image is upscaled with nearest neighbours (keeps
    pixels crisp), the heatmap bilinearly (smooth regions). Returns out x out x 3 uint8.
    """
    from matplotlib import colormaps

    base = Image.fromarray(np.ascontiguousarray(image)).resize(
        (out_size, out_size), Image.Resampling.NEAREST
    )
    scaled = np.clip(np.asarray(heat, dtype=np.float32) / max(float(vmax), 1e-12), 0.0, 1.0)
    heat_big = Image.fromarray(scaled).resize((out_size, out_size), Image.Resampling.BILINEAR)
    strength = np.clip(np.asarray(heat_big, dtype=np.float32), 0.0, 1.0)[..., None]
    colours = colormaps[colormap](strength[..., 0])[..., :3].astype(np.float32)
    base_f = np.asarray(base, dtype=np.float32) / 255.0
    weight = alpha * strength
    blended = (1.0 - weight) * base_f + weight * colours
    return to_uint8(blended)

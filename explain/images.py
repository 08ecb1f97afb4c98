"""Image helpers for the bundle: PNG encoding and the concept display (no torch)."""

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


def concept_highlight(
    image: np.ndarray,
    heat: np.ndarray,
    out_size: int,
    vmax: float,
    dim: float = 0.45,
    gray: float = 0.75,
) -> np.ndarray:
    """Show where a concept is by dimming what it ignores, both upscaled to ``out_size``.

    ``image`` H x W x 3 uint8; ``heat`` h x w float (concept scores, >= 0 shown);
    ``vmax`` the score shown in full (shared across a concept's strip so prototypes are
    comparable). Where the score reaches ``vmax`` the image keeps its own colors; where
    it is 0 or below each pixel is moved ``gray`` of the way to its own gray level and
    darkened to ``dim`` of its brightness; in between the two are blended. Mixing a
    color with gray and scaling it never changes its hue, so object and background
    colors (attributes participants rate) are never tinted. The image is upscaled with
    nearest neighbors (keeps pixels crisp), the score bilinearly (smooth regions).
    Returns out x out x 3 uint8.
    """
    base = Image.fromarray(np.ascontiguousarray(image)).resize(
        (out_size, out_size), Image.Resampling.NEAREST
    )
    scaled = np.clip(np.asarray(heat, dtype=np.float32) / max(float(vmax), 1e-12), 0.0, 1.0)
    heat_big = Image.fromarray(scaled).resize((out_size, out_size), Image.Resampling.BILINEAR)
    strength = np.clip(np.asarray(heat_big, dtype=np.float32), 0.0, 1.0)[..., None]
    color = np.asarray(base, dtype=np.float32) / 255.0
    luminance = color @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = dim * ((1.0 - gray) * color + gray * luminance[..., None])
    return to_uint8(strength * color + (1.0 - strength) * faded)

"""Scenes written by Two4Two: importing them, rendering them, comparing the masks.

Two4Two's ``parameters.jsonl`` holds one ``SceneParameters`` a line with the same
attribute names as :mod:`generator.attributes` plus keys this project does not need
(``obj_color_rgba``, ``resolution``, ``_attributes_status``, ...), which are ignored.
Two4Two's Blender masks use the renderer's block ids (0 background, 1..8 the blocks), so
:func:`block_iou` compares them with ours pixel by pixel.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from generator.attributes import ATTRIBUTES, CONTINUOUS, LABELS, validate_values
from generator.dataset import DatasetWriter
from xaistudy.errors import UserError


def _scene_from_line(number: int, text: str, where: str) -> dict:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} line {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise UserError(f"{where} line {number}: expected a JSON object of scene attributes")
    missing = [a for a in ATTRIBUTES if a not in record]
    if missing:
        raise UserError(f"{where} line {number}: missing attribute(s) {', '.join(missing)}")
    scene = {}
    for name in CONTINUOUS:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where} line {number}: {name} must be a number, got {value!r}")
        scene[name] = float(value)
    if not isinstance(record["fliplr"], bool):
        raise UserError(f"{where} line {number}: fliplr must be true or false")
    scene["fliplr"] = record["fliplr"]
    scene["obj_name"] = record["obj_name"]
    try:
        validate_values(scene)
    except UserError as exc:
        raise UserError(f"{where} line {number}: {exc}") from None
    scene["id"] = str(record["id"]) if record.get("id") is not None else f"line-{number}"
    original = record.get("original_id")
    scene["original_id"] = None if original is None else str(original)
    return scene


def read_two4two_jsonl(path: Path) -> pd.DataFrame:
    """Scene table (``id``, ``label``, attributes, ``original_id``, ``intervened``) of a file.

    Blank lines are skipped; a bad line is a :class:`UserError` naming its number.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file of JSON lines") from None
    scenes = [
        _scene_from_line(number, text, str(path))
        for number, text in enumerate(lines, start=1)
        if text.strip()
    ]
    if not scenes:
        raise UserError(f"{path} holds no scenes (expected one JSON object a line)")
    frame = pd.DataFrame(scenes)
    duplicated = frame["id"].duplicated()
    if duplicated.any():
        raise UserError(f"{path}: scene id {frame['id'][duplicated].iloc[0]!r} appears twice")
    frame["label"] = frame["obj_name"].map(LABELS.index).astype("int64")
    frame["intervened"] = None
    return frame[["id", "label", *ATTRIBUTES, "original_id", "intervened"]]


def render_two4two(
    params_file: Path,
    out: Path,
    *,
    size: int = 128,
    device=None,
    overwrite: bool = False,
    antialias: bool = True,
    png: bool = False,
    progress: bool = True,
) -> Path:
    """Render a Two4Two ``parameters.jsonl`` into a dataset folder with one split, ``test``."""
    from generator.generate import render_splits

    params = read_two4two_jsonl(params_file)
    if size < 8:
        raise UserError(f"--size must be at least 8 pixels, got {size}")
    writer = DatasetWriter(out, overwrite=overwrite)
    try:
        render_splits(
            writer, {"test": params}, size, device, antialias=antialias, png=png, progress=progress
        )
        # No "spec": these scenes were not drawn from a bias specification.
        meta = {
            "preset": None,
            "seed": None,
            "size": size,
            "interventions": [],
            "antialias": antialias,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(Path(params_file).resolve()),
            "counts": {"test": len(params)},
        }
        return writer.finish(meta)
    except BaseException:
        writer.abort()
        raise


def block_iou(mask_a, mask_b) -> float:
    """Mean over blocks present in either mask of the IoU of that block's pixels.

    Masks hold block ids (0 the background); two masks without any block match fully.
    """
    a, b = np.asarray(mask_a), np.asarray(mask_b)
    blocks = np.union1d(np.unique(a), np.unique(b))
    scores = [
        np.logical_and(a == block, b == block).sum() / np.logical_or(a == block, b == block).sum()
        for block in blocks[blocks > 0]
    ]
    return float(np.mean(scores)) if scores else 1.0


def edge_pixels(masks) -> np.ndarray:
    """Pixels (N, H, W) bool whose block id differs from a 4-neighbor's in ``masks``."""
    m = np.asarray(masks)
    edge = np.zeros(m.shape, dtype=bool)
    rows = m[:, 1:] != m[:, :-1]
    edge[:, 1:] |= rows
    edge[:, :-1] |= rows
    cols = m[:, :, 1:] != m[:, :, :-1]
    edge[:, :, 1:] |= cols
    edge[:, :, :-1] |= cols
    return edge


def edge_rms(images, reference_images, masks, reference_masks) -> float:
    """RMS color difference (0..255) over the pixels on a block edge in either mask set:
    how far anti-aliased silhouettes are from the reference's. Images (N, H, W, 3)."""
    edge = edge_pixels(masks) | edge_pixels(reference_masks)
    difference = np.asarray(images, dtype=float) - np.asarray(reference_images, dtype=float)
    return float(np.sqrt(np.square(difference[edge]).mean()))

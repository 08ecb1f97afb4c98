"""The renderer against Two4Two's own Blender renders: block masks must overlap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from generator.attributes import ATTRIBUTES
from generator.render import render_scenes
from generator.twofortwo import block_iou

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "two4two-blender"
if not REFERENCE.exists():
    REFERENCE = Path("/work/shared/reference/two4two-blender")
SAMPLE = 12


def load_reference(count: int):
    """The first ``count`` reference scenes: parameters and masks (count, 128, 128)."""
    lines = (REFERENCE / "parameters.jsonl").read_text().splitlines()[:count]
    rows = [json.loads(line) for line in lines]
    params = pd.DataFrame(rows)
    masks = np.stack(
        [np.array(Image.open(REFERENCE / "images" / f"{row['id']}_mask.png")) for row in rows]
    )
    return params[list(ATTRIBUTES)], masks


@pytest.mark.skipif(not REFERENCE.exists(), reason="Two4Two reference renders not present")
def test_masks_match_two4two_reference():
    params, reference = load_reference(SAMPLE)
    _, masks = render_scenes(params, size=128)
    scores = np.array([block_iou(a, b) for a, b in zip(masks, reference, strict=True)])
    print(f"block IoU over {SAMPLE} scenes: mean {scores.mean():.3f}, min {scores.min():.3f}")
    assert scores.mean() >= 0.90
    assert scores.min() >= 0.75

"""Importing Two4Two's JSON lines and re-rendering them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generator.attributes import ATTRIBUTES
from generator.dataset import DatasetFolder
from generator.twofortwo import block_iou, read_two4two_jsonl, render_two4two
from xaistudy.errors import UserError

REFERENCE = Path("/work/shared/reference/two4two-blender")
if not REFERENCE.exists():  # the copy inside the checkout, where there is one
    REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/two4two-blender"
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "parameters.jsonl").exists(), reason="Two4Two reference renders absent"
)

SCENE = {
    "obj_name": "stretchy",
    "spherical": 0.9,
    "bending": -0.1,
    "obj_rotation_roll": 0.0,
    "obj_rotation_pitch": 0.1,
    "obj_rotation_yaw": -1.5,
    "fliplr": False,
    "position_x": -0.3,
    "position_y": 0.2,
    "arm_position": 0.62,
    "obj_color": 0.8,
    "bg_color": 0.4,
    "obj_color_rgba": [0.9, 0.5, 0.4, 1.0],
    "resolution": [128, 128],
    "id": "scene-a",
    "original_id": None,
}


def _write(tmp_path, lines) -> Path:
    path = tmp_path / "parameters.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_scenes_ignoring_extra_keys(tmp_path):
    other = {**SCENE, "id": "scene-b", "obj_name": "peaky", "fliplr": True}
    frame = read_two4two_jsonl(_write(tmp_path, [json.dumps(SCENE), "", json.dumps(other)]))
    assert list(frame["id"]) == ["scene-a", "scene-b"]
    assert list(frame["label"]) == [1, 0]
    assert {"id", "label", *ATTRIBUTES, "original_id", "intervened"} == set(frame.columns)
    assert frame["fliplr"].tolist() == [False, True]
    assert frame.loc[0, "arm_position"] == 0.62


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        (
            json.dumps({k: v for k, v in SCENE.items() if k != "bending"}),
            "line 2: missing .*bending",
        ),
        (json.dumps({**SCENE, "arm_position": 1.7}), "line 2: arm_position=1.7 is out of range"),
        (json.dumps({**SCENE, "obj_name": "blobby"}), "line 2: obj_name must be one of"),
        (json.dumps({**SCENE, "fliplr": "no"}), "line 2: fliplr must be true or false"),
        (json.dumps({**SCENE, "spherical": "round"}), "line 2: spherical must be a number"),
        (json.dumps([1, 2]), "line 2: expected a JSON object"),
        (json.dumps(SCENE), "scene id 'scene-a' appears twice"),
    ],
)
def test_a_bad_line_names_its_number_and_problem(tmp_path, bad_line, message):
    with pytest.raises(UserError, match=message):
        read_two4two_jsonl(_write(tmp_path, [json.dumps(SCENE), bad_line]))


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_two4two_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="holds no scenes"):
        read_two4two_jsonl(_write(tmp_path, [""]))


@needs_reference
def test_reference_parameters_render_to_matching_masks(tmp_path):
    frame = read_two4two_jsonl(REFERENCE / "parameters.jsonl")
    assert len(frame) == 100 and frame["id"].is_unique
    lines = (REFERENCE / "parameters.jsonl").read_text().splitlines()[:3]
    out = render_two4two(_write(tmp_path, lines), tmp_path / "ds", size=128, progress=False)
    split = DatasetFolder(out).split("test")
    meta = DatasetFolder(out).meta
    assert meta["splits"] == {"test": 3} and "spec" not in meta and meta["size"] == 128
    for scene_id, mask in zip(split.params["id"], split.masks, strict=True):
        reference = np.asarray(Image.open(REFERENCE / "images" / f"{scene_id}_mask.png"))
        # a loose bound: it checks the import (names, flip, position), not render fidelity
        assert block_iou(mask, reference) > 0.4, scene_id


def test_block_iou():
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 1
    b = a.copy()
    assert block_iou(a, b) == 1.0
    b[:2, :2] = 0
    b[:2, 2:] = 1
    assert block_iou(a, b) == 0.0
    b = a.copy()
    b[2:, 2:] = 2  # block 1 matches, block 2 is only in b
    assert block_iou(a, b) == 0.5
    assert block_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # no block in either

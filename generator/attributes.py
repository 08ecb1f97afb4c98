"""Scene attributes of a Two4Two scene, with their valid ranges beside them.

Names and ranges follow Two4Two (see docs/dataset.md). A scene is one
:class:`SceneAttributes`; a batch of scenes is a :class:`pandas.DataFrame` with one
column per attribute (the ``params.parquet`` of a dataset split). The factors ground
truth intervenes on, and the study attributes built from them, are shared words of every
stage: :mod:`xaistudy.vocabulary`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from xaistudy.errors import UserError

LABELS = ("peaky", "stretchy")  # obj_name -> label 0 | 1; logit > 0 means stretchy

# attribute -> (low, high), inclusive. obj_name and fliplr are categorical.
RANGES: dict[str, tuple[float, float]] = {
    "spherical": (0.0, 1.0),
    "arm_position": (0.0, 1.0),
    "bending": (-math.pi / 8, math.pi / 8),
    "obj_rotation_roll": (-math.pi / 3, math.pi / 3),
    "obj_rotation_pitch": (-math.pi / 3, math.pi / 3),
    "obj_rotation_yaw": (-math.pi, math.pi),
    "position_x": (-3.0, 3.0),
    "position_y": (-3.0, 3.0),
    "obj_color": (0.0, 1.0),
    "bg_color": (0.0, 1.0),
}
CONTINUOUS = tuple(RANGES)
ATTRIBUTES = ("obj_name", *CONTINUOUS, "fliplr")

TOLERANCE = 1e-9


def intervention_split(factor: str) -> str:
    """Name of the split holding the test scenes with ``factor`` redrawn."""
    return f"test_intervene_{factor}"


@dataclasses.dataclass(frozen=True)
class SceneAttributes:
    """One scene. Defaults are Two4Two's neutral scene (arms in the middle, upright)."""

    obj_name: str = "peaky"
    spherical: float = 0.5
    arm_position: float = 0.5
    bending: float = 0.0
    obj_rotation_roll: float = 0.0
    obj_rotation_pitch: float = 0.0
    obj_rotation_yaw: float = 0.0
    fliplr: bool = False
    position_x: float = 0.0
    position_y: float = 0.0
    obj_color: float = 0.5
    bg_color: float = 0.5

    def __post_init__(self) -> None:
        validate_values(dataclasses.asdict(self))

    @property
    def label(self) -> int:
        return LABELS.index(self.obj_name)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], ignore_unknown: bool = False):
        """Build from a dict; unknown keys are an error unless ``ignore_unknown``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown and not ignore_unknown:
            raise UserError(
                f"unknown scene attribute(s) {', '.join(unknown)}; "
                f"allowed are {', '.join(ATTRIBUTES)}"
            )
        kwargs = {k: v for k, v in values.items() if k in known}
        if "fliplr" in kwargs:
            kwargs["fliplr"] = bool(kwargs["fliplr"])
        return cls(**kwargs)


def validate_values(values: Mapping[str, Any]) -> None:
    """Raise :class:`UserError` if a value is outside its attribute's range."""
    if "obj_name" in values and values["obj_name"] not in LABELS:
        raise UserError(f"obj_name must be one of {', '.join(LABELS)}, got {values['obj_name']!r}")
    for name, (low, high) in RANGES.items():
        if name not in values:
            continue
        value = float(values[name])
        if not (low - TOLERANCE <= value <= high + TOLERANCE):
            raise UserError(
                f"{name}={value:.6g} is out of range: allowed is [{low:.6g}, {high:.6g}]"
            )


def validate_frame(frame) -> None:
    """Check every column of a scene DataFrame against the ranges, naming the first bad row."""
    missing = [a for a in ATTRIBUTES if a not in frame.columns]
    if missing:
        raise UserError(f"scene table lacks attribute column(s) {', '.join(missing)}")
    bad_names = ~frame["obj_name"].isin(LABELS)
    if bad_names.any():
        row = int(np.flatnonzero(bad_names.to_numpy())[0])
        raise UserError(
            f"row {row}: obj_name {frame['obj_name'].iloc[row]!r} is not one of {', '.join(LABELS)}"
        )
    for name, (low, high) in RANGES.items():
        values = frame[name].to_numpy(dtype=float)
        bad = ~((values >= low - TOLERANCE) & (values <= high + TOLERANCE))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"row {row}: {name}={values[row]:.6g} is out of range: "
                f"allowed is [{low:.6g}, {high:.6g}]"
            )


def coolwarm(values) -> np.ndarray:
    """Map color values in [0, 1] to RGB in [0, 1] through matplotlib's ``coolwarm``.

    Returns an array of shape ``values.shape + (3,)``, float64.
    """
    from matplotlib import colormaps

    return np.asarray(colormaps["coolwarm"](np.asarray(values, dtype=float)))[..., :3]

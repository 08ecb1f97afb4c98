"""The words every stage shares: study attributes, conditions, participant statuses.

One home for each: the generator draws the factors, the explanations measure them,
the server asks about the attributes and records statuses, the analysis scores them.
Nothing here imports the project; every package may import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Factors are what the ground truth intervenes on: one scene attribute, or a group of
# scene attributes drawn together (the scene attributes are in generator/attributes.py).
FACTORS: dict[str, tuple[str, ...]] = {
    "arm_position": ("arm_position",),
    "obj_color": ("obj_color",),
    "spherical": ("spherical",),
    "bg_color": ("bg_color",),
    "bending": ("bending",),
    "obj_rotation_yaw": ("obj_rotation_yaw",),
    "obj_rotation_pitch": ("obj_rotation_pitch",),
    "obj_rotation_roll": ("obj_rotation_roll",),
    "position": ("position_x", "position_y"),
}


@dataclass(frozen=True)
class StudyAttribute:
    """What participants are asked about: a name they read and the factors behind it."""

    key: str
    name: str  # the short display name (bundle, preview, report)
    factors: tuple[str, ...]


STUDY_ATTRIBUTES: tuple[StudyAttribute, ...] = (
    StudyAttribute("arm_position", "arm position", ("arm_position",)),
    StudyAttribute("obj_color", "object color", ("obj_color",)),
    StudyAttribute("spherical", "block shape (cubes or spheres)", ("spherical",)),
    StudyAttribute("bg_color", "background color", ("bg_color",)),
    StudyAttribute("bending", "bending", ("bending",)),
    StudyAttribute(
        "rotation", "rotation", ("obj_rotation_yaw", "obj_rotation_pitch", "obj_rotation_roll")
    ),
    StudyAttribute("position", "position in the image", ("position",)),
)
STUDY_ATTRIBUTE_KEYS: tuple[str, ...] = tuple(a.key for a in STUDY_ATTRIBUTES)


def study_attribute(key: str) -> StudyAttribute:
    for attribute in STUDY_ATTRIBUTES:
        if attribute.key == key:
            return attribute
    raise KeyError(f"unknown study attribute {key!r}; known: {', '.join(STUDY_ATTRIBUTE_KEYS)}")


# The ICLR 2022 study's three explanation conditions: the default bundle and study, in the
# order participants are balanced over.
CONDITIONS: tuple[str, ...] = ("baseline", "counterfactuals", "concepts")
# Attribution-map conditions: one per method of explain.attribution (docs/methods.md).
ATTRIBUTION_METHODS: tuple[str, ...] = (
    "integrated_gradients",
    "smoothgrad",
    "grad_cam",
    "occlusion",
    "lrp",
    "contrastive_lrp",
    "iba",
)
# Every condition a bundle may hold; a bundle holds any non-empty subset.
ALL_CONDITIONS: tuple[str, ...] = CONDITIONS + ATTRIBUTION_METHODS
# The explanation-free control condition of a forward-simulation study: a study
# condition, never a bundle's (docs/designs/forward-simulation.md).
NO_EXPLANATION = "none"
# The trial designs' names (stored with each trial, ``trials.design``), and the answers of
# a verification trial: the model's decision is right or wrong.
FORWARD_SIMULATION = "forward-simulation"
VERIFICATION = "verification"
DISTINCTION = "distinction"
COUNTERFACTUAL_SIMULATION = "counterfactual-simulation"
# the designs whose participants answer trials (``trials`` rows)
TRIAL_DESIGNS = (FORWARD_SIMULATION, VERIFICATION, DISTINCTION, COUNTERFACTUAL_SIMULATION)
VERDICTS = ("right", "wrong")


class Status(enum.StrEnum):
    """Where a participant stands; stored in the database as these strings."""

    STARTED = "started"
    COMPLETED = "completed"
    SCREENED_OUT = "screened_out"
    RETURNED = "returned"


# Statuses the dashboard and the analysis derive, never stored: a started participant
# past the abandonment timeout is "abandoned"; an administrator can mark anyone "excluded".
ABANDONED = "abandoned"
EXCLUDED = "excluded"

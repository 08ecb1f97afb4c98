"""Tutorial stimuli: examples of each animal, and rows of scenes in which one attribute varies.

The attribute rows are rendered by the generator from Two4Two's neutral scene
(:class:`generator.attributes.SceneAttributes` defaults), changing only that attribute,
so the study server can teach participants what each attribute means.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from explain.manifest import Stimulus, Tutorial, TutorialExamples, TutorialRow
from generator.attributes import LABELS, SceneAttributes
from xaistudy.errors import UserError
from xaistudy.vocabulary import STUDY_ATTRIBUTES

DEG = math.pi / 180


def _steps(name: str, values, captions: tuple[str, ...]) -> list[tuple[dict, str]]:
    return [({name: v}, caption) for v, caption in zip(values, captions, strict=True)]


# What each study attribute's row shows, in words, its two ends named (no numbers: the
# participant reads "from cubes to spheres", not "shape 0.25").
MEANINGS = {
    "arm_position": "From arms close to the body (left) to arms stretched away from it (right).",
    "obj_color": "The color of the blocks, from blue (left) to red (right).",
    "spherical": "The blocks' shape, from cubes (left) to spheres (right).",
    "bg_color": "The color behind the animal, from blue (left) to red (right).",
    "bending": "From bent one way (left) through straight to bent the other way (right).",
    "rotation": "Turned within the picture, tilted forward or back, or rolled to one side.",
    "position": "Where the animal is, from the left of the picture to the right.",
}
_FIVE_COLORS = ("blue", "light blue", "gray", "light red", "red")


def attribute_variations() -> dict[str, tuple[str, list[tuple[dict, str]]]]:
    """For each study attribute: its row's caption and the scenes (attribute changes,
    caption)."""
    steps = _scene_steps()
    return {a.key: (MEANINGS[a.key], steps[a.key]) for a in STUDY_ATTRIBUTES}


def _scene_steps() -> dict[str, list[tuple[dict, str]]]:
    """Study attribute -> the scene changes that show it, each with its caption in words."""
    unit = np.linspace(0.0, 1.0, 5)
    return {
        "arm_position": _steps(
            "arm_position",
            unit,
            ("close to the body", "a little out", "halfway out", "far out", "stretched away"),
        ),
        "obj_color": _steps("obj_color", unit, _FIVE_COLORS),
        "spherical": _steps(
            "spherical", unit, ("cubes", "rounded cubes", "in between", "almost spheres", "spheres")
        ),
        "bg_color": _steps("bg_color", unit, _FIVE_COLORS),
        "bending": _steps(
            "bending",
            np.linspace(-math.pi / 8, math.pi / 8, 5),
            (
                "bent one way",
                "a little bent one way",
                "straight",
                "a little bent the other way",
                "bent the other way",
            ),
        ),
        "rotation": _steps(
            "obj_rotation_yaw",
            np.array([-90, -45, 45, 90]) * DEG,
            (
                "turned 90° one way",
                "turned 45° one way",
                "turned 45° the other way",
                "turned 90° the other way",
            ),
        )
        + _steps("obj_rotation_pitch", np.array([-45, 45]) * DEG, ("tilted back", "tilted forward"))
        + _steps(
            "obj_rotation_roll",
            np.array([-45, 45]) * DEG,
            ("rolled one way", "rolled the other way"),
        ),
        "position": _steps(
            "position_x",
            np.linspace(-1.5, 1.5, 5),
            ("far left", "left", "center", "right", "far right"),
        ),
    }


def tutorial_scenes(animal: str = "peaky") -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """All tutorial scenes as one parameter table, and (attribute key, caption) per row."""
    # Light blue blocks on the neutral gray background, so the animal stands out.
    base = SceneAttributes(obj_name=animal, obj_color=0.25)
    rows, keys = [], []
    for key, (_, steps) in attribute_variations().items():
        for change, caption in steps:
            scene = dataclasses.replace(base, **change)
            rows.append({**dataclasses.asdict(scene), "label": scene.label})
            keys.append((key, caption))
    frame = pd.DataFrame(rows)
    frame.insert(0, "id", [f"tutorial-{i:03d}" for i in range(len(frame))])
    return frame, keys


def tutorial_section(
    test_images: np.ndarray,
    test_labels: np.ndarray,
    store: Callable[[np.ndarray], str],
    render: Callable[[pd.DataFrame, int], np.ndarray],
    size: int,
    n_examples: int = 4,
    seed: int = 0,
) -> Tutorial:
    """The manifest's ``tutorial``.

    ``test_images`` N x H x W x 3 uint8 with ``test_labels`` (N,) 0/1 give the animal
    examples (drawn at random); ``render(params, size)`` renders scene rows to
    M x size x size x 3 uint8 for the attribute rows; ``store`` puts an image in the bundle.
    """
    rng = np.random.default_rng(seed)
    examples = {}
    for label, animal in enumerate(LABELS):
        members = np.flatnonzero(np.asarray(test_labels) == label)
        if len(members) == 0:
            raise UserError(f"the test split has no {animal} images for the tutorial")
        chosen = rng.choice(members, size=min(n_examples, len(members)), replace=False)
        examples[animal] = tuple(
            Stimulus(
                image=store(test_images[i]),
                caption=f"{animal.capitalize()}, example {n + 1}",
                test_index=int(i),
            )
            for n, i in enumerate(sorted(chosen))
        )
    params, keys = tutorial_scenes()
    rendered = render(params, size)
    images: dict[str, list[Stimulus]] = {}
    for (key, caption), image in zip(keys, rendered, strict=True):
        images.setdefault(key, []).append(Stimulus(image=store(image), caption=caption))
    variations = attribute_variations()
    attributes = {
        key: TutorialRow(caption=variations[key][0], images=tuple(row))
        for key, row in images.items()
    }
    return Tutorial(examples=TutorialExamples(**examples), attributes=attributes)

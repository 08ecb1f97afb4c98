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
from explain.wording import attribute_meaning, attribute_steps, example_caption
from generator.attributes import LABELS, SceneAttributes
from xaistudy.errors import UserError
from xaistudy.vocabulary import STUDY_ATTRIBUTES

DEG = math.pi / 180


def attribute_variations() -> dict[str, tuple[str, list[tuple[dict, str]]]]:
    """For each study attribute: its row's caption and the scenes (attribute changes,
    caption), in English (explain.wording holds the words)."""
    return {
        a.key: (
            attribute_meaning(a.key),
            [
                ({name: value}, caption)
                for (name, value), caption in zip(
                    _scene_changes(a.key), attribute_steps(a.key), strict=True
                )
            ],
        )
        for a in STUDY_ATTRIBUTES
    }


def _scene_changes(key: str) -> list[tuple[str, float]]:
    """The scene attribute and value of each picture of study attribute ``key``'s row,
    left to right (their words: :func:`explain.wording.attribute_steps`)."""
    unit = np.linspace(0.0, 1.0, 5)
    if key in ("arm_position", "obj_color", "spherical", "bg_color"):
        return [(key, v) for v in unit]
    if key == "bending":
        return [("bending", v) for v in np.linspace(-math.pi / 8, math.pi / 8, 5)]
    if key == "position":
        return [("position_x", v) for v in np.linspace(-1.5, 1.5, 5)]
    if key == "rotation":
        return (
            [("obj_rotation_yaw", d * DEG) for d in (-90, -45, 45, 90)]
            + [("obj_rotation_pitch", d * DEG) for d in (-45, 45)]
            + [("obj_rotation_roll", d * DEG) for d in (-45, 45)]
        )
    raise KeyError(key)


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
                caption=example_caption(animal, n + 1),
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

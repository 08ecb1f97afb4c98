"""The shared vocabulary names only what the stages know."""

from __future__ import annotations

import pytest

from explain.tutorial import attribute_variations
from generator.attributes import CONTINUOUS
from xaistudy.vocabulary import FACTORS, STUDY_ATTRIBUTE_KEYS, STUDY_ATTRIBUTES, study_attribute


def test_factors_are_made_of_scene_attributes_and_study_attributes_of_factors():
    assert {a for attributes in FACTORS.values() for a in attributes} <= set(CONTINUOUS)
    for attribute in STUDY_ATTRIBUTES:
        assert attribute.factors and set(attribute.factors) <= set(FACTORS)
    # Every factor is rated through exactly one study attribute.
    rated = [f for attribute in STUDY_ATTRIBUTES for f in attribute.factors]
    assert sorted(rated) == sorted(FACTORS)


def test_study_attributes_are_found_by_key_and_unknown_keys_name_the_known_ones():
    assert study_attribute("obj_color").name == "object color"
    with pytest.raises(KeyError, match="arm_position, obj_color"):
        study_attribute("shape")


def test_the_tutorial_shows_every_study_attribute():
    variations = attribute_variations()
    assert list(variations) == list(STUDY_ATTRIBUTE_KEYS)
    for caption, scenes in variations.values():
        assert caption.endswith(".") and len(scenes) >= 4

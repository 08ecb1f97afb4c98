"""What participants read in every condition and the tutorial is in words: no jargon, no
raw numbers, the ends of every scale named."""

import re

import numpy as np
import pytest
import torch

from explain.baseline import baseline_condition
from explain.concepts import analyze_concepts, concept_condition
from explain.counterfactuals import counterfactual_condition
from explain.manifest import Condition
from explain.tutorial import attribute_variations

CPU = torch.device("cpu")
# A number with a decimal point ("+6.36", "2.179", ".5"); whole numbers ("Picture 2") are fine.
DECIMAL = re.compile(r"\d*\.\d")
JARGON = ("logit", "test set", "test image", "program", "concept", "image")


def assert_plain(text: str) -> None:
    """One voice: no jargon, no decimals, the animals' names capitalized."""
    for word in JARGON:
        assert word not in text.lower(), (word, text)
    assert not DECIMAL.search(text), text
    assert "peaky" not in text and "stretchy" not in text, text


def participant_texts(condition: Condition) -> list[str]:
    """Every string a participant sees: title, description, labels, captions."""
    layout = condition.layout
    return [
        condition.title,
        condition.description,
        *layout.row_labels,
        *layout.column_labels,
        *(stimulus.caption for stimulus in condition.stimuli),
    ]


@pytest.fixture(scope="module")
def conditions(tiny_model, test_images, test_logits) -> dict:
    store = lambda image: "images/x.png"  # noqa: E731
    return {
        "baseline": baseline_condition(test_logits, lambda i: "images/x.png", rows=2),
        "counterfactuals": counterfactual_condition(
            tiny_model, test_images, test_logits, store, CPU, n_sources=2, candidates_per_source=2
        ),
        "concepts": concept_condition(
            analyze_concepts(tiny_model, test_images, CPU, k=3),
            test_images,
            store,
            n_highest=2,
            n_lowest=1,
            overlay_size=32,
        ),
    }


@pytest.mark.parametrize("name", ["baseline", "counterfactuals", "concepts"])
def test_no_jargon_or_raw_numbers_reach_participants(conditions, name):
    texts = participant_texts(conditions[name])
    assert len(texts) > 5
    for text in texts:
        assert_plain(text)


def test_tutorial_rows_name_the_ends_of_each_scale_in_words():
    for key, (caption, scenes) in attribute_variations().items():
        assert_plain(caption)
        captions = [words for _, words in scenes]
        for words in captions:
            assert_plain(words)
        # The row's caption names its first and last picture's words ("from cubes ... to
        # spheres"), so the scale's ends are never a number.
        if key not in ("rotation", "bending", "position"):
            assert captions[0] in caption.lower() and captions[-1] in caption.lower(), key


def test_row_labels_say_what_the_model_made_of_the_source_in_words(conditions):
    entry = conditions["counterfactuals"]
    for row, label in enumerate(entry.layout.row_labels):
        assert label.startswith(f"Picture {row + 1}.")
        assert re.search(r"(Peaky|Stretchy|unsure)$", label)
    # The numbers stay in the manifest for the researcher and the validation.
    assert all(isinstance(s.stored_logit, float) for s in entry.stimuli)


def test_concept_rows_name_direction_and_rank(conditions):
    labels = conditions["concepts"].layout.row_labels
    assert labels[0].startswith("Feature 1 (strongest): pushes strongly toward")
    assert labels[-1].startswith(f"Feature {len(labels)} (weakest): pushes")
    assert np.all([re.search(r"toward (Peaky|Stretchy)$", label) for label in labels])

"""What participants read in every condition and the tutorial is in words: no jargon, no
raw numbers, the ends of every scale named; and those words have one home
(explain.wording), stored in English by the builders and composed again by the server in
the participant's language from the bundle's structure."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from explain.baseline import baseline_condition
from explain.bundle_format import verify_bundle
from explain.concepts import analyze_concepts, concept_condition
from explain.counterfactuals import counterfactual_condition
from explain.manifest import BundleError, Condition
from explain.tutorial import attribute_variations
from explain.wording import english, localize, localize_condition
from study_server.languages import translator

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


def tutorial_texts(manifest) -> list[str]:
    tutorial = manifest.tutorial
    return [s.caption for animal in ("peaky", "stretchy") for s in tutorial.examples[animal]] + [
        text
        for row in tutorial.attributes.values()
        for text in (row.caption, *(s.caption for s in row.images))
    ]


@pytest.fixture(scope="module")
def manifest(bundle_dir):
    return verify_bundle(bundle_dir)


def test_english_gives_back_the_bundle_as_written(manifest):
    assert localize(manifest, english) == manifest


@pytest.mark.parametrize("name", ["baseline", "counterfactuals", "concepts"])
def test_the_builders_words_are_the_wording_modules(conditions, name):
    """What `xaistudy explain` stores is what an English participant is served."""
    assert localize_condition(name, conditions[name], english) == conditions[name]


def test_german_participants_read_every_bundle_text_in_german(manifest):
    german = localize(manifest, translator("de"))
    for name, condition in manifest.conditions.items():
        before, after = participant_texts(condition), participant_texts(german.conditions[name])
        assert len(before) == len(after)
        for en, de in zip(before, after, strict=True):
            assert not DECIMAL.search(de), de
            assert en == de == "" or en != de, (name, en)  # the baseline's rows are blank
        # the pictures, their places and the model's numbers stay as they are
        assert [(s.image, s.row, s.column) for s in condition.stimuli] == [
            (s.image, s.row, s.column) for s in german.conditions[name].stimuli
        ]
    for en, de in zip(tutorial_texts(manifest), tutorial_texts(german), strict=True):
        assert en != de, en
    counterfactuals = german.conditions.counterfactuals.layout
    assert counterfactuals.column_labels[0] == "Original"
    assert counterfactuals.column_labels[1] == "das Modell: eindeutig Peaky"
    assert re.fullmatch(r"Bild 1\. Das Modell zum Original: .+", counterfactuals.row_labels[0])
    concepts = german.conditions.concepts.layout.row_labels
    assert concepts[0] == "Merkmal 1 (das stärkste): schiebt stark in Richtung Stretchy"


def test_a_bundle_with_words_of_another_version_is_refused(manifest):
    row = manifest.tutorial.attributes["spherical"]
    odd = dataclasses.replace(row.images[0], caption="shape 0.25")
    changed = dataclasses.replace(
        manifest,
        tutorial=dataclasses.replace(
            manifest.tutorial,
            attributes={
                **manifest.tutorial.attributes,
                "spherical": dataclasses.replace(row, images=(odd, *row.images[1:])),
            },
        ),
    )
    with pytest.raises(BundleError, match=r"tutorial\.attributes\.spherical.*'shape 0\.25'"):
        localize(changed, english)


@pytest.mark.parametrize("signed", [True, False])
def test_every_attribution_method_is_described_in_plain_words_of_its_own(signed):
    from explain.wording import condition_text
    from xaistudy.vocabulary import ATTRIBUTION_METHODS

    descriptions = set()
    for method in ATTRIBUTION_METHODS:
        text = condition_text(method, signed=signed)
        assert_plain(text["title"])
        assert_plain(text["description"])
        assert ("red parts" in text["description"]) == signed
        descriptions.add(text["description"])
    assert len(descriptions) == len(ATTRIBUTION_METHODS)  # a sentence of its own each

"""The forward-simulation scenes: balanced over the model's correctness, spread over
difficulty, learning and test disjoint, stored in the bundle."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from explain.manifest import Manifest
from explain.stimuli import OUTCOMES, select_simulation, simulation_section, strata_edges
from xaistudy.errors import UserError


def _scenes(n: int = 400, error_rate: float = 0.2, seed: int = 1):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, n)
    decision = (logits > 0).astype(int)
    wrong = rng.random(n) < error_rate
    return logits, np.where(wrong, 1 - decision, decision)


def _outcomes(indices, logits, labels) -> Counter:
    names = {v: k for k, v in OUTCOMES.items()}
    return Counter(names[int(labels[i]), int(logits[i] > 0)] for i in indices)


def test_each_phase_is_balanced_over_the_models_outcomes_and_spans_the_strata():
    logits, labels = _scenes()
    learning, test, edges = select_simulation(logits, labels, 8, 16, strata=3, seed=0)
    assert len(learning) == 8 and len(test) == 16
    assert not set(learning) & set(test)
    assert _outcomes(learning, logits, labels) == dict.fromkeys(OUTCOMES, 2)
    assert _outcomes(test, logits, labels) == dict.fromkeys(OUTCOMES, 4)
    stratum = np.searchsorted(edges, np.abs(logits), side="right")
    for phase in (learning, test):
        assert set(stratum[phase]) == {0, 1, 2}
        for name in OUTCOMES:  # each outcome of the test phase spans the strata too
            mine = [i for i in phase if _outcomes([i], logits, labels)[name]]
            assert len(set(stratum[mine])) == min(len(mine), 3)
    # equal-count strata: a third of the scenes below the first edge
    assert np.mean(np.abs(logits) < edges[0]) == pytest.approx(1 / 3, abs=0.01)
    again = select_simulation(logits, labels, 8, 16, strata=3, seed=0)
    assert (again[0] == learning).all() and (again[1] == test).all()  # one seed, one draw


def test_a_model_without_false_positives_fills_them_from_its_false_negatives():
    logits, labels = _scenes(error_rate=0.3)
    labels = np.where(logits > 0, 1, labels)  # every stretchy decision is right
    learning, test, _ = select_simulation(logits, labels, 8, 16)
    counts = _outcomes(test, logits, labels)
    assert counts["fp"] == 0 and counts["fn"] == 8 and counts["tp"] == counts["tn"] == 4
    assert len(set(learning) | set(test)) == 24


def test_too_few_scenes_is_one_message():
    logits, labels = _scenes(n=20)
    with pytest.raises(UserError, match="asks for 8 learning \\+ 16 test scenes, but the test"):
        select_simulation(logits, labels, 8, 16)


def test_the_section_stores_each_scene_with_the_models_output_and_the_truth():
    logits, labels = _scenes()
    stored = []

    def image_path(index: int) -> str:
        stored.append(index)
        return f"images/{index:04d}.png"

    section = simulation_section(logits, labels, image_path, 4, 8)
    assert len(section.learning) == 4 and len(section.test) == 8
    for scene in (*section.learning, *section.test):
        assert scene.image == f"images/{scene.test_index:04d}.png"
        assert scene.logit == logits[scene.test_index]
        assert scene.decision == ("stretchy" if scene.logit > 0 else "peaky")
        assert scene.label == ("stretchy", "peaky")[1 - labels[scene.test_index]]
        assert scene.model_correct == (scene.decision == scene.label)
    assert list(section.strata_edges) == pytest.approx(strata_edges(logits, 3))
    assert Manifest.__dataclass_fields__["simulation"].default is None  # optional section

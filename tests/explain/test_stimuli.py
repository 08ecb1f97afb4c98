"""The simulation designs' scenes. Forward simulation: balanced over the model's
correctness, spread over difficulty, learning and test disjoint. Counterfactual
simulation: half the pairs flip the model's decision, spread over factors and difficulty,
pre-test and post-test disjoint and apart from the learning scenes. Stored in the bundle."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from explain.manifest import Manifest
from explain.stimuli import (
    OUTCOMES,
    PairCandidates,
    counterfactual_section,
    select_pairs,
    select_simulation,
    simulation_section,
    strata_edges,
)
from xaistudy.errors import UserError
from xaistudy.vocabulary import FACTORS


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


# ------------------------------------------------------- counterfactual simulation


def _candidates(n: int = 300, seed: int = 2, relevant=("arm_position", "obj_color")):
    """Every scene intervened on every factor: the relevant factors move the logit a lot."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, n)
    rows = [(f, i) for f in FACTORS for i in range(n)]
    index = np.array([i for _, i in rows])
    shift = np.array([rng.normal(0.0, 8.0 if f in relevant else 0.3) for f, _ in rows])
    candidates = PairCandidates(
        factor=np.array([f for f, _ in rows], dtype=object),
        test_index=index,
        original_logit=logits[index],
        changed_logit=logits[index] + shift,
    )
    return candidates, logits


def test_each_test_is_half_flipping_pairs_spread_over_factors_and_strata():
    candidates, logits = _candidates()
    learned = set(range(0, 300, 7))
    pre, post, edges = select_pairs(candidates, logits, 8, 8, exclude=learned, seed=0)
    scenes = candidates.test_index
    assert len(pre) == len(post) == 8
    assert not set(scenes[pre]) & set(scenes[post])  # pre and post disjoint scenes
    assert len(set(scenes[pre])) == 8 and len(set(scenes[post])) == 8
    assert not set(scenes[np.concatenate([pre, post])]) & learned  # none of the learning ones
    stratum = np.searchsorted(edges, np.abs(candidates.original_logit), side="right")
    for phase in (pre, post):
        flips = candidates.flips[phase]
        assert list(flips) == [True, False] * 4  # slot k flips when k is even
        # the flipping pairs go round the factors that can flip the model, the others
        # round every factor; both kinds span the strata
        assert len(set(candidates.factor[phase][flips])) >= 2
        assert len(set(candidates.factor[phase][~flips])) == 4
        assert set(stratum[phase]) == {0, 1, 2}
    again = select_pairs(candidates, logits, 8, 8, exclude=learned, seed=0)
    assert (again[0] == pre).all() and (again[1] == post).all()  # one seed, one draw


def test_too_few_flipping_pairs_is_one_message_saying_how_many_there_are():
    candidates, logits = _candidates(n=40, relevant=())  # nothing moves the model much
    flipping = len(set(candidates.test_index[candidates.flips]))
    with pytest.raises(UserError) as caught:
        select_pairs(candidates, logits, 8, 8)
    message = str(caught.value)
    assert "asks for 8 pre-test + 8 post-test pairs, 8 of them changes that flip" in message
    assert f"the intervention splits hold {flipping} such scenes" in message
    assert "--counterfactual-pairs PRE,POST" in message and "\n" not in message
    with pytest.raises(UserError, match="at least one pre-test and one post-test pair"):
        select_pairs(candidates, logits, 0, 8)


def test_the_pair_section_stores_both_pictures_with_the_models_outputs():
    candidates, logits = _candidates()
    labels = (logits > 0).astype(int)
    changed_rows = []

    def changed_path(row: int) -> str:
        changed_rows.append(row)
        return f"images/changed-{row:05d}.png"

    section = counterfactual_section(
        candidates, labels, logits, lambda i: f"images/{i:04d}.png", changed_path, 4, 6
    )
    assert len(section.pre) == 4 and len(section.post) == 6
    for pair, row in zip((*section.pre, *section.post), changed_rows, strict=True):
        assert pair.original_image == f"images/{pair.test_index:04d}.png"
        assert pair.changed_image == f"images/changed-{row:05d}.png"
        assert candidates.test_index[row] == pair.test_index
        assert pair.factor == candidates.factor[row]
        assert pair.original_logit == logits[pair.test_index]
        assert pair.changed_logit == candidates.changed_logit[row]
        assert pair.changed_decision == ("stretchy" if pair.changed_logit > 0 else "peaky")
        assert pair.flips == (pair.original_decision != pair.changed_decision)
    assert [p.flips for p in section.post] == [True, False] * 3
    assert Manifest.__dataclass_fields__["counterfactual_simulation"].default is None


def test_scenes_the_flipping_pairs_took_are_named_when_too_few_are_left():
    """Ten scenes, each with a flipping and a keeping change: 8 + 8 pairs need 16 scenes."""
    index = np.repeat(np.arange(10), 2)
    candidates = PairCandidates(
        factor=np.array(["arm_position", "obj_color"] * 10, dtype=object),
        test_index=index,
        original_logit=np.ones(20),
        changed_logit=np.tile([-1.0, 2.0], 10),
    )
    with pytest.raises(UserError, match="hold 10 such scenes .*, some of them among the 10 the"):
        select_pairs(candidates, np.linspace(-3.0, 3.0, 10), 8, 8)
    pre, post, _ = select_pairs(candidates, np.linspace(-3.0, 3.0, 10), 4, 4)
    assert len(set(index[pre]) | set(index[post])) == 8  # enough for 4 + 4

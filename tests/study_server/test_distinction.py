"""The distinction design: each trial shows a scene with two maps of one attribution
method, one explaining the model's decision and one the other animal, on sides drawn per
participant; the participant picks the model's. Practice trials get feedback; each row
stores the animal whose map was picked, scored against the model's decision; and a study
the bundle cannot serve (no per-class maps, maps that cannot be told apart) is refused
at start-up."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from server_helpers import (
    current_page,
    hidden_fields,
    trial_app,
    walk_trials,
)

from analysis.load import load_bundle
from simulation.client import ParticipantClient
from simulation.runs import map_explains
from simulation.transport import FlaskTransport
from study_server import study_context
from study_server.export import export_frames
from study_server.extensions import db
from study_server.models import Participant, Trial
from xaistudy.errors import UserError
from xaistudy.vocabulary import Status


def distinction_app(bundle_dir, tmp_path, conditions=("integrated_gradients",), **design):
    return trial_app(bundle_dir, tmp_path, "distinction", conditions=conditions, **design)


def _panels(html: str) -> dict[str, str]:
    """Letter -> the map picture's bundle path, as the page shows them."""
    found = re.findall(r'src="[^"]*/bundle/([^"]+)" data-panel="([AB])"', html)
    return {letter: rel for rel, letter in found}


def _walk(client, pick, stop_at="complete", pid="P1") -> dict[str, str]:
    """Answer every page, each trial with ``pick(phase, panels)`` -> letter."""

    def answer(name: str, html: str) -> dict[str, str]:
        return {"panel": pick(name.split("-")[0], _panels(html))}

    return walk_trials(client, None, stop_at, pid, answer)


def test_a_participant_practises_with_feedback_then_picks_alone(bundle_dir, tmp_path):
    app = distinction_app(bundle_dir, tmp_path)
    section = study_context(app).manifest.simulation
    decisions = {s.test_index: s.decision for s in (*section.learning, *section.test)}
    decided = _decided_maps(bundle_dir)
    picked_sides = []

    def pick(phase, panels):  # the model's map in the test, the other one while practising
        model = next(letter for letter, rel in panels.items() if rel in decided)
        picked_sides.append(model)
        return model if phase == "test" else ("B" if model == "A" else "A")

    pages = _walk(app.test_client(), pick)
    assert list(pages) == [
        "consent", "intro", "learning-intro",
        *[n for i in range(1, 9) for n in (f"learning-{i}", f"feedback-{i}")],
        "test-intro", *[f"test-{i}" for i in range(1, 17)],
        "demographics", "complete",
    ]  # fmt: skip
    # the preview shows which map is the model's; trials do not say
    assert "its decision" in unescape(pages["learning-intro"])
    for i in range(1, 17):
        html = unescape(pages[f"test-{i}"])
        assert len(_panels(pages[f"test-{i}"])) == 2 and "its decision" not in html
        assert "The model said" not in html
    # the next three trials' scenes and both their maps are fetched ahead
    ahead = re.findall(r'<link rel="prefetch" href="[^"]*/bundle/([^"]+)">', pages["learning-1"])
    assert len(ahead) == 9 and set(_panels(pages["learning-2"]).values()) <= set(ahead)
    feedback = unescape(pages["feedback-1"])
    assert "You picked the other one." in feedback and "is its explanation." in feedback
    # the model's map is on the left in exactly half of each phase's trials
    assert picked_sides[:8].count("A") == 4 and picked_sides[8:].count("A") == 8

    with app.app_context():
        participant = db.session.scalars(db.select(Participant)).one()
        rows = db.session.scalars(db.select(Trial).order_by(Trial.phase, Trial.position)).all()
        order = json.loads(participant.trial_order)
    assert participant.status == Status.COMPLETED
    assert sum(order["learning_left"]) == 4 and sum(order["test_left"]) == 8
    for row in rows:
        assert row.design == "distinction" and row.model_decision == decisions[row.scene_id]
        assert row.correct == (row.phase == "test") and row.response_ms == 750
        other = "peaky" if row.model_decision == "stretchy" else "stretchy"
        assert row.prediction == (row.model_decision if row.phase == "test" else other)

    frame = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])["trials"]
    assert set(frame["design"]) == {"distinction"} and len(frame) == 24
    assert list(frame.groupby("phase")["correct"].mean()) == [0.0, 1.0]


def _decided_maps(bundle_dir) -> set[str]:
    """The bundle paths of every trial scene's map for the model's decision."""
    from explain.bundle_format import load_manifest

    conditions = [c for _, c in load_manifest(bundle_dir).conditions.items()]
    return {m.image for c in conditions for m in getattr(c, "scene_maps", None) or ()}


def test_a_simulated_participant_picks_by_what_the_maps_explain(bundle_dir, tmp_path):
    app = distinction_app(bundle_dir, tmp_path, confidence=True)
    bundle = load_bundle(bundle_dir)
    decisions = bundle.simulation_decisions
    result = ParticipantClient(FlaskTransport(app), prolific_pid="PSIM1").run(
        lambda key, condition: (3, ""),
        predict=lambda phase, scene, condition: decisions[scene],  # always the model's
        explains=lambda scene, url: map_explains(bundle, scene, url),
    )
    assert result.status == Status.COMPLETED
    with app.app_context():
        rows = db.session.scalars(db.select(Trial)).all()
    assert len(rows) == 24 and all(r.correct for r in rows)
    assert {r.confidence for r in rows if r.phase == "test"} == {3}


def test_a_trial_without_a_pick_is_refused_and_stores_nothing(bundle_dir, tmp_path):
    app = distinction_app(bundle_dir, tmp_path)
    client = app.test_client()
    html = _walk(client, lambda phase, panels: "A", stop_at="learning-1")["learning-1"]
    for answer, message in (({}, "Please choose explanation A or B."), ({"panel": "C"}, "")):
        shown = client.post(  # no pick, or a third panel that is not there
            "/study/learning-1", data={**hidden_fields(html), **answer}, follow_redirects=True
        ).get_data(as_text=True)
        assert current_page(shown) == "learning-1" and 'class="error"' in shown
        assert message in shown
    with app.app_context():
        assert db.session.scalars(db.select(Trial)).all() == []


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (("baseline",), "condition 'baseline' has none: use attribution methods only"),
        (("smoothgrad",), "draws the same map for both classes .* smoothgrad cannot be used"),
    ],
)
def test_a_condition_without_two_distinct_maps_is_refused_at_start(
    bundle_dir, tmp_path, conditions, message
):
    with pytest.raises(UserError, match=message):
        distinction_app(bundle_dir, tmp_path, conditions)


def test_the_control_none_belongs_to_forward_simulation_only(bundle_dir, tmp_path):
    with pytest.raises(UserError, match="unknown condition 'none'"):
        distinction_app(bundle_dir, tmp_path, ("none", "integrated_gradients"))


def test_more_trials_than_the_bundle_holds_are_refused(bundle_dir, tmp_path):
    with pytest.raises(UserError, match=r"distinction.test_trials = 40, but the bundle has 16"):
        distinction_app(bundle_dir, tmp_path, test_trials=40)

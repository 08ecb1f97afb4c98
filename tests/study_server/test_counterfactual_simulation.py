"""The counterfactual-simulation design: a pre-test of pairs (a scene with the model's
decision, the same scene with one factor changed), the forward-simulation learning block,
a post-test; one stored row per answer scored against the model's decision on the
changed scene, with the factor and whether it flips in the export; and the start-up
errors of a study the bundle cannot serve."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape

import pytest
from server_helpers import forward_study, hidden_fields, make_app, trial_app, walk_trials

from explain.bundle_format import load_manifest
from study_server import study_context
from study_server.export import export_frames
from study_server.extensions import db
from study_server.models import Participant, Trial
from xaistudy.errors import UserError
from xaistudy.vocabulary import Status

OTHER = {"peaky": "stretchy", "stretchy": "peaky"}


def pair_app(bundle_dir, tmp_path, **kwargs):
    return trial_app(bundle_dir, tmp_path, "counterfactual-simulation", **kwargs)


def _answers(manifest):
    """The model's decision by phase and scene: on the changed scene of a pair."""
    pairs = manifest.counterfactual_simulation
    learning = {s.test_index: s.decision for s in manifest.simulation.learning}
    return {
        "pre": {p.test_index: p.changed_decision for p in pairs.pre},
        "learning": learning,
        "post": {p.test_index: p.changed_decision for p in pairs.post},
    }


def test_a_participant_walks_pre_test_learning_and_post_test(bundle_dir, tmp_path):
    app = pair_app(bundle_dir, tmp_path)
    manifest = study_context(app).manifest
    answers = _answers(manifest)

    def predict(phase: str, scene: int) -> str:  # wrong before learning, right after
        right = answers[phase][scene]
        return OTHER[right] if phase == "pre" else right

    client = app.test_client()
    pages = walk_trials(client, predict)
    learning = [f"learning-{i}" for i in range(1, 9)]
    feedback = [f"feedback-{i}" for i in range(1, 9)]
    assert list(pages) == [
        "consent",
        "intro",
        "pre-intro",
        *[f"pre-{i}" for i in range(1, 9)],
        "learning-intro",
        *[name for pair in zip(learning, feedback, strict=True) for name in pair],
        "post-intro",
        *[f"post-{i}" for i in range(1, 9)],
        "demographics",
        "complete",
    ]
    by_scene = {p.test_index: p for p in (*manifest.counterfactual_simulation.pre,
                                           *manifest.counterfactual_simulation.post)}  # fmt: skip
    for name in [f"{phase}-{i}" for phase in ("pre", "post") for i in range(1, 9)]:
        html = unescape(pages[name])
        pair = by_scene[int(re.search(r'xaistudy-scene" content="(\d+)"', html)[1])]
        said = pair.original_decision.capitalize()
        assert f"The model says {said} for this picture." in html
        assert pair.original_image in html and pair.changed_image in html
        assert html.count("<img") == 2 and "What does the model say now?" in html
        assert re.search(r"only the [a-z ]+ changed", html)
        for image in (pair.original_image, pair.changed_image):  # both pictures are served
            assert client.get(f"/bundle/{image}").status_code == 200
    # a test's intro fetches its first three pairs' pictures ahead, both of each
    ahead = re.findall(r'<link rel="prefetch" href="[^"]*/bundle/([^"]+)">', pages["pre-intro"])
    assert len(ahead) == 6 and all(image in ahead for image in _pictures(pages["pre-1"]))
    assert "First, a short test" in pages["pre-intro"]
    assert "Now the test again" in pages["post-intro"]

    with app.app_context():
        participant = db.session.scalars(db.select(Participant)).one()
        assert participant.status == Status.COMPLETED
        order = json.loads(participant.trial_order)
        rows = db.session.scalars(db.select(Trial).order_by(Trial.phase, Trial.position)).all()
    assert {k: sorted(v) for k, v in order.items() if k != "seed"} == {
        phase: list(range(8)) for phase in ("pre", "learning", "post")
    }
    assert [(r.phase, r.position) for r in rows] == [
        *(("learning", i) for i in range(8)),
        *(("post", i) for i in range(8)),
        *(("pre", i) for i in range(8)),
    ]
    pairs = manifest.counterfactual_simulation
    for row in rows:
        if row.phase == "learning":
            assert row.changed_factor is None and row.original_decision is None
            continue
        pair = getattr(pairs, row.phase)[order[row.phase][row.position]]
        assert (row.scene_index, row.scene_id) == (order[row.phase][row.position], pair.test_index)
        assert (row.model_decision, row.true_label) == (pair.changed_decision, pair.label)
        assert (row.changed_factor, row.original_decision) == (pair.factor, pair.original_decision)
        assert row.correct == (row.phase == "post") and row.response_ms == 750

    frame = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])["trials"]
    assert len(frame) == 24
    assert frame.groupby("phase")["correct"].mean().to_dict() == {
        "learning": 1.0, "post": 1.0, "pre": 0.0,
    }  # fmt: skip
    tests = frame[frame["phase"].isin(["pre", "post"])]
    expected = {(p.test_index, p.factor, p.flips) for p in (*pairs.pre, *pairs.post)}
    assert set(zip(tests["scene_id"], tests["changed_factor"], tests["flips"], strict=True)) == (
        expected
    )
    # half of each test's pairs flip the model's decision: "it stays" is no shortcut
    assert tests.groupby("phase")["flips"].mean().to_dict() == {"post": 0.5, "pre": 0.5}
    assert frame[frame["phase"] == "learning"]["flips"].isna().all()


def test_the_control_learns_without_explanations(bundle_dir, tmp_path):
    app = pair_app(bundle_dir, tmp_path, conditions=("none",))
    pages = walk_trials(app.test_client(), lambda phase, scene: "peaky", stop_at="post-intro")
    assert "learning-1" in pages and pages["learning-1"].count("<img") == 1
    assert '<table class="grid">' not in pages["learning-intro"]


def test_the_pair_pages_speak_german(bundle_dir, tmp_path):
    app = pair_app(bundle_dir, tmp_path)
    client = app.test_client()
    client.get("/?PROLIFIC_PID=PDE&STUDY_ID=S1&SESSION_ID=X1&lang=de")
    for name in ("consent", "intro", "pre-intro"):
        html = client.get(f"/study/{name}").get_data(as_text=True)
        data = {**hidden_fields(html), "consent": "yes"}
        client.post(f"/study/{name}", data=data)
    html = unescape(client.get("/study/pre-1").get_data(as_text=True))
    assert "Was sagt das Modell jetzt?" in html
    assert re.search(r"Im zweiten Bild hat sich nur (die|der|das) [^ ]+", html)


def _bundle_without_pairs(bundle_dir, out):
    shutil.copytree(bundle_dir, out)
    data = json.loads((out / "manifest.json").read_text())
    del data["counterfactual_simulation"]
    (out / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(out).counterfactual_simulation is None
    return out


@pytest.mark.parametrize(
    ("study", "bundle", "message"),
    [
        (
            {},
            "without",
            'design = "counterfactual-simulation" needs the bundle\'s counterfactual-simulation '
            "pairs, which this bundle lacks; rebuild it with xaistudy explain "
            "(--counterfactual-pairs PRE,POST)",
        ),
        (
            {"post_trials": 9},
            "fixture",
            "counterfactual_simulation.post_trials = 9, but the bundle has 8 such scenes",
        ),
        (
            {"learning_trials": 12},
            "fixture",
            "counterfactual_simulation.learning_trials = 12, but the bundle has 8 such scenes",
        ),
        (
            {"pre_trials": 0},
            "fixture",
            "pre_trials = 0 is outside the allowed range 1..200",
        ),
        (
            {"extra": '[attention_checks]\nid = "x"\n'},
            "fixture",
            'attention_checks belong to design = "attribute-rating"; a counterfactual-simulation '
            "study has no ratings",
        ),
        (
            {"extra": "[counterfactual_simulation.extra]\n"},
            "fixture",
            "unknown key(s) extra in counterfactual_simulation; allowed are feedback, "
            "learning_trials, post_trials, pre_trials",
        ),
    ],
)
def test_a_study_the_bundle_cannot_serve_is_one_error_at_start_up(
    bundle_dir, tmp_path, study, bundle, message
):
    if bundle == "without":
        bundle_dir = _bundle_without_pairs(bundle_dir, tmp_path / "old-bundle")
    path = forward_study(tmp_path, shipped="counterfactual-simulation", **study)
    with pytest.raises(UserError) as caught:
        make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_demo_runs_the_counterfactual_simulation_study_with_simulated_participants(
    bundle_dir, tmp_path
):
    """``xaistudy demo --study counterfactual-simulation`` from its study stage on (the
    bundle here is the fixture's): simulated participants walk it over HTTP with the demo's
    pre-test accuracy, the report holds the gain and the utility."""
    from study_server.study import study_file
    from xaistudy.cli.demo_pipeline import (
        SIMULATED_PRE_ACCURACY,
        DemoSettings,
        simulate_stage,
        study_stage,
    )

    settings = DemoSettings(
        out=tmp_path,
        conditions=("integrated_gradients", "baseline"),
        study=study_file("counterfactual-simulation"),
    )
    shutil.copytree(bundle_dir, settings.bundle_dir)
    assert study_stage(settings) == tmp_path / "study-counterfactual-simulation.toml"
    assert settings.simulated_pre_accuracy == dict.fromkeys(
        ("none", "integrated_gradients", "baseline"), SIMULATED_PRE_ACCURACY
    )
    report = simulate_stage(settings, 9, "127.0.0.1")
    assert "Utility: gain over the control" in report.read_text()
    utility = (settings.report_dir / "pairs_utility.csv").read_text()
    assert "integrated_gradients" in utility and "baseline" in utility


def _pictures(html: str) -> list[str]:
    """The bundle pictures a page shows (not the ones it fetches ahead)."""
    return re.findall(r'<img src="[^"]*/bundle/([^"]+)"', html)

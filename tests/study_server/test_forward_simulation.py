"""The forward-simulation design: learning trials (with the condition's explanation and
the model's decision as feedback), then test trials (the scene alone), one stored row
per trial scored against the model's decision, in the long export; and the start-up
errors of a study the bundle cannot serve."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import pytest
from server_helpers import (
    current_page,
    enter,
    forward_study,
    hidden_fields,
    login,
    make_app,
    middle_answers,
    trial_app,
    walk_trials,
)

from explain.bundle_format import load_manifest
from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server import study_context
from study_server.export import export_frames
from study_server.extensions import db
from study_server.models import Participant, Trial
from study_server.study import default_study_path
from xaistudy.errors import UserError
from xaistudy.vocabulary import Status


def forward_app(bundle_dir, tmp_path, **kwargs):
    return trial_app(bundle_dir, tmp_path, **kwargs)


def _decisions(app) -> dict[int, str]:
    section = study_context(app).manifest.simulation
    return {s.test_index: s.decision for s in (*section.learning, *section.test)}


def test_a_participant_learns_with_maps_and_feedback_then_predicts_alone(bundle_dir, tmp_path):
    app = forward_app(bundle_dir, tmp_path)
    decisions = _decisions(app)
    manifest = study_context(app).manifest
    maps = manifest.conditions.integrated_gradients

    def predict(phase: str, scene: int) -> str:  # right in the test, wrong while learning
        right = decisions[scene]
        return right if phase == "test" else {"peaky": "stretchy", "stretchy": "peaky"}[right]

    pages = walk_trials(app.test_client(), predict)
    learning = [f"learning-{i}" for i in range(1, 9)]
    feedback = [f"feedback-{i}" for i in range(1, 9)]
    assert list(pages) == [
        "consent",
        "intro",
        "questionnaire-predict-after-intro",
        "learning-intro",
        *[name for pair in zip(learning, feedback, strict=True) for name in pair],
        "questionnaire-predict-after-learning",
        "test-intro",
        *[f"test-{i}" for i in range(1, 17)],
        "questionnaire-post",
        "demographics",
        "complete",
    ]
    assert "How to read" not in pages["learning-intro"]  # no grid: maps come per scene
    for i in range(1, 9):
        scene = int(re.search(r'xaistudy-scene" content="(\d+)"', pages[f"learning-{i}"])[1])
        assert maps.scene_map(scene) in pages[f"learning-{i}"]  # the scene's own map
        said = decisions[scene].capitalize()
        text = unescape(pages[f"feedback-{i}"])
        assert f"The model said {said}." in text and "You predicted" in text
    for i in range(1, 17):
        html = pages[f"test-{i}"]
        assert html.count("<img") == 1 and "The model said" not in html  # the scene alone

    with app.app_context():
        participant = db.session.scalars(db.select(Participant)).one()
        assert participant.status == Status.COMPLETED
        order = json.loads(participant.trial_order)
        rows = db.session.scalars(db.select(Trial).order_by(Trial.phase, Trial.position)).all()
    assert sorted(order["learning"]) == list(range(8)) and sorted(order["test"]) == list(range(16))
    assert [(r.phase, r.position) for r in rows] == [
        *(("learning", i) for i in range(8)),
        *(("test", i) for i in range(16)),
    ]
    for row in rows:
        scene = getattr(manifest.simulation, row.phase)[order[row.phase][row.position]]
        assert (row.scene_index, row.scene_id) == (order[row.phase][row.position], scene.test_index)
        assert (row.model_decision, row.true_label) == (scene.decision, scene.label)
        assert row.correct == (row.phase == "test") and row.response_ms == 750
        assert row.confidence is None

    frame = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])["trials"]
    assert len(frame) == 24 and set(frame["condition"]) == {"integrated_gradients"}
    assert list(frame.groupby("phase")["correct"].mean()) == [0.0, 1.0]
    assert set(frame.columns) >= {
        "participant_id", "condition", "phase", "trial", "scene_id", "prediction",
        "model_decision", "true_label", "correct", "model_correct", "response_ms",
    }  # fmt: skip
    test_rows = frame[frame["phase"] == "test"]
    # the model is wrong on half of the balanced scenes: the true label is no shortcut
    assert test_rows["model_correct"].mean() == 0.5


def test_each_participant_gets_their_own_stored_trial_order(bundle_dir, tmp_path):
    app = forward_app(bundle_dir, tmp_path)
    for i in range(3):
        ParticipantClient(FlaskTransport(app), prolific_pid=f"PORD{i}").run(
            lambda key, condition: (3, ""), stop_after="test-intro"
        )
    with app.app_context():
        orders = [json.loads(p.trial_order) for p in db.session.scalars(db.select(Participant))]
    assert len({tuple(o["test"]) for o in orders}) == 3  # 16! orders: never the same twice
    for order in orders:  # the order follows from its stored seed
        import random

        rng = random.Random(order["seed"])
        assert rng.sample(range(8), 8) == order["learning"]
        assert rng.sample(range(16), 16) == order["test"]


def test_the_control_sees_no_explanation_and_a_page_condition_sees_its_page_first(
    bundle_dir, tmp_path
):
    app = forward_app(bundle_dir, tmp_path, conditions=("none", "baseline"))
    seen = {}
    for i in range(2):
        pages = walk_trials(app.test_client(), lambda p, s: "peaky", "feedback-1", pid=f"PCTL{i}")
        condition = re.search(r'xaistudy-condition" content="([^"]+)"', pages["consent"])[1]
        seen[condition] = pages
    baseline = study_context(app).manifest.conditions.baseline
    assert '<table class="grid">' in seen["baseline"]["learning-intro"]
    assert unescape(seen["baseline"]["learning-intro"]).count(baseline.title) == 1
    assert '<table class="grid">' not in seen["none"]["learning-intro"]
    for condition in ("none", "baseline"):  # the scene alone in the trials
        assert seen[condition]["learning-1"].count("<img") == 1
    # the control's explanations are nowhere: its participants are refused the page
    client = app.test_client()
    enter(client, pid="PCTL0")
    assert client.get("/explanations").status_code == 403


def test_trial_pages_run_their_own_script_for_keyboard_answers(bundle_dir, tmp_path):
    app = forward_app(bundle_dir, tmp_path)
    client = app.test_client()
    walk_trials(client, lambda phase, scene: "peaky", stop_at="learning-1")
    trial = client.get("/study/learning-1")
    html = trial.get_data(as_text=True)
    assert "script-src 'self'" in trial.headers["Content-Security-Policy"]
    assert "/static/trials.js" in html and "<script>" not in html
    assert 'data-key="F"' in html and 'data-key="J"' in html
    other = app.test_client()
    consent = enter(other, "P2")  # a page without trials runs no script at all
    assert current_page(consent.get_data(as_text=True)) == "consent"
    assert "script-src 'none'" in consent.headers["Content-Security-Policy"]
    assert client.get("/static/trials.js").status_code == 200


def test_confidence_is_asked_in_the_test_and_stored(bundle_dir, tmp_path):
    app = forward_app(bundle_dir, tmp_path, confidence=True, feedback=False, test_trials=4)
    pages = walk_trials(app.test_client(), lambda phase, scene: "stretchy")
    assert "feedback-1" not in pages and "test-5" not in pages
    assert 'name="confidence"' in pages["test-1"] and 'name="confidence"' not in pages["learning-1"]
    with app.app_context():
        confidence = {(t.phase, t.confidence) for t in db.session.scalars(db.select(Trial)).all()}
    assert confidence == {("learning", None), ("test", 4)}
    # the analysis reads the stated confidence against the accuracy (analysis.calibration)
    from analysis.forward_simulation import analyze_trials
    from analysis.load import responses_from_frames
    from xaistudy.too_fast import TooFastRule

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    result = analyze_trials(
        responses_from_frames(export_frames(url), url),
        TooFastRule(min_seconds=0.0, min_median_fraction=None),
        n_boot=200,
    )
    row = result.calibration.iloc[0]
    assert (row["trials"], row["stated"]) == (4, 0.875)  # "Sure" on the 4 test trials
    assert row["overconfidence"] == pytest.approx(0.875 - row["accuracy"])


def test_a_trial_without_a_prediction_is_refused_and_stores_nothing(bundle_dir, tmp_path):
    app = forward_app(bundle_dir, tmp_path)
    client = app.test_client()
    html = walk_trials(client, lambda phase, scene: "peaky", stop_at="learning-1")["learning-1"]
    shown = client.post(
        "/study/learning-1",
        data={**hidden_fields(html), "prediction": "cat"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert current_page(shown) == "learning-1" and "Not a valid choice" in shown
    with app.app_context():
        assert db.session.scalars(db.select(Trial)).first() is None


def test_the_pages_speak_german(bundle_dir, tmp_path):
    app = forward_app(bundle_dir, tmp_path)
    client = app.test_client()
    client.get("/?PROLIFIC_PID=PDE&STUDY_ID=S1&SESSION_ID=X1&lang=de")
    html = unescape(client.get("/study/consent").get_data(as_text=True))
    data = {**hidden_fields(html), "consent": "yes"}
    client.post("/study/consent", data=data)
    html = client.get("/study/intro").get_data(as_text=True)
    client.post("/study/intro", data=hidden_fields(html))
    html = unescape(client.get("/study/questionnaire-predict-after-intro").get_data(as_text=True))
    assert "Ich kann die Entscheidungen des Modells vorhersagen." in html
    assert "7 (Stimme voll zu)" in html
    client.post(
        "/study/questionnaire-predict-after-intro",
        data={**hidden_fields(html), **middle_answers(html)},
    )
    html = unescape(client.get("/study/learning-intro").get_data(as_text=True))
    assert "Lernen Sie, wie das Modell entscheidet" in html
    client.post("/study/learning-intro", data=hidden_fields(html))
    html = unescape(client.get("/study/learning-1").get_data(as_text=True))
    assert "Was hat das Modell für dieses Bild entschieden?" in html


def _bundle_without_simulation(bundle_dir: Path, out: Path) -> Path:
    shutil.copytree(bundle_dir, out)
    data = json.loads((out / "manifest.json").read_text())
    del data["simulation"]
    for condition in data["conditions"].values():
        condition.pop("scene_maps", None)
    (out / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(out).simulation is None
    return out


@pytest.mark.parametrize(
    ("study", "bundle", "message"),
    [
        (
            {},
            "without",
            'design = "forward-simulation" needs the bundle\'s simulation scenes, '
            "which this bundle lacks",
        ),
        (
            {"learning_trials": 9},
            "fixture",
            "forward_simulation.learning_trials = 9, but the bundle has 8 such scenes",
        ),
        (
            {"conditions": ("none", "lime")},
            "fixture",
            "unknown condition 'lime'; allowed are baseline",
        ),
        (
            {"extra": '[scale]\nstatement = "x {attribute}"\n'},
            "fixture",
            'scale belong to design = "attribute-rating"',
        ),
        (
            {"extra": 'design = "ranking"\n', "conditions": ("none",)},
            "fixture",
            "design = 'ranking' is not known; allowed are attribute-rating, "
            "forward-simulation, verification, distinction",
        ),
    ],
)
def test_a_study_the_bundle_cannot_serve_is_one_error_at_start_up(
    bundle_dir, tmp_path, study, bundle, message
):
    if bundle == "without":
        bundle_dir = _bundle_without_simulation(bundle_dir, tmp_path / "old-bundle")
    if "extra" in study and "design" in study["extra"]:
        path = forward_study(tmp_path, conditions=study["conditions"])
        path.write_text(path.read_text().replace('design = "forward-simulation"', study["extra"]))
    else:
        path = forward_study(tmp_path, **study)
    with pytest.raises(UserError) as caught:
        make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_attribution_condition_without_maps_of_the_learning_scenes_is_refused(
    bundle_dir, tmp_path
):
    out = tmp_path / "no-maps"
    shutil.copytree(bundle_dir, out)
    data = json.loads((out / "manifest.json").read_text())
    data["conditions"]["integrated_gradients"]["scene_maps"] = data["conditions"][
        "integrated_gradients"
    ]["scene_maps"][:3]
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="condition 'integrated_gradients' has no maps of the"):
        make_app(
            out,
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            XAISTUDY_STUDY=str(forward_study(tmp_path)),
        )


def test_the_control_condition_belongs_to_the_forward_simulation_design(tmp_path):
    from study_server.study import load_study

    text = default_study_path().read_text() + "\n[conditions.none]\ntarget_n = 5\n"
    # the [conditions] table is already open in the default file: add to it by name
    text = text.replace(
        "[conditions.baseline]", "[conditions.none]\ntarget_n = 5\n\n[conditions.baseline]", 1
    )
    text = text.removesuffix("\n[conditions.none]\ntarget_n = 5\n")
    path = tmp_path / "rating.toml"
    path.write_text(text)
    with pytest.raises(
        UserError, match="unknown condition 'none'.*control of the designs forward-simulation"
    ):
        load_study(path)


@pytest.mark.parametrize(("condition", "page"), [("none", "feedback-2"), ("baseline", "test-5")])
def test_a_researcher_previews_any_trial_page_of_any_condition(
    bundle_dir, tmp_path, condition, page
):
    app = forward_app(bundle_dir, tmp_path, conditions=("none", "baseline"))
    client = app.test_client()
    login(client)
    html = client.get("/admin/").get_data(as_text=True)
    form = {**hidden_fields(html), "condition": condition, "page": page}
    response = client.post("/admin/preview", data=form)
    assert response.status_code == 303
    shown = client.get(response.location, follow_redirects=True).get_data(as_text=True)
    assert current_page(shown) == page and "The picture to judge" in shown


@pytest.mark.slow
def test_the_demo_runs_a_shipped_study_by_name_with_simulated_participants(bundle_dir, tmp_path):
    """``xaistudy demo --study forward-simulation`` from its study stage on (the bundle
    here is the fixture's): the study file serves the bundle's conditions and the control,
    simulated participants walk it over HTTP, the report holds the utility."""
    from study_server.study import study_file
    from xaistudy.cli.demo_pipeline import DemoSettings, simulate_stage, study_stage

    settings = DemoSettings(
        out=tmp_path,
        conditions=("integrated_gradients", "baseline"),
        study=study_file("forward-simulation"),
    )
    shutil.copytree(bundle_dir, settings.bundle_dir)
    path = study_stage(settings)
    assert path == tmp_path / "study-forward-simulation.toml"
    assert settings.study_conditions == ("none", "integrated_gradients", "baseline")
    assert settings.simulated_accuracy == {
        "none": 0.55, "integrated_gradients": 0.65, "baseline": 0.7,
    }  # fmt: skip
    report = simulate_stage(settings, 9, "127.0.0.1")
    html = report.read_text()
    assert "Utility: test accuracy gained over the control" in html
    utility = (settings.report_dir / "simulation_utility.csv").read_text()
    assert "integrated_gradients" in utility and "baseline" in utility


@pytest.mark.parametrize(
    ("study", "message"),
    [
        ("forward-simulations", "is neither a file nor a shipped study; the shipped ones are "
         "counterfactual-simulation, default, distinction, forward-simulation, verification"),
    ],
)  # fmt: skip
def test_the_demo_refuses_an_unknown_study_before_any_work(tmp_path, study, message):
    from click.testing import CliRunner

    from xaistudy.cli import cli

    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--no-serve", "--study", study])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def _prefetched(html: str) -> list[str]:
    return re.findall(r'<link rel="prefetch" href="[^"]*/bundle/([^"]+)">', html)


def test_each_page_fetches_the_next_trials_pictures_ahead(bundle_dir, tmp_path):
    """A trial page (and a phase's intro) has the browser fetch the next three trials'
    pictures, in the participant's order, so the next scene shows at once."""
    app = forward_app(bundle_dir, tmp_path)
    pages = walk_trials(app.test_client(), lambda phase, scene: "peaky")
    maps = study_context(app).manifest.conditions.integrated_gradients
    with app.app_context():
        order = json.loads(db.session.scalars(db.select(Participant)).one().trial_order)
    section = study_context(app).manifest.simulation

    def learning(i: int) -> list[str]:  # the scene and its map, as the trial shows them
        scene = section.learning[order["learning"][i - 1]]
        return [scene.image, maps.scene_map(scene.test_index)]

    def test(i: int) -> list[str]:  # the scene alone
        return [section.test[order["test"][i - 1]].image]

    assert _prefetched(pages["learning-intro"]) == learning(1) + learning(2) + learning(3)
    assert _prefetched(pages["learning-6"]) == learning(7) + learning(8)  # the phase ends
    assert _prefetched(pages["learning-8"]) == []
    assert _prefetched(pages["test-intro"]) == test(1) + test(2) + test(3)
    assert _prefetched(pages["test-1"]) == test(2) + test(3) + test(4)
    assert _prefetched(pages["consent"]) == []

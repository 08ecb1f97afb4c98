"""The verification design: each scene shown with the model's decision (and, in both
phases, the condition's map of it), answered Right or Wrong and scored against the true
animal; feedback after each learning trial says whether the model was right and what the
animal truly is; one stored row per trial, in the long export; and the start-up errors of
a study the bundle cannot serve."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape

import pytest
from server_helpers import (
    current_page,
    forward_study,
    hidden_fields,
    login,
    make_app,
    trial_app,
    walk_trials,
)

from study_server import study_context
from study_server.export import export_frames
from study_server.extensions import db
from study_server.models import Participant, Trial
from study_server.study import load_study
from xaistudy.errors import UserError
from xaistudy.vocabulary import Status


def verification_study(folder, conditions=("integrated_gradients",), extra="", **design):
    return forward_study(folder, conditions, extra, shipped="verification", **design)


def verification_app(bundle_dir, tmp_path, **kwargs):
    return trial_app(bundle_dir, tmp_path, "verification", **kwargs)


def _model_right(app) -> dict[int, bool]:
    section = study_context(app).manifest.simulation
    return {s.test_index: s.model_correct for s in (*section.learning, *section.test)}


def test_a_participant_judges_decisions_with_maps_in_both_phases(bundle_dir, tmp_path):
    app = verification_app(bundle_dir, tmp_path)
    right = _model_right(app)
    manifest = study_context(app).manifest
    maps = manifest.conditions.integrated_gradients
    scenes = {s.test_index: s for s in (*manifest.simulation.learning, *manifest.simulation.test)}

    def verdict(phase: str, scene: int) -> str:  # judged well in the test, badly while learning
        judged = right[scene] if phase == "test" else not right[scene]
        return "right" if judged else "wrong"

    pages = walk_trials(app.test_client(), verdict)
    assert list(pages)[:5] == ["consent", "intro", "learning-intro", "learning-1", "feedback-1"]
    assert list(pages)[-3:] == ["test-16", "demographics", "complete"]
    assert "Judge the model" in unescape(pages["learning-intro"])
    for name in [f"learning-{i}" for i in range(1, 9)] + [f"test-{i}" for i in range(1, 17)]:
        scene = scenes[int(re.search(r'xaistudy-scene" content="(\d+)"', pages[name])[1])]
        text = unescape(pages[name])
        assert maps.scene_map(scene.test_index) in pages[name], name  # its own map, both phases
        assert f"The model says: <strong>{scene.decision.capitalize()}</strong>" in text
        assert 'value="right"' in text and 'data-key="F"' in text and 'data-key="J"' in text
    for i in range(1, 9):
        text = unescape(pages[f"feedback-{i}"])
        scene = scenes[
            int(re.search(r'xaistudy-scene" content="(\d+)"', pages[f"learning-{i}"])[1])
        ]
        verb = "right" if scene.model_correct else "wrong"
        assert f"The model was {verb}: this is {scene.label.capitalize()}." in text
        said = "wrong" if scene.model_correct else "right"  # the learning verdicts were wrong
        assert f"You said the model was {said}." in text

    with app.app_context():
        participant = db.session.scalars(db.select(Participant)).one()
        assert participant.status == Status.COMPLETED
        order = json.loads(participant.trial_order)
        rows = db.session.scalars(db.select(Trial).order_by(Trial.phase, Trial.position)).all()
    assert len(rows) == 24
    for row in rows:
        scene = getattr(manifest.simulation, row.phase)[order[row.phase][row.position]]
        assert (row.scene_id, row.model_decision, row.true_label) == (
            scene.test_index, scene.decision, scene.label,
        )  # fmt: skip
        assert row.prediction == verdict(row.phase, scene.test_index)
        assert row.correct == (row.phase == "test") and row.response_ms == 750

    frame = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])["trials"]
    assert set(frame["design"]) == {"verification"} and frame["prediction"].isna().all()
    assert set(frame["verdict"]) == {"right", "wrong"}
    assert ((frame["verdict"] == "right") == frame["model_correct"]).tolist() == (
        frame["correct"].tolist()
    )
    assert list(frame.groupby("phase")["correct"].mean()) == [0.0, 1.0]
    # the model is wrong on half of the balanced test scenes: accepting all scores 0.5
    assert frame[frame["phase"] == "test"]["model_correct"].mean() == 0.5


def test_the_control_sees_the_decision_alone_and_a_page_condition_its_page_first(
    bundle_dir, tmp_path
):
    app = verification_app(bundle_dir, tmp_path, conditions=("none", "baseline"))
    seen = {}
    for i in range(2):
        pages = walk_trials(app.test_client(), lambda p, s: "right", "test-1", pid=f"PV{i}")
        condition = re.search(r'xaistudy-condition" content="([^"]+)"', pages["consent"])[1]
        seen[condition] = pages
    assert '<table class="grid">' in seen["baseline"]["learning-intro"]
    assert '<table class="grid">' not in seen["none"]["learning-intro"]
    for condition in ("none", "baseline"):
        for name in ("learning-1", "test-1"):
            html = seen[condition][name]
            assert html.count("<img") == 1 and "The model says" in html  # decision, no map


def test_confidence_is_asked_in_the_test_and_a_trial_without_a_verdict_refused(
    bundle_dir, tmp_path
):
    app = verification_app(bundle_dir, tmp_path, confidence=True, feedback=False, test_trials=4)
    pages = walk_trials(app.test_client(), lambda phase, scene: "wrong")
    assert "feedback-1" not in pages and "test-5" not in pages
    assert 'name="confidence"' in pages["test-1"] and 'name="confidence"' not in pages["learning-1"]
    with app.app_context():
        stored = {
            (t.phase, t.prediction, t.confidence) for t in db.session.scalars(db.select(Trial))
        }
    assert stored == {("learning", "wrong", None), ("test", "wrong", 4)}

    client = app.test_client()
    html = walk_trials(client, lambda p, s: "right", stop_at="learning-1", pid="P2")["learning-1"]
    shown = client.post(
        "/study/learning-1",
        data={**hidden_fields(html), "prediction": "peaky"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert current_page(shown) == "learning-1" and "Not a valid choice" in shown
    shown = client.post("/study/learning-1", data=hidden_fields(html), follow_redirects=True)
    assert "Please choose Right or Wrong." in shown.get_data(as_text=True)


def test_the_pages_speak_german(bundle_dir, tmp_path):
    app = verification_app(bundle_dir, tmp_path)
    client = app.test_client()
    client.get("/?PROLIFIC_PID=PDE&STUDY_ID=S1&SESSION_ID=X1&lang=de")
    for name in ("consent", "intro"):
        html = client.get(f"/study/{name}").get_data(as_text=True)
        client.post(f"/study/{name}", data={**hidden_fields(html), "consent": "yes"})
    html = unescape(client.get("/study/learning-intro").get_data(as_text=True))
    assert "Beurteilen Sie die Entscheidungen des Modells" in html
    client.post("/study/learning-intro", data=hidden_fields(html))
    html = unescape(client.get("/study/learning-1").get_data(as_text=True))
    assert "Liegt das Modell bei diesem Bild richtig?" in html and "Falsch" in html


def _bundle_with_fewer_maps(bundle_dir, out, keep: int):
    shutil.copytree(bundle_dir, out)
    data = json.loads((out / "manifest.json").read_text())
    condition = data["conditions"]["integrated_gradients"]
    condition["scene_maps"] = condition["scene_maps"][:keep]
    (out / "manifest.json").write_text(json.dumps(data))
    return out


@pytest.mark.parametrize(
    ("study", "message"),
    [
        ({"test_trials": 17}, "verification.test_trials = 17, but the bundle has 16 such scenes"),
        (
            {"extra": "[forward_simulation]\nlearning_trials = 2\n"},
            '[forward_simulation] belongs to design = "forward-simulation"; a verification '
            "study reads [verification]",
        ),
        (
            {"extra": '[[attributes]]\nkey = "arms"\nname = "arms"\n'},
            'attributes belong to design = "attribute-rating"; a verification study has no ratings',
        ),
    ],
)
def test_a_study_the_bundle_cannot_serve_is_one_error_at_start_up(
    bundle_dir, tmp_path, study, message
):
    with pytest.raises(UserError) as caught:
        verification_app(bundle_dir, tmp_path, **study)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_bundle_without_simulation_scenes_is_refused_at_start_up(bundle_dir, tmp_path):
    out = tmp_path / "old-bundle"
    shutil.copytree(bundle_dir, out)
    data = json.loads((out / "manifest.json").read_text())
    del data["simulation"]
    for condition in data["conditions"].values():
        condition.pop("scene_maps", None)
    (out / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError) as caught:
        make_app(
            out,
            f"sqlite:///{tmp_path / 'db.sqlite'}",
            XAISTUDY_STUDY=str(verification_study(tmp_path)),
        )
    assert str(caught.value).startswith(
        'study: design = "verification" needs the bundle\'s simulation scenes, which this '
        "bundle lacks"
    )


@pytest.mark.parametrize(
    ("condition", "page", "shown"),
    [("none", "feedback-2", "The model was"), ("integrated_gradients", "test-5", "The model says")],
)
def test_a_researcher_previews_any_verification_page(bundle_dir, tmp_path, condition, page, shown):
    app = verification_app(bundle_dir, tmp_path, conditions=("none", "integrated_gradients"))
    client = app.test_client()
    login(client)
    html = client.get("/admin/").get_data(as_text=True)
    form = {**hidden_fields(html), "condition": condition, "page": page}
    response = client.post("/admin/preview", data=form)
    assert response.status_code == 303
    html = client.get(response.location, follow_redirects=True).get_data(as_text=True)
    assert current_page(html) == page and shown in html
    assert ("explanation of the picture" in html) == (condition != "none")


def test_an_attribution_condition_needs_maps_of_the_test_scenes_too(bundle_dir, tmp_path):
    # maps of the learning scenes only (8 of 24): a forward-simulation study would do
    out = _bundle_with_fewer_maps(bundle_dir, tmp_path / "learning-maps", keep=8)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    make_app(out, url, XAISTUDY_STUDY=str(forward_study(tmp_path)))
    with pytest.raises(
        UserError, match="condition 'integrated_gradients' has no maps of the trial"
    ):
        make_app(out, url, XAISTUDY_STUDY=str(verification_study(tmp_path)))


def test_the_shipped_study_has_the_control_and_both_languages():
    from study_server.study import shipped_studies

    study = load_study(shipped_studies()["verification"])
    assert study.design == "verification" and study.verification.test_trials == 16
    assert study.forward_simulation is None and study.trials is study.verification
    assert study.condition_names[0] == "none"
    german = load_study(shipped_studies()["verification"], "de")
    assert german.title.startswith("Erkennen Sie")


@pytest.mark.slow
def test_the_demo_runs_the_shipped_verification_study_with_simulated_participants(
    bundle_dir, tmp_path
):
    """``xaistudy demo --study verification`` from its study stage on (the bundle here is
    the fixture's): the control added, simulated participants with the demo's acceptance
    walk it over HTTP, the report holds reliance and the gain."""
    from study_server.study import study_file
    from xaistudy.cli.demo_pipeline import DemoSettings, simulate_stage, study_stage

    settings = DemoSettings(
        out=tmp_path,
        conditions=("integrated_gradients", "baseline"),
        study=study_file("verification"),
    )
    shutil.copytree(bundle_dir, settings.bundle_dir)
    assert study_stage(settings) == tmp_path / "study-verification.toml"
    assert settings.verification and settings.study_conditions[0] == "none"
    assert settings.simulated_acceptance == {
        "none": (0.85, 0.6), "integrated_gradients": (0.85, 0.45), "baseline": (0.85, 0.4),
    }  # fmt: skip
    html = simulate_stage(settings, 9, "127.0.0.1").read_text()
    assert "Reliance on the model" in html and "Utility: test accuracy gained" in html
    reliance = (settings.report_dir / "verification_reliance.csv").read_text()
    assert "integrated_gradients" in reliance and "none" in reliance

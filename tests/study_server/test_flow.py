"""The participant flow on SQLite and PostgreSQL: complete runs, resume, replays, checks."""

from __future__ import annotations

import pytest
from server_helpers import answer_all, count, current_page, enter, hidden_fields, walk_to

from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server import study_context
from study_server.export import export_frames
from study_server.models import Answer, CheckAnswer, PageVisit, Participant
from study_server.study import load_study

STUDY = load_study(None)


def test_three_participants_complete_one_per_condition(app, database_url):
    results = [
        ParticipantClient(FlaskTransport(app), prolific_pid=f"P{i}").run(
            answer=answer_all, demographics={"age": 30, "gender": "female"}
        )
        for i in range(3)
    ]
    assert sorted(r.condition for r in results) == ["baseline", "concepts", "counterfactuals"]
    assert {r.status for r in results} == {"completed"}
    assert {r.completion_code for r in results} == {STUDY.completed_code}

    frames = export_frames(database_url)
    participants = frames["participants"]
    assert list(participants["status"]) == ["completed"] * 3
    assert participants["attention_passed"].tolist() == [True] * 3
    assert participants["age"].tolist() == [30] * 3
    answers = frames["answers"]
    assert len(answers) == 3 * len(STUDY.attributes)
    arm = answers[answers["attribute"] == "arm_position"]
    assert arm["rating"].tolist() == [5, 5, 5]
    assert set(answers["reason"]) == {f"because of {k}" for k in STUDY.attribute_keys}
    for pid, group in answers.groupby("participant_id"):
        order = participants.set_index("participant_id").loc[pid, "attribute_order"].split("|")
        assert group.sort_values("position")["attribute"].tolist() == order
    wide = frames["answers_wide"]
    assert wide["rating_arm_position"].tolist() == [5, 5, 5]
    pages = frames["pages"]
    assert set(pages["page"]) >= {"consent", "explanations", "rating-7", "complete"}
    left = pages[pages["page"] != "complete"]
    assert left["seconds"].notna().all() and (left["seconds"] >= 0).all()


def test_completion_code_shown_only_after_completion_is_committed(app):
    client = app.test_client()
    html = walk_to(client, "demographics")
    assert STUDY.completed_code not in html
    assert count(app, Participant, Participant.status == "completed") == 0
    response = client.post("/study/demographics", data=hidden_fields(html))
    assert response.status_code == 303
    assert count(app, Participant, Participant.status == "completed") == 1
    done = client.get(response.headers["Location"]).get_data(as_text=True)
    assert STUDY.completed_code in done and "app.prolific.com" in done


def test_same_prolific_pid_resumes_same_participant_condition_and_page(app):
    first = app.test_client()
    walk_to(first, "rating-2", pid="RESUME1")
    # A new browser (no cookies) opening the entry link again.
    second = app.test_client()
    html = enter(second, "RESUME1").get_data(as_text=True)
    assert current_page(html) == "rating-2"
    assert count(app, Participant) == 1
    with app.app_context():
        from study_server.extensions import db

        participant = db.session.query(Participant).one()
        assert participant.page == "rating-2"
        condition = participant.condition
    assert f'content="{condition}"' in html


def test_reload_back_and_future_pages_redirect_to_the_current_page(app):
    client = app.test_client()
    walk_to(client, "rating-1")
    again = client.get("/study/rating-1")
    assert again.status_code == 200 and current_page(again.get_data(as_text=True)) == "rating-1"
    for other in ("consent", "comprehension", "rating-5", "complete"):
        response = client.get(f"/study/{other}")
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/study/rating-1")


def test_double_submit_and_replayed_posts_store_one_answer(app):
    client = app.test_client()
    html = walk_to(client, "rating-1")
    data = {**hidden_fields(html), "rating": "4", "reason": "first"}
    assert client.post("/study/rating-1", data=data).status_code == 303
    # The same post again (double click), and again with different content (replay).
    assert client.post("/study/rating-1", data=data).status_code == 303
    replay = {**data, "rating": "1", "reason": "changed"}
    assert client.post("/study/rating-1", data=replay).status_code == 303
    # An old post carrying the stale revision sent to the now current page.
    stale = client.post("/study/rating-2", data={**data, "reason": "stale"})
    assert stale.status_code == 303 and stale.headers["Location"].endswith("/study/rating-2")
    with app.app_context():
        from study_server.extensions import db

        answers = db.session.query(Answer).all()
        assert [(a.rating, a.reason, a.position) for a in answers] == [(4, "first", 0)]
        participant = db.session.query(Participant).one()
        assert participant.page == "rating-2" and participant.revision == 6
    assert count(app, PageVisit, PageVisit.page == "rating-1") == 1


def test_comprehension_failure_screens_out_and_one_retry_passes(app):
    screened = ParticipantClient(FlaskTransport(app), prolific_pid="FAIL1").run(
        answer=answer_all, comprehension="fail"
    )
    assert screened.status == "screened_out"
    assert screened.completion_code == STUDY.screened_out_code
    assert screened.pages[-1] == "screened-out"

    client = app.test_client()
    html = walk_to(client, "comprehension", pid="RETRY1")
    served = study_context(app).study
    condition = _condition(app, "RETRY1")
    example, method = served.comprehension_for(condition)
    wrong_example = next(o for o in example.options if o != example.correct)
    wrong = {
        **hidden_fields(html),
        f"q_{method.id}": method.correct,
        f"q_{example.id}": wrong_example,
    }
    response = client.post("/study/comprehension", data=wrong, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert current_page(html) == "comprehension" and "1 attempt left" in html
    right = {**wrong, **hidden_fields(html), f"q_{example.id}": example.correct}
    html = client.post("/study/comprehension", data=right, follow_redirects=True).get_data(
        as_text=True
    )
    assert current_page(html) == "explanations"
    with app.app_context():
        from study_server.extensions import db

        retry = db.session.query(Participant).filter_by(prolific_pid="RETRY1").one()
        assert retry.comprehension_attempts == 2 and retry.status == "started"
        failed = db.session.query(Participant).filter_by(prolific_pid="FAIL1").one()
        assert failed.status == "screened_out"
        assert failed.comprehension_attempts == STUDY.comprehension_max_attempts
    assert count(app, CheckAnswer, CheckAnswer.kind == "comprehension") == 2 * 2 + 2 * 2


def _condition(app, pid: str) -> str:
    with app.app_context():
        from study_server.extensions import db

        condition = db.session.query(Participant).filter_by(prolific_pid=pid).one().condition
        db.session.rollback()
        return condition


def test_declining_consent_ends_politely_as_returned(app, database_url):
    result = ParticipantClient(FlaskTransport(app), prolific_pid="NO1").run(
        answer=answer_all, consent=False
    )
    assert result.status == "returned" and result.pages == ["consent", "declined"]
    participants = export_frames(database_url)["participants"]
    assert participants["status"].tolist() == ["returned"]


def test_failed_attention_check_is_recorded(app, database_url):
    result = ParticipantClient(FlaskTransport(app), prolific_pid="ATT1").run(
        answer=answer_all, attention="fail"
    )
    assert result.status == "completed"
    participants = export_frames(database_url)["participants"]
    assert participants["attention_passed"].tolist() == [False]


def test_explanations_reachable_while_answering_but_not_before(app):
    client = app.test_client()
    walk_to(client, "tutorial")
    assert client.get("/explanations").status_code == 403
    walk_to(client, "rating-3")
    response = client.get("/explanations")
    assert response.status_code == 200
    assert "/study/rating-3" in response.get_data(as_text=True)


def test_images_of_another_condition_are_not_served(app, bundle_dir):
    import json

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    client = app.test_client()
    walk_to(client, "explanations")
    with app.app_context():
        from study_server.extensions import db

        mine = db.session.query(Participant).one().condition
    own = manifest["conditions"][mine]["stimuli"][0]["image"]
    other = next(c for c in manifest["conditions"] if c != mine)
    foreign = manifest["conditions"][other]["stimuli"][0]["image"]
    assert client.get(f"/bundle/{own}").status_code == 200
    assert client.get(f"/bundle/{foreign}").status_code == 404
    tutorial = manifest["tutorial"]["examples"]["peaky"][0]["image"]
    assert app.test_client().get(f"/bundle/{tutorial}").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_pages_show_the_condition_stimuli_large_and_pixelated(app, bundle_dir):
    client = app.test_client()
    html = walk_to(client, "explanations")
    assert html.count("<img") >= 10
    css = client.get("/static/style.css").get_data(as_text=True)
    assert "image-rendering: pixelated" in css and "max-width: 128px" in css


def test_client_raises_a_clear_error_when_the_server_refuses_its_answers(sqlite_app):
    from simulation.client import FlowError

    client = ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="BADCLIENT")
    with pytest.raises(FlowError, match="rating-1.* refused the answers: Not a valid choice"):
        client.run(answer=lambda key, condition: (9, "out of range"))

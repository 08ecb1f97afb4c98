"""The researcher's control room: states, the full study, the live view, the participant
table, bulk exclusion with its audit trail, previews, and what the exports add."""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
from datetime import timedelta

import pandas as pd
import pytest
from server_helpers import answer_all, current_page, enter, hidden_fields, login, make_app, walk_to
from sqlalchemy import insert, select, update

from analysis.load import Responses
from analysis.scoring import apply_exclusions
from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server.assignment import condition_counts, lock_study
from study_server.control import duration_filter
from study_server.export import export_frames
from study_server.extensions import db
from study_server.live import read_live_view
from study_server.models import AdminAction, CheckAnswer, Participant, utcnow
from study_server.sqlite import read_only_connection
from study_server.study import load_study
from xaistudy.too_fast import TooFastRule

STUDY = load_study(None)


def admin(app):
    client = app.test_client()
    assert login(client).status_code == 303
    return client


def post(client, url: str, **data):
    """Post an admin form with the session's CSRF token."""
    token = hidden_fields(client.get("/admin/").get_data(as_text=True))["csrf_token"]
    return client.post(url, data={"csrf_token": token, **data})


def set_state(client, target: str, state: str, actor: str = "RB", reason: str = ""):
    data = {"target": target, "state": state, "actor": actor, "reason": reason}
    return post(client, "/admin/state", **data)


def complete(app, pid: str, **behavior):
    return ParticipantClient(FlaskTransport(app), prolific_pid=pid).run(
        answer=answer_all, **behavior
    )


def conditions_of(app) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(select(Participant.prolific_pid, Participant.condition)).all()
        db.session.rollback()
    return dict(rows)


def live_view(app):
    with app.app_context(), read_only_connection(db.engine) as connection:
        return read_live_view(connection, STUDY, utcnow(), TooFastRule())


def study_with_targets(tmp_path, target_n: int):
    from study_server.study import default_study_path

    text = default_study_path().read_text(encoding="utf-8")
    path = tmp_path / "small.toml"
    path.write_text(re.sub(r"target_n = \d+", f"target_n = {target_n}", text), encoding="utf-8")
    return path


@pytest.fixture
def small_app(bundle_dir, tmp_path, sqlite_template):
    """One participant per condition."""
    path = tmp_path / "small.sqlite"
    shutil.copyfile(sqlite_template, path)
    return make_app(
        bundle_dir,
        f"sqlite:///{path}",
        migrate=False,
        XAISTUDY_STUDY=str(study_with_targets(tmp_path, 1)),
    )


# ------------------------------------------------------------------------- states


def test_a_paused_condition_gets_no_new_participants_until_resumed(app):
    client = admin(app)
    assert set_state(client, "baseline", "paused", reason="check its images").status_code == 303
    for i in range(6):
        assert enter(app.test_client(), f"A{i}", follow=False).status_code == 303
    assert "baseline" not in conditions_of(app).values()
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert re.search(r"baseline</th><td><span class=\"state state-paused\">paused", dashboard)

    assert set_state(client, "baseline", "open").status_code == 303
    enter(app.test_client(), "AFTER", follow=False)
    assert conditions_of(app)["AFTER"] == "baseline"  # the least filled, open again
    with app.app_context():
        trail = db.session.execute(select(AdminAction).order_by(AdminAction.id)).scalars().all()
        assert [(a.action, a.target, a.actor) for a in trail] == [
            ("pause", "condition baseline", "RB"),
            ("open", "condition baseline", "RB"),
        ]
        assert trail[0].reason == "check its images"
        db.session.rollback()


def test_a_paused_or_closed_study_turns_arrivals_away_while_participants_finish(app):
    inside = app.test_client()
    walk_to(inside, "intro", pid="INSIDE")
    client = admin(app)
    set_state(client, "study", "paused")
    paused = enter(app.test_client(), "LATE")
    assert paused.status_code == 503 and paused.headers["Retry-After"] == "300"
    assert "The study is paused" in paused.get_data(as_text=True)

    set_state(client, "study", "closed")
    closed = enter(app.test_client(), "LATER")
    assert closed.status_code == 410 and "The study has ended" in closed.get_data(as_text=True)
    # Whoever started before goes on to the end, from the link or the open page.
    assert complete(app, "INSIDE").status == "completed"
    assert set(conditions_of(app)) == {"INSIDE"}

    set_state(client, "study", "open")
    assert enter(app.test_client(), "LATER", follow=False).status_code == 303


def test_a_full_study_turns_arrivals_away_and_an_exclusion_frees_a_place(small_app):
    app = small_app
    for pid in ("F1", "F2", "F3"):
        assert complete(app, pid).status == "completed"
    full = enter(app.test_client(), "F4")
    assert full.status_code == 410 and "The study is full" in full.get_data(as_text=True)

    client = admin(app)
    with app.app_context():
        first = db.session.scalar(select(Participant.id).where(Participant.prolific_pid == "F1"))
        db.session.rollback()
    excluded = post(
        client, f"/admin/participants/{first}/exclude", excluded="1", reason="r", actor="RB"
    )
    assert excluded.status_code == 303
    assert enter(app.test_client(), "F5", follow=False).status_code == 303
    assert conditions_of(app)["F5"] == conditions_of(app)["F1"]


def test_a_paused_condition_short_of_its_target_asks_arrivals_to_come_back(small_app):
    app = small_app
    client = admin(app)
    set_state(client, "concepts", "paused")
    for pid in ("S1", "S2"):
        enter(app.test_client(), pid, follow=False)
    response = enter(app.test_client(), "S3")
    assert response.status_code == 503 and "paused" in response.get_data(as_text=True)


def test_state_changes_need_a_name_and_a_known_target(sqlite_app):
    client = admin(sqlite_app)
    for data, message in (
        ({"target": "baseline", "state": "paused", "actor": ""}, "Give your name"),
        ({"target": "saliency", "state": "paused", "actor": "RB"}, "Not a valid choice"),
        ({"target": "study", "state": "asleep", "actor": "RB"}, "Not a valid choice"),
    ):
        response = post(client, "/admin/state", **data)
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    with sqlite_app.app_context():
        assert db.session.scalar(select(AdminAction.id)) is None
        db.session.rollback()


# ---------------------------------------------------------------------- live view


def test_the_live_view_shows_who_is_on_which_page_and_refreshes_as_json(sqlite_app):
    app = sqlite_app
    walk_to(app.test_client(), "tutorial", pid="ON-TUTORIAL")
    walk_to(app.test_client(), "rating-2", pid="ON-RATING")
    client = admin(app)
    dashboard = client.get("/admin/")
    html = dashboard.get_data(as_text=True)
    assert 'http-equiv="refresh"' not in html  # refreshed by a script, never reloaded
    assert "script-src 'self'" in dashboard.headers["Content-Security-Policy"]
    assert 'href="/admin/"' in html  # the manual refresh without JavaScript

    walk_to(app.test_client(), "explanations", pid="LATE-ARRIVAL")
    live = client.get("/admin/live.json")
    assert live.mimetype == "application/json" and live.headers["Cache-Control"] == "no-store"
    sections = live.json["sections"]
    assert set(sections) == {"conditions", "live", "quality", "timing", "audit"}
    rows = re.findall(r"<tr><td><a [^>]*>([^<]+)</a></td><td>\w+</td>\s*<td[^>]*>([^<]+)</td>",
                      sections["live"])  # fmt: skip
    assert dict(rows) == {
        "LATE-ARRIVAL": "explanations",
        "ON-RATING": "rating-2",
        "ON-TUTORIAL": "tutorial",
    }
    assert "3 participant(s) active" in sections["live"]
    assert "nan" not in json.dumps(live.json)
    # Participant pages still run no script at all.
    page = app.test_client()
    enter(page, "OTHER")
    assert "script-src 'none'" in page.get("/study/consent").headers["Content-Security-Policy"]


def test_live_json_needs_the_admin_login(sqlite_app):
    response = sqlite_app.test_client().get("/admin/live.json")
    assert response.status_code == 303 and "/admin/login" in response.location


def test_checks_rates_and_speeders_follow_the_analysis_rule(app, database_url):
    for pid, behavior in (
        ("SLOW1", {}),
        ("SLOW2", {}),
        ("FAST", {"attention": "fail"}),
        ("SLOW3", {}),
        ("OUT", {"comprehension": "fail"}),
    ):
        complete(app, pid, **behavior)
    seconds = {"SLOW1": 600, "SLOW2": 700, "FAST": 60, "SLOW3": 650}
    with app.app_context():
        for pid, duration in seconds.items():
            done = db.session.scalar(
                select(Participant.completed_at).where(Participant.prolific_pid == pid)
            )
            db.session.execute(
                update(Participant)
                .where(Participant.prolific_pid == pid)
                .values(started_at=done - timedelta(seconds=duration))
            )
        db.session.commit()

    view = live_view(app)
    assert view.too_fast_s == pytest.approx(0.3 * 625, abs=0.01)
    totals = {
        name: sum(getattr(q, name) for q in view.quality)
        for name in ("attention_failed", "attention_answered", "too_fast", "completed")
    }
    assert totals == {
        "attention_failed": 1,
        "attention_answered": 4,
        "too_fast": 1,
        "completed": 4,
    }
    assert sum(q.screened_out for q in view.quality) == 1
    assert sum(q.comprehension_tried for q in view.quality) == 5

    # The analysis's exclusion, on the export, flags the same participant.
    frames = export_frames(database_url)
    _, table, threshold, _ = apply_exclusions(
        Responses(frames["answers"], frames["participants"], None, "test"), TooFastRule()
    )
    assert threshold == pytest.approx(view.too_fast_s, abs=0.01)
    client = admin(app)
    flagged = client.get("/admin/participants?rule=too_fast").get_data(as_text=True)
    assert "FAST" in flagged and "SLOW1" not in flagged and "too fast</span>" in flagged
    assert table.set_index("reason").loc["too_fast", "n_matching"] == 1


def test_median_time_per_page_matches_the_export_on_both_backends(app, database_url):
    for i in range(4):
        complete(app, f"M{i}")
    walk_to(app.test_client(), "rating-1", pid="MIDWAY")
    pages = export_frames(database_url)["pages"].dropna(subset=["seconds"])
    expected = pages.groupby(["page", "condition"])["seconds"].median()
    view = live_view(app)
    got = {
        (page, condition): seconds
        for page, by_condition in view.page_medians.items()
        for condition, seconds in by_condition.items()
    }
    assert set(got) == set(expected.index)
    for key, seconds in got.items():
        assert seconds == pytest.approx(expected[key], abs=0.002)


def test_the_page_time_medians_are_read_at_most_once_a_minute(sqlite_app, monkeypatch):
    """They read every page visit; the refreshes in between reuse them."""
    from study_server import live

    reads = []
    read = live._page_medians
    monkeypatch.setattr(live, "_page_medians", lambda *args: reads.append(1) or read(*args))
    complete(sqlite_app, "TIMED")
    client = admin(sqlite_app)
    for url in ("/admin/", "/admin/live.json", "/admin/live.json"):
        assert client.get(url).status_code == 200
    assert len(reads) == 1


# ---------------------------------------------------------------- participant table


def _add_participants(app, n: int, statuses=("completed", "started", "screened_out", "returned")):
    now = utcnow()
    with app.app_context():
        lock_study(db.session, STUDY)
        db.session.execute(
            insert(Participant),
            [
                {
                    "study": STUDY.slug,
                    "prolific_pid": f"PID{i:04d}",
                    "condition": STUDY.condition_names[i % 3],
                    "status": statuses[i % len(statuses)],
                    "attribute_order": "|".join(STUDY.attribute_keys),
                    "started_at": now - timedelta(hours=2, seconds=i),
                    "last_seen_at": now - timedelta(hours=2 if i % 8 == 1 else 0, seconds=i),
                    "completed_at": now if i % 4 == 0 else None,
                }
                for i in range(n)
            ],
        )
        db.session.commit()


def test_the_participant_table_filters_sorts_searches_and_pages(sqlite_app):
    app = sqlite_app
    _add_participants(app, 120)
    client = admin(app)

    def ids(query: str) -> list[str]:
        response = client.get(f"/admin/participants?{query}")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "nan" not in re.sub(r"<[^>]+>", " ", html).split()
        return re.findall(r"<td>(PID\d+)</td>", html)

    first = ids("")
    assert len(first) == 50 and first[0] == "PID0119"  # newest first
    assert ids("page=3") == [f"PID{i:04d}" for i in range(19, -1, -1)]
    assert ids("page=99") == ids("page=3")  # past the end: the last page
    assert ids("q=pid011") == [f"PID{i:04d}" for i in range(119, 109, -1)]
    assert ids("q=%25") == []  # LIKE wildcards are searched for, not used
    assert ids("sort=prolific_pid&order=asc")[:2] == ["PID0000", "PID0001"]
    abandoned = ids("status=abandoned")
    assert abandoned and all(int(p[3:]) % 8 == 1 for p in abandoned)
    started = ids("status=started&condition=concepts")
    assert all(int(p[3:]) % 4 == 1 and int(p[3:]) % 8 != 1 and int(p[3:]) % 3 == 2 for p in started)
    for bad in ("status=asleep", "sort=secret", "page=-1", "condition=saliency", "q=" + "x" * 65):
        response = client.get(f"/admin/participants?{bad}")
        assert response.status_code == 400 and "Sorry" in response.get_data(as_text=True)


def test_bulk_exclusion_by_rule_is_audited_and_exported(app, database_url):
    for pid, attention in (("BAD1", "fail"), ("BAD2", "fail"), ("GOOD", "pass")):
        complete(app, pid, attention=attention)
    client = admin(app)
    everyone = post(client, "/admin/participants/exclude", reason="x", actor="RB")
    assert everyone.status_code == 400 and "never" in everyone.get_data(as_text=True)
    no_reason = post(client, "/admin/participants/exclude", rule="attention_failed", actor="RB")
    assert no_reason.status_code == 400 and "reason" in no_reason.get_data(as_text=True)

    response = post(
        client,
        "/admin/participants/exclude",
        rule="attention_failed",
        reason="failed the attention check",
        actor="Rosa B.",
    )
    assert response.status_code == 303
    table = client.get(response.location).get_data(as_text=True)
    assert "Excluded 2 participant(s): failed an attention check." in table

    frames = export_frames(database_url)
    people = frames["participants"].set_index("prolific_pid")
    assert people["excluded"].to_dict() == {"BAD1": True, "BAD2": True, "GOOD": False}
    assert people.loc["BAD1", "exclusion_reason"] == "failed the attention check"
    assert pd.isna(people.loc["GOOD", "exclusion_reason"])
    (audit,) = frames["audit"].to_dict("records")
    assert (audit["action"], audit["actor"], audit["affected"]) == ("exclude", "Rosa B.", 2)
    assert audit["target"] == "rule: failed an attention check"
    assert audit["acted_at"].endswith("+00:00") and audit["remote_addr"]
    assert sorted(frames["exclusions"]["prolific_pid"]) == ["BAD1", "BAD2"]
    reconciliation = frames["reconciliation"].set_index("prolific_pid")
    assert reconciliation["prolific_action"].to_dict() == {
        "BAD1": "review",
        "BAD2": "review",
        "GOOD": "approve",
    }
    with app.app_context():
        assert sum(condition_counts(db.session, STUDY, utcnow()).values()) == 1
        db.session.rollback()

    # The same rule again changes nobody: those already excluded are left as they are.
    post(client, "/admin/participants/exclude", rule="attention_failed", reason="y", actor="RB")
    assert export_frames(database_url)["audit"]["affected"].tolist() == [2, 0]


def test_one_participant_excluded_and_included_again_keeps_a_history(sqlite_app):
    app = sqlite_app
    complete(app, "ONE")
    client = admin(app)
    for excluded, reason in (("1", "typed nonsense"), ("0", "read again: fine")):
        response = post(
            client, "/admin/participants/1/exclude", excluded=excluded, reason=reason, actor="RB"
        )
        assert response.status_code == 303
    detail = client.get("/admin/participants/1").get_data(as_text=True)
    assert "typed nonsense" in detail and "read again: fine" in detail
    assert "Exclude this participant" in detail  # included again
    exclusions = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])["exclusions"]
    assert exclusions["excluded"].tolist() == [True, False]


def test_durations_are_shown_in_words_and_never_as_nan():
    assert [duration_filter(v) for v in (None, math.nan, 4.6, 65, 3725)] == [
        "–",
        "–",
        "5 s",
        "1 min 05 s",
        "1 h 02 min",
    ]


# ------------------------------------------------------------------------ previews


@pytest.mark.parametrize(
    ("condition", "page"),
    [("counterfactuals", "rating-3"), ("concepts", "attention-a1"), ("baseline", "complete")],
)
def test_a_preview_opens_any_page_of_any_condition_and_never_counts(sqlite_app, condition, page):
    app = sqlite_app
    client = admin(app)
    response = post(client, "/admin/preview", condition=condition, page=page)
    assert response.status_code == 303
    html = client.get(response.location, follow_redirects=True).get_data(as_text=True)
    assert current_page(html) == page
    assert f"Preview of the <strong>{condition}</strong> condition, page <strong>{page}" in html
    assert 'name="page"' in html  # the banner jumps to another page
    view = live_view(app)
    assert all(row.filled == 0 and not any(row.counts.values()) for row in view.conditions)
    assert view.active_total == 0
    frames = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])
    assert frames["reconciliation"].empty and frames["participants"]["preview"].all()


def test_a_participant_link_opened_in_the_same_browser_keeps_the_researcher_logged_in(
    sqlite_app,
):
    client = admin(sqlite_app)
    post(client, "/admin/preview", condition="baseline", page="intro")
    assert current_page(enter(client, "SAMEBROWSER").get_data(as_text=True)) == "consent"
    assert client.get("/admin/").status_code == 200


# --------------------------------------------------------------- bundle validation


def _bundle_with_validation(bundle_dir, tmp_path, passed: bool):
    from explain.manifest import Validation

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    failures = () if passed else ("counterfactual row 2 misses its target logit by 3.1",)
    manifest["validation"] = Validation(
        counterfactuals=None,
        concepts=None,
        ground_truth=None,
        probe=None,
        thresholds={},
        failures=failures,
        passed=passed,
        published_despite_failures=not passed,
    ).to_json()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("passed", [False, True])
def test_the_dashboard_warns_when_the_bundle_failed_its_validation(
    bundle_dir, tmp_path, sqlite_template, passed
):
    path = tmp_path / "v.sqlite"
    shutil.copyfile(sqlite_template, path)
    bundle = _bundle_with_validation(bundle_dir, tmp_path, passed)
    app = make_app(bundle, f"sqlite:///{path}", migrate=False)
    html = admin(app).get("/admin/").get_data(as_text=True)
    assert ("The bundle failed its validation" in html) is not passed
    assert ("misses its target logit by 3.1" in html) is not passed
    assert ("published despite these failures" in html) is not passed
    assert "carries no validation record" not in html


def test_the_dashboard_notes_a_bundle_without_a_validation_record(sqlite_app):
    html = admin(sqlite_app).get("/admin/").get_data(as_text=True)
    assert "carries no validation record" in html


# ------------------------------------------------------------------------ exports


def test_exports_hold_every_check_attempt_the_current_page_and_last_seen(sqlite_app):
    app = sqlite_app
    complete(app, "OUT", comprehension="fail")
    complete(app, "INATTENTIVE", attention="fail")
    walk_to(app.test_client(), "rating-2", pid="HALF")
    frames = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])
    checks = frames["checks"]
    with app.app_context():
        stored = db.session.scalar(select(CheckAnswer.id).order_by(CheckAnswer.id.desc()))
        db.session.rollback()
    assert len(checks) == stored
    out = checks[checks["prolific_pid"] == "OUT"]
    assert sorted(out["attempt"].unique()) == list(range(1, STUDY.comprehension_max_attempts + 1))
    assert not out["correct"].all() and set(out["kind"]) == {"comprehension"}
    attention = checks[(checks["prolific_pid"] == "INATTENTIVE") & (checks["kind"] == "attention")]
    assert len(attention) == len(STUDY.attention_checks) and not attention["correct"].any()
    people = frames["participants"].set_index("prolific_pid")
    assert people.loc["HALF", "page"] == "rating-2"
    assert people.loc["OUT", "page"] == "screened-out"
    assert people["last_seen_at"].str.endswith("+00:00").all()
    codes = frames["reconciliation"].set_index("prolific_pid")
    assert codes.loc["OUT", "completion_code_shown"] == STUDY.screened_out_code
    assert codes.loc["INATTENTIVE", "completion_code_shown"] == STUDY.completed_code
    assert pd.isna(codes.loc["HALF", "completion_code_shown"])
    assert codes["prolific_action"].fillna("").to_dict() == {
        "OUT": "return",
        "INATTENTIVE": "approve",
        "HALF": "",
    }


def test_a_streamed_export_never_holds_up_a_participant(sqlite_app):
    """The download reads in its own snapshot: a participant's answer goes through while
    the export is half sent."""
    app = sqlite_app
    _add_participants(app, 2500, statuses=("returned",))  # the study is not full
    client = admin(app)
    download = client.get("/admin/export/participants.csv", buffered=False)
    chunks = iter(download.response)
    first = next(chunks)
    assert first.startswith(b"participant_id,") and first.count(b"\n") <= 1001

    done = threading.Event()

    def answer():
        walk_to(app.test_client(), "intro", pid="MEANWHILE")
        done.set()

    threading.Thread(target=answer, daemon=True).start()
    assert done.wait(timeout=20), "a participant waited for the export"
    rest = b"".join(chunks)
    download.close()
    lines = (first + rest).decode().splitlines()
    assert len(lines) == 1 + 2500  # the snapshot of when the export began


def test_the_migrations_create_exactly_the_models(sqlite_app):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with sqlite_app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, db.metadata) == []

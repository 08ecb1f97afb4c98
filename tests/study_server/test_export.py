"""The export contract (participants, answers, answers_wide, pages, explanation_visits) and
its CLI."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from click.testing import CliRunner
from server_helpers import answer_all, login, walk_to

from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server.export import EXPORTS, export_frames, frames_from_engine, write_export
from study_server.extensions import db
from study_server.models import Participant, utcnow
from xaistudy.cli import cli
from xaistudy.errors import UserError

PARTICIPANT_COLUMNS = {
    "participant_id",
    "prolific_pid",
    "study_id",
    "session_id",
    "condition",
    "status",
    "preview",
    "excluded",
    "attention_passed",
    "comprehension_attempts",
    "attribute_order",
    "started_at",
    "completed_at",
    "duration_s",
}
ANSWER_COLUMNS = [
    "participant_id",
    "prolific_pid",
    "condition",
    "attribute",
    "position",
    "rating",
    "reason",
    "answered_at",
]


@pytest.fixture
def filled(sqlite_app):
    ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="DONE").run(
        answer=answer_all, demographics={"age": 41, "ml_experience": "some"}
    )
    ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="OUT").run(
        answer=answer_all, comprehension="fail"
    )
    half = sqlite_app.test_client()
    walk_to(half, "rating-3", pid="HALF")
    half.get("/explanations")  # opened, then back to the questions
    half.get("/study/rating-3")
    half.get("/explanations")  # opened and never closed
    walk_to(sqlite_app.test_client(), "intro", pid="GONE")
    with sqlite_app.app_context():
        gone = db.session.query(Participant).filter_by(prolific_pid="GONE").one()
        gone.last_seen_at = utcnow() - timedelta(hours=5)
        db.session.commit()
    return sqlite_app.config["SQLALCHEMY_DATABASE_URI"]


def test_export_frames_follow_the_contract(sqlite_app, filled):
    database_url = filled
    frames = export_frames(database_url)
    assert set(frames) == set(EXPORTS)
    participants = frames["participants"].set_index("prolific_pid")
    assert set(frames["participants"].columns) >= PARTICIPANT_COLUMNS
    assert participants.loc["DONE", "status"] == "completed"
    assert participants.loc["OUT", "status"] == "screened_out"
    assert participants.loc["HALF", "status"] == "started"
    assert participants.loc["GONE", "status"] == "abandoned"
    assert participants.loc["DONE", "age"] == 41
    assert participants.loc["DONE", "duration_s"] > 0
    assert pd.isna(participants.loc["HALF", "attention_passed"])
    assert participants.loc["DONE", "started_at"].endswith("+00:00")
    assert participants["attribute_order"].str.count(r"\|").eq(6).all()

    answers = frames["answers"]
    assert list(answers.columns) == ANSWER_COLUMNS
    done = answers[answers["prolific_pid"] == "DONE"]
    assert len(done) == 7 and sorted(done["position"]) == list(range(7))
    assert done["rating"].between(1, 5).all()
    half = answers[answers["prolific_pid"] == "HALF"]
    assert len(half) == 2  # rating-1 and rating-2 were answered before leaving

    wide = frames["answers_wide"].set_index("prolific_pid")
    assert len(wide) == 4
    assert wide.loc["DONE", "rating_arm_position"] == 5
    assert wide.loc["DONE", "reason_bg_color"] == "because of bg_color"
    assert pd.isna(wide.loc["GONE", "rating_arm_position"])

    pages = frames["pages"]
    assert list(pages.columns) == [
        "participant_id",
        "condition",
        "page",
        "entered_at",
        "left_at",
        "seconds",
    ]
    assert len(pages[(pages["participant_id"] == 1)]) == 17

    visits = frames["explanation_visits"]
    assert list(visits.columns) == [
        "participant_id",
        "prolific_pid",
        "condition",
        "from_page",
        "opened_at",
        "closed_at",
        "seconds",
    ]
    assert visits["prolific_pid"].tolist() == ["HALF", "HALF"]
    assert visits["from_page"].tolist() == ["rating-3", "rating-3"]
    assert visits["seconds"].iloc[0] >= 0 and visits["closed_at"].iloc[0].endswith("+00:00")
    assert pd.isna(visits["closed_at"].iloc[1]) and pd.isna(visits["seconds"].iloc[1])


def test_write_export_cli_and_admin_download_agree(sqlite_app, filled, tmp_path):
    database_url = filled
    written = write_export(database_url, tmp_path / "api")
    assert sorted(written) == sorted(
        f"{name}.{kind}" for name in EXPORTS for kind in ("csv", "parquet")
    )
    assert not list((tmp_path / "api").glob(".*partial*"))
    result = CliRunner().invoke(
        cli, ["export", "--db", database_url, "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    client = sqlite_app.test_client()
    login(client)
    for name in EXPORTS:
        api = pd.read_csv(tmp_path / "api" / f"{name}.csv")
        cli_frame = pd.read_csv(tmp_path / "cli" / f"{name}.csv")
        pd.testing.assert_frame_equal(api, cli_frame)
        download = client.get(f"/admin/export/{name}.csv").get_data(as_text=True)
        written_lines = (tmp_path / "api" / f"{name}.csv").read_text().splitlines()
        assert download.splitlines()[0] == written_lines[0]
        assert len(download.splitlines()) == len(written_lines)
    answers = pd.read_csv(tmp_path / "api" / "answers.csv")
    assert len(answers) == 9


def test_export_works_on_both_backends(app, database_url):
    ParticipantClient(FlaskTransport(app), prolific_pid="BOTH").run(answer=answer_all)
    with app.app_context():
        via_engine = frames_from_engine(db.engine)
    via_url = export_frames(database_url)
    for name in via_url:
        pd.testing.assert_frame_equal(via_engine[name], via_url[name])
    assert len(via_url["answers"]) == 7


def test_export_refuses_missing_or_empty_databases(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        export_frames(f"sqlite:///{tmp_path}/missing.sqlite")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(UserError, match="no study tables"):
        export_frames(f"sqlite:///{tmp_path}/empty.sqlite")
    result = CliRunner().invoke(
        cli, ["export", "--db", f"sqlite:///{tmp_path}/missing.sqlite", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "Error: database file" in result.output

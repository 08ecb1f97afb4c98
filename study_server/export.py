"""Export of the study database as pandas DataFrames and CSV files (docs/database.md).

``export_frames(database_url)`` needs no Flask app: it opens a plain SQLAlchemy engine.
Frames: ``participants`` (one row per participant), ``answers`` (long: participant x
attribute), ``answers_wide`` (one row per participant), ``pages`` (page timings),
``explanation_visits`` (each look at the explanations while answering).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Engine

from study_server.config import engine_options, normalize_database_url
from study_server.models import (
    Answer,
    ExplanationVisit,
    PageVisit,
    Participant,
    StudyRecord,
    utcnow,
)
from xaistudy.errors import UserError
from xaistudy.files import atomic_write_text
from xaistudy.vocabulary import ABANDONED, Status

EXPORT_NAMES = ("participants", "answers", "answers_wide", "pages", "explanation_visits")
PARTICIPANT_COLUMNS = [
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
    "age",
    "gender",
    "ml_experience",
]
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
PAGE_COLUMNS = ["participant_id", "condition", "page", "entered_at", "left_at", "seconds"]
VISIT_COLUMNS = [
    "participant_id",
    "prolific_pid",
    "condition",
    "from_page",
    "opened_at",
    "closed_at",
    "seconds",
]


def _iso(value) -> str | None:
    if value is None or pd.isna(value):
        return None
    if not isinstance(value, datetime):
        value = pd.Timestamp(value).to_pydatetime()
    return value.isoformat() + "+00:00"


def _seconds(start, end) -> float | None:
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return None
    return round((pd.Timestamp(end) - pd.Timestamp(start)).total_seconds(), 3)


def _read(engine: Engine, statement) -> pd.DataFrame:
    with engine.connect() as connection:
        result = connection.execute(statement)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def frames_from_engine(
    engine: Engine, tables: tuple[str, ...] = EXPORT_NAMES, now: datetime | None = None
) -> dict[str, pd.DataFrame]:
    """Read the study database behind ``engine`` into the export frames named by ``tables``."""
    if not inspect(engine).has_table("participants"):
        raise UserError(
            f"{engine.url.render_as_string(hide_password=True)} has no study tables; "
            "run 'flask --app study_server db upgrade' or start 'xaistudy serve' once"
        )
    now = now or utcnow()
    studies = _read(
        engine,
        select(StudyRecord.slug, StudyRecord.attribute_keys, StudyRecord.abandonment_timeout_s),
    )
    timeouts = dict(zip(studies["slug"], studies["abandonment_timeout_s"], strict=True))
    attribute_keys: list[str] = []
    for keys in studies["attribute_keys"]:
        attribute_keys += [k for k in keys.split("|") if k and k not in attribute_keys]

    raw = _read(engine, select(Participant.__table__).order_by(Participant.id))
    rows = []
    for p in raw.to_dict("records"):
        status = p["status"]
        timeout = timedelta(seconds=int(timeouts.get(p["study"], 3600)))
        inactive = pd.Timestamp(p["last_seen_at"]) < pd.Timestamp(now - timeout)
        if status == Status.STARTED and inactive:
            status = ABANDONED
        attention = p["attention_passed"]
        rows.append(
            {
                "participant_id": int(p["id"]),
                "prolific_pid": p["prolific_pid"],
                "study_id": p["study_id"],
                "session_id": p["session_id"],
                "condition": p["condition"],
                "status": status,
                "preview": bool(p["preview"]),
                "excluded": bool(p["excluded"]),
                "attention_passed": None
                if attention is None or pd.isna(attention)
                else bool(attention),
                "comprehension_attempts": int(p["comprehension_attempts"]),
                "attribute_order": p["attribute_order"],
                "started_at": _iso(p["started_at"]),
                "completed_at": _iso(p["completed_at"]),
                "duration_s": _seconds(p["started_at"], p["completed_at"]),
                "age": None if p["age"] is None or pd.isna(p["age"]) else int(p["age"]),
                "gender": p["gender"],
                "ml_experience": p["ml_experience"],
            }
        )
    participants = pd.DataFrame(rows, columns=PARTICIPANT_COLUMNS)
    for column in ("age", "comprehension_attempts"):
        participants[column] = participants[column].astype("Int64")
    participants["preview"] = participants["preview"].astype(bool)
    participants["excluded"] = participants["excluded"].astype(bool)
    frames: dict[str, pd.DataFrame] = {"participants": participants}
    by_id = participants.set_index("participant_id")

    if {"answers", "answers_wide"} & set(tables):
        answers = _read(
            engine,
            select(
                Answer.participant_id,
                Answer.attribute,
                Answer.position,
                Answer.rating,
                Answer.reason,
                Answer.answered_at,
            ).order_by(Answer.participant_id, Answer.position),
        )
        answers["prolific_pid"] = answers["participant_id"].map(by_id["prolific_pid"])
        answers["condition"] = answers["participant_id"].map(by_id["condition"])
        answers["answered_at"] = [_iso(v) for v in answers["answered_at"]]
        answers = answers[ANSWER_COLUMNS].reset_index(drop=True)
        frames["answers"] = answers
        for key in answers["attribute"].unique():
            if key not in attribute_keys:
                attribute_keys.append(key)
        wide = participants.copy()
        for key in attribute_keys:
            mine = answers[answers["attribute"] == key].set_index("participant_id")
            wide[f"rating_{key}"] = wide["participant_id"].map(mine["rating"]).astype("Int64")
            wide[f"reason_{key}"] = wide["participant_id"].map(mine["reason"])
        frames["answers_wide"] = wide

    if "pages" in tables:
        pages = _read(
            engine,
            select(
                PageVisit.participant_id, PageVisit.page, PageVisit.entered_at, PageVisit.left_at
            ).order_by(PageVisit.participant_id, PageVisit.entered_at, PageVisit.id),
        )
        pages["condition"] = pages["participant_id"].map(by_id["condition"])
        pages["seconds"] = [
            _seconds(a, b) for a, b in zip(pages["entered_at"], pages["left_at"], strict=True)
        ]
        pages["entered_at"] = [_iso(v) for v in pages["entered_at"]]
        pages["left_at"] = [_iso(v) for v in pages["left_at"]]
        frames["pages"] = pages[PAGE_COLUMNS].reset_index(drop=True)

    if "explanation_visits" in tables:
        frames["explanation_visits"] = _explanation_visits(engine, by_id)
    return {name: frames[name] for name in tables}


def _explanation_visits(engine: Engine, by_id: pd.DataFrame) -> pd.DataFrame:
    """One row per look at the explanations: from which page, opened and closed (back at
    the study's pages; empty when the participant never came back), in seconds."""
    visits = _read(
        engine,
        select(
            ExplanationVisit.participant_id,
            ExplanationVisit.from_page,
            ExplanationVisit.opened_at,
            ExplanationVisit.closed_at,
        ).order_by(
            ExplanationVisit.participant_id, ExplanationVisit.opened_at, ExplanationVisit.id
        ),
    )
    visits["prolific_pid"] = visits["participant_id"].map(by_id["prolific_pid"])
    visits["condition"] = visits["participant_id"].map(by_id["condition"])
    visits["seconds"] = [
        _seconds(a, b) for a, b in zip(visits["opened_at"], visits["closed_at"], strict=True)
    ]
    visits["opened_at"] = [_iso(v) for v in visits["opened_at"]]
    visits["closed_at"] = [_iso(v) for v in visits["closed_at"]]
    return visits[VISIT_COLUMNS].reset_index(drop=True)


def _engine(database_url: str) -> Engine:
    url = normalize_database_url(database_url)
    options = engine_options(url)
    if not url.startswith("sqlite"):
        options = {"pool_pre_ping": True}
    try:
        return create_engine(url, **options)
    except Exception as exc:  # a malformed URL or an unknown driver
        raise UserError(f"cannot open database {database_url!r}: {exc}") from exc


def export_frames(database_url: str) -> dict[str, pd.DataFrame]:
    """All export frames of the database at ``database_url`` (no Flask app needed)."""
    url = normalize_database_url(database_url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(f"database file {path} does not exist")
    engine = _engine(database_url)
    try:
        return frames_from_engine(engine)
    finally:
        engine.dispose()


def frame_to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def write_export(database_url: str, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.csv`` for every export frame into ``out_dir``, each file atomically."""
    frames = export_frames(database_url)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in frames.items():
        written[name] = atomic_write_text(out / f"{name}.csv", frame_to_csv(frame))
    return written

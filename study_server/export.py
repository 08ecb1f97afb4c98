"""Export of the study database as CSV and Parquet files and pandas DataFrames
(docs/database.md).

Every export is a query and the rows it yields, read in batches through a
:func:`~study_server.sqlite.read_only_connection`: the admin's download streams them as
CSV while they are read (a study of any size, and participants never wait for it);
``xaistudy export`` writes the same CSV files and, with the raw values, Parquet files;
``export_frames(database_url)`` (no Flask app needed) and ``frames_from_engine`` turn the
same rows into DataFrames. In CSV, a text cell that a spreadsheet would run as a formula
is neutralized (:func:`neutralize_formula`); the DataFrames and Parquet keep it raw.

The exports: ``participants`` (one row per participant), ``answers`` (long: participant
x attribute), ``answers_wide`` (one row per participant), ``trials`` (long: one row per
trial of a trial design), ``questionnaire`` (long: one row per questionnaire item
answered at a point of the walk), ``pages`` (page timings),
``checks`` (every comprehension attempt and attention check answer),
``explanation_visits`` (each look at the explanations while answering), ``reconciliation``
(what to do with each submission on Prolific), ``exclusions`` and ``audit`` (the
researchers' changes).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Connection, Engine

from study_server.audit import EXCLUSION_REASON
from study_server.config import engine_options, normalize_database_url
from study_server.models import (
    AdminAction,
    Answer,
    CheckAnswer,
    Exclusion,
    ExplanationVisit,
    PageVisit,
    Participant,
    QuestionnaireAnswer,
    StudyRecord,
    Trial,
    utcnow,
)
from study_server.sqlite import configure_sqlite, read_only_connection
from xaistudy.errors import UserError
from xaistudy.files import atomic_path
from xaistudy.vocabulary import (
    ABANDONED,
    VERIFICATION,
    Status,
)

BATCH = 1000  # rows read, and CSV lines sent, at a time


@dataclasses.dataclass(frozen=True)
class Context:
    """What every export's rows need besides their own table."""

    now: datetime  # abandoned = started and last seen before now - the study's timeout
    timeouts: dict[str, timedelta]  # study slug -> abandonment timeout
    codes: dict[str, dict[str, str]]  # study slug -> status -> completion code shown
    attribute_keys: list[str]  # every study's attribute keys, in their order

    @classmethod
    def read(cls, connection: Connection, now: datetime | None) -> Context:
        studies = connection.execute(select(StudyRecord.__table__)).all()
        keys: list[str] = []
        for study in studies:
            keys += [k for k in study.attribute_keys.split("|") if k and k not in keys]
        return cls(
            now=now or utcnow(),
            timeouts={s.slug: timedelta(seconds=s.abandonment_timeout_s) for s in studies},
            codes={
                s.slug: {
                    Status.COMPLETED: s.completed_code,
                    Status.SCREENED_OUT: s.screened_out_code,
                }
                for s in studies
            },
            attribute_keys=keys,
        )

    def status(self, row) -> str:
        """The participant's status, with "abandoned" derived from their last visit."""
        timeout = self.timeouts.get(row.study, timedelta(hours=1))
        if row.status == Status.STARTED and row.last_seen_at < self.now - timeout:
            return ABANDONED
        return row.status


Rows = Callable[[Connection, Context], Iterator[tuple]]


@dataclasses.dataclass(frozen=True)
class Export:
    name: str
    columns: tuple[str, ...]  # answers_wide adds rating_<key>, reason_<key> per attribute
    rows: Rows

    def header(self, context: Context) -> tuple[str, ...]:
        if self.name != "answers_wide":
            return self.columns
        per_key = [(f"rating_{k}", f"reason_{k}") for k in context.attribute_keys]
        return (*self.columns, *(name for pair in per_key for name in pair))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "+00:00"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _batches(connection: Connection, statement) -> Iterator:
    """The rows of ``statement``, fetched ``BATCH`` at a time (a server-side cursor on
    PostgreSQL)."""
    options = {"stream_results": True, "yield_per": BATCH}
    yield from connection.execute(statement, execution_options=options)


_PARTICIPANTS = select(Participant.__table__, EXCLUSION_REASON).order_by(Participant.id)

PARTICIPANT_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "study_id",
    "session_id",
    "condition",
    "status",
    "preview",
    "excluded",
    "exclusion_reason",
    "attention_passed",
    "comprehension_attempts",
    "attribute_order",
    "trial_order",
    "page",
    "started_at",
    "last_seen_at",
    "completed_at",
    "duration_s",
    "completion_code",
    "age",
    "gender",
    "ml_experience",
    # a within-subjects participant's cell and the conditions of their blocks in order
    # (docs/designs/within-subjects.md); empty between subjects
    "within_group",
    "within_order",
    "condition_order",
)


def _participant_values(p, context: Context) -> tuple:
    return (
        p.id,
        p.prolific_pid,
        p.study_id,
        p.session_id,
        p.condition,
        context.status(p),
        bool(p.preview),
        bool(p.excluded),
        p.exclusion_reason if p.excluded else None,
        p.attention_passed,
        p.comprehension_attempts,
        p.attribute_order,
        p.trial_order,
        p.page,
        _iso(p.started_at),
        _iso(p.last_seen_at),
        _iso(p.completed_at),
        _seconds(p.started_at, p.completed_at),
        p.completion_code,
        p.age,
        p.gender,
        p.ml_experience,
        p.within_group,
        p.within_order,
        p.condition_order,
    )


def _participants(connection: Connection, context: Context) -> Iterator[tuple]:
    for p in _batches(connection, _PARTICIPANTS):
        yield _participant_values(p, context)


ANSWER_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "condition",
    "attribute",
    "position",
    "rating",
    "reason",
    "answered_at",
)


def _answers(connection: Connection, context: Context) -> Iterator[tuple]:
    statement = (
        select(Answer.__table__, Participant.prolific_pid, Participant.condition)
        .join(Participant, Participant.id == Answer.participant_id)
        .order_by(Answer.participant_id, Answer.position)
    )
    for a in _batches(connection, statement):
        yield (
            a.participant_id,
            a.prolific_pid,
            a.condition,
            a.attribute,
            a.position,
            a.rating,
            a.reason,
            _iso(a.answered_at),
        )


def _answers_wide(connection: Connection, context: Context) -> Iterator[tuple]:
    """Participants merged with their answers: both read in participant order."""
    answers = _batches(
        connection,
        select(Answer.participant_id, Answer.attribute, Answer.rating, Answer.reason).order_by(
            Answer.participant_id, Answer.position
        ),
    )
    pending = next(answers, None)
    for p in _batches(connection, _PARTICIPANTS):
        mine = {}
        while pending is not None and pending.participant_id <= p.id:
            if pending.participant_id == p.id:
                mine[pending.attribute] = (pending.rating, pending.reason)
            pending = next(answers, None)
        wide = [value for key in context.attribute_keys for value in mine.get(key, (None, None))]
        yield (*_participant_values(p, context), *wide)


TRIAL_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "condition",
    "design",
    "phase",
    "trial",
    "scene_id",
    "scene_index",
    "prediction",
    "verdict",
    "model_decision",
    "true_label",
    "correct",
    "model_correct",
    "changed_factor",
    "original_decision",
    "flips",
    "confidence",
    "response_ms",
    "answered_at",
    "period",
    "within_group",
    "within_order",
)


def _trials(connection: Connection, context: Context) -> Iterator[tuple]:
    """One row per trial of a trial design: ``design`` the study's, ``trial`` its 1-based
    place in the order the participant saw; ``prediction`` (forward and counterfactual
    simulation: the animal predicted; distinction: the animal whose map was picked),
    ``correct`` it equal to the model's decision; ``verdict`` (verification) right or
    wrong, ``correct`` it matching ``model_correct``, the model's decision equal to the true
    animal; a pair trial's ``changed_factor``, the model's decision on the unchanged scene
    and whether the change ``flips`` it (empty in other trials). ``condition`` is the one
    the trial was answered in and ``period`` the position of its block: the participant's
    condition and 1 between subjects, their block's in a within-subjects study, whose
    participant's cell is ``within_group`` and ``within_order`` (empty between subjects)."""
    statement = (
        select(
            Trial.__table__,
            Participant.prolific_pid,
            Participant.within_group,
            Participant.within_order,
        )
        .join(Participant, Participant.id == Trial.participant_id)
        .order_by(Trial.participant_id, Trial.period, Trial.phase, Trial.position)
    )
    for t in _batches(connection, statement):
        verdict = t.design == VERIFICATION
        yield (
            t.participant_id,
            t.prolific_pid,
            t.condition,
            t.design,
            t.phase,
            t.position + 1,
            t.scene_id,
            t.scene_index,
            None if verdict else t.prediction,
            t.prediction if verdict else None,
            t.model_decision,
            t.true_label,
            bool(t.correct),
            t.model_decision == t.true_label,
            t.changed_factor,
            t.original_decision,
            None if t.original_decision is None else t.original_decision != t.model_decision,
            t.confidence,
            t.response_ms,
            _iso(t.answered_at),
            t.period,
            t.within_group,
            t.within_order,
        )


QUESTIONNAIRE_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "condition",
    "questionnaire",
    "point",
    "item",
    "value",
    "text",
    "answered_at",
)


def _questionnaire(connection: Connection, context: Context) -> Iterator[tuple]:
    """One row per questionnaire item answered: ``value`` a Likert item's point, ``text``
    a free-text item's answer, at the walk's ``point`` (a pre/post block has one per
    point)."""
    answers = QuestionnaireAnswer.__table__
    statement = (
        select(answers, Participant.prolific_pid, Participant.condition)
        .join(Participant, Participant.id == answers.c.participant_id)
        .order_by(answers.c.participant_id, answers.c.answered_at, answers.c.id)
    )
    for a in _batches(connection, statement):
        yield (
            a.participant_id,
            a.prolific_pid,
            a.condition,
            a.questionnaire,
            a.point,
            a.item,
            a.value,
            a.text,
            _iso(a.answered_at),
        )


PAGE_COLUMNS = ("participant_id", "condition", "page", "entered_at", "left_at", "seconds")


def _pages(connection: Connection, context: Context) -> Iterator[tuple]:
    statement = (
        select(PageVisit.__table__, Participant.condition)
        .join(Participant, Participant.id == PageVisit.participant_id)
        .order_by(PageVisit.participant_id, PageVisit.entered_at, PageVisit.id)
    )
    for v in _batches(connection, statement):
        yield (
            v.participant_id,
            v.condition,
            v.page,
            _iso(v.entered_at),
            _iso(v.left_at),
            _seconds(v.entered_at, v.left_at),
        )


CHECK_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "condition",
    "kind",
    "question",
    "attempt",
    "answer",
    "correct",
    "answered_at",
)


def _checks(connection: Connection, context: Context) -> Iterator[tuple]:
    statement = (
        select(CheckAnswer.__table__, Participant.prolific_pid, Participant.condition)
        .join(Participant, Participant.id == CheckAnswer.participant_id)
        .order_by(CheckAnswer.participant_id, CheckAnswer.answered_at, CheckAnswer.id)
    )
    for c in _batches(connection, statement):
        yield (
            c.participant_id,
            c.prolific_pid,
            c.condition,
            c.kind,
            c.question,
            c.attempt,
            c.answer,
            bool(c.correct),
            _iso(c.answered_at),
        )


VISIT_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "condition",
    "from_page",
    "opened_at",
    "closed_at",
    "seconds",
)


def _explanation_visits(connection: Connection, context: Context) -> Iterator[tuple]:
    """One row per look at the explanations: from which page, opened and closed (back at
    the study's pages; empty when the participant never came back), in seconds."""
    statement = (
        select(ExplanationVisit.__table__, Participant.prolific_pid, Participant.condition)
        .join(Participant, Participant.id == ExplanationVisit.participant_id)
        .order_by(ExplanationVisit.participant_id, ExplanationVisit.opened_at, ExplanationVisit.id)
    )
    for v in _batches(connection, statement):
        yield (
            v.participant_id,
            v.prolific_pid,
            v.condition,
            v.from_page,
            _iso(v.opened_at),
            _iso(v.closed_at),
            _seconds(v.opened_at, v.closed_at),
        )


RECONCILIATION_COLUMNS = (
    "prolific_pid",
    "study_id",
    "session_id",
    "status",
    "completion_code_shown",
    "excluded",
    "exclusion_reason",
    "prolific_action",
    "completed_at",
)


def prolific_action(status: str, excluded: bool) -> str:
    """What the researcher likely does with the submission on Prolific: approve a
    completion, review an excluded one (approve or reject by Prolific's rules), return
    a screened-out or declined one; nothing for one still running or abandoned."""
    if status == Status.COMPLETED:
        return "review" if excluded else "approve"
    if status in (Status.SCREENED_OUT, Status.RETURNED):
        return "return"
    return ""


def _reconciliation(connection: Connection, context: Context) -> Iterator[tuple]:
    for p in _batches(connection, _PARTICIPANTS.where(Participant.preview.is_(False))):
        status = context.status(p)
        yield (
            p.prolific_pid,
            p.study_id,
            p.session_id,
            status,
            p.completion_code or context.codes.get(p.study, {}).get(status),
            bool(p.excluded),
            p.exclusion_reason if p.excluded else None,
            prolific_action(status, bool(p.excluded)),
            _iso(p.completed_at),
        )


EXCLUSION_COLUMNS = (
    "participant_id",
    "prolific_pid",
    "excluded",
    "rule",
    "reason",
    "actor",
    "acted_at",
    "action_id",
)


def _exclusions(connection: Connection, context: Context) -> Iterator[tuple]:
    statement = (
        select(
            Exclusion.participant_id,
            Participant.prolific_pid,
            Exclusion.excluded,
            AdminAction.target,
            AdminAction.reason,
            AdminAction.actor,
            AdminAction.acted_at,
            AdminAction.id,
        )
        .join(AdminAction, AdminAction.id == Exclusion.action_id)
        .join(Participant, Participant.id == Exclusion.participant_id)
        .order_by(Exclusion.id)
    )
    for e in _batches(connection, statement):
        yield (
            e.participant_id,
            e.prolific_pid,
            bool(e.excluded),
            e.target,
            e.reason,
            e.actor,
            _iso(e.acted_at),
            e.id,
        )


AUDIT_COLUMNS = (
    "action_id",
    "acted_at",
    "actor",
    "remote_addr",
    "action",
    "target",
    "reason",
    "affected",
)


def _audit(connection: Connection, context: Context) -> Iterator[tuple]:
    for a in _batches(connection, select(AdminAction.__table__).order_by(AdminAction.id)):
        yield (
            a.id,
            _iso(a.acted_at),
            a.actor,
            a.remote_addr,
            a.action,
            a.target,
            a.reason,
            a.affected,
        )


EXPORTS: dict[str, Export] = {
    export.name: export
    for export in (
        Export("participants", PARTICIPANT_COLUMNS, _participants),
        Export("answers", ANSWER_COLUMNS, _answers),
        Export("answers_wide", PARTICIPANT_COLUMNS, _answers_wide),
        Export("trials", TRIAL_COLUMNS, _trials),
        Export("questionnaire", QUESTIONNAIRE_COLUMNS, _questionnaire),
        Export("pages", PAGE_COLUMNS, _pages),
        Export("checks", CHECK_COLUMNS, _checks),
        Export("explanation_visits", VISIT_COLUMNS, _explanation_visits),
        Export("reconciliation", RECONCILIATION_COLUMNS, _reconciliation),
        Export("exclusions", EXCLUSION_COLUMNS, _exclusions),
        Export("audit", AUDIT_COLUMNS, _audit),
    )
}
EXPORT_NAMES = tuple(EXPORTS)


def _check_tables(connection: Connection) -> None:
    if not inspect(connection).has_table("participants"):
        url = connection.engine.url.render_as_string(hide_password=True)
        raise UserError(
            f"{url} has no study tables; "
            "run 'flask --app study_server db upgrade' or start 'xaistudy serve' once"
        )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formula(value):
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` so that it is
    shown as text; any other value unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_chunks(connection: Connection, name: str, context: Context | None = None) -> Iterator[str]:
    """The export ``name`` as CSV text, a batch of lines at a time."""
    export = EXPORTS[name]
    context = context or Context.read(connection, None)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(export.header(context))
    for i, row in enumerate(export.rows(connection, context), start=1):
        writer.writerow([neutralize_formula(value) for value in row])
        if i % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def stream_csv(engine: Engine, name: str) -> Iterator[str]:
    """``csv_chunks`` in a read-only transaction of its own (the admin's download)."""
    with read_only_connection(engine) as connection:
        _check_tables(connection)
        yield from csv_chunks(connection, name)


# Column types the DataFrames carry (missing values stay missing, not NaN floats).
_DTYPES = {
    "age": "Int64",
    "comprehension_attempts": "Int64",
    "position": "Int64",
    "value": "Int64",
}
_FLAGS = ("preview", "excluded")


def _frame(export: Export, connection: Connection, context: Context) -> pd.DataFrame:
    frame = pd.DataFrame(list(export.rows(connection, context)), columns=export.header(context))
    for column in frame.columns:
        if column in _DTYPES or column.startswith("rating"):
            frame[column] = frame[column].astype("Int64")
        elif column in _FLAGS:
            frame[column] = frame[column].astype(bool)
    return frame


def frames_from_engine(
    engine: Engine, tables: tuple[str, ...] = EXPORT_NAMES, now: datetime | None = None
) -> dict[str, pd.DataFrame]:
    """Read the study database behind ``engine`` into the export frames named by ``tables``."""
    with read_only_connection(engine) as connection:
        _check_tables(connection)
        context = Context.read(connection, now)
        return {name: _frame(EXPORTS[name], connection, context) for name in tables}


def _engine(database_url: str) -> Engine:
    url = normalize_database_url(database_url)
    options = engine_options(url)
    if not url.startswith("sqlite"):
        options = {"pool_pre_ping": True}
    try:
        engine = create_engine(url, **options)
    except Exception as exc:  # a malformed URL or an unknown driver
        raise UserError(f"cannot open database {database_url!r}: {exc}") from exc
    configure_sqlite(engine)  # reads as the server does: never holding the write lock
    return engine


def _open(database_url: str) -> Engine:
    url = normalize_database_url(database_url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(f"database file {path} does not exist")
    return _engine(database_url)


def export_frames(database_url: str) -> dict[str, pd.DataFrame]:
    """All export frames of the database at ``database_url`` (no Flask app needed)."""
    engine = _open(database_url)
    try:
        return frames_from_engine(engine)
    finally:
        engine.dispose()


def write_export(database_url: str, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<name>.csv`` (for spreadsheets) and ``<name>.parquet`` (the raw values) for
    every export into ``out_dir``, each file atomically, all from one consistent read of
    the database; returns the files by file name."""
    engine = _open(database_url)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    try:
        with read_only_connection(engine) as connection:
            _check_tables(connection)
            context = Context.read(connection, None)
            for name in EXPORT_NAMES:
                csv_path, parquet_path = out / f"{name}.csv", out / f"{name}.parquet"
                with atomic_path(csv_path) as tmp, tmp.open("w", encoding="utf-8") as f:
                    f.writelines(csv_chunks(connection, name, context))
                frame = _frame(EXPORTS[name], connection, context)
                with atomic_path(parquet_path) as tmp:
                    frame.to_parquet(tmp, index=False)
                written[csv_path.name], written[parquet_path.name] = csv_path, parquet_path
    finally:
        engine.dispose()
    return written

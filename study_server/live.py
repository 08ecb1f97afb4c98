"""The researcher's live view of a running study, read straight from the database.

Each figure is an aggregate query (medians too, study_server/sql.py), so the dashboard
of a study with thousands of participants costs a handful of queries and a few dozen
rows, read through a :func:`~study_server.sqlite.read_only_connection` that never holds
up a participant. Previews are never counted.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, case, false, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from study_server.assignment import condition_counts
from study_server.models import CheckAnswer, PageVisit, Participant, StudyRecord
from study_server.pages import every_page
from study_server.sql import medians, seconds_between
from study_server.states import State, condition_states
from study_server.study import Study
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import ABANDONED, EXCLUDED, Status

# The columns of the per-condition counts: the stored statuses, then the derived ones.
STATUSES = (*Status, ABANDONED, EXCLUDED)
ACTIVE_SHOWN = 25  # the most recently seen active participants listed by name

# A participant's time from arrival to the completion page.
DURATION_S = seconds_between(Participant.started_at, Participant.completed_at)


def real(study: Study) -> list[ColumnElement]:
    """Where clauses of the study's participants that count: no previews."""
    return [Participant.study == study.slug, Participant.preview.is_(False)]


def cutoff(study: Study, now: datetime) -> datetime:
    """Last seen before this, a started participant has abandoned the study."""
    return now - timedelta(minutes=study.abandonment_timeout_minutes)


def too_fast(threshold: float | None) -> ColumnElement[bool]:
    """Completed faster than ``threshold`` seconds (nobody when there is no threshold)."""
    if threshold is None:
        return false()
    # (ruff takes DURATION_S, a SQL expression, for a constant)
    return and_(Participant.status == Status.COMPLETED, DURATION_S < threshold)  # noqa: SIM300


def too_fast_threshold(connection: Connection, study: Study, rule: TooFastRule) -> float | None:
    """The rule's threshold over this study's completed participants (as the analysis)."""
    completed = [*real(study), Participant.status == Status.COMPLETED]
    row = connection.execute(medians(DURATION_S, [], *completed)).first()
    median = None if row is None or row.median is None else float(row.median)
    return rule.threshold(median)


@dataclasses.dataclass(frozen=True)
class ConditionRow:
    name: str
    state: State
    target_n: int
    filled: int  # counting toward the target: completed, or started and active
    counts: dict[str, int]  # STATUSES -> participants


@dataclasses.dataclass(frozen=True)
class ActiveParticipant:
    id: int
    prolific_pid: str
    condition: str
    page: str
    last_seen_at: datetime
    inactive_s: float


@dataclasses.dataclass(frozen=True)
class Quality:
    """A condition's checks: how many answered each, how many failed or were flagged."""

    condition: str
    attention_answered: int
    attention_failed: int
    comprehension_tried: int
    comprehension_first_pass: int  # every question right at the first attempt
    screened_out: int
    completed: int
    too_fast: int
    median_duration_s: float | None

    @staticmethod
    def rate(part: int, whole: int) -> float | None:
        return part / whole if whole else None


@dataclasses.dataclass(frozen=True)
class LiveView:
    generated_at: datetime
    study_state: State
    conditions: list[ConditionRow]
    active: list[ActiveParticipant]  # the ACTIVE_SHOWN most recently seen
    active_total: int
    pages: list[str]  # every page name in walk order, then the end pages
    on_page: dict[str, dict[str, int]]  # page -> condition -> active participants there
    page_medians: dict[str, dict[str, float]]  # page -> condition -> median seconds
    page_medians_at: datetime  # when they were computed (they may be kept a while)
    quality: list[Quality]
    too_fast_rule: TooFastRule
    too_fast_s: float | None  # the rule's threshold now


class KeptMedians:
    """The page-time medians, kept for ``ttl_s`` seconds and computed by one request at a
    time. They are the one figure that reads every page visit (about 2 s of a core on
    SQLite with 11,000 participants, 0.4 s on PostgreSQL), and they move slowly; the
    other figures are read fresh on every refresh."""

    def __init__(self, ttl_s: float = 60.0):
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._kept: tuple[float, datetime, dict] | None = None

    def get(self, connection: Connection, study: Study, now: datetime):
        with self._lock:
            if self._kept is None or self._kept[0] < time.monotonic():
                medians = _page_medians(connection, study)
                self._kept = (time.monotonic() + self.ttl_s, now, medians)
            return self._kept[1], self._kept[2]


def read_live_view(
    connection: Connection,
    study: Study,
    now: datetime,
    rule: TooFastRule | None = None,
    kept: KeptMedians | None = None,
) -> LiveView:
    """Every figure of the live view; the page-time medians from ``kept`` when given."""
    rule = rule or TooFastRule()
    if kept is None:
        medians_at, medians = now, _page_medians(connection, study)
    else:
        medians_at, medians = kept.get(connection, study, now)
    threshold = too_fast_threshold(connection, study, rule)
    active, active_total = _active(connection, study, now)
    state = connection.scalar(select(StudyRecord.state).where(StudyRecord.slug == study.slug))
    return LiveView(
        generated_at=now,
        study_state=State(state or State.OPEN),
        conditions=_conditions(connection, study, now),
        active=active,
        active_total=active_total,
        pages=[page.name for page in every_page(study)],
        on_page=_on_page(connection, study, now),
        page_medians=medians,
        page_medians_at=medians_at,
        quality=_quality(connection, study, threshold),
        too_fast_rule=rule,
        too_fast_s=threshold,
    )


def _conditions(connection: Connection, study: Study, now: datetime) -> list[ConditionRow]:
    active = Participant.last_seen_at >= cutoff(study, now)
    rows = connection.execute(
        select(
            Participant.condition,
            Participant.status,
            Participant.excluded,
            active.label("active"),
            func.count(),
        )
        .where(*real(study))
        .group_by(Participant.condition, Participant.status, Participant.excluded, active)
    ).all()
    counts = {name: dict.fromkeys(STATUSES, 0) for name in study.condition_names}
    for condition, status, excluded, is_active, n in rows:
        if condition not in counts:
            continue  # a condition since removed from the study file
        if excluded:
            status = EXCLUDED
        elif status == Status.STARTED and not is_active:
            status = ABANDONED
        counts[condition][status] += n
    filled = condition_counts(connection, study, now)
    states = condition_states(connection, study)
    return [
        ConditionRow(c.name, states[c.name], c.target_n, filled[c.name], counts[c.name])
        for c in study.conditions
    ]


def _started_and_active(study: Study, now: datetime) -> list[ColumnElement]:
    return [
        *real(study),
        Participant.status == Status.STARTED,
        Participant.last_seen_at >= cutoff(study, now),
    ]


def _active(
    connection: Connection, study: Study, now: datetime
) -> tuple[list[ActiveParticipant], int]:
    where = _started_and_active(study, now)
    total = connection.scalar(select(func.count()).select_from(Participant).where(*where))
    rows = connection.execute(
        select(
            Participant.id,
            Participant.prolific_pid,
            Participant.condition,
            Participant.page,
            Participant.last_seen_at,
        )
        .where(*where)
        .order_by(Participant.last_seen_at.desc(), Participant.id.desc())
        .limit(ACTIVE_SHOWN)
    ).all()
    shown = [
        ActiveParticipant(*row, inactive_s=max(0.0, (now - row.last_seen_at).total_seconds()))
        for row in rows
    ]
    return shown, total or 0


def _on_page(connection: Connection, study: Study, now: datetime) -> dict[str, dict[str, int]]:
    rows = connection.execute(
        select(Participant.page, Participant.condition, func.count())
        .where(*_started_and_active(study, now))
        .group_by(Participant.page, Participant.condition)
    ).all()
    on_page: dict[str, dict[str, int]] = {}
    for page, condition, n in rows:
        on_page.setdefault(page, {})[condition] = n
    return on_page


def _page_medians(connection: Connection, study: Study) -> dict[str, dict[str, float]]:
    seconds = seconds_between(PageVisit.entered_at, PageVisit.left_at)
    visits = (
        select(PageVisit.page, Participant.condition, seconds.label("seconds"))
        .join(Participant, Participant.id == PageVisit.participant_id)
        .where(*real(study), PageVisit.left_at.is_not(None))
        .subquery()
    )
    rows = connection.execute(medians(visits.c.seconds, [visits.c.page, visits.c.condition])).all()
    result: dict[str, dict[str, float]] = {}
    for page, condition, median, _n in rows:
        result.setdefault(page, {})[condition] = float(median)
    return result


def _quality(connection: Connection, study: Study, threshold: float | None) -> list[Quality]:
    def count_if(condition) -> ColumnElement[int]:
        return func.sum(case((condition, 1), else_=0))

    first_attempt = (
        select(
            CheckAnswer.participant_id,
            func.min(CheckAnswer.correct.cast(Integer)).label("all_right"),
        )
        .where(CheckAnswer.kind == "comprehension", CheckAnswer.attempt == 1)
        .group_by(CheckAnswer.participant_id)
        .subquery()
    )
    rows = connection.execute(
        select(
            Participant.condition,
            count_if(Participant.attention_passed.is_not(None)),
            count_if(Participant.attention_passed.is_(False)),
            count_if(Participant.comprehension_attempts > 0),
            count_if(first_attempt.c.all_right == 1),
            count_if(Participant.status == Status.SCREENED_OUT),
            count_if(Participant.status == Status.COMPLETED),
            count_if(too_fast(threshold)),
        )
        .outerjoin(first_attempt, first_attempt.c.participant_id == Participant.id)
        .where(*real(study))
        .group_by(Participant.condition)
    ).all()
    durations = {
        row.condition: float(row.median)
        for row in connection.execute(
            medians(
                DURATION_S,
                [Participant.condition],
                *real(study),
                Participant.status == Status.COMPLETED,
            )
        )
    }
    by_condition = {row[0]: [int(v or 0) for v in row[1:]] for row in rows}
    return [
        Quality(name, *by_condition.get(name, [0] * 7), durations.get(name))
        for name in study.condition_names
    ]

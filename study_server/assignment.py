"""Balanced assignment of arriving participants to conditions, safe under concurrency.

The least-filled open condition below its target N wins (filled = completed participants
plus those who started within the abandonment timeout, previews and excluded participants
not counted, relative to each condition's target N), ties broken at random. When none
is left the arrival is turned away (:class:`Unavailable`): the study is paused or
closed, a condition still short of its target is paused, or every target is met (the
study is full, which also caps how many a script can start). The count and the insert
of the new participant happen under one lock: on PostgreSQL a ``SELECT ... FOR UPDATE``
of the study's row in ``studies``; on SQLite every transaction is ``BEGIN IMMEDIATE``
(sqlite.configure_sqlite), which holds the database's write lock.

A within-subjects study (docs/designs/within-subjects.md) assigns cells, not conditions:
a group and a row of its Williams square (:class:`~study_server.within.Cell`), the
least-filled cell below its share of the group's target winning in the same way, under
the same lock; a cell admits while every condition of its group is open. A condition
then counts every participant who sees it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study_server.models import Participant, StudyRecord, utcnow
from study_server.states import State, condition_states
from study_server.study import Condition, Study
from study_server.within import Cell
from xaistudy.vocabulary import Status


class Unavailable(Exception):
    """No condition takes a new participant now; ``reason`` is paused, closed or full."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _from_file(study: Study) -> dict[str, str | int]:
    """The study file's settings that the ``studies`` row keeps for the export."""
    return {
        "title": study.title,
        "attribute_keys": "|".join(study.attribute_keys),
        "abandonment_timeout_s": study.abandonment_timeout_minutes * 60,
        "completed_code": study.completed_code,
        "screened_out_code": study.screened_out_code,
    }


def lock_study(session: Session, study: Study) -> StudyRecord:
    """Lock (creating if needed) the study's row; keep its settings in step with the file."""
    from_file = _from_file(study)
    record = session.get(StudyRecord, study.slug, with_for_update=True)
    if record is None:
        try:
            with session.begin_nested():
                session.add(StudyRecord(slug=study.slug, state=State.OPEN, **from_file))
        except IntegrityError:
            pass  # another worker created it first
        record = session.get(StudyRecord, study.slug, with_for_update=True, populate_existing=True)
    if any(getattr(record, name) != value for name, value in from_file.items()):
        for name, value in from_file.items():
            setattr(record, name, value)
        record.updated_at = utcnow()
    return record


def _filling(study: Study, now: datetime):
    """The participants who fill a condition or cell: completed, or started and active
    recently (previews and excluded participants never)."""
    cutoff = now - timedelta(minutes=study.abandonment_timeout_minutes)
    return (
        Participant.study == study.slug,
        Participant.preview.is_(False),
        Participant.excluded.is_(False),
        or_(
            Participant.status == Status.COMPLETED,
            (Participant.status == Status.STARTED) & (Participant.last_seen_at >= cutoff),
        ),
    )


def condition_counts(session: Session, study: Study, now: datetime) -> dict[str, int]:
    """Participants who fill a condition: completed, or started and active recently; in a
    within study everyone whose group sees it."""
    counts = {name: 0 for name in study.condition_names}
    if study.within is not None:
        for cell, n in cell_counts(session, study, now).items():
            for name in study.within.groups[cell.group - 1]:
                counts[name] += n
        return counts
    rows = session.execute(
        select(Participant.condition, func.count())
        .where(*_filling(study, now))
        .group_by(Participant.condition)
    ).all()
    counts.update({name: n for name, n in rows if name in counts})
    return counts


def cell_counts(session: Session, study: Study, now: datetime) -> dict[Cell, int]:
    """Participants who fill each cell of a within study (as :func:`condition_counts`)."""
    rows = session.execute(
        select(Participant.within_group, Participant.within_order, func.count())
        .where(*_filling(study, now))
        .group_by(Participant.within_group, Participant.within_order)
    ).all()
    counts = dict.fromkeys(study.within.cells(), 0)
    counts.update({Cell(g, r): n for g, r, n in rows if Cell(g, r) in counts})
    return counts


def choose_condition(
    counts: dict[str, int], conditions: Sequence[Condition], rng: random.Random
) -> str:
    """The condition furthest below its target (count / target N), random among ties."""
    fill = {c.name: counts[c.name] / c.target_n for c in conditions}
    lowest = min(fill.values())
    return rng.choice(sorted(name for name, value in fill.items() if value == lowest))


def assign(
    session: Session, study: Study, rng: random.Random | None = None, cap: bool = True
) -> str:
    """Lock the study, count, choose; raise :class:`Unavailable` when no condition takes
    the arrival. ``cap``: conditions that met their target take nobody (off only for
    simulations that run past the targets). The caller inserts the participant and
    commits."""
    record = lock_study(session, study)
    if record.state != State.OPEN:
        raise Unavailable(record.state)
    states = condition_states(session, study)
    counts = condition_counts(session, study, utcnow())
    short = [c for c in study.conditions if not cap or counts[c.name] < c.target_n]
    admitting = [c for c in short if states[c.name] == State.OPEN]
    if not admitting:
        waiting = any(states[c.name] == State.PAUSED for c in short)
        raise Unavailable(State.PAUSED if waiting else "full")
    return choose_condition(counts, admitting, rng or random.Random())


def choose_cell(
    counts: dict[Cell, int], study: Study, cells: Sequence[Cell], rng: random.Random
) -> Cell:
    """The cell furthest below its target (count / its share of the group's target N),
    random among ties."""
    fill = {c: counts[c] / study.within.cell_target(c) for c in cells}
    lowest = min(fill.values())
    return rng.choice(sorted(c for c, value in fill.items() if value == lowest))


def assign_cell(
    session: Session, study: Study, rng: random.Random | None = None, cap: bool = True
) -> Cell:
    """:func:`assign` for a within study: lock, count the cells, choose one whose group's
    conditions are all open; raise :class:`Unavailable` when none takes the arrival."""
    record = lock_study(session, study)
    if record.state != State.OPEN:
        raise Unavailable(record.state)
    within = study.within
    states = condition_states(session, study)
    counts = cell_counts(session, study, utcnow())
    short = [c for c in within.cells() if not cap or counts[c] < within.cell_target(c)]
    admitting = [
        c for c in short if all(states[n] == State.OPEN for n in within.groups[c.group - 1])
    ]
    if not admitting:
        # a cell waits on a paused condition unless another of its group is closed
        group_states = [{states[n] for n in within.groups[c.group - 1]} for c in short]
        waiting = any(State.PAUSED in s and State.CLOSED not in s for s in group_states)
        raise Unavailable(State.PAUSED if waiting else "full")
    return choose_cell(counts, study, admitting, rng or random.Random())

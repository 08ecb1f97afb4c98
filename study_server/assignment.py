"""Balanced assignment of arriving participants to conditions, safe under concurrency.

The least-filled condition wins (filled = completed participants plus those who started
within the abandonment timeout, previews and excluded participants not counted, relative
to each condition's target N), ties broken at random. The count and the insert of the
new participant happen under one lock: on PostgreSQL a ``SELECT ... FOR UPDATE`` of the
study's row in ``studies``; on SQLite every transaction is ``BEGIN IMMEDIATE``
(sqlite.configure_sqlite), which holds the database's write lock.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from study_server.models import Participant, StudyRecord, utcnow
from study_server.study import Study
from xaistudy.vocabulary import Status


def lock_study(session: Session, study: Study) -> StudyRecord:
    """Lock (creating if needed) the study's row; keep its settings in step with the file."""
    record = session.get(StudyRecord, study.slug, with_for_update=True)
    if record is None:
        try:
            with session.begin_nested():
                session.add(
                    StudyRecord(
                        slug=study.slug,
                        title=study.title,
                        attribute_keys="|".join(study.attribute_keys),
                        abandonment_timeout_s=study.abandonment_timeout_minutes * 60,
                    )
                )
        except IntegrityError:
            pass  # another worker created it first
        record = session.get(StudyRecord, study.slug, with_for_update=True, populate_existing=True)
    keys = "|".join(study.attribute_keys)
    timeout_s = study.abandonment_timeout_minutes * 60
    if (record.title, record.attribute_keys, record.abandonment_timeout_s) != (
        study.title,
        keys,
        timeout_s,
    ):
        record.title, record.attribute_keys = study.title, keys
        record.abandonment_timeout_s, record.updated_at = timeout_s, utcnow()
    return record


def condition_counts(session: Session, study: Study, now: datetime) -> dict[str, int]:
    """Participants who fill a condition: completed, or started and active recently."""
    cutoff = now - timedelta(minutes=study.abandonment_timeout_minutes)
    rows = session.execute(
        select(Participant.condition, func.count())
        .where(
            Participant.study == study.slug,
            Participant.preview.is_(False),
            Participant.excluded.is_(False),
            or_(
                Participant.status == Status.COMPLETED,
                (Participant.status == Status.STARTED) & (Participant.last_seen_at >= cutoff),
            ),
        )
        .group_by(Participant.condition)
    ).all()
    counts = {name: 0 for name in study.condition_names}
    counts.update({name: n for name, n in rows if name in counts})
    return counts


def choose_condition(counts: dict[str, int], study: Study, rng: random.Random) -> str:
    """The condition furthest below its target (count / target N), random among ties."""
    fill = {c.name: counts[c.name] / c.target_n for c in study.conditions}
    lowest = min(fill.values())
    return rng.choice(sorted(name for name, value in fill.items() if value == lowest))


def assign(session: Session, study: Study, rng: random.Random | None = None) -> str:
    """Lock the study, count, choose. The caller inserts the participant and commits."""
    lock_study(session, study)
    now = utcnow()
    return choose_condition(condition_counts(session, study, now), study, rng or random.Random())


def study_is_full(session: Session, study: Study) -> bool:
    """Whether every condition has met its target N (counted as for assignment), so that a
    new arrival is turned away with the "study full" page. Call it under the lock."""
    counts = condition_counts(session, study, utcnow())
    return all(counts[c.name] >= c.target_n for c in study.conditions)

"""The audit trail of the researchers' changes: who did what, when and why.

Every change a researcher makes to a running study goes through here and is stored as
one ``admin_actions`` row (exported as ``audit.csv``): opening, pausing and closing the
study or a condition, and excluding participants or including them again, where each
participant changed is also one ``exclusions`` row (``exclusions.csv``).
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from study_server.assignment import lock_study
from study_server.models import AdminAction, Exclusion, Participant, utcnow
from study_server.states import ACTIONS, State, set_condition_state
from study_server.study import Study

_CHUNK = 500  # ids per statement: well under SQLite's limit of bound parameters

# The reason of a participant's latest exclusion, as a column of a query on participants
# (the export and the participant table show it while the participant is excluded).
EXCLUSION_REASON = (
    select(AdminAction.reason)
    .join(Exclusion, Exclusion.action_id == AdminAction.id)
    .where(Exclusion.participant_id == Participant.id, Exclusion.excluded.is_(True))
    .order_by(Exclusion.id.desc())
    .limit(1)
    .correlate(Participant)
    .scalar_subquery()
    .label("exclusion_reason")
)


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: the name the researcher gave (the admin password is shared) and the
    address the request came from."""

    name: str
    remote_addr: str


def _record(
    session: Session, study: Study, action: str, target: str, actor: Actor, reason: str
) -> AdminAction:
    row = AdminAction(
        study=study.slug,
        action=action,
        target=target[:400],
        reason=reason,
        actor=actor.name[:100],
        remote_addr=actor.remote_addr[:64],
        acted_at=utcnow(),
    )
    session.add(row)
    return row


def change_state(
    session: Session,
    study: Study,
    condition: str | None,
    state: State,
    actor: Actor,
    reason: str = "",
) -> AdminAction:
    """Open, pause or close the study (``condition`` None) or one condition; commits."""
    record = lock_study(session, study)  # serializes with arrivals being assigned
    if condition is None:
        record.state, record.updated_at = state, utcnow()
        target = "study"
    else:
        set_condition_state(session, study, condition, state)
        target = f"condition {condition}"
    row = _record(session, study, ACTIONS[state], target, actor, reason)
    session.commit()
    return row


def set_excluded(
    session: Session,
    study: Study,
    matching,
    excluded: bool,
    target: str,
    actor: Actor,
    reason: str,
) -> int:
    """Exclude (or include again) every participant that ``matching`` (a list of where
    clauses on participants) selects, previews and those already so left out; record
    who, why and whom. Commits and returns how many participants changed."""
    lock_study(session, study)  # one bulk change at a time; the set cannot shift under it
    ids = session.scalars(
        select(Participant.id)
        .where(
            Participant.study == study.slug,
            Participant.preview.is_(False),
            Participant.excluded != excluded,
            *matching,
        )
        .order_by(Participant.id)
    ).all()
    action = _record(session, study, "exclude" if excluded else "include", target, actor, reason)
    action.affected = len(ids)
    session.flush()  # the action's id, for its exclusion rows
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        session.execute(
            update(Participant)
            .where(Participant.id.in_(chunk))
            .values(excluded=excluded)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            insert(Exclusion),
            [
                {"action_id": action.id, "participant_id": pid, "excluded": excluded}
                for pid in chunk
            ],
        )
    session.commit()
    return len(ids)

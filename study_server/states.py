"""Whether the study and each of its conditions admit new participants.

A researcher opens, pauses or closes the whole study or one condition from the dashboard.
The states live in the database (``studies.state``, ``condition_states``), so every
worker sees a change with its next arrival. A state decides only what an arrival gets
(assignment.py): participants already in the study always finish.
"""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from study_server.models import ConditionState, utcnow
from study_server.study import Study


class State(enum.StrEnum):
    OPEN = "open"  # admits arrivals
    PAUSED = "paused"  # for now: arrivals are asked to come back shortly
    CLOSED = "closed"  # for good: arrivals are told the study has ended (it may reopen)


# The action that puts a study or condition in each state, as the audit trail names it.
ACTIONS: dict[State, str] = {State.OPEN: "open", State.PAUSED: "pause", State.CLOSED: "close"}


def condition_states(session: Session, study: Study) -> dict[str, State]:
    """Each of the study's conditions with its state (open unless set otherwise)."""
    rows = session.execute(
        select(ConditionState.condition, ConditionState.state).where(
            ConditionState.study == study.slug
        )
    ).all()
    states = {name: State.OPEN for name in study.condition_names}
    states.update({name: State(state) for name, state in rows if name in states})
    return states


def set_condition_state(session: Session, study: Study, condition: str, state: State) -> None:
    """Set one condition's state (the caller holds the study's lock and commits)."""
    row = session.get(ConditionState, (study.slug, condition))
    if row is None:
        session.add(ConditionState(study=study.slug, condition=condition, state=state))
    else:
        row.state, row.updated_at = state, utcnow()

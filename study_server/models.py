"""The study database (docs/database.md): SQLAlchemy 2.0 typed models, one module.

Times are naive UTC ``datetime`` values (SQLite keeps no time zone); the export writes
them as ISO 8601 with ``+00:00``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from study_server.extensions import db
from xaistudy.vocabulary import Status

PID_MAX = 64


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class StudyRecord(db.Model):
    """One row per study slug: the lock row for assignment and what the export needs."""

    __tablename__ = "studies"

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    attribute_keys: Mapped[str] = mapped_column(Text)  # joined by "|"
    abandonment_timeout_s: Mapped[int] = mapped_column(Integer)
    # What the study file's completion page shows; kept here for the reconciliation export.
    completed_code: Mapped[str] = mapped_column(String(64), default="")
    screened_out_code: Mapped[str] = mapped_column(String(64), default="")
    # open | paused | closed (study_server.states): whether new arrivals are admitted.
    state: Mapped[str] = mapped_column(String(16), default="open")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ConditionState(db.Model):
    """A condition's state (open | paused | closed); a condition without a row is open."""

    __tablename__ = "condition_states"

    study: Mapped[str] = mapped_column(ForeignKey("studies.slug"), primary_key=True)
    condition: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Participant(db.Model):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(primary_key=True)
    study: Mapped[str] = mapped_column(ForeignKey("studies.slug"), index=True)
    prolific_pid: Mapped[str] = mapped_column(String(PID_MAX), unique=True)
    study_id: Mapped[str] = mapped_column(String(PID_MAX), default="")
    session_id: Mapped[str] = mapped_column(String(PID_MAX), default="")
    condition: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.STARTED, index=True)
    preview: Mapped[bool] = mapped_column(Boolean, default=False)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    # The server's page pointer and a revision bumped by every accepted post: a post
    # carrying an old revision is a replay or double submit and changes nothing.
    page: Mapped[str] = mapped_column(String(40), default="consent")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    attribute_order: Mapped[str] = mapped_column(Text)  # keys joined by "|"
    comprehension_attempts: Mapped[int] = mapped_column(Integer, default=0)
    attention_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    age: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gender: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ml_experience: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # SHA-256 of the secret in the signed session of the browser the run is bound to
    # (participant.py): knowing a PROLIFIC_PID is not enough to open the run.
    session_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The code the end page showed (completed or screened out), for reconciliation.
    completion_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What the participant typed on the current page but has not sent successfully (a
    # refused post, or the explanations opened from it): JSON {"page", "data", "errors"},
    # shown again on that page until an accepted post clears it.
    draft: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A forward-simulation participant's trial order, drawn once from its seed:
    # JSON {"seed", "learning": [...], "test": [...]}, each the bundle's scene positions
    # (Manifest.simulation) in the order shown; null in other designs.
    trial_order: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A within-subjects participant's cell (docs/designs/within-subjects.md): the group
    # and the row of its Williams square (1-based), and the conditions of their blocks in
    # the order walked, joined by "|" (``condition`` is the first); null between subjects.
    within_group: Mapped[int | None] = mapped_column(Integer, nullable=True)
    within_order: Mapped[int | None] = mapped_column(Integer, nullable=True)
    condition_order: Mapped[str | None] = mapped_column(Text, nullable=True)

    answers: Mapped[list[Answer]] = relationship(
        back_populates="participant", order_by="Answer.position"
    )

    @property
    def order(self) -> list[str]:
        return self.attribute_order.split("|") if self.attribute_order else []

    @property
    def conditions(self) -> list[str]:
        """The conditions the participant sees, in the order of their blocks: their one
        condition between subjects."""
        return self.condition_order.split("|") if self.condition_order else [self.condition]

    def block_condition(self, period: int) -> str:
        """The condition of block ``period`` (1-based; 0 names the one block of a
        between-subjects walk)."""
        return self.conditions[max(period, 1) - 1]


class Answer(db.Model):
    """One rating with its reason: one row per participant x attribute."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("participant_id", "attribute"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    attribute: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    rating: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    participant: Mapped[Participant] = relationship(back_populates="answers")


class Trial(db.Model):
    """One trial answered, of the study's ``design``: in forward simulation the
    participant's prediction of the model's decision on one scene, scored against it; in
    verification their verdict on that decision, scored against the true animal; in
    distinction the animal whose map they picked as the model's, scored against its
    decision; in a counterfactual-simulation test the prediction on the changed scene of a
    pair (docs/designs/)."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("participant_id", "period", "phase", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    design: Mapped[str] = mapped_column(String(24), server_default="forward-simulation")
    # The condition the trial was answered in and the position of its block (1-based):
    # the participant's condition and 1 between subjects; a within-subjects participant's
    # block (docs/designs/within-subjects.md).
    condition: Mapped[str] = mapped_column(String(32))
    period: Mapped[int] = mapped_column(Integer, server_default="1")
    phase: Mapped[str] = mapped_column(String(16))  # learning | test | pre | post
    position: Mapped[int] = mapped_column(Integer)  # 0-based, in the order shown
    scene_index: Mapped[int] = mapped_column(Integer)  # in the bundle's list of the phase
    scene_id: Mapped[int] = mapped_column(Integer)  # the (original) scene's test-split row
    # peaky | stretchy (forward and counterfactual simulation, distinction); right | wrong
    # (verification)
    prediction: Mapped[str] = mapped_column(String(16))
    model_decision: Mapped[str] = mapped_column(String(16))
    true_label: Mapped[str] = mapped_column(String(16))
    # verification: (prediction == "right") == (model_decision == true_label); the other
    # designs: prediction == model_decision
    correct: Mapped[bool] = mapped_column(Boolean)
    # A pair trial's factor changed and the model's decision on the unchanged scene, kept
    # with the answer so that the export needs no bundle; null in other trials.
    changed_factor: Mapped[str | None] = mapped_column(String(32), nullable=True)
    original_decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confidence: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1..5, if asked
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)  # browser-timed
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


QUESTIONNAIRE_ANSWER_UNIQUE = "uq_questionnaire_answers_one_per_item"


class QuestionnaireAnswer(db.Model):
    """One questionnaire item answered at one point of the walk: a Likert ``value`` or a
    free ``text`` (docs/designs/questionnaires.md); an optional item left empty has no row."""

    __tablename__ = "questionnaire_answers"
    # named: the convention's name would pass PostgreSQL's 63 characters
    __table_args__ = (
        UniqueConstraint(
            "participant_id", "questionnaire", "point", "item", name=QUESTIONNAIRE_ANSWER_UNIQUE
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    questionnaire: Mapped[str] = mapped_column(String(24))
    point: Mapped[str] = mapped_column(String(24))  # study.QUESTIONNAIRE_POINTS
    item: Mapped[str] = mapped_column(String(24))
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)  # likert: 1..points
    text: Mapped[str | None] = mapped_column(Text, nullable=True)  # free text
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CheckAnswer(db.Model):
    """An answer to a comprehension question (one row per attempt) or attention check."""

    __tablename__ = "check_answers"
    __table_args__ = (UniqueConstraint("participant_id", "kind", "question", "attempt"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # comprehension | attention
    question: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    answer: Mapped[str] = mapped_column(Text)
    correct: Mapped[bool] = mapped_column(Boolean)
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PageVisit(db.Model):
    """When a participant first saw a page and when they left it (their accepted post)."""

    __tablename__ = "page_visits"
    __table_args__ = (UniqueConstraint("participant_id", "page"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    page: Mapped[str] = mapped_column(String(40))
    entered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ExplanationVisit(db.Model):
    """One look at the explanations after the explanations page: from which page, when it
    was opened, and when the participant came back to the study's pages (null when they
    never did, e.g. the tab was closed)."""

    __tablename__ = "explanation_visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    from_page: Mapped[str] = mapped_column(String(40))
    opened_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoginAttempt(db.Model):
    """Admin login attempts, kept in the database so every worker sees the rate limit."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    remote_addr: Mapped[str] = mapped_column(String(64), index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    attempted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class AdminAction(db.Model):
    """The audit trail: every change a researcher makes (states, exclusions), who, when, why."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    study: Mapped[str] = mapped_column(ForeignKey("studies.slug"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # open | pause | close | exclude | include
    target: Mapped[str] = mapped_column(String(400))  # "study", "condition baseline", a rule
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100))  # the name the researcher gave
    remote_addr: Mapped[str] = mapped_column(String(64))
    affected: Mapped[int] = mapped_column(Integer, default=0)  # participants changed
    acted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Exclusion(db.Model):
    """One participant excluded (or included again) by one admin action."""

    __tablename__ = "exclusions"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("admin_actions.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    excluded: Mapped[bool] = mapped_column(Boolean)


class RateLimit(db.Model):
    """A rate-limit counter (study_server/rate_limits.py): hits of one key in the window
    that ends at ``expires_at`` (Unix time), shared by every worker and host."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class AdminSession(db.Model):
    """A signed-in admin session; logging out deletes it, so its cookie stops working."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

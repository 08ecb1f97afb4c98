"""The participant flow: entry, one route per page keyed by the server's page pointer.

Pages, in order: consent, intro, tutorial, comprehension, explanations, rating-1 ..
rating-N (attention checks ``attention-<id>`` placed between them), demographics,
complete; or the end pages screened-out and declined. A GET of any page but the current
one redirects to the current one; every accepted POST carries the participant's
revision, advances it and the page pointer in one compare-and-set update, and commits
before the next page is shown, so a reload, a back button, a double click or a replayed
post never stores anything twice.
"""

from __future__ import annotations

import functools
import random
import re
import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from study_server import study_context
from study_server.assignment import assign, lock_study
from study_server.extensions import db
from study_server.forms import (
    ConsentForm,
    ContinueForm,
    DemographicsForm,
    StepForm,
    choice_form,
    rating_form,
)
from study_server.http import abort_with
from study_server.models import Answer, CheckAnswer, PageVisit, Participant, utcnow
from study_server.study import Study

bp = Blueprint("participant", __name__)

URL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
START_PAGES = ("consent", "intro", "tutorial", "comprehension", "explanations")
END_PAGES = ("complete", "screened-out", "declined")
_RATING = re.compile(r"^rating-([1-9][0-9]?)$")
_ATTENTION = re.compile(r"^attention-([a-z0-9][a-z0-9_-]{0,39})$")


@functools.cache
def page_sequence(study: Study) -> tuple[str, ...]:
    """The pages every participant of ``study`` walks through, in order."""
    pages = list(START_PAGES)
    for i in range(1, len(study.attributes) + 1):
        pages.append(f"rating-{i}")
        pages += [f"attention-{c.id}" for c in study.attention_checks if c.after_rating == i]
    if study.demographics:
        pages.append("demographics")
    pages.append("complete")
    return tuple(pages)


def page_kind(page: str) -> str:
    if _RATING.match(page):
        return "rating"
    if _ATTENTION.match(page):
        return "attention"
    return page


def _known_page(study: Study, page: str) -> bool:
    return page in page_sequence(study) or page in END_PAGES


# Built once: a prepared statement's cache key is memoised, so executing it again skips
# SQLAlchemy's statement construction (this one runs on every request).
_PARTICIPANT_BY_ID = select(Participant).where(Participant.id == bindparam("p_id"))


def _current_participant(required: bool = True) -> Participant | None:
    participant_id = session.get("participant_id")
    participant = None
    if isinstance(participant_id, int):
        participant = db.session.execute(
            _PARTICIPANT_BY_ID, {"p_id": participant_id}
        ).scalar_one_or_none()
    if participant is None and required:
        abort_with(
            403,
            "We could not find your study session. Please open the study again from its "
            "link on Prolific; you will continue where you left off.",
        )
    return participant


def _redirect_to(participant_page: str) -> Response:
    db.session.rollback()  # end the transaction (and SQLite's write lock) before replying
    return redirect(url_for("participant.step", page=participant_page), 303)


def find_or_create(
    prolific_pid: str,
    study_id: str,
    session_id: str,
    preview: bool = False,
    condition: str | None = None,
) -> Participant:
    """The participant with this PROLIFIC_PID, created and assigned on first arrival."""
    study = study_context().study
    found = select(Participant).where(Participant.prolific_pid == prolific_pid)
    existing = db.session.execute(found).scalar_one_or_none()
    if existing is not None:
        return existing
    if condition is None:
        condition = assign(db.session, study)
    else:
        lock_study(db.session, study)
    order = list(study.attribute_keys)
    random.SystemRandom().shuffle(order)
    now = utcnow()
    participant = Participant(
        study=study.slug,
        prolific_pid=prolific_pid,
        study_id=study_id,
        session_id=session_id,
        condition=condition,
        preview=preview,
        attribute_order="|".join(order),
        page="consent",
        started_at=now,
        last_seen_at=now,
    )
    db.session.add(participant)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # the same PROLIFIC_PID arrived twice at once
        participant = db.session.execute(found).scalar_one_or_none()
        if participant is None:
            raise
    return participant


@bp.get("/")
def entry():
    """The study URL given to Prolific: ``/?PROLIFIC_PID=..&STUDY_ID=..&SESSION_ID=..``."""
    values = {}
    for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"):
        value = request.args.get(name, "")
        if not value:
            abort_with(
                400,
                "This study has to be opened from its link on Prolific (the link names your "
                f"Prolific ID; {name} is missing).",
            )
        if not URL_ID.match(value):
            abort_with(400, f"The link's {name} is not valid: letters, digits, - and _ only.")
        values[name] = value
    participant = find_or_create(values["PROLIFIC_PID"], values["STUDY_ID"], values["SESSION_ID"])
    page = participant.page
    session.clear()
    session.permanent = True
    session["participant_id"] = participant.id
    return _redirect_to(page)


@bp.route("/study/<page>", methods=["GET", "POST"])
def step(page: str):
    study = study_context().study
    if len(page) > 60 or not _known_page(study, page):
        abort_with(404, "There is no such page in this study.")
    participant = _current_participant()
    if page != participant.page or (request.method == "POST" and page in END_PAGES):
        return _redirect_to(participant.page)
    if request.method == "GET":
        # One short transaction records the view and commits; the template renders after
        # it, outside any transaction (SQLite's write lock is not held while rendering),
        # from the participant's values loaded above.
        _record_view(participant.id, page)
        db.session.expunge(participant)
        db.session.commit()
        return _render(participant, page, _form_for(participant, page)(formdata=None))
    return _submit(participant, page)


# Statements of every page view and answer, built once (see _PARTICIPANT_BY_ID).
_visits = PageVisit.__table__
_TOUCH = (
    update(Participant.__table__)
    .where(Participant.__table__.c.id == bindparam("p_id"))
    .values(last_seen_at=bindparam("p_now"))
)
_LEAVE = (
    update(_visits)
    .where(
        _visits.c.participant_id == bindparam("p_id"),
        _visits.c.page == bindparam("p_page"),
        _visits.c.left_at.is_(None),
    )
    .values(left_at=bindparam("p_now"))
)
_INSERT_VISIT = {
    name: insert(_visits)
    .values(
        participant_id=bindparam("p_id"),
        page=bindparam("p_page"),
        entered_at=bindparam("p_now"),
        left_at=bindparam("p_left"),
    )
    .on_conflict_do_nothing(index_elements=["participant_id", "page"])
    for name, insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
}


def _insert_visit(participant_id: int, page: str, now, left_at=None) -> None:
    """Insert a page visit unless the participant already has one for that page."""
    connection = db.session.connection()
    connection.execute(
        _INSERT_VISIT["postgresql" if connection.dialect.name == "postgresql" else "sqlite"],
        {"p_id": participant_id, "p_page": page, "p_now": now, "p_left": left_at},
    )


def _record_view(participant_id: int, page: str) -> None:
    """The first view of a page is its entry time; every view marks the participant active."""
    now = utcnow()
    db.session.connection().execute(_TOUCH, {"p_id": participant_id, "p_now": now})
    _insert_visit(participant_id, page, now)


def _form_for(participant: Participant, page: str) -> type[StepForm]:
    study = study_context().study
    kind = page_kind(page)
    if kind == "consent":
        return ConsentForm
    if kind == "comprehension":
        return choice_form(study.comprehension_for(participant.condition))
    if kind == "rating":
        return rating_form(study)
    if kind == "attention":
        return choice_form((study.attention_check(_ATTENTION.match(page).group(1)),))
    if kind == "demographics":
        return DemographicsForm
    return ContinueForm


def _render(participant: Participant, page: str, form: StepForm, status: int = 200):
    ctx = study_context()
    study, manifest = ctx.study, ctx.manifest
    kind = page_kind(page)
    form.rev.data = str(participant.revision)
    values = {
        "participant": participant,
        "page": page,
        "kind": kind,
        "form": form,
        "condition": manifest["conditions"][participant.condition],
        "condition_name": participant.condition,
        "cells": ctx.grids[participant.condition],
        "tutorial": manifest["tutorial"],
        "progress": _progress(study, page),
    }
    if kind == "rating":
        index = int(_RATING.match(page).group(1))
        key = participant.order[index - 1]
        values.update(
            index=index,
            total=len(participant.order),
            attribute=study.attribute(key),
            statement=study.scale_statement.replace("{attribute}", study.attribute(key).name),
            attribute_row=manifest["tutorial"].get("attributes", {}).get(key),
        )
    elif kind == "comprehension":
        values["attempts_left"] = study.comprehension_max_attempts - (
            participant.comprehension_attempts
        )
    elif kind == "complete":
        values["code"] = study.completed_code
        values["link"] = study.completion_link(study.completed_code)
    elif kind == "screened-out":
        values["code"] = study.screened_out_code
        values["link"] = study.completion_link(study.screened_out_code)
    elif kind == "intro":
        values["attribute_rows"] = [
            (study.attribute(k), manifest["tutorial"]["attributes"][k])
            for k in study.attribute_keys
            if k in manifest["tutorial"].get("attributes", {})
        ]
    return render_template(f"pages/{kind}.html", **values), status


def _progress(study: Study, page: str) -> int:
    pages = page_sequence(study)
    return round(100 * pages.index(page) / (len(pages) - 1)) if page in pages else 100


def _submit(participant: Participant, page: str):
    study = study_context().study
    form = _form_for(participant, page)()
    revision = form.revision()
    if revision is None:
        abort_with(400, "The form was incomplete. Please reload the page and try again.")
    if revision != participant.revision:
        return _redirect_to(participant.page)  # an old page posted again: show the current one
    if not form.validate():
        return _render(participant, page, form, status=400)

    now = utcnow()
    pages = page_sequence(study)
    next_page = pages[pages.index(page) + 1] if page in pages[:-1] else page
    changes: dict = {"last_seen_at": now}
    rows: list = []
    leave = True
    kind = page_kind(page)
    if kind == "consent" and form.consent.data == "no":
        next_page, changes["status"] = "declined", "returned"
    elif kind == "comprehension":
        attempt = participant.comprehension_attempts + 1
        changes["comprehension_attempts"] = attempt
        all_correct = True
        for question in study.comprehension_for(participant.condition):
            answer = form[f"q_{question.id}"].data
            correct = answer == question.correct
            all_correct &= correct
            rows.append(
                CheckAnswer(
                    participant_id=participant.id,
                    kind="comprehension",
                    question=question.id,
                    attempt=attempt,
                    answer=answer,
                    correct=correct,
                    answered_at=now,
                )
            )
        if not all_correct:
            if attempt >= study.comprehension_max_attempts:
                next_page, changes["status"] = "screened-out", "screened_out"
            else:
                next_page, leave = page, False  # shown again with the attempts left
    elif kind == "rating":
        index = int(_RATING.match(page).group(1))
        rows.append(
            Answer(
                participant_id=participant.id,
                attribute=participant.order[index - 1],
                position=index - 1,
                rating=form.rating.data,
                reason=form.reason.data.strip(),
                answered_at=now,
            )
        )
    elif kind == "attention":
        check = study.attention_check(_ATTENTION.match(page).group(1))
        answer = form[f"q_{check.id}"].data
        correct = answer == check.correct
        rows.append(
            CheckAnswer(
                participant_id=participant.id,
                kind="attention",
                question=check.id,
                attempt=1,
                answer=answer,
                correct=correct,
                answered_at=now,
            )
        )
        changes["attention_passed"] = correct and participant.attention_passed is not False
    elif kind == "demographics":
        changes.update(
            age=form.age.data,
            gender=form.gender.data or None,
            ml_experience=form.ml_experience.data or None,
        )
    if next_page == "complete":
        changes.update(status="completed", completed_at=now)

    # Compare-and-set: only the post carrying the current revision moves the pointer.
    moved = db.session.execute(
        update(Participant)
        .where(
            Participant.id == participant.id,
            Participant.revision == revision,
            Participant.page == page,
        )
        .values(revision=revision + 1, page=next_page, **changes)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        db.session.rollback()
        participant = _current_participant()
        return _redirect_to(participant.page)
    db.session.add_all(rows)
    if leave:
        left = (
            db.session.connection()
            .execute(_LEAVE, {"p_id": participant.id, "p_page": page, "p_now": now})
            .rowcount
        )
        if left == 0:  # the view was never recorded (or the page was already left)
            _insert_visit(participant.id, page, now, left_at=now)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent duplicate of this post won; nothing to add
    return redirect(url_for("participant.step", page=next_page), 303)


@bp.get("/explanations")
def explanations():
    """The participant's own condition's stimuli, reachable again while answering."""
    participant = _current_participant()
    study = study_context().study
    pages = page_sequence(study)
    if participant.page not in pages or pages.index(participant.page) <= pages.index(
        "explanations"
    ):
        abort_with(403, "The explanations open once you reach them in the study.")
    manifest = study_context().manifest
    html = render_template(
        "stimuli.html",
        condition=manifest["conditions"][participant.condition],
        condition_name=participant.condition,
        cells=study_context().grids[participant.condition],
        back=url_for("participant.step", page=participant.page),
    )
    db.session.rollback()
    return html


@bp.get("/bundle/<path:rel>")
def bundle_file(rel: str):
    """Bundle images: the tutorial's for everyone, a condition's for its participants."""
    ctx = study_context()
    allowed = rel in ctx.tutorial_images
    if not allowed:
        if session.get("admin"):
            allowed = any(rel in images for images in ctx.condition_images.values())
        else:
            participant = _current_participant(required=False)
            allowed = participant is not None and rel in ctx.condition_images.get(
                participant.condition, ()
            )
            db.session.rollback()
    if not allowed or rel not in ctx.manifest["files"]:
        abort(404)
    response = send_from_directory(ctx.bundle_dir, rel, max_age=365 * 24 * 3600)
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def start_preview(condition: str) -> Participant:
    """A participant that never counts (for researchers), in the condition they chose."""
    participant = find_or_create(
        f"preview-{secrets.token_hex(8)}", "preview", "preview", preview=True, condition=condition
    )
    session["participant_id"] = participant.id
    return participant

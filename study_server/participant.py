"""The participant flow: entry, one route per page keyed by the server's page pointer.

The pages and their order are in pages.py. A GET of any page but the current one
redirects to the current one; every accepted POST carries the participant's
revision, advances it and the page pointer in one compare-and-set update, and commits
before the next page is shown, so a reload, a back button, a double click or a replayed
post never stores anything twice. Every POST ends in a redirect (post/redirect/get): a
refused answer is kept as the participant's draft and shown again with its errors, so
Back never asks to resend a form. A post from an older tab that the walk has passed is
not stored, and the participant is told so.
"""

from __future__ import annotations

import hmac
import json
import random
import re
import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from study_server import study_context
from study_server.assignment import Unavailable, assign, assign_cell, lock_study
from study_server.extensions import db
from study_server.forms import StepForm, without_control_characters
from study_server.http import abort_with
from study_server.languages import choose_language
from study_server.models import ExplanationVisit, PageVisit, Participant, utcnow
from study_server.pages import (
    ConsentPage,
    EndPage,
    ExplanationsPage,
    IntroPage,
    Page,
    TutorialPage,
    Visit,
    find_page,
    is_past,
    new_trial_order,
    page_after,
    progress,
)
from study_server.protection import content_security_policy
from study_server.sessions import (
    bind_participant,
    holds_participant,
    is_admin,
    new_token,
    token_hash,
)

bp = Blueprint("participant", __name__)

# fullmatch, never match with "$", which also matches before a trailing newline.
URL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# Built once: a prepared statement's cache key is memoized, so executing it again skips
# SQLAlchemy's statement construction (this one runs on every request).
_PARTICIPANT_BY_ID = select(Participant).where(Participant.id == bindparam("p_id"))


def _current_participant(required: bool = True) -> Participant | None:
    """The participant this browser's session is bound to (sessions.py), or None."""
    participant_id = session.get("participant_id")
    participant = None
    if isinstance(participant_id, int):
        participant = db.session.execute(
            _PARTICIPANT_BY_ID, {"p_id": participant_id}
        ).scalar_one_or_none()
    if participant is not None and not holds_participant(participant):
        participant = None
    if participant is None and required:
        abort_with(
            403,
            _(
                "We could not find your study session in this browser. Please open the "
                "study again from its link on Prolific; you will continue where you left off."
            ),
        )
    return participant


# What a participant reads when a post was not stored because the walk had moved on.
NOT_STORED = _l(
    "That page had already been answered (in another tab or window, or by a double click), "
    "so the answer just sent was not stored again. This is where you are now."
)
# The session key of the explanations visit in progress (ExplanationVisit.id).
OPEN_VISIT = "explanation_visit"


def _require_consent_details(preview: bool) -> None:
    """Turn participants away while the consent text has unfilled details (a preview, the
    demo and tests may look at it, marked)."""
    study = study_context().study
    allowed = preview or current_app.config.get("XAISTUDY_ALLOW_INCOMPLETE_CONSENT")
    if study.unfilled_consent_details and not allowed:
        abort_with(
            503,
            _(
                "This study is not open yet. Please return it on Prolific; we are sorry for "
                "the trouble."
            ),
        )


def _redirect_to(participant_page: str) -> Response:
    db.session.rollback()  # end the transaction (and SQLite's write lock) before replying
    return redirect(url_for("participant.step", page=participant_page), 303)


def find_or_create(
    prolific_pid: str,
    study_id: str,
    session_id: str,
    preview: bool = False,
    condition: str | None = None,
) -> tuple[Participant, str | None]:
    """The participant with this PROLIFIC_PID, created and assigned on first arrival, and
    the session token of a participant created here (None for one that existed)."""
    study = study_context().study
    found = select(Participant).where(Participant.prolific_pid == prolific_pid)
    existing = db.session.execute(found).scalar_one_or_none()
    if existing is not None:
        return existing, None
    cap = current_app.config["XAISTUDY_STUDY_CAP"]
    cell = None
    if condition is not None:  # a preview: in a within study, an order it comes first in
        lock_study(db.session, study)
        cell = study.within.first_cell(condition) if study.within else None
    elif study.within is not None:
        cell = assign_cell(db.session, study, cap=cap)
    else:
        condition = assign(db.session, study, cap=cap)
    within = _within_columns(study, cell)
    condition = within.pop("condition", condition)
    order = list(study.attribute_keys)
    random.SystemRandom().shuffle(order)
    now = utcnow()
    token = new_token()
    participant = Participant(
        study=study.slug,
        prolific_pid=prolific_pid,
        study_id=study_id,
        session_id=session_id,
        condition=condition,
        preview=preview,
        attribute_order="|".join(order),
        trial_order=new_trial_order(study, cell),
        **within,
        page=ConsentPage().name,
        started_at=now,
        last_seen_at=now,
        session_token_hash=token_hash(token),
    )
    db.session.add(participant)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # the same PROLIFIC_PID arrived twice at once
        participant = db.session.execute(found).scalar_one_or_none()
        if participant is None:
            raise
        return participant, None
    g.created_participant = True  # counted by the arrival limit (rate_limits.py)
    return participant, token


def _within_columns(study, cell) -> dict:
    """A within study's participant's cell and the conditions of their blocks, the first
    of them their ``condition``; nothing between subjects."""
    if cell is None:
        return {}
    conditions = study.within.condition_order(cell)
    return {
        "condition": conditions[0],
        "within_group": cell.group,
        "within_order": cell.order,
        "condition_order": "|".join(conditions),
    }


def _rebind(participant: Participant, session_id: str) -> str:
    """A new token for a participant who came back in another browser with their own link
    (the SESSION_ID Prolific gave them for this run); refused to anyone else."""
    if not hmac.compare_digest(session_id.encode(), participant.session_id.encode()):
        abort_with(
            403,
            _(
                "This Prolific ID is already taking part in this study from another browser. "
                "Please continue there, or open the study from its link on Prolific."
            ),
        )
    token = new_token()
    db.session.execute(
        update(Participant)
        .where(Participant.id == participant.id)
        .values(session_token_hash=token_hash(token))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return token


@bp.get("/")
def entry():
    """The study URL given to Prolific: ``/?PROLIFIC_PID=..&STUDY_ID=..&SESSION_ID=..``.

    A new PROLIFIC_PID starts a run bound to this browser; the same browser coming back
    continues it; another browser continues it only with the run's own SESSION_ID (the
    participant's link), which moves the run to that browser.
    """
    values = {}
    for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"):
        value = request.args.get(name, "")
        if not value:
            abort_with(
                400,
                _(
                    "This study has to be opened from its link on Prolific (the link names "
                    "your Prolific ID; %(name)s is missing).",
                    name=name,
                ),
            )
        if not URL_ID.fullmatch(value):
            abort_with(
                400,
                _("The link's %(name)s is not valid: letters, digits, - and _ only.", name=name),
            )
        values[name] = value
    _require_consent_details(preview=False)
    choose_language(current_app, request.args.get("lang"))
    try:
        participant, token = find_or_create(
            values["PROLIFIC_PID"], values["STUDY_ID"], values["SESSION_ID"]
        )
    except Unavailable as turned_away:
        db.session.rollback()
        return _turned_away(turned_away.reason)
    if token is None:
        if holds_participant(participant):
            token = session["participant_token"]
        else:
            token = _rebind(participant, values["SESSION_ID"])
    page = participant.page
    # Only the participant's keys change: a researcher logged in in this browser (the
    # "admin" keys) stays logged in when they open a participant link.
    bind_participant(participant, token)
    return _redirect_to(page)


# What an arrival is told when no condition takes them (assignment.Unavailable), and the
# HTTP status: paused is temporary (come back shortly), closed and full are final.
TURNED_AWAY_STATUS = {"paused": 503, "closed": 410, "full": 410}


def _turned_away(reason: str):
    response = Response(
        render_template("unavailable.html", reason=reason), TURNED_AWAY_STATUS[reason]
    )
    if reason == "paused":
        response.headers["Retry-After"] = "300"
    return response


@bp.route("/study/<page>", methods=["GET", "POST"])
def step(page: str):
    requested = find_page(study_context().study, page)
    if requested is None:
        abort_with(404, _("There is no such page in this study."))
    participant = _current_participant()
    if page != participant.page or (request.method == "POST" and isinstance(requested, EndPage)):
        if request.method == "POST":
            _note_not_stored()
        return _redirect_to(participant.page)
    if request.method == "GET":
        if isinstance(requested, ConsentPage):
            _require_consent_details(participant.preview)
        # One short transaction records the view and commits; the template renders after
        # it, outside any transaction (SQLite's write lock is not held while rendering),
        # from the participant's values loaded above.
        _record_view(participant.id, page)
        db.session.expunge(participant)
        db.session.commit()
        return _render(participant, requested, _draft_form(participant, requested))
    return _submit(participant, requested)


def _note_not_stored() -> None:
    """Tell the participant when a post that carried answers was not stored."""
    if any(value for key, value in request.form.items() if key not in ("csrf_token", "rev")):
        flash(str(NOT_STORED))


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


_CLOSE_EXPLANATIONS = (
    update(ExplanationVisit.__table__)
    .where(
        ExplanationVisit.__table__.c.id == bindparam("v_id"),
        ExplanationVisit.__table__.c.participant_id == bindparam("p_id"),
        ExplanationVisit.__table__.c.closed_at.is_(None),
    )
    .values(closed_at=bindparam("p_now"))
)


def _record_view(participant_id: int, page: str) -> None:
    """The first view of a page is its entry time; every view marks the participant active
    and ends a look at the explanations (the participant is back at the questions)."""
    now = utcnow()
    connection = db.session.connection()
    connection.execute(_TOUCH, {"p_id": participant_id, "p_now": now})
    _insert_visit(participant_id, page, now)
    visit_id = session.pop(OPEN_VISIT, None)
    if visit_id is not None:
        connection.execute(
            _CLOSE_EXPLANATIONS, {"v_id": visit_id, "p_id": participant_id, "p_now": now}
        )


def _form_for(participant: Participant, page: Page) -> type[StepForm]:
    return page.form_class(study_context().study, participant)


# -- drafts: what was typed on the current page and not yet accepted ---------------------


def _draft_form(participant: Participant, page: Page) -> StepForm:
    """The page's form, filled from the participant's draft for this page if there is one
    (with the errors that refused it, when it is a refused post)."""
    form_class = _form_for(participant, page)
    draft = json.loads(participant.draft) if participant.draft else None
    if not draft or draft.get("page") != page.name:
        return form_class(formdata=None)
    form = form_class(formdata=MultiDict(draft["data"]))
    for name, messages in draft["errors"].items():
        if name in form:
            form[name].errors = list(messages)
    return form


def _save_draft(
    participant: Participant, page_name: str, errors: dict[str, list[str]] | None = None
) -> None:
    """Keep the posted fields, and the ``errors`` that refused them, as the draft of
    ``page_name`` (the current page at the posted revision only), so the page shows them
    again after the redirect."""
    data = {
        key: without_control_characters(value)
        for key, value in request.form.items()
        if key != "csrf_token"
    }
    # str(): a message may be a lazy translation, resolved in this request's language
    shown = {
        name: [str(m) for m in messages]
        for name, messages in (errors or {}).items()
        if name != "csrf_token"
    }
    draft = json.dumps({"page": page_name, "data": data, "errors": shown})
    db.session.execute(
        update(Participant)
        .where(
            Participant.id == participant.id,
            Participant.revision == participant.revision,
            Participant.page == page_name,
        )
        .values(draft=draft)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _render(participant: Participant, page: Page, form: StepForm | None, review: bool = False):
    """The page's template; ``review``: shown again from a later page, without its form."""
    ctx = study_context()
    name = page.condition(participant)  # the block's, in a within study
    explains = ctx.study.explains(name)
    condition = ctx.manifest.conditions[name] if explains else None
    if form is not None:
        form.rev.data = str(participant.revision)
    values = {
        "participant": participant,
        "page": page.name,
        "kind": page.kind,
        "form": form,
        "review": review,
        "back": url_for("participant.step", page=participant.page),
        "condition": condition,
        "condition_name": name,
        "how_to_read": ctx.study.how_to_read(name, condition.description) if explains else None,
        "cells": ctx.grids.get(name),
        "tutorial": ctx.manifest.tutorial,
        "progress": progress(ctx.study, page),
        "script": page.script,
        **page.context(ctx, participant),
    }
    response = Response(render_template(f"pages/{page.kind}.html", **values))
    if page.script:  # its own static script, and still no inline one
        response.headers["Content-Security-Policy"] = content_security_policy(scripts="'self'")
    return response


def _submit(participant: Participant, page: Page):
    study = study_context().study
    form = _form_for(participant, page)()
    revision = form.revision()
    if revision is None:
        abort_with(400, _("The form was incomplete. Please reload the page and try again."))
    if revision != participant.revision:
        _note_not_stored()  # an old page posted again: show the current one
        return _redirect_to(participant.page)
    if not form.validate():
        _save_draft(participant, page.name, form.errors)
        return _redirect_to(page.name)

    now = utcnow()
    visit = Visit(study, participant, now, page_after(study, page, participant.condition))
    outcome = page.submit(visit, form)
    next_page = outcome.next_page
    changes = {"last_seen_at": now, "draft": None, **outcome.changes, **next_page.arrival(visit)}

    # Compare-and-set: only the post carrying the current revision moves the pointer.
    moved = db.session.execute(
        update(Participant)
        .where(
            Participant.id == participant.id,
            Participant.revision == revision,
            Participant.page == page.name,
        )
        .values(revision=revision + 1, page=next_page.name, **changes)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        db.session.rollback()
        participant = _current_participant()
        _note_not_stored()
        return _redirect_to(participant.page)
    db.session.add_all(outcome.rows)
    if next_page != page:  # the page is left (a page shown again stays open)
        left = (
            db.session.connection()
            .execute(_LEAVE, {"p_id": participant.id, "p_page": page.name, "p_now": now})
            .rowcount
        )
        if left == 0:  # the view was never recorded (or the page was already left)
            _insert_visit(participant.id, page.name, now, left_at=now)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a concurrent duplicate of this post won; nothing to add
    return redirect(url_for("participant.step", page=next_page.name), 303)


def _participant_past(milestone: Page, refusal: str) -> Participant:
    """The current participant, who must have gone past ``milestone`` in the walk."""
    participant = _current_participant()
    study = study_context().study
    current = find_page(study, participant.page)
    if current is None or not is_past(study, current, milestone):
        abort_with(403, refusal)
    return participant


@bp.post("/explanations")
def keep_draft_and_open_explanations():
    """The rating form's second button: what was typed is kept as the page's draft."""
    participant = _participant_past(
        ExplanationsPage(), _("The explanations open once you reach them in the study.")
    )
    if request.form.get("rev") == str(participant.revision):
        _save_draft(participant, participant.page)
    return redirect(url_for("participant.explanations"), 303)


@bp.get("/explanations")
def explanations():
    """The participant's own condition's stimuli, reachable again while answering; each
    look is an ExplanationVisit, ended by the next view of a study page."""
    participant = _participant_past(
        ExplanationsPage(), _("The explanations open once you reach them in the study.")
    )
    if OPEN_VISIT not in session:
        visit = ExplanationVisit(
            participant_id=participant.id, from_page=participant.page, opened_at=utcnow()
        )
        db.session.add(visit)
        db.session.commit()
        session[OPEN_VISIT] = visit.id
    ctx = study_context()
    condition = ctx.manifest.conditions[participant.condition]
    html = render_template(
        "stimuli.html",
        condition=condition,
        condition_name=participant.condition,
        how_to_read=ctx.study.how_to_read(participant.condition, condition.description),
        cells=ctx.grids[participant.condition],
        back=url_for("participant.step", page=participant.page),
    )
    db.session.rollback()
    return html


REVIEWABLE = {page.name: page for page in (IntroPage(), TutorialPage())}


@bp.get("/review/<page>")
def review(page: str):
    """The introduction or the tutorial again, for a participant at the comprehension
    questions or later (after a failed attempt they are offered it)."""
    requested = REVIEWABLE.get(page)
    if requested is None:
        abort_with(404, _("There is no such page in this study."))
    participant = _participant_past(
        TutorialPage(), _("You can read this page again once you reach the questions.")
    )
    db.session.rollback()
    return _render(participant, requested, form=None, review=True)


@bp.get("/bundle/<path:rel>")
def bundle_file(rel: str):
    """Bundle images: the tutorial's and the trials' scenes for everyone, a condition's
    for its participants."""
    ctx = study_context()
    allowed = rel in ctx.shared_images
    if not allowed:
        if is_admin():
            allowed = any(rel in images for images in ctx.condition_images.values())
            db.session.rollback()
        else:
            participant = _current_participant(required=False)
            allowed = participant is not None and any(
                rel in ctx.condition_images.get(name, ()) for name in participant.conditions
            )
            db.session.rollback()
    if not allowed or rel not in ctx.manifest.files:
        abort(404)
    response = send_from_directory(ctx.bundle_dir, rel, max_age=365 * 24 * 3600)
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def start_preview(condition: str, page: str = ConsentPage.kind) -> Participant:
    """A participant that never counts (for researchers), in the condition they chose,
    at the page they chose. Each preview is a new participant, so a page is always shown
    as a first visit (no answers from an earlier jump in the way)."""
    participant, token = find_or_create(
        f"preview-{secrets.token_hex(8)}", "preview", "preview", preview=True, condition=condition
    )
    participant.page = page
    db.session.commit()
    bind_participant(participant, token)
    return participant

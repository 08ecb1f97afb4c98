"""The researcher's control room, on the admin blueprint (admin.py holds the login).

- the dashboard (``/admin/``): the study's and each condition's state with the form that
  changes it, the live view (who is on which page, the checks' rates, speeders, median
  time per page) refreshed in place from ``/admin/live.json`` by static/control.js,
  the latest actions of the audit trail, previews, exports, and a warning when the
  bundle's validation failed;
- the participant table (``/admin/participants``): filter, search, sort, one page at a
  time, and bulk exclusion of what the filters select, with a reason;
- one participant's page, with their answers, checks and exclusion history;
- previews of any page of any condition, and the CSV exports, streamed.

Every read goes through a read-only connection (study_server/sqlite.py), so none of
this holds up a participant; every change goes through study_server/audit.py.
"""

from __future__ import annotations

import math
from datetime import datetime

from flask import (
    Response,
    current_app,
    flash,
    get_template_attribute,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import func, select

from study_server import study_context
from study_server.admin import bp, login_required
from study_server.audit import EXCLUSION_REASON, Actor, change_state, set_excluded
from study_server.export import EXPORT_NAMES, stream_csv
from study_server.extensions import db
from study_server.forms import ExclusionForm, PreviewForm, StateForm
from study_server.http import abort_with
from study_server.live import (
    DURATION_S,
    KeptMedians,
    cutoff,
    read_live_view,
    too_fast_threshold,
)
from study_server.models import AdminAction, Answer, CheckAnswer, Exclusion, Participant, utcnow
from study_server.pages import every_page
from study_server.participant import start_preview
from study_server.protection import content_security_policy
from study_server.selection import PAGE_SIZE, RULES, STATUS_FILTERS, Selection
from study_server.sqlite import read_only_connection
from study_server.states import State
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import ABANDONED, Status

REFRESH_S = 10  # how often the open dashboard refreshes its live sections
RECENT_ACTIONS = 10  # the audit trail's latest entries on the dashboard
STUDY = "study"  # the state form's target for the whole study
# The dashboard's sections that refresh in place: element id -> macro in _live.html.
LIVE_SECTIONS = ("conditions", "live", "quality", "timing", "audit")


# ----------------------------------------------------------------- the dashboard


def _kept_medians() -> KeptMedians:
    """This app's (this worker's) kept page-time medians."""
    return current_app.extensions.setdefault("xaistudy_kept_medians", KeptMedians())


def _live_values() -> dict:
    study = study_context().study
    with read_only_connection(db.engine) as connection:
        view = read_live_view(connection, study, utcnow(), TooFastRule(), _kept_medians())
        actions = connection.execute(
            select(AdminAction.__table__)
            .where(AdminAction.study == study.slug)
            .order_by(AdminAction.id.desc())
            .limit(RECENT_ACTIONS)
        ).all()
    return {"view": view, "actions": actions}


@bp.get("/")
@login_required
def dashboard():
    study = study_context().study
    html = render_template(
        "admin/dashboard.html",
        **_live_values(),
        validation=study_context().manifest.validation,
        state_form=_state_form(),
        preview_form=_preview_form(),
        exports=EXPORT_NAMES,
        refresh_s=REFRESH_S,
        abandonment_minutes=study.abandonment_timeout_minutes,
    )
    response = make_response(html)
    response.headers["Content-Security-Policy"] = content_security_policy(scripts="'self'")
    return response


@bp.get("/live.json")
@login_required
def live_json():
    """The dashboard's live sections, rendered by the same macros as the page."""
    values = _live_values()
    sections = {
        name: str(get_template_attribute("admin/_live.html", name)(**values))
        for name in LIVE_SECTIONS
    }
    response = jsonify(generated_at=_when(values["view"].generated_at), sections=sections)
    response.headers["Cache-Control"] = "no-store"  # participants' data, never kept
    return response


def _state_form() -> StateForm:
    study = study_context().study
    form = StateForm(actor=session.get("admin_name", ""))
    form.target.choices = [(STUDY, "the whole study")] + [
        (name, f"condition {name}") for name in study.condition_names
    ]
    form.state.choices = [(state.value, state.value) for state in State]
    return form


@bp.post("/state")
@login_required
def set_state():
    form = _state_form()
    _require_valid(form)
    target = form.target.data
    change_state(
        db.session,
        study_context().study,
        None if target == STUDY else target,
        State(form.state.data),
        _actor(form),
        form.reason.data.strip(),
    )
    what = "The study" if target == STUDY else f"Condition {target}"
    flash(f"{what} is now {form.state.data}.")
    return redirect(url_for("admin.dashboard"), 303)


# ------------------------------------------------------------- participant table


@bp.get("/participants")
@login_required
def participants():
    study = study_context().study
    selection = Selection.from_args(request.args, study)
    now = utcnow()
    with read_only_connection(db.engine) as connection:
        threshold = too_fast_threshold(connection, study, TooFastRule())
        where = selection.where(study, now, threshold)
        total = connection.scalar(select(func.count()).select_from(Participant).where(*where))
        last_page = max(1, math.ceil(total / PAGE_SIZE))
        page = min(selection.page, last_page)
        rows = connection.execute(
            select(
                Participant.id,
                Participant.prolific_pid,
                Participant.condition,
                Participant.status,
                Participant.page,
                Participant.preview,
                Participant.excluded,
                Participant.attention_passed,
                Participant.comprehension_attempts,
                Participant.started_at,
                Participant.last_seen_at,
                DURATION_S.label("duration_s"),
                EXCLUSION_REASON,
            )
            .where(*where)
            .order_by(*selection.order_by())
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        ).all()
    return render_template(
        "admin/participants.html",
        rows=[_table_row(row, study, now, threshold) for row in rows],
        selection=selection,
        page=page,
        last_page=last_page,
        total=total,
        too_fast_s=threshold,
        statuses=STATUS_FILTERS,
        rules=RULES,
        exclusion_form=ExclusionForm(actor=session.get("admin_name", "")),
    )


def _table_row(row, study, now: datetime, threshold: float | None) -> dict:
    abandoned = row.status == Status.STARTED and row.last_seen_at < cutoff(study, now)
    timed = row.status == Status.COMPLETED and None not in (threshold, row.duration_s)
    return {
        **row._asdict(),
        "status": ABANDONED if abandoned else row.status,
        "inactive_s": (now - row.last_seen_at).total_seconds(),
        "too_fast": timed and row.duration_s < threshold,
    }


@bp.post("/participants/exclude")
@login_required
def bulk_exclude():
    """Exclude every participant the table's filters (posted along) select."""
    study = study_context().study
    selection = Selection.from_args(request.form, study)
    if not selection.filtered:
        abort_with(
            400,
            "Choose a rule, status, condition or search first: a bulk exclusion never "
            "applies to every participant.",
        )
    form = ExclusionForm()
    _require_valid(form)
    threshold = too_fast_threshold(db.session.connection(), study, TooFastRule())
    changed = set_excluded(
        db.session,
        study,
        selection.where(study, utcnow(), threshold),
        excluded=True,
        target=f"rule: {selection.describe()}",
        actor=_actor(form),
        reason=form.reason.data.strip(),
    )
    flash(f"Excluded {changed} participant(s): {selection.describe()}.")
    return redirect(url_for("admin.participants", **selection.args(page=1)), 303)


@bp.get("/participants/<int(max=2147483647):participant_id>")
@login_required
def participant_detail(participant_id: int):
    with read_only_connection(db.engine) as connection:
        participant = connection.execute(
            select(Participant.__table__, DURATION_S.label("duration_s")).where(
                Participant.id == participant_id
            )
        ).first()
        if participant is None:
            abort_with(404, "There is no such participant.")
        answers = connection.execute(
            select(Answer.__table__)
            .where(Answer.participant_id == participant_id)
            .order_by(Answer.position)
        ).all()
        checks = connection.execute(
            select(CheckAnswer.__table__)
            .where(CheckAnswer.participant_id == participant_id)
            .order_by(CheckAnswer.answered_at, CheckAnswer.id)
        ).all()
        history = connection.execute(
            select(Exclusion.excluded, AdminAction.__table__)
            .join(AdminAction, AdminAction.id == Exclusion.action_id)
            .where(Exclusion.participant_id == participant_id)
            .order_by(Exclusion.id)
        ).all()
    return render_template(
        "admin/participant.html",
        participant=participant,
        inactive_s=(utcnow() - participant.last_seen_at).total_seconds(),
        answers=answers,
        checks=checks,
        history=history,
        form=ExclusionForm(
            actor=session.get("admin_name", ""), excluded="0" if participant.excluded else "1"
        ),
    )


@bp.post("/participants/<int(max=2147483647):participant_id>/exclude")
@login_required
def exclude(participant_id: int):
    """Exclude one participant, or include them again, with a reason."""
    if db.session.get(Participant, participant_id) is None:
        abort_with(404, "There is no such participant.")
    form = ExclusionForm()
    _require_valid(form)
    excluded = form.excluded.data != "0"
    changed = set_excluded(
        db.session,
        study_context().study,
        [Participant.id == participant_id],
        excluded=excluded,
        target=f"participant {participant_id}",
        actor=_actor(form),
        reason=form.reason.data.strip(),
    )
    if changed:
        flash("Excluded." if excluded else "Included again.")
    return redirect(url_for("admin.participant_detail", participant_id=participant_id), 303)


# ------------------------------------------------------------ previews, exports


def _preview_form() -> PreviewForm:
    study = study_context().study
    form = PreviewForm()
    form.condition.choices = list(study.condition_names)
    form.page.choices = [page.name for page in every_page(study)]
    return form


@bp.app_template_global()
def preview_pages() -> list[str]:
    """The pages a preview can jump to (the preview banner's list)."""
    return [page.name for page in every_page(study_context().study)]


@bp.post("/preview")
@login_required
def preview():
    """A participant that never counts, in the chosen condition, at the chosen page."""
    form = _preview_form()
    _require_valid(form)
    participant = start_preview(form.condition.data, form.page.data)
    return redirect(url_for("participant.step", page=participant.page), 303)


@bp.get("/export/<name>.csv")
@login_required
def export_csv(name: str):
    if name not in EXPORT_NAMES:
        abort_with(404, f"There is no export named {name!r}; there are {', '.join(EXPORT_NAMES)}.")
    return Response(
        stream_csv(db.engine, name),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"',
            "Cache-Control": "no-store",
        },
    )


# --------------------------------------------------------------------- helpers


def _require_valid(form) -> None:
    """A form that does not validate ends the request with its errors, in one message."""
    if form.validate_on_submit():
        return
    errors = [f"{form[name].label.text}: {' '.join(msgs)}" for name, msgs in form.errors.items()]
    if "csrf_token" in form.errors:
        errors = ["The form has expired; reload the page and try again."]
    abort_with(400, " ".join(errors) + " Go back and try again.")


def _actor(form) -> Actor:
    name = form.actor.data.strip()
    session["admin_name"] = name  # offered again in this browser's next forms
    return Actor(name, (request.remote_addr or "unknown")[:64])


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("when")
def when_filter(value: datetime | None) -> str:
    return _when(value)


@bp.app_template_filter("duration")
def duration_filter(seconds: float | None) -> str:
    """Seconds for people: "45 s", "3 min 05 s", "2 h 04 min"; "–" when unknown."""
    if seconds is None or seconds != seconds:  # None or NaN
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@bp.app_template_filter("share")
def share_filter(counts: tuple[int, int]) -> str:
    """(part, whole) as "12 % (3 of 25)"; "–" when there is no whole."""
    part, whole = counts
    if not whole:
        return "–"
    return f"{round(100 * part / whole)} % ({part} of {whole})"

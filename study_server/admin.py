"""The researchers' pages: login, live dashboard, participant table, exclusion, CSV export."""

from __future__ import annotations

import functools

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.security import check_password_hash

from study_server import study_context
from study_server.export import EXPORT_NAMES, frame_to_csv, frames_from_engine
from study_server.extensions import db
from study_server.forms import ActionForm, LoginForm
from study_server.http import abort_with
from study_server.models import Answer, CheckAnswer, LoginAttempt, Participant
from study_server.participant import start_preview
from study_server.rate_limits import client_address
from study_server.sessions import end_admin_session, is_admin, start_admin_session
from xaistudy.vocabulary import ABANDONED, EXCLUDED, Status

bp = Blueprint("admin", __name__, url_prefix="/admin")

DASHBOARD_STATUSES = (*Status, ABANDONED, EXCLUDED)
TABLE_LIMIT = 500


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        signed_in = is_admin()
        db.session.rollback()  # end the check's transaction (SQLite's write lock) first
        if not signed_in:
            return redirect(url_for("admin.login"), 303)
        return view(*args, **kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The admin login. Flask-Limiter counts every post before this runs (per address and
    for all addresses together, rate_limits.py); the password is checked outside any
    database transaction, so hashing never holds SQLite's write lock."""
    password_hash = current_app.config.get("XAISTUDY_ADMIN_PASSWORD")
    if not password_hash:
        abort_with(403, "The admin pages are off: set XAISTUDY_ADMIN_PASSWORD to turn them on.")
    form = LoginForm()
    error = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            ok = check_password_hash(password_hash, form.password.data)
            db.session.add(LoginAttempt(remote_addr=client_address(), succeeded=ok))
            if ok:
                start_admin_session()
            db.session.commit()
            if ok:
                return redirect(url_for("admin.dashboard"), 303)
        error, status = "Wrong password.", 401
    return render_template("admin/login.html", form=form, error=error), status


@bp.post("/logout")
@login_required
def logout():
    if ActionForm().validate_on_submit():
        end_admin_session()
        db.session.commit()
    return redirect(url_for("admin.login"), 303)


@bp.get("/")
@login_required
def dashboard():
    frames = frames_from_engine(db.engine, tables=("participants",))
    participants = frames["participants"]
    study = study_context().study
    counts = {c: dict.fromkeys(DASHBOARD_STATUSES, 0) for c in study.condition_names}
    real = participants[~participants["preview"]] if len(participants) else participants
    for row in real.itertuples():
        status = EXCLUDED if row.excluded else row.status
        counts.setdefault(row.condition, dict.fromkeys(DASHBOARD_STATUSES, 0))[status] += 1
    table = participants.sort_values("participant_id", ascending=False).head(TABLE_LIMIT)
    return render_template(
        "admin/dashboard.html",
        counts=counts,
        statuses=DASHBOARD_STATUSES,
        targets={c.name: c.target_n for c in study.conditions},
        participants=table.to_dict("records"),
        total=len(participants),
        exports=EXPORT_NAMES,
        action=ActionForm(),
    )


@bp.get("/participants/<int(max=2147483647):participant_id>")
@login_required
def participant_detail(participant_id: int):
    participant = db.session.get(Participant, participant_id)
    if participant is None:
        abort_with(404, "There is no such participant.")
    answers = db.session.scalars(
        select(Answer).where(Answer.participant_id == participant_id).order_by(Answer.position)
    ).all()
    checks = db.session.scalars(
        select(CheckAnswer)
        .where(CheckAnswer.participant_id == participant_id)
        .order_by(CheckAnswer.answered_at)
    ).all()
    html = render_template(
        "admin/participant.html",
        participant=participant,
        answers=answers,
        checks=checks,
        action=ActionForm(),
    )
    db.session.rollback()
    return html


@bp.post("/participants/<int(max=2147483647):participant_id>/exclude")
@login_required
def exclude(participant_id: int):
    participant = db.session.get(Participant, participant_id)
    if participant is None:
        abort_with(404, "There is no such participant.")
    if not ActionForm().validate_on_submit():
        abort_with(400, "The form was not valid; reload the page and try again.")
    participant.excluded = request.form.get("excluded", "1") == "1"
    db.session.commit()
    return redirect(url_for("admin.participant_detail", participant_id=participant_id), 303)


@bp.post("/preview/<condition>")
@login_required
def preview(condition: str):
    if condition not in study_context().study.condition_names:
        abort_with(404, "There is no such condition in this study.")
    if not ActionForm().validate_on_submit():
        abort_with(400, "The form was not valid; reload the page and try again.")
    participant = start_preview(condition)
    return redirect(url_for("participant.step", page=participant.page), 303)


@bp.get("/export/<name>.csv")
@login_required
def export_csv(name: str):
    if name not in EXPORT_NAMES:
        abort_with(404, f"There is no export named {name!r}; there are {', '.join(EXPORT_NAMES)}.")
    frame = frames_from_engine(db.engine)[name]
    return Response(
        frame_to_csv(frame),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )

"""The researchers' pages: the admin blueprint and its login.

The control room itself (dashboard, participant table, exclusions, previews, exports)
adds its views to this blueprint from study_server/control.py.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from study_server.extensions import db
from study_server.forms import ActionForm, LoginForm
from study_server.http import abort_with
from study_server.models import LoginAttempt, utcnow

bp = Blueprint("admin", __name__, url_prefix="/admin")


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not session.get("admin"):
            return redirect(url_for("admin.login"), 303)
        return view(*args, **kwargs)

    return wrapped


def _too_many_failures(address: str) -> bool:
    window = timedelta(seconds=current_app.config["XAISTUDY_LOGIN_WINDOW_S"])
    failures = db.session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.remote_addr == address,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.attempted_at >= utcnow() - window,
        )
    )
    return failures >= current_app.config["XAISTUDY_LOGIN_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
def login():
    password_hash = current_app.config.get("XAISTUDY_ADMIN_PASSWORD")
    if not password_hash:
        abort_with(403, "The admin pages are off: set XAISTUDY_ADMIN_PASSWORD to turn them on.")
    form = LoginForm()
    error = None
    status = 200
    if request.method == "POST":
        address = (request.remote_addr or "unknown")[:64]
        if _too_many_failures(address):
            abort_with(429, "Too many failed logins; please wait 15 minutes and try again.")
        if form.validate_on_submit():
            ok = check_password_hash(password_hash, form.password.data)
            db.session.add(LoginAttempt(remote_addr=address, succeeded=ok))
            db.session.commit()
            if ok:
                session.clear()
                session["admin"] = True
                return redirect(url_for("admin.dashboard"), 303)
        error, status = "Wrong password.", 401
    db.session.rollback()
    return render_template("admin/login.html", form=form, error=error), status


@bp.post("/logout")
@login_required
def logout():
    if ActionForm().validate_on_submit():
        session.clear()
    return redirect(url_for("admin.login"), 303)

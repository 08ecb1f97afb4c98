"""The researchers' pages: the admin blueprint and its login.

The control room itself (dashboard, participant table, exclusions, previews, exports)
adds its views to this blueprint from study_server/control.py.
"""

from __future__ import annotations

import functools

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.security import check_password_hash

from study_server.extensions import db
from study_server.forms import ActionForm, LoginForm
from study_server.http import abort_with
from study_server.models import LoginAttempt
from study_server.rate_limits import client_address
from study_server.sessions import end_admin_session, is_admin, start_admin_session

bp = Blueprint("admin", __name__, url_prefix="/admin")


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

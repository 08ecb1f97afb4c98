"""Who a browser is: the secrets in the signed session cookie and their hashes in the
database.

A participant's run is bound to the browser that started it: that browser's session
holds a random token whose SHA-256 is stored with the participant, so knowing (or
guessing) a PROLIFIC_PID, or a cookie signed for another database, opens no one's run.
An admin's session holds a token of a row in ``admin_sessions``; logging out deletes the
row, so a copy of the cookie stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app, session
from sqlalchemy import delete

from study_server.extensions import db
from study_server.models import AdminSession, Participant, utcnow


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Participants


def bind_participant(participant: Participant, token: str) -> None:
    """Make this browser's session the participant's."""
    session.permanent = True
    session["participant_id"] = participant.id
    session["participant_pid"] = participant.prolific_pid
    session["participant_token"] = token


def is_returning(prolific_pid: str) -> bool:
    """Whether this browser's (signed) session already belongs to ``prolific_pid``."""
    return session.get("participant_pid") == prolific_pid


def holds_participant(participant: Participant) -> bool:
    """Whether this browser's session carries the token the participant is bound to."""
    token = session.get("participant_token")
    stored = participant.session_token_hash
    if not isinstance(token, str) or stored is None:
        return False
    return hmac.compare_digest(token_hash(token), stored)


# Admins

# The session keys of a signed-in researcher; a participant run in the same browser keeps
# its own keys through the researcher's login and logout.
ADMIN_KEYS = ("admin", "admin_name")


def _forget_admin() -> None:
    for key in ADMIN_KEYS:
        session.pop(key, None)


def start_admin_session() -> None:
    """Sign this browser in as admin: a new session and its row (the caller commits)."""
    token = new_token()
    lifetime = current_app.permanent_session_lifetime
    db.session.execute(delete(AdminSession).where(AdminSession.created_at < utcnow() - lifetime))
    db.session.add(AdminSession(token_hash=token_hash(token)))
    _forget_admin()
    session.permanent = True
    session["admin"] = token


def is_admin() -> bool:
    """Whether this browser's session is a signed-in admin session not logged out since."""
    token = session.get("admin")
    if not isinstance(token, str):
        return False
    found = db.session.get(AdminSession, token_hash(token))
    if found is None:
        return False
    lifetime: timedelta = current_app.permanent_session_lifetime
    return found.created_at >= utcnow() - lifetime


def end_admin_session() -> None:
    """Log out: delete this session's row (the caller commits) and forget it here."""
    token = session.get("admin")
    if isinstance(token, str):
        db.session.execute(delete(AdminSession).where(AdminSession.token_hash == token_hash(token)))
    _forget_admin()

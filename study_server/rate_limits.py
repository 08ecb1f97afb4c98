"""Per-address limits with Flask-Limiter, counted in the study database.

Flask-Limiter's own storages are process memory (each gunicorn worker would count on its
own) or servers this project does not run (Redis, Memcached, MongoDB). The study
database is already shared by every worker and host, so the counters live there: one
row per key in ``rate_limits``, bumped by a single atomic upsert, so parallel requests
(PostgreSQL, several workers) can never pass a limit together.

Each app gets a :class:`~flask_limiter.Limiter` of its own (a Limiter keeps its storage
and limits per instance, and the tests build many apps in one process).
"""

from __future__ import annotations

import time

from flask import Flask, g, request
from flask_limiter import Limiter
from limits import parse_many
from limits.storage import Storage
from sqlalchemy import case, delete, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from study_server.models import RateLimit
from study_server.sessions import is_returning
from xaistudy.errors import UserError

_counters = RateLimit.__table__
# Counters of windows that ended this long ago are deleted as new hits come in.
_KEEP_EXPIRED_S = 3600


class DatabaseStorage(Storage):
    """A ``limits`` storage (fixed windows) in the study database's ``rate_limits`` table."""

    STORAGE_SCHEME = ["xaistudy-database"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, engine: Engine | None = None):
        if engine is None:
            raise ValueError("DatabaseStorage needs the study database's engine")
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.engine = engine
        self._insert = postgresql_insert if engine.dialect.name == "postgresql" else sqlite_insert

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` hits to ``key`` (a new window of ``expiry`` seconds if the last one
        ended) and return its hits, in one statement."""
        now = time.time()
        statement = self._insert(_counters).values(key=key, hits=amount, expires_at=now + expiry)
        ended = _counters.c.expires_at <= now  # the stored window is over: start anew
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "hits": case((ended, amount), else_=_counters.c.hits + amount),
                "expires_at": case((ended, now + expiry), else_=_counters.c.expires_at),
            },
        ).returning(_counters.c.hits)
        with self.engine.begin() as connection:
            hits = connection.execute(statement).scalar_one()
            connection.execute(
                delete(_counters).where(_counters.c.expires_at < now - _KEEP_EXPIRED_S)
            )
        return hits

    def get(self, key: str) -> int:
        with self.engine.connect() as connection:
            hits = connection.execute(
                select(_counters.c.hits).where(
                    _counters.c.key == key, _counters.c.expires_at > time.time()
                )
            ).scalar_one_or_none()
        return hits or 0

    def get_expiry(self, key: str) -> float:
        with self.engine.connect() as connection:
            expiry = connection.execute(
                select(_counters.c.expires_at).where(_counters.c.key == key)
            ).scalar_one_or_none()
        return expiry if expiry is not None else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return connection.execute(delete(_counters)).rowcount

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(_counters).where(_counters.c.key == key))


def client_address() -> str:
    """The address limits count by: the peer's, or the proxy's X-Forwarded-For where the
    proxy fix trusts it (study_server.proxy)."""
    return (request.remote_addr or "unknown")[:64]


def everyone() -> str:
    """One key for every address: a limit shared by the whole internet."""
    return "everyone"


def init_limiter(app: Flask, engine: Engine) -> Limiter:
    """This app's limiter, counting in ``engine``'s database; :func:`limit_views` says what
    it limits."""
    limiter = Limiter(
        key_func=client_address,
        storage_uri="xaistudy-database://",
        storage_options={"engine": engine},
        strategy="fixed-window",
    )
    limiter.init_app(app)
    return limiter


def configured_limits(app: Flask, setting: str) -> str | None:
    """The limits of ``setting`` (e.g. ``"5 per minute; 30 per hour"``), None for "off"."""
    text = str(app.config[setting]).strip()
    if text.lower() in ("off", ""):
        return None
    try:
        parse_many(text)
    except ValueError as exc:
        raise UserError(
            f"{setting} = {text!r} is not a rate limit: write e.g. '5 per minute; 30 per hour', "
            "or 'off'"
        ) from exc
    return text


def limit_views(app: Flask, limiter: Limiter) -> None:
    """Arrivals: new participants per address (a returning participant is not counted).
    Admin login attempts: per address (someone sharing the admin's address can delay them
    only that long) and, more slowly, for every address together (guessing from many
    addresses)."""
    views = app.view_functions  # Flask-Limiter checks a limit in the view's wrapper
    arrivals = configured_limits(app, "XAISTUDY_ARRIVAL_LIMITS")
    if arrivals:
        views["participant.entry"] = limiter.limit(
            arrivals, deduct_when=counts_new_participants, exempt_when=returning_participant
        )(views["participant.entry"])
    per_address = configured_limits(app, "XAISTUDY_LOGIN_LIMITS")
    if per_address:
        views["admin.login"] = limiter.limit(per_address, methods=["POST"])(views["admin.login"])
    everyone_together = configured_limits(app, "XAISTUDY_LOGIN_LIMITS_EVERYONE")
    if everyone_together:
        views["admin.login"] = limiter.shared_limit(
            everyone_together, scope="admin-login-everyone", key_func=everyone, methods=["POST"]
        )(views["admin.login"])


def returning_participant() -> bool:
    """A participant coming back in their own browser is never refused."""
    return is_returning(request.args.get("PROLIFIC_PID", ""))


def counts_new_participants(response) -> bool:
    """An arrival counts against the limit only when it created a participant."""
    return bool(g.get("created_participant"))

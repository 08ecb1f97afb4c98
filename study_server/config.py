"""Configuration: a class with defaults, overridden by environment variables."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from datetime import timedelta

from sqlalchemy import event
from sqlalchemy.engine import Engine


def normalize_database_url(url: str) -> str:
    """Point ``postgres://`` and ``postgresql://`` URLs at psycopg 3 (the installed driver)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class Config:
    """Defaults; :meth:`from_env` reads the environment when the app is created."""

    SECRET_KEY: str | None = None
    SQLALCHEMY_DATABASE_URI: str | None = None  # default: instance/xaistudy.sqlite
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    XAISTUDY_BUNDLE: str | None = None
    XAISTUDY_STUDY: str | None = None  # None: the default study that ships with the package
    XAISTUDY_ADMIN_PASSWORD: str | None = None  # plain text or a werkzeug hash
    XAISTUDY_PROXY_FIX: bool = False  # trust one X-Forwarded-For/-Proto hop (reverse proxy)
    XAISTUDY_LOGIN_LIMIT: int = 5  # failed admin logins per address ...
    XAISTUDY_LOGIN_WINDOW_S: int = 15 * 60  # ... within this window
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    SESSION_COOKIE_NAME = "xaistudy"
    PERMANENT_SESSION_LIFETIME = timedelta(days=3)
    # The cookie is signed once when it changes (entry, admin login), not on every
    # request: a study lasts far less than the lifetime.
    SESSION_REFRESH_EACH_REQUEST = False
    MAX_CONTENT_LENGTH = 64 * 1024
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the signed session
    TESTING = False
    DEBUG = False

    @classmethod
    def from_env(cls) -> dict:
        values = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        env = os.environ
        if env.get("SECRET_KEY"):
            values["SECRET_KEY"] = env["SECRET_KEY"]
        if env.get("DATABASE_URL"):
            values["SQLALCHEMY_DATABASE_URI"] = env["DATABASE_URL"]
        for key in ("XAISTUDY_BUNDLE", "XAISTUDY_STUDY", "XAISTUDY_ADMIN_PASSWORD"):
            if env.get(key):
                values[key] = env[key]
        if "XAISTUDY_SECURE_COOKIES" in env:
            values["SESSION_COOKIE_SECURE"] = _flag("XAISTUDY_SECURE_COOKIES")
        if "XAISTUDY_PROXY_FIX" in env:
            values["XAISTUDY_PROXY_FIX"] = _flag("XAISTUDY_PROXY_FIX")
        if _flag("FLASK_DEBUG"):
            values["DEBUG"] = True
        return values


_queue_holder = threading.local()  # whether this thread holds the writer queue


class QueuedSQLiteConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on a lock file first.

    SQLite's own busy handler retries a locked database by sleeping (1, 2, 5 ... then
    100 ms steps), so under contention a writer may sleep long after the lock came free,
    and the waiters are served in no order. Taking an exclusive ``flock`` on
    ``<database>-writer.lock`` before ``BEGIN IMMEDIATE`` makes the kernel hand the lock
    to the next waiting transaction (any process or thread) the moment the current one
    commits or rolls back. The kernel drops the lock with the process, so a killed worker
    never leaves it held. SQLite's own locking stays in force (and ``busy_timeout`` for
    any writer outside this queue), so correctness never depends on the file lock.
    """

    _queue_fd: int | None = None
    _queue_held: bool = False

    def acquire_write_queue(self, database_path: str) -> None:
        if getattr(_queue_holder, "held", False):
            # This thread's other connection is in a transaction: waiting here would wait
            # for ourselves, so this one relies on SQLite's busy_timeout alone.
            return
        if self._queue_fd is None:
            self._queue_fd = os.open(database_path + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._queue_fd, fcntl.LOCK_EX)  # blocks without holding the GIL
        self._queue_held = _queue_holder.held = True

    def release_write_queue(self) -> None:
        if self._queue_held:
            self._queue_held = _queue_holder.held = False
            fcntl.flock(self._queue_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_write_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_write_queue()
            if self._queue_fd is not None:
                os.close(self._queue_fd)
                self._queue_fd = None


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL, None for an in-memory database."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return None if database in (None, "", ":memory:") or database.startswith("file:") else database


def engine_options(url: str) -> dict:
    """Engine options per backend.

    SQLite: a file database's connections queue their write transactions on a lock file
    (:class:`QueuedSQLiteConnection`) and SQLite waits for its write lock instead of
    failing. PostgreSQL: a pool large enough for every thread of a gunicorn worker, each
    connection checked before use (a restarted database server), and recycled hourly.
    """
    if url.startswith("sqlite"):
        connect_args: dict = {"timeout": 60, "check_same_thread": False}
        if _sqlite_file(url):
            connect_args["factory"] = QueuedSQLiteConnection
        return {"connect_args": connect_args}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20, "pool_recycle": 3600}


def configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for every transaction.

    An immediate transaction takes SQLite's write lock when it begins, so a request that
    reads the page pointer and then writes can never interleave with another writer
    (this is what makes assignment and the page pointer correct on SQLite); deferred
    transactions would fail with "database is locked" when upgrading to a write.
    WAL lets readers outside these transactions (the export) read while a write is under
    way; ``synchronous=NORMAL`` is durable across a crashed process (what WAL needs
    fsync for is a power loss), so a killed worker loses no committed answer.
    """
    if engine.dialect.name != "sqlite":
        return
    database = _sqlite_file(engine.url.render_as_string(hide_password=False))

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        if database:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        dbapi_connection = connection.connection.dbapi_connection
        queued = database and isinstance(dbapi_connection, QueuedSQLiteConnection)
        if queued:
            dbapi_connection.acquire_write_queue(database)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if queued:
                dbapi_connection.release_write_queue()
            raise

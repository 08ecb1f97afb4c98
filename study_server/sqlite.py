"""SQLite under the study server: pragmas, immediate transactions, a queue of writers.

SQLite fits a study on one machine when every write transaction takes the database's
write lock as it begins (``BEGIN IMMEDIATE``) and writers wait for it in turn instead of
failing. :func:`connect_args` and :func:`configure_sqlite` set that up for an engine;
PostgreSQL needs none of it. Long reads (the researcher's pages, the exports) take a
:func:`read_only_connection` instead, which never holds the write lock.
"""

from __future__ import annotations

import contextvars
import fcntl
import os
import sqlite3
import threading

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

# Whether this thread (or greenlet: each has its own context) holds the writer queue.
_holds_queue = contextvars.ContextVar("holds_sqlite_write_queue", default=False)
# One lock per process and database file, made on first use, so after gevent has patched
# a worker (a lock made before that would block the whole worker).
_process_locks: dict[tuple[int, str], threading.Lock] = {}


def _process_lock(database_path: str) -> threading.Lock:
    return _process_locks.setdefault((os.getpid(), database_path), threading.Lock())


READ_ONLY = "xaistudy_read_only"  # the execution option of read_only_connection


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

    Within a process the writers first queue on a lock of that process: ``flock`` blocks
    the whole process, which under gevent (one thread, many greenlets) would stop the
    greenlet that holds the queue from ever committing.
    """

    _queue_fd: int | None = None
    _queue_lock: threading.Lock | None = None

    def acquire_write_queue(self, database_path: str) -> None:
        if _holds_queue.get():
            # This thread's other connection is in a transaction: waiting here would wait
            # for ourselves, so this one relies on SQLite's busy_timeout alone.
            return
        if self._queue_fd is None:
            self._queue_fd = os.open(database_path + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        lock = _process_lock(database_path)
        lock.acquire()
        try:
            fcntl.flock(self._queue_fd, fcntl.LOCK_EX)  # blocks without holding the GIL
        except BaseException:
            lock.release()
            raise
        self._queue_lock = lock
        _holds_queue.set(True)

    def release_write_queue(self) -> None:
        if self._queue_lock is not None:
            lock, self._queue_lock = self._queue_lock, None
            _holds_queue.set(False)
            fcntl.flock(self._queue_fd, fcntl.LOCK_UN)
            lock.release()

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


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory database or another backend."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    return None if database.startswith("file:") else database


def connect_args(url: str) -> dict:
    """Arguments of the DB-API connections to the SQLite database at ``url``: wait a minute
    for a lock instead of failing, share connections across a worker's threads, and queue
    the write transactions of a database file (:class:`QueuedSQLiteConnection`)."""
    args: dict = {"timeout": 60, "check_same_thread": False}
    if sqlite_file(url):
        args["factory"] = QueuedSQLiteConnection
    return args


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
    database = sqlite_file(engine.url.render_as_string(hide_password=False))

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

    @event.listens_for(engine, "handle_error")
    def _read_only(context):
        # A connection opened while the file was read-only stays read-only: treat it as
        # lost, so the pool replaces it and the server recovers once the file is writable.
        code = getattr(context.original_exception, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_READONLY:
            context.is_disconnect = True

    @event.listens_for(engine, "begin")
    def _begin(connection):
        if connection.get_execution_options().get(READ_ONLY):
            # Deferred: it reads the WAL snapshot of its first statement and never waits
            # for, nor holds, the write lock.
            connection.exec_driver_sql("BEGIN")
            return
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


def read_only_connection(engine: Engine) -> Connection:
    """A connection for reading only, consistent across its statements, that never holds
    up a writer: on SQLite a deferred transaction (a WAL snapshot), on PostgreSQL a
    read-only repeatable-read one. The researcher's pages and the exports read through
    it, so a large study's dashboard or export never delays a participant's answer."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        return connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    return connection.execution_options(**{READ_ONLY: True})

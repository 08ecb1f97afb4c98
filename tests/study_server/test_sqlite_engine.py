"""SQLite connections of the server: pragmas, immediate transactions, the writer queue."""

from __future__ import annotations

import fcntl
import os

from sqlalchemy import text

from study_server.extensions import db
from study_server.sqlite import QueuedSQLiteConnection


def _queue_is_free(lock_path: str) -> bool:
    """Whether another open file description can take the writer queue's lock now."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_sqlite_connections_get_wal_busy_timeout_and_normal_sync(sqlite_app):
    with sqlite_app.app_context():
        with db.engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
            }
            assert isinstance(conn.connection.dbapi_connection, QueuedSQLiteConnection)
        db.engine.dispose()
    # synchronous 1 = NORMAL: durable across a killed process in WAL mode.
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": 60000,
        "synchronous": 1,
        "foreign_keys": 1,
    }


def test_write_transactions_hold_the_writer_queue_until_they_end(sqlite_app):
    with sqlite_app.app_context():
        lock_path = db.engine.url.database + "-writer.lock"
        with db.engine.connect() as conn:
            assert _queue_is_free(lock_path)
            with conn.begin():
                conn.execute(text("SELECT count(*) FROM participants")).scalar()
                # BEGIN IMMEDIATE was issued after taking the queue: SQLite's write lock
                # is held (no other writer may start) and so is the file lock.
                assert conn.connection.dbapi_connection.in_transaction
                assert not _queue_is_free(lock_path)
            assert _queue_is_free(lock_path)  # released by the commit
            trans = conn.begin()
            assert not _queue_is_free(lock_path)
            trans.rollback()
            assert _queue_is_free(lock_path)  # released by the rollback
        db.engine.dispose()


def test_a_second_writer_waits_for_the_first_to_commit(sqlite_app):
    """BEGIN IMMEDIATE under the queue: a concurrent writer starts only after the commit."""
    import threading

    with sqlite_app.app_context():
        engine = db.engine
        order: list[str] = []
        first_in = threading.Event()

        def second() -> None:
            first_in.wait(10)
            with engine.begin() as conn:
                order.append("second begins")
                conn.execute(text("UPDATE studies SET title = title"))

        thread = threading.Thread(target=second)
        thread.start()
        with engine.begin() as conn:
            conn.execute(text("UPDATE studies SET title = title"))
            first_in.set()
            thread.join(0.3)  # the second writer is blocked meanwhile
            order.append("first commits")
        thread.join(10)
        engine.dispose()
    assert order == ["first commits", "second begins"]

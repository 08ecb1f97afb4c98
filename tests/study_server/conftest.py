"""Fixtures of the study server's tests: apps on SQLite and PostgreSQL over the fixture
bundle (``bundle_dir``, tests/conftest.py).

Every app fixture runs the Alembic migrations (never ``create_all``), so both backends
prove the migration. PostgreSQL tests get a database of their own per xdist worker.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from server_helpers import PG_ADMIN, make_app
from sqlalchemy import text


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session (and xdist worker), dropped after."""
    import psycopg

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"xaistudy_test_{worker}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate(app) -> None:
    from study_server.extensions import db

    with app.app_context():
        names = ", ".join(t.name for t in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def sqlite_template(bundle_dir, tmp_path_factory) -> Path:
    """A SQLite database migrated once per session; tests get copies of it."""
    from study_server.extensions import db

    path = tmp_path_factory.mktemp("template") / "study.sqlite"
    app = make_app(bundle_dir, f"sqlite:///{path}")
    with app.app_context():
        db.engine.dispose()
    return path


@pytest.fixture
def database_url(backend, tmp_path, request) -> str:
    if backend == "sqlite":
        path = tmp_path / "study.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app(bundle_dir, database_url, backend):
    app = make_app(bundle_dir, database_url, migrate=backend == "postgres")
    if backend == "postgres":
        _truncate(app)
    yield app
    from study_server.extensions import db

    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def sqlite_app(bundle_dir, tmp_path, sqlite_template):
    """An app on SQLite only, for tests whose point is not the backend."""
    path = tmp_path / "study.sqlite"
    shutil.copyfile(sqlite_template, path)
    return make_app(bundle_dir, f"sqlite:///{path}", migrate=False)

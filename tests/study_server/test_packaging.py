"""An installed (not editable) xaistudy migrates the study database from its own files.

The migrations live in the repository's top-level ``migrations/`` folder and are
installed as ``study_server.migrations``. This builds the wheel, installs it without
``-e`` into a folder of its own (the dependencies are the test environment's), and runs
the server's migration and one request from that copy, outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from pathlib import Path
import flask_migrate
import study_server
from sqlalchemy import inspect

site = Path(sys.argv[1]).resolve()
assert site in study_server.MIGRATIONS_DIR.parents, study_server.MIGRATIONS_DIR
app = study_server.create_app({
    "XAISTUDY_BUNDLE": sys.argv[2],
    "SQLALCHEMY_DATABASE_URI": "sqlite:///" + sys.argv[3],
    "SECRET_KEY": "packaging-test",
    "XAISTUDY_ADMIN_PASSWORD": "packaging-test",
})
with app.app_context():
    flask_migrate.upgrade()
    tables = set(inspect(study_server.extensions.db.engine).get_table_names())
    assert {"participants", "answers", "alembic_version"} <= tables, tables
response = app.test_client().get("/admin/login")
assert response.status_code == 200, response.status_code
print("migrated from", study_server.MIGRATIONS_DIR)
"""


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def test_installed_wheel_migrates_and_serves(tmp_path, bundle_dir):
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", str(tmp_path / "dist"), str(ROOT),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("xaistudy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "study_server/migrations/env.py" in names
    assert any(n.startswith("study_server/migrations/versions/0001") for n in names)

    site = tmp_path / "site"
    installed = run(
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q",
        "--target", str(site), str(wheel),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    env = {**os.environ, "PYTHONPATH": str(site)}
    served = run(
        sys.executable, "-c", SCRIPT, str(site), str(bundle_dir), str(tmp_path / "db.sqlite"),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert served.returncode == 0, served.stderr
    assert "migrated from" in served.stdout

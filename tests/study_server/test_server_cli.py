"""`flask db upgrade` and `xaistudy serve` as an operator runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from server_helpers import answer_all, filled_study_file
from sqlalchemy import create_engine, inspect

from explain.bundle_format import load_manifest
from simulation.client import ParticipantClient
from simulation.transport import HttpTransport
from study_server.export import export_frames
from study_server.study import load_study

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_flask_db_upgrade_creates_the_schema(bundle_dir, tmp_path):
    url = f"sqlite:///{tmp_path}/flask.sqlite"
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "k", "XAISTUDY_BUNDLE": str(bundle_dir)}
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "study_server", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"participants", "answers", "page_visits", "studies", "alembic_version"} <= tables


def test_serve_migrates_sqlite_and_serves_a_full_participant(bundle_dir, tmp_path):
    port = _free_port()
    db_path = tmp_path / "served.sqlite"
    study_file = filled_study_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    server = subprocess.Popen(
        [
            str(BIN / "xaistudy"),
            "serve",
            "--bundle",
            str(bundle_dir),
            "--study",
            str(study_file),
            "--db",
            f"sqlite:///{db_path}",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(base + "/", timeout=2).status_code == 400:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.time() < deadline, "server did not start"
            time.sleep(0.2)
        served = load_study(study_file).with_bundle(load_manifest(bundle_dir))
        result = ParticipantClient(HttpTransport(base), prolific_pid="SERVED", study=served).run(
            answer=answer_all
        )
        assert result.status == "completed"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "served.sqlite.secret").exists()
    frames = export_frames(f"sqlite:///{db_path}")
    assert len(frames["answers"]) == 7


def test_serve_refuses_a_missing_bundle(tmp_path):
    result = subprocess.run(
        [str(BIN / "xaistudy"), "serve", "--bundle", str(tmp_path / "none")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Error: bundle folder" in result.stderr and "Traceback" not in result.stderr

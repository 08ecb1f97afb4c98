"""`flask db upgrade` and `xaistudy serve` as an operator runs them."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
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
from xaistudy.cli.server import control_socket_path

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


@contextlib.contextmanager
def served(bundle_dir, tmp_path, *options: str, port: int | None = None):
    """``xaistudy serve`` on 127.0.0.1 for as long as the block runs: yields its URL and
    process (gunicorn's master: serve replaces itself with it)."""
    port = port or _free_port()
    db_path = tmp_path / "served.sqlite"
    study = filled_study_file(tmp_path)  # tmp_path / "study.toml"
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    server = subprocess.Popen(
        [str(BIN / "xaistudy"), "serve", "--bundle", str(bundle_dir), "--study", str(study)]
        + ["--db", f"sqlite:///{db_path}", "--port", str(port), "--workers", "2", *options],
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
                if requests.get(base + "/", timeout=5).status_code == 400:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or the workers still loading the bundle
            assert server.poll() is None, server.stderr.read()
            assert time.time() < deadline, "server did not start"
            time.sleep(0.2)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_migrates_sqlite_and_serves_a_full_participant(bundle_dir, tmp_path):
    with served(bundle_dir, tmp_path) as (base, _server):
        study = load_study(tmp_path / "study.toml").with_bundle(load_manifest(bundle_dir))
        result = ParticipantClient(HttpTransport(base), prolific_pid="SERVED", study=study).run(
            answer=answer_all
        )
        assert result.status == "completed"
    assert (tmp_path / "served.sqlite.secret").exists()
    frames = export_frames(f"sqlite:///{tmp_path}/served.sqlite")
    assert len(frames["answers"]) == 7


def _slow_client(port: int, stop: threading.Event) -> None:
    """A client that sends its request headers one byte every half second and never
    finishes; when the server drops it, it connects again at once."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /?PROLIFIC_PID=SLOW&STUDY_ID=S&SESSION_ID=X HTTP/1.1\r\n")
                while not stop.wait(0.5):
                    sock.sendall(b"X")
        except OSError:
            pass  # dropped by the server: come back


def test_slow_clients_cannot_starve_the_server(bundle_dir, tmp_path):
    port = _free_port()
    with served(bundle_dir, tmp_path, port=port) as (base, _server):
        stop = threading.Event()
        slow = [threading.Thread(target=_slow_client, args=(port, stop)) for _ in range(64)]
        for thread in slow:
            thread.start()
        try:
            time.sleep(3)  # every slow client is connected and trickling its headers
            response = requests.get(
                base + "/?PROLIFIC_PID=FAST&STUDY_ID=S&SESSION_ID=X", timeout=10
            )
            assert response.status_code == 200 and "xaistudy-page" in response.text
        finally:
            stop.set()
            for thread in slow:
                thread.join(timeout=10)


def test_a_chunked_body_over_the_limit_is_refused_not_cut(bundle_dir, tmp_path):
    with served(bundle_dir, tmp_path) as (base, _server):
        session = requests.Session()
        session.get(base + "/?PROLIFIC_PID=CHUNKED&STUDY_ID=S&SESSION_ID=X", timeout=10)

        def body(size: int):  # a generator: requests sends it chunked, with no length
            yield b"consent=yes&rev=0&padding="
            yield b"x" * size

        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        large = session.post(base + "/study/consent", data=body(70_000), headers=headers)
        assert large.status_code == 413
        small = session.post(base + "/study/consent", data=body(1_000), headers=headers)
        assert small.status_code == 400  # read whole: refused for its missing CSRF token


def test_serve_reads_the_admin_password_from_a_file_never_the_command_line(
    bundle_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # where the server puts its socket
    secret = "kept out of ps 7d1f"
    (tmp_path / "password").write_text(secret + "\n")
    port = _free_port()
    options = ("--admin-password-file", str(tmp_path / "password"))
    with served(bundle_dir, tmp_path, *options, port=port) as (base, server):
        session = requests.Session()
        form = session.get(base + "/admin/login", timeout=5).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
        login = session.post(
            base + "/admin/login",
            data={"csrf_token": token, "password": secret},
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 303
        processes = [server.pid, *_children(server.pid)]
        assert len(processes) == 3  # gunicorn's master and its two workers
        for pid in processes:
            assert secret not in Path(f"/proc/{pid}/cmdline").read_text()
        # Each instance has a control socket of its own, named by its port.
        assert Path(control_socket_path(port)).exists()
        assert control_socket_path(port) != control_socket_path(port + 1)


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


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

"""What a public study link invites: odd IDs, formula cells, floods of arrivals, guessed
admin passwords, borrowed identities, a database that stalls. Each test is one attack
and what the server does instead of failing."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from server_helpers import (
    ADMIN_PASSWORD,
    answer_all,
    count,
    hidden_fields,
    login,
    make_app,
    walk_to,
)
from sqlalchemy import event, update
from werkzeug.security import check_password_hash

from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server.export import frames_from_engine, neutralize_formula
from study_server.extensions import db
from study_server.models import LoginAttempt, Participant, RateLimit
from study_server.study import default_study_path, load_study
from xaistudy.cli import cli


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize("value", ["abc%0A", "a" * 64 + "%0A", "abc%0D%0A"])
def test_a_trailing_newline_never_passes_the_id_check(app, name, value):
    values = {"PROLIFIC_PID": "NL1", "STUDY_ID": "S1", "SESSION_ID": "X1", name: value}
    url = "/?" + "&".join(f"{k}={v}" for k, v in values.items())
    response = app.test_client().get(url)
    assert response.status_code == 400
    assert f"{name} is not valid" in response.get_data(as_text=True)
    assert count(app, Participant) == 0


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1", "-2+3", "@SUM(A1)"]


def test_formulas_are_neutralized_in_csv_and_kept_raw_in_parquet(sqlite_app, tmp_path):
    plain = ["plain", "a - b", "x=1"]
    reasons = dict(zip(load_study(None).attribute_keys, FORMULAS + plain, strict=True))
    ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="FORMULA").run(
        answer=lambda key, condition: (3, reasons[key])
    )
    url = sqlite_app.config["SQLALCHEMY_DATABASE_URI"]
    result = CliRunner().invoke(cli, ["export", "--db", url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    client = sqlite_app.test_client()
    login(client)
    downloaded = client.get("/admin/export/answers.csv").get_data(as_text=True)
    for csv_text in (downloaded, (tmp_path / "answers.csv").read_text()):
        cells = pd.read_csv(io.StringIO(csv_text), keep_default_na=False)["reason"].tolist()
        assert sorted(cells) == sorted(["'" + f for f in FORMULAS] + plain)
    raw = pd.read_parquet(tmp_path / "answers.parquet")["reason"].tolist()
    assert sorted(raw) == sorted(FORMULAS + plain)


def test_csv_neutralizes_tab_and_carriage_return_starts_but_never_numbers():
    values = ["\tx", "\rx", "ok", -1, 2.5, None]
    assert [neutralize_formula(v) for v in values] == ["'\tx", "'\rx", "ok", -1, 2.5, None]


# Arrivals


def _app(bundle_dir, tmp_path, sqlite_template, **settings):
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.sqlite"
    shutil.copyfile(sqlite_template, path)
    return make_app(bundle_dir, f"sqlite:///{path}", migrate=False, **settings)


def _arrive(client, pid: str, address: str = "127.0.0.1", session_id: str = "X1"):
    url = f"/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID={session_id}"
    return client.get(url, environ_base={"REMOTE_ADDR": address})


def test_new_arrivals_are_limited_per_address_but_returning_ones_are_not(
    bundle_dir, tmp_path, sqlite_template
):
    app = _app(bundle_dir, tmp_path, sqlite_template, XAISTUDY_ARRIVAL_LIMITS="3 per minute")
    first = app.test_client()
    assert _arrive(first, "NEW0").status_code == 303
    for i in range(1, 3):
        assert _arrive(app.test_client(), f"NEW{i}").status_code == 303
    refused = _arrive(app.test_client(), "NEW3")
    assert refused.status_code == 429 and "Too many attempts" in refused.get_data(as_text=True)
    assert "Retry-After" in refused.headers
    assert _arrive(first, "NEW0").status_code == 303  # coming back is not a new arrival
    assert _arrive(app.test_client(), "NEW4", address="192.0.2.7").status_code == 303
    assert count(app, Participant) == 4


def _study_file(tmp_path, **completion) -> Path:
    """The shipped study with every target at 1 and extra [completion] keys."""
    text = default_study_path().read_text()
    text = re.sub(r"target_n = \d+", "target_n = 1", text)
    extra = "".join(f"{key} = {value}\n" for key, value in completion.items())
    text = text.replace("[completion]\n", "[completion]\n" + extra)
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_a_study_whose_targets_are_met_shows_new_arrivals_a_full_page(
    bundle_dir, tmp_path, sqlite_template
):
    app = _app(bundle_dir, tmp_path, sqlite_template, XAISTUDY_STUDY=str(_study_file(tmp_path)))
    first = app.test_client()
    for i, client in enumerate([first, app.test_client(), app.test_client()]):
        assert _arrive(client, f"CAP{i}").status_code == 303
    full = _arrive(app.test_client(), "CAP3")
    assert full.status_code == 410 and "The study is full" in full.get_data(as_text=True)
    assert count(app, Participant) == 3
    assert _arrive(first, "CAP0").status_code == 303  # those taking part go on


def test_per_participant_completion_codes_are_shown_and_stored(
    bundle_dir, tmp_path, sqlite_template
):
    study = _study_file(tmp_path, per_participant_codes="true")
    app = _app(bundle_dir, tmp_path, sqlite_template, XAISTUDY_STUDY=str(study))
    codes = [
        ParticipantClient(FlaskTransport(app), prolific_pid=f"CODE{i}")
        .run(answer=answer_all)
        .completion_code
        for i in range(2)
    ]
    static = load_study(study).completed_code
    assert len(set(codes)) == 2 and static not in codes
    assert all(len(code) == 8 for code in codes)
    with app.app_context():
        stored = frames_from_engine(db.engine)["participants"]
    assert dict(zip(stored["prolific_pid"], stored["completion_code"], strict=True)) == {
        "CODE0": codes[0],
        "CODE1": codes[1],
    }


# Admin login


def _login_form(app, address: str = "127.0.0.1"):
    client = app.test_client()
    html = client.get("/admin/login", environ_base={"REMOTE_ADDR": address}).get_data(as_text=True)
    return client, hidden_fields(html)


def _guess(client, fields, password="wrong", address="127.0.0.1", headers=None):
    return client.post(
        "/admin/login",
        data={**fields, "password": password},
        environ_base={"REMOTE_ADDR": address},
        headers=headers or {},
    ).status_code


def test_parallel_guesses_never_pass_the_login_limit(app):
    guesses = 16
    forms = [_login_form(app) for _ in range(guesses)]
    barrier = threading.Barrier(guesses)

    def guess(i: int) -> int:
        barrier.wait(timeout=30)
        return _guess(*forms[i])

    with ThreadPoolExecutor(max_workers=guesses) as pool:
        statuses = list(pool.map(guess, range(guesses)))
    assert sorted(statuses) == [401] * 5 + [429] * (guesses - 5)  # 5 checked, the rest refused
    assert count(app, LoginAttempt) == 5


def test_a_neighbour_delays_the_admin_only_briefly(bundle_dir, tmp_path, sqlite_template):
    app = _app(bundle_dir, tmp_path, sqlite_template, XAISTUDY_LOGIN_LIMITS="3 per minute")
    client, fields = _login_form(app)
    assert [_guess(client, fields) for _ in range(4)] == [401, 401, 401, 429]
    with app.app_context():  # a minute later: the per-address window is over
        db.session.execute(update(RateLimit).values(expires_at=time.time() - 1))
        db.session.commit()
    assert _guess(client, fields, password=ADMIN_PASSWORD) == 303


def test_guesses_from_many_addresses_meet_the_slower_limit_of_everyone(
    bundle_dir, tmp_path, sqlite_template
):
    app = _app(bundle_dir, tmp_path, sqlite_template, XAISTUDY_LOGIN_LIMITS_EVERYONE="6 per hour")
    statuses = []
    for i in range(8):
        client, fields = _login_form(app, address=f"198.51.100.{i}")
        statuses.append(_guess(client, fields, address=f"198.51.100.{i}"))
    assert statuses == [401] * 6 + [429] * 2


def test_forwarded_for_is_believed_only_from_the_trusted_proxy(
    bundle_dir, tmp_path, sqlite_template
):
    app = _app(bundle_dir, tmp_path, sqlite_template, XAISTUDY_PROXY_FIX=True)
    client, fields = _login_form(app, address="203.0.113.9")
    statuses = [
        _guess(client, fields, address="203.0.113.9", headers={"X-Forwarded-For": f"10.0.0.{i}"})
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]  # reaching gunicorn directly: one address
    proxied = [
        _guess(client, fields, address="127.0.0.1", headers={"X-Forwarded-For": f"10.1.0.{i}"})
        for i in range(6)
    ]
    assert proxied == [401] * 6  # through the proxy: six clients


def test_the_password_is_checked_outside_any_write_lock(
    bundle_dir, tmp_path, sqlite_template, monkeypatch
):
    app = _app(bundle_dir, tmp_path, sqlite_template)
    database = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    others_could_write = []

    def hashing(stored, password):
        probe = sqlite3.connect(database, timeout=0.2)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            others_could_write.append(True)
        except sqlite3.OperationalError:
            others_could_write.append(False)
        finally:
            probe.close()
        return check_password_hash(stored, password)

    monkeypatch.setattr("study_server.admin.check_password_hash", hashing)
    assert _guess(*_login_form(app), password=ADMIN_PASSWORD) == 303
    assert others_could_write == [True]


def test_a_logged_out_admin_cookie_no_longer_works(sqlite_app):
    client = sqlite_app.test_client()
    assert login(client).status_code == 303
    copied = client.get_cookie("xaistudy").value
    fields = hidden_fields(client.get("/admin/").get_data(as_text=True))
    assert client.post("/admin/logout", data=fields).status_code == 303
    thief = sqlite_app.test_client()
    thief.set_cookie("xaistudy", copied)
    assert thief.get("/admin/").status_code == 303  # to the login page


# Identity


def test_knowing_a_prolific_id_does_not_open_its_run(sqlite_app):
    victim = sqlite_app.test_client()
    assert _arrive(victim, "VICTIM").status_code == 303
    attacker = sqlite_app.test_client()
    taken = _arrive(attacker, "VICTIM", session_id="GUESSED")
    assert taken.status_code == 403
    assert "another browser" in taken.get_data(as_text=True)
    assert attacker.get("/study/consent").status_code == 403
    assert victim.get("/study/consent").status_code == 200


def test_a_participant_moves_to_another_browser_with_their_own_link(sqlite_app):
    old = sqlite_app.test_client()
    html = walk_to(old, "intro", pid="MOVER")
    assert "xaistudy-page" in html
    new = sqlite_app.test_client()
    moved = _arrive(new, "MOVER", session_id="X1")  # the link Prolific gave them
    assert moved.status_code == 303 and moved.headers["Location"].endswith("/study/intro")
    assert new.get("/study/intro").status_code == 200
    assert old.get("/study/intro").status_code == 403  # the run is in one browser at a time


def test_an_old_cookie_opens_nobody_after_the_database_was_recreated(
    bundle_dir, tmp_path, sqlite_template
):
    before = _app(bundle_dir, tmp_path, sqlite_template)
    old = before.test_client()
    assert _arrive(old, "FIRST").status_code == 303
    after = _app(bundle_dir, tmp_path, sqlite_template)  # a fresh database, the same key
    assert _arrive(after.test_client(), "SECOND").status_code == 303  # participant 1 again
    stale = after.test_client()
    stale.set_cookie("xaistudy", old.get_cookie("xaistudy").value)
    assert stale.get("/study/consent").status_code == 403


# Request handling


def test_hsts_over_https_and_no_referer_needed(sqlite_app):
    site = "https://study.example.org"
    transport = FlaskTransport(sqlite_app, base_url=site + "/")
    ParticipantClient(transport, prolific_pid="NOREF").run(answer=answer_all, stop_after="consent")
    page = transport.client.get("/study/intro", base_url=site)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    fields = hidden_fields(page.get_data(as_text=True))
    elsewhere = transport.client.post(
        "/study/intro", data=fields, base_url=site, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 400
    no_referer = transport.client.post("/study/intro", data=fields, base_url=site)
    assert no_referer.status_code == 303
    plain = sqlite_app.test_client().get("/admin/login")
    assert "Strict-Transport-Security" not in plain.headers


MALFORMED_MANIFESTS = {
    "nested thousands deep": lambda m, text: "[" * 100_000 + "]" * 100_000,
    "an integer of 5000 digits": lambda m, text: text.replace(
        '"schema_version": ', '"schema_version": 1' + "0" * 5000 + ', "x": ', 1
    ),
    "a NUL byte in a file name": lambda m, text: _with_file(m, "images/a\x00b.png"),
    "a file name too long": lambda m, text: _with_file(m, "images/" + "a" * 300 + ".png"),
    "a symlink loop": lambda m, text: _with_file(m, "images/loop"),
    "manifest.json a folder": None,
}


def _with_file(manifest: dict, rel: str) -> str:
    manifest["files"][rel] = "0" * 64
    return json.dumps(manifest)


@pytest.mark.parametrize("kind", list(MALFORMED_MANIFESTS))
def test_malformed_manifests_refuse_start_up_in_one_message(bundle_dir, tmp_path, kind):
    damaged = tmp_path / "bundle"
    shutil.copytree(bundle_dir, damaged)
    manifest = damaged / "manifest.json"
    text = manifest.read_text()
    (damaged / "images" / "loop").symlink_to("loop")
    if MALFORMED_MANIFESTS[kind] is None:
        manifest.unlink()
        manifest.mkdir()
    else:
        manifest.write_text(MALFORMED_MANIFESTS[kind](json.loads(text), text))
    result = CliRunner().invoke(
        cli, ["serve", "--bundle", str(damaged), "--db", f"sqlite:///{tmp_path}/s.sqlite"]
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


# A database that stalls


def test_a_database_that_was_read_only_for_a_while_is_used_again(sqlite_app):
    client = sqlite_app.test_client()
    assert _arrive(client, "RO1").status_code == 303
    read_only = threading.Event()
    with sqlite_app.app_context():
        engine = db.engine

        @event.listens_for(engine, "connect")
        def _opened_while_read_only(dbapi_connection, _record):
            # What SQLite does when it opens a file it may not write: a read-only handle.
            if read_only.is_set():
                dbapi_connection.execute("PRAGMA query_only=ON")

        engine.dispose()
        read_only.set()
        refused = client.get("/study/consent")
        read_only.clear()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "try again" in refused.get_data(as_text=True)
    assert client.get("/study/consent").status_code == 200  # no restart needed


@pytest.mark.postgres
def test_a_hung_postgresql_gets_a_try_again_page_then_recovers(bundle_dir, postgres_url):
    import psycopg

    app = make_app(bundle_dir, postgres_url, XAISTUDY_DB_TIMEOUT_S=1)
    client = app.test_client()
    assert _arrive(client, f"HUNG{time.time_ns()}").status_code == 303
    plain_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain_url) as blocker:
        blocker.execute("LOCK TABLE participants IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        stalled = client.get("/study/consent")
        waited = time.monotonic() - started
    assert stalled.status_code == 503 and waited < 5
    assert client.get("/study/consent").status_code == 200


def test_a_database_server_that_never_answers_gets_a_try_again_page(bundle_dir):
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/none"
        app = make_app(bundle_dir, url, migrate=False, XAISTUDY_DB_TIMEOUT_S=1)
        started = time.monotonic()
        response = _arrive(app.test_client(), "SILENT")
        waited = time.monotonic() - started
    assert response.status_code == 503 and waited < 10
    assert "try again" in response.get_data(as_text=True)


def test_a_preview_is_bound_to_the_admin_browser_and_keeps_it_signed_in(sqlite_app):
    client = sqlite_app.test_client()
    login(client)
    fields = hidden_fields(client.get("/admin/").get_data(as_text=True))
    fields.update(condition="baseline", page="consent")
    assert client.post("/admin/preview", data=fields).status_code == 303
    assert client.get("/study/consent").status_code == 200
    assert client.get("/admin/").status_code == 200
    assert sqlite_app.test_client().get("/study/consent").status_code == 403

"""Security: torch never imported, cookies, headers, admin login, escaping.

The SECRET_KEY policy is tested with the rest of the settings, in test_config.py.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from server_helpers import (
    ADMIN_PASSWORD,
    answer_all,
    enter,
    hidden_fields,
    login,
    make_app,
    walk_to,
)

from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server.extensions import db
from study_server.models import Participant
from xaistudy.errors import UserError


def test_server_never_imports_torch(bundle_dir, tmp_path):
    code = (
        "import sys\n"
        "from study_server import create_app\n"
        "import study_server.export, simulation.client\n"
        f"app = create_app({{'TESTING': True, 'XAISTUDY_BUNDLE': {str(bundle_dir)!r},"
        f" 'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path}/t.sqlite'}})\n"
        "app.test_client().get('/')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_damaged_bundle_is_refused_with_a_clear_message(bundle_dir, tmp_path):
    import shutil

    damaged = tmp_path / "bundle"
    shutil.copytree(bundle_dir, damaged)
    image = sorted((damaged / "images").iterdir())[0]
    image.write_bytes(b"not the image")
    with pytest.raises(UserError, match="damaged bundle"):
        make_app(damaged, f"sqlite:///{tmp_path}/x.sqlite", migrate=False)


def test_cookie_flags_and_security_headers(sqlite_app):
    client = sqlite_app.test_client()
    response = enter(client, "SEC1", follow=False)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get(response.headers["Location"])
    headers = page.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    csp = headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "<script" not in page.get_data(as_text=True)


def test_session_cookie_cannot_be_forged_to_another_participant(sqlite_app):
    ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="VICTIM").run(answer=answer_all)
    attacker = sqlite_app.test_client()
    enter(attacker, "ATTACKER")
    # A cookie signed with another key is ignored: no session, so no page.
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("wrong-key", salt="cookie-session").dumps({"participant_id": 1})
    attacker.set_cookie("xaistudy", forged)
    assert attacker.get("/study/consent").status_code == 403


def test_url_parameters_cannot_choose_the_condition(sqlite_app):
    client = sqlite_app.test_client()
    for i in range(3):
        client = sqlite_app.test_client()
        url = f"/?PROLIFIC_PID=C{i}&STUDY_ID=S&SESSION_ID=X&condition=concepts&CONDITION=concepts"
        client.get(url)
    with sqlite_app.app_context():
        conditions = sorted(p.condition for p in db.session.query(Participant).all())
        db.session.rollback()
    assert conditions == ["baseline", "concepts", "counterfactuals"]


def test_admin_login_is_rate_limited_in_the_database(sqlite_app):
    client = sqlite_app.test_client()
    for _ in range(5):
        assert login(client, "wrong").status_code == 401
    # A different worker/process sees the same limit because it lives in the database.
    other = sqlite_app.test_client()
    assert login(other, ADMIN_PASSWORD).status_code == 429
    assert other.get("/admin/").status_code == 303


def test_admin_dashboard_counts_exclusion_and_escaped_free_text(sqlite_app):
    evil = "<script>alert(1)</script><b>bold</b>"
    ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="EVIL").run(
        answer=lambda key, condition: (3, evil)
    )
    client = sqlite_app.test_client()
    response = login(client)
    assert response.status_code == 303
    dashboard = client.get("/admin/").get_data(as_text=True)
    row = re.search(r"<th scope=\"row\">(\w+)</th>.*?<td>80</td>", dashboard, re.S)
    assert row is not None
    assert "EVIL" in client.get("/admin/participants").get_data(as_text=True)
    detail = client.get("/admin/participants/1").get_data(as_text=True)
    assert evil not in detail and "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    fields = {**hidden_fields(detail), "reason": "test", "actor": "RB"}
    excluded = client.post("/admin/participants/1/exclude", data=fields)
    assert excluded.status_code == 303
    with sqlite_app.app_context():
        assert db.session.get(Participant, 1).excluded is True
        db.session.rollback()
    csv = client.get("/admin/export/participants.csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert "EVIL" in csv.get_data(as_text=True)
    assert client.get("/admin/export/secrets.csv").status_code == 404


def test_admin_preview_never_counts(sqlite_app):
    client = sqlite_app.test_client()
    login(client)
    fields = hidden_fields(client.get("/admin/").get_data(as_text=True))
    fields.update(condition="concepts", page="consent")
    response = client.post("/admin/preview", data=fields, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Preview of the <strong>concepts</strong> condition" in html
    assert "this run is never counted" in html
    with sqlite_app.app_context():
        preview = db.session.query(Participant).one()
        assert preview.preview and preview.condition == "concepts"
        db.session.rollback()
    # Three real arrivals still spread over all three conditions.
    for i in range(3):
        enter(sqlite_app.test_client(), f"REAL{i}")
    with sqlite_app.app_context():
        real = sorted(
            p.condition for p in db.session.query(Participant).filter_by(preview=False).all()
        )
        db.session.rollback()
    assert real == ["baseline", "concepts", "counterfactuals"]


def test_admin_password_may_be_given_hashed(bundle_dir, tmp_path, sqlite_template):
    import shutil

    from werkzeug.security import generate_password_hash

    path = tmp_path / "h.sqlite"
    shutil.copyfile(sqlite_template, path)
    app = make_app(
        bundle_dir,
        f"sqlite:///{path}",
        migrate=False,
        XAISTUDY_ADMIN_PASSWORD=generate_password_hash("s3cret"),
    )
    client = app.test_client()
    assert login(client, "s3cret").status_code == 303
    assert client.get("/admin/").status_code == 200


def test_walk_helper_reaches_pages(sqlite_app):
    html = walk_to(sqlite_app.test_client(), "intro")
    assert "Meet Peaky and Stretchy" in html


def test_participants_complete_over_https_with_strict_csrf_referrer_checks(sqlite_app):
    result = ParticipantClient(
        FlaskTransport(sqlite_app, base_url="https://study.example.org/"), prolific_pid="TLS1"
    ).run(answer=answer_all)
    assert result.status == "completed"
    # A cross-site post over HTTPS is refused even with a valid token and session.
    site = "https://study.example.org"
    transport = FlaskTransport(sqlite_app, base_url=site + "/")
    ParticipantClient(transport, prolific_pid="TLS2").run(answer=answer_all, stop_after="consent")
    html = transport.client.get("/study/intro", base_url=site).get_data(as_text=True)
    for referer, expected in (("https://evil.example.com/", 400), (site + "/study/intro", 303)):
        response = transport.client.post(
            "/study/intro", data=hidden_fields(html), base_url=site, headers={"Referer": referer}
        )
        assert response.status_code == expected


def test_admin_routes_refuse_bad_ids_after_login(sqlite_app):
    client = sqlite_app.test_client()
    login(client)
    for url in ("/admin/participants/99999999999999999999", "/admin/participants/5"):
        response = client.get(url)
        assert response.status_code == 404 and "Sorry" in response.get_data(as_text=True)
    fields = hidden_fields(client.get("/admin/").get_data(as_text=True))
    assert client.post("/admin/participants/5/exclude", data=fields).status_code == 404
    saliency = {**fields, "condition": "saliency", "page": "consent"}
    assert client.post("/admin/preview", data=saliency).status_code == 400

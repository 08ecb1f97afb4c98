"""Bad input on every route: a readable 4xx page, never a 500, never a corrupted record."""

from __future__ import annotations

import pytest
from server_helpers import count, hidden_fields, walk_to

from study_server.extensions import db
from study_server.models import Answer, Participant

LONG = "x" * 5000

# (name, method, url, form data or a marker, expected status, participant state needed)
ENTRY_CASES = [
    ("entry without parameters", "GET", "/", 400),
    ("entry without STUDY_ID", "GET", "/?PROLIFIC_PID=P1&SESSION_ID=X", 400),
    ("entry with empty PID", "GET", "/?PROLIFIC_PID=&STUDY_ID=S&SESSION_ID=X", 400),
    ("entry with markup PID", "GET", "/?PROLIFIC_PID=<script>&STUDY_ID=S&SESSION_ID=X", 400),
    ("entry with overlong PID", "GET", f"/?PROLIFIC_PID={'A' * 65}&STUDY_ID=S&SESSION_ID=X", 400),
    ("entry with NUL", "GET", "/?PROLIFIC_PID=A%00B&STUDY_ID=S&SESSION_ID=X", 400),
    ("entry posted", "POST", "/", 405),
    ("page without session", "GET", "/study/consent", 403),
    ("post without session", "POST", "/study/consent", 400),  # CSRF refuses first
    ("unknown page", "GET", "/study/nonsense", 404),
    ("overlong page", "GET", "/study/" + "a" * 500, 404),
    ("rating beyond the study", "GET", "/study/rating-99", 404),
    ("unknown attention check", "GET", "/study/attention-zzz", 404),
    ("explanations without session", "GET", "/explanations", 403),
    ("bundle path traversal", "GET", "/bundle/../manifest.json", 404),
    ("bundle manifest", "GET", "/bundle/manifest.json", 404),
    ("bundle unknown image", "GET", "/bundle/images/0000.png", 404),
    ("unknown route", "GET", "/wp-admin", 404),
    ("admin export without login", "GET", "/admin/export/answers.csv", 303),
    ("admin dashboard without login", "GET", "/admin/", 303),
    ("admin participant without login", "GET", "/admin/participants/1", 303),
    ("admin exclude without login", "POST", "/admin/participants/1/exclude", 400),
    ("admin preview without login", "POST", "/admin/preview", 400),
    ("admin state without login", "POST", "/admin/state", 400),
    ("admin bulk exclusion without login", "POST", "/admin/participants/exclude", 400),
    ("admin live figures without login", "GET", "/admin/live.json", 303),
    ("admin login without CSRF", "POST", "/admin/login", 400),
    ("admin unknown participant id", "GET", "/admin/participants/abc", 404),
    ("admin huge participant id", "GET", "/admin/participants/99999999999999999999", 404),
]


@pytest.mark.parametrize(
    "method,url,expected", [c[1:] for c in ENTRY_CASES], ids=[c[0] for c in ENTRY_CASES]
)
def test_bad_requests_without_a_participant(sqlite_app, method, url, expected):
    client = sqlite_app.test_client()
    response = client.open(url, method=method, data={"x": "1"})
    assert response.status_code == expected
    if expected >= 400:
        assert "<h1>Sorry</h1>" in response.get_data(as_text=True)
    if expected == 303:
        assert response.headers["Location"].endswith("/admin/login")
    assert count(sqlite_app, Participant) == 0


def _rating_posts(fields: dict) -> dict[str, dict]:
    base = {**fields, "rating": "3", "reason": "fine"}
    return {
        "rating zero": {**base, "rating": "0"},
        "rating six": {**base, "rating": "6"},
        "rating text": {**base, "rating": "abc"},
        "rating missing": {k: v for k, v in base.items() if k != "rating"},
        "reason missing": {**base, "reason": ""},
        "reason blank": {**base, "reason": "   "},
        "reason too long": {**base, "reason": LONG[:1001]},
        "reason with NUL": {**base, "reason": "a\x00b"},
        "revision missing": {k: v for k, v in base.items() if k != "rev"},
        "revision text": {**base, "rev": "zz"},
        "forged CSRF token": {**base, "csrf_token": "forged"},
        "no CSRF token": {k: v for k, v in base.items() if k != "csrf_token"},
    }


BAD_RATINGS = list(_rating_posts({"csrf_token": "", "rev": ""}))
# Posts that are not answers at all (no revision, no valid CSRF token): an error page.
BROKEN = {"revision missing", "revision text", "forged CSRF token", "no CSRF token"}


@pytest.mark.parametrize("case", BAD_RATINGS)
def test_bad_rating_posts_are_refused_and_store_nothing(sqlite_app, case):
    app = sqlite_app
    client = app.test_client()
    html = walk_to(client, "rating-1")
    response = client.post("/study/rating-1", data=_rating_posts(hidden_fields(html))[case])
    if case in BROKEN:
        assert response.status_code == 400
        assert "Sorry" in response.get_data(as_text=True)
    else:  # a refused answer: back to the page (post/redirect/get), its errors shown
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/study/rating-1")
        shown = client.get("/study/rating-1")
        assert shown.status_code == 200 and 'role="alert"' in shown.get_data(as_text=True)
    assert count(app, Answer) == 0
    with app.app_context():
        participant = db.session.query(Participant).one()
        assert participant.page == "rating-1"
        db.session.rollback()
    # The participant can still answer properly afterwards.
    html = client.get("/study/rating-1").get_data(as_text=True)
    ok = {**hidden_fields(html), "rating": "3", "reason": "fine"}
    assert client.post("/study/rating-1", data=ok).status_code == 303
    assert count(app, Answer) == 1


@pytest.mark.parametrize(
    "page,data",
    [
        ("consent", {"consent": "maybe"}),
        ("comprehension", {"q_read-example": "Elephant"}),
        ("demographics", {"age": "-3"}),
        ("demographics", {"age": "old"}),
        ("demographics", {"gender": "<b>x</b>"}),
        ("attention-a1", {"q_a1": "Nope"}),
    ],
)
def test_bad_choices_on_other_pages_are_refused(sqlite_app, page, data):
    client = sqlite_app.test_client()
    html = walk_to(client, page)
    response = client.post(f"/study/{page}", data={**hidden_fields(html), **data})
    assert response.status_code == 303 and response.headers["Location"].endswith(page)
    assert 'role="alert"' in client.get(f"/study/{page}").get_data(as_text=True)
    with sqlite_app.app_context():
        assert db.session.query(Participant).one().page == page
        db.session.rollback()


def test_oversized_body_is_413(sqlite_app):
    client = sqlite_app.test_client()
    html = walk_to(client, "rating-1")
    data = {**hidden_fields(html), "rating": "3", "reason": "y" * 100_000}
    response = client.post("/study/rating-1", data=data)
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)
    assert count(sqlite_app, Answer) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_nul_characters_never_reach_postgresql(app):
    client = app.test_client()
    assert client.get("/?PROLIFIC_PID=A%00B&STUDY_ID=S&SESSION_ID=X").status_code == 400
    html = walk_to(client, "rating-1")
    data = {**hidden_fields(html), "rating": "3", "reason": "a\x00b"}
    assert client.post("/study/rating-1", data=data).status_code == 303
    assert count(app, Answer) == 0
    # The refused reason is kept as the page's draft, without the NUL.
    assert "\nab</textarea>" in client.get("/study/rating-1").get_data(as_text=True)


def test_posts_replayed_after_completion_change_nothing(sqlite_app):
    client = sqlite_app.test_client()
    fields = hidden_fields(walk_to(client, "demographics"))
    assert client.post("/study/demographics", data=fields).status_code == 303
    for page in ("demographics", "complete", "rating-1"):
        response = client.post(f"/study/{page}", data={**fields, "rating": "1", "reason": "r"})
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/study/complete")
    with sqlite_app.app_context():
        participant = db.session.query(Participant).one()
        assert participant.status == "completed" and participant.revision == 16
        assert db.session.query(Answer).filter(Answer.rating == 1).count() == 0
        db.session.rollback()

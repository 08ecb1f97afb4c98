"""Small helpers shared by the study server's tests."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path

import flask_migrate
from sqlalchemy import func, select

ADMIN_PASSWORD = "correct horse battery staple"
# The PostgreSQL server of the postgres-marked tests, where they create their databases.
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def filled_study_file(folder: Path) -> Path:
    """The default study with every consent detail filled in, as a researcher launches it."""
    from study_server.study import CONSENT_DETAILS, default_study_path

    text = default_study_path().read_text()
    for key in CONSENT_DETAILS:
        text = text.replace(f'{key} = ""', f'{key} = "the {key.replace("_", " ")} of this study"')
    path = Path(folder) / "study.toml"
    path.write_text(text)
    return path


def attribution_study(
    folder: Path, conditions=("integrated_gradients", "grad_cam"), language: str = "en"
) -> Path:
    """The default study with the fixture's attribution conditions instead of the three,
    and without the three's own method questions (the bundle's example question stays)."""
    text = filled_study_file(folder).read_text()
    start, end = text.index("[conditions.baseline]"), text.index("[comprehension]")
    tables = "".join(f"[conditions.{name}]\ntarget_n = 10\n\n" for name in conditions)
    text = text[:start] + tables + text[end:]
    start, end = text.index("[[comprehension.questions]]"), text.index("[[attention_checks]]")
    text = text[:start] + text[end:]
    text = text.replace('language = "en"', f'language = "{language}"')
    path = folder / "attribution.toml"
    path.write_text(text)
    return path


def forward_study(
    folder: Path,
    conditions=("integrated_gradients",),
    extra: str = "",
    shipped: str = "forward-simulation",
    **design,
) -> Path:
    """The shipped study ``shipped`` of a trial design (forward-simulation, verification,
    distinction, counterfactual-simulation), consent filled in, serving ``conditions``;
    ``design`` replaces keys of its settings table; ``extra`` is added at the end."""
    import json

    from study_server.study import CONSENT_DETAILS, shipped_studies

    text = shipped_studies()[shipped].read_text()
    for key in CONSENT_DETAILS:
        text = text.replace(f'{key} = ""', f'{key} = "the {key.replace("_", " ")}"')
    start, end = text.index("[conditions."), text.index("[demographics]")
    tables = "".join(f"[conditions.{c}]\ntarget_n = 10\n\n" for c in conditions)
    text = text[:start] + tables + text[end:]
    for key, value in design.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {json.dumps(value)}", text)
    path = folder / ("forward.toml" if shipped == "forward-simulation" else f"{shipped}.toml")
    path.write_text(text + "\n" + extra)
    return path


def within_study(
    folder: Path, groups=(("none", "integrated_gradients"),), target_n: int = 6, **design
) -> Path:
    """The shipped within-subjects forward-simulation study, consent filled in, over
    ``groups`` (each group's conditions seen within subjects) with ``target_n`` per group;
    ``design`` replaces keys of its ``[forward_simulation]``."""
    import json

    from study_server.study import CONSENT_DETAILS, shipped_studies

    text = shipped_studies()["within-forward-simulation"].read_text()
    for key in CONSENT_DETAILS:
        text = text.replace(f'{key} = ""', f'{key} = "the {key.replace("_", " ")}"')
    names = dict.fromkeys(c for group in groups for c in group)
    tables = f"[within]\ngroups = {json.dumps([list(g) for g in groups])}\n"
    tables += f"target_n = {target_n}\n\n" + "".join(f"[conditions.{c}]\n\n" for c in names)
    start, end = text.index("[within]"), text.index("[demographics]")
    text = text[:start] + tables + text[end:]
    for key, value in design.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {json.dumps(value)}", text)
    path = folder / "within.toml"
    path.write_text(text)
    return path


def trial_app(bundle_dir: Path, tmp_path: Path, shipped: str = "forward-simulation", **kwargs):
    """A test server of the shipped trial-design study ``shipped`` (:func:`forward_study`
    with ``kwargs``) on its own SQLite database in ``tmp_path``."""
    study = forward_study(tmp_path, shipped=shipped, **kwargs)
    return make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(study))


def answer_all(key: str, condition: str) -> tuple[int, str]:
    return (5 if key == "arm_position" else 2, f"because of {key}")


def enter(client, pid: str = "P1", follow: bool = True):
    url = f"/?PROLIFIC_PID={pid}&STUDY_ID=S1&SESSION_ID=X1"
    return client.get(url, follow_redirects=follow)


def simultaneous_arrivals(app, arrivals: int, prefix: str) -> list[int]:
    """The status codes of ``arrivals`` participants (ids ``<prefix>000``, ...) entering
    ``app`` at the same moment, each from a thread of its own."""
    barrier = threading.Barrier(arrivals)

    def arrive(i: int) -> int:
        client = app.test_client()
        barrier.wait(timeout=60)
        return enter(client, f"{prefix}{i:03d}", follow=False).status_code

    with ThreadPoolExecutor(max_workers=arrivals) as pool:
        return list(pool.map(arrive, range(arrivals)))


def hidden_fields(html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*type=\"hidden\"[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag).group(1)
        value = re.search(r'value="([^"]*)"', tag)
        fields[name] = unescape(value.group(1)) if value else ""
    return fields


def middle_answers(html: str) -> dict[str, str]:
    """A questionnaire page's answers: each Likert item's middle point, text left empty."""
    from simulation.parse import parse_page

    radios = parse_page(html).radios
    return {name: options[len(options) // 2][0] for name, options in radios.items()}


def current_page(html: str) -> str:
    return re.search(r'<meta name="xaistudy-page" content="([^"]+)"', html).group(1)


def walk_to(client, page: str, pid: str = "P1") -> str:
    """Enter and click through (correct answers) until ``page`` is shown; return its HTML."""
    from simulation.client import Behavior, fill_form
    from simulation.parse import parse_page
    from study_server import study_context

    html = enter(client, pid).get_data(as_text=True)
    study = study_context(client.application).study
    behavior = Behavior(answer=lambda key, condition: (3, "a reason"))
    while current_page(html) != page:
        shown = parse_page(html)
        data = fill_form(study, shown, behavior, condition=shown.meta.get("xaistudy-condition"))
        response = client.post(f"/study/{current_page(html)}", data=data, follow_redirects=True)
        html = response.get_data(as_text=True)
    return html


def count(app, model, *where) -> int:
    from study_server.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


_migrated: set[str] = set()


def make_app(bundle_dir: Path, database_url: str, migrate: bool = True, **overrides):
    from study_server import create_app
    from study_server.config import TestConfig

    settings = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "XAISTUDY_BUNDLE": str(bundle_dir),
        "XAISTUDY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **overrides,
    }
    app = create_app(TestConfig(settings))
    with app.app_context():
        if migrate and database_url not in _migrated:
            flask_migrate.upgrade()
            _migrated.add(database_url)
    return app


def login(client, password: str = ADMIN_PASSWORD):
    """Post the admin login form (with its CSRF token); return the response."""
    html = client.get("/admin/login").get_data(as_text=True)
    return client.post("/admin/login", data={**hidden_fields(html), "password": password})


def sign_in_as(app, client, participant_id: int) -> None:
    """Make ``client``'s session the participant's, as their own browser's is: a fresh
    run token in the signed session and its hash on the participant."""
    from study_server.extensions import db
    from study_server.models import Participant
    from study_server.sessions import new_token, token_hash

    token = new_token()
    with app.app_context():
        participant = db.session.get(Participant, participant_id)
        participant.session_token_hash = token_hash(token)
        pid = participant.prolific_pid
        db.session.commit()
    with client.session_transaction() as session:
        session.update(participant_id=participant_id, participant_pid=pid, participant_token=token)


def walk_trials(
    client, predict, stop_at: str = "complete", pid: str = "P1", answer=None
) -> dict[str, str]:
    """Enter and answer every page of a trial design (trials by ``predict(phase, scene)``,
    by the F/J form values, or by ``answer(page name, html)``'s fields); return each
    page's HTML by name."""
    html = enter(client, pid).get_data(as_text=True)
    shown = {}
    while True:
        name = current_page(html)
        shown[name] = html
        if name == stop_at:
            return shown
        data = hidden_fields(html)
        if name == "consent":
            data["consent"] = "yes"
        if name.startswith("questionnaire-"):
            data.update(middle_answers(html))
        scene = re.search(r'name="xaistudy-scene" content="(\d+)"', html)
        if scene:
            if answer is None:
                phase = re.sub(r"^b\d+-", "", name).split("-")[0]  # a within block's too
                data["prediction"] = predict(phase, int(scene.group(1)))
            else:
                data.update(answer(name, html))
            data["response_ms"] = "750"
            if 'name="confidence"' in html:
                data["confidence"] = "4"
        html = client.post(f"/study/{name}", data=data, follow_redirects=True).get_data(
            as_text=True
        )

"""Simulated participants through a real study server: an in-process app or one over HTTP.

Each participant answers as analysis.simulate draws it (known per-condition accuracies)
and walks the real participant flow with a :class:`~simulation.client.ParticipantClient`;
the server assigns the conditions and stores the answers as it would a person's.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
import numpy as np
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm
from werkzeug.serving import make_server

from analysis.load import Bundle, load_bundle
from analysis.simulate import ParticipantAnswers, SimulationSpec
from explain.bundle_format import load_manifest
from simulation.client import FlowError, ParticipantClient
from simulation.transport import FlaskTransport, HttpTransport, TransportError
from study_server import create_app
from study_server.extensions import db
from study_server.pages import EndPage, page_sequence
from study_server.study import Study, load_study
from xaistudy.errors import UserError
from xaistudy.vocabulary import VERIFICATION


@dataclasses.dataclass
class FlowSummary:
    """What a simulation through the participant flow produced."""

    statuses: dict[str, int]
    conditions: dict[str, int]
    completion_codes: int


def answered_pages(study: Study | None = None) -> list[tuple[str, str]]:
    """(name, kind) of the pages a participant of ``study`` (default: the server's
    default study) answers, in order: the walk without its end page."""
    pages = page_sequence(study or load_study(None))
    return [(page.name, page.kind) for page in pages if not isinstance(page, EndPage)]


def run_flow(
    transport_for: Callable[[int], object],
    bundle: Bundle,
    spec: SimulationSpec,
    study: Study | None = None,
) -> FlowSummary:
    """Walk ``spec.n`` participants through the server's flow, one transport each."""
    relevant = dict(zip(bundle.attributes["attribute"], bundle.attributes["relevant"], strict=True))
    rng = np.random.default_rng(spec.seed)
    kind = rng.random(spec.n)
    statuses: dict[str, int] = {}
    conditions: dict[str, int] = {}
    codes = 0
    ranks: dict[str, int] = {}  # arrivals per condition: keys the trials' draws
    verification = study is not None and study.design == VERIFICATION
    served = study or load_study(None)
    blocks = {q.id: q.at for q in served.questionnaires}
    for i in tqdm(range(spec.n), desc="participants", unit="p", file=None, leave=False):
        participant = ParticipantAnswers(
            spec,
            relevant,
            i,
            bundle.simulation_decisions,
            ranks,
            bundle.simulation_labels,
            block_points=blocks,
            pairs=bundle.pair_decisions,
        )
        client = ParticipantClient(
            transport_for(i),
            prolific_pid=f"SIMPID{spec.seed}X{i:06d}",
            study_id="SIMSTUDY",
            session_id=f"SIMSESSION{spec.seed}X{i:06d}",
            study=study,
        )
        try:
            result = client.run(
                answer=participant.answer,
                attention="fail" if kind[i] < spec.attention_fail else "pass",
                predict=participant.verify if verification else participant.predict,
                explains=functools.partial(map_explains, bundle),
                scale=participant.scale,
            )
        except (FlowError, TransportError) as exc:
            raise UserError(f"simulated participant {i} could not finish the study: {exc}") from exc
        statuses[result.status] = statuses.get(result.status, 0) + 1
        conditions[result.condition] = conditions.get(result.condition, 0) + 1
        codes += bool(result.completion_code)
    return FlowSummary(statuses, conditions, codes)


def map_explains(bundle, scene_id: int, url: str) -> str:
    """The animal the map at ``url`` (a bundle picture as served) explains for scene
    ``scene_id``."""
    rel = url.rsplit("/bundle/", 1)[-1]
    if (scene_id, rel) not in bundle.map_explains:
        raise FlowError(f"the server shows a map {rel!r} that is not scene {scene_id}'s")
    return bundle.map_explains[scene_id, rel]


def simulate_database(
    bundle_dir: Path, db_url: str, spec: SimulationSpec, study: str | None = None
) -> FlowSummary:
    """Fill the database at ``db_url`` through an in-process app serving ``bundle_dir``."""
    bundle = load_bundle(bundle_dir)
    settings = {
        "SQLALCHEMY_DATABASE_URI": db_url,
        "XAISTUDY_BUNDLE": str(bundle_dir),
        "SECRET_KEY": secrets.token_hex(32),  # sessions live only as long as this run
        # Simulated participants all arrive from this machine, as many as asked for.
        "XAISTUDY_ARRIVAL_LIMITS": "off",
        "XAISTUDY_STUDY_CAP": False,
        # Simulated participants, never people: a study whose consent details are still
        # empty may be simulated.
        "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": True,
    }
    if study is not None:
        settings["XAISTUDY_STUDY"] = str(study)
    app = create_app(settings)
    _migrate(app)
    study_obj = app.extensions["xaistudy"].study
    return run_flow(lambda _: FlaskTransport(app), bundle, spec, study=study_obj)


@contextmanager
def local_server(app: Flask, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Migrate ``app``'s database and serve the app with werkzeug in a thread (port 0: a
    free one) for as long as the block runs; yields its base URL. For simulated
    participants over HTTP, the demo and the browser tests, never for participants."""
    _migrate(app)
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    # one log line per request would bury the progress bar of hundreds of participants
    requests_log = logging.getLogger("werkzeug")
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        requests_log.setLevel(level)
        with app.app_context():
            db.engine.dispose()


def _migrate(app) -> None:
    """Bring the database to the current schema (Alembic, as 'xaistudy serve' does)."""
    with app.app_context():
        try:
            flask_migrate.upgrade()
        except SQLAlchemyError as exc:
            reason = str(exc).splitlines()[0]
            raise UserError(f"cannot prepare the study database: {reason}") from exc


def simulate_http(
    url: str, bundle: Bundle, spec: SimulationSpec, study: str | Path | None = None
) -> FlowSummary:
    """Drive a running server at ``url`` over HTTP; it serves ``bundle`` with the study file
    ``study`` (default: the shipped one), whose comprehension answers the participants know."""
    served = load_study(study).with_bundle(load_manifest(bundle.path))
    return run_flow(lambda _: HttpTransport(url), bundle, spec, study=served)

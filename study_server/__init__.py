"""The study server: a Flask app serving a study bundle to participants.

``create_app(config=None)`` is the app factory (``gunicorn "study_server:create_app()"``,
``flask --app study_server db upgrade``). ``config`` is a :class:`~study_server.config.Config`
(or a variant), a dict of overrides of the environment's settings, or ``None`` (the
environment only). It never imports torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from explain.manifest import Cell, Manifest
from explain.wording import localize
from study_server.config import Config
from study_server.extensions import csrf, db, migrate
from study_server.languages import init_babel, participant_language, translator
from study_server.protection import (
    check_same_origin,
    refuse_overlong_body,
    security_headers,
    trusted_proxy_fix,
    whole_streamed_body,
)
from study_server.rate_limits import init_limiter, limit_views
from study_server.sqlite import configure_sqlite
from study_server.study import Study, load_study

# The repository's top-level migrations/ folder, installed as study_server.migrations.
MIGRATIONS_DIR = Path(importlib.util.find_spec("study_server.migrations").origin).parent


@dataclasses.dataclass(frozen=True)
class StudyContext:
    """What the app read from disk at start-up (read-only, identical in every worker)."""

    study: Study  # in its first language: the researcher's pages read this one
    manifest: Manifest  # its participant words in that language too
    grids: dict[str, list[list[list[Cell]]]]  # condition -> rows -> columns -> stimuli
    bundle_dir: Path
    # every participant's: the tutorial's, the trials' scenes and the pairs' pictures
    shared_images: frozenset[str]
    condition_images: dict[str, frozenset[str]]
    languages: dict[str, Localized]  # the study and bundle words in each language offered

    @classmethod
    def load(cls, bundle: str | Path, study_path: str | Path | None) -> StudyContext:
        from explain.bundle_format import verify_bundle

        bundle_dir = Path(bundle).resolve()
        manifest = verify_bundle(bundle_dir)
        study = load_study(study_path).with_bundle(manifest)
        languages = {
            lang: Localized.of(load_study(study_path, lang).with_bundle(manifest), manifest, lang)
            for lang in study.languages
        }
        first = languages[study.language]
        return cls(
            study=study,
            manifest=first.manifest,
            grids=first.grids,
            bundle_dir=bundle_dir,
            shared_images=frozenset(
                manifest.tutorial.images()
                + (manifest.simulation.images() if manifest.simulation else [])
                + (
                    manifest.counterfactual_simulation.images()
                    if manifest.counterfactual_simulation
                    else []
                )
            ),
            condition_images={
                name: frozenset(cond.images()) for name, cond in manifest.conditions.items()
            },
            languages=languages,
        )

    def in_language(self, language: str) -> StudyContext:
        """This context with the study's and the bundle's words in ``language`` (one it
        offers)."""
        words = self.languages[language]
        return dataclasses.replace(
            self, study=words.study, manifest=words.manifest, grids=words.grids
        )


@dataclasses.dataclass(frozen=True)
class Localized:
    """What participants read in one language: the study file's texts and the bundle's
    labels and captions composed in that language (explain.wording)."""

    study: Study
    manifest: Manifest
    grids: dict[str, list[list[list[Cell]]]]

    @classmethod
    def of(cls, study: Study, manifest: Manifest, language: str) -> Localized:
        manifest = localize(manifest, translator(language))
        grids = {name: cond.grid() for name, cond in manifest.conditions.items()}
        return cls(study, manifest, grids)


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings, bundle and study, database, blueprints, error pages."""
    if not isinstance(config, Config):
        config = Config(config)
    app = Flask(__name__)
    app.config.from_mapping(config.settings())
    app.extensions["xaistudy"] = StudyContext.load(config.bundle, config.XAISTUDY_STUDY)
    init_babel(app)
    _warn_unfilled_consent(app)

    app.wsgi_app = whole_streamed_body(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    if app.config.get("XAISTUDY_PROXY_FIX"):
        app.wsgi_app = trusted_proxy_fix(app.wsgi_app, app.config["XAISTUDY_TRUSTED_PROXIES"])

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    app.before_request(refuse_overlong_body)  # before the CSRF check reads the form
    app.before_request(check_same_origin)
    csrf.init_app(app)
    with app.app_context():
        engine = db.engine
        configure_sqlite(engine)
    limiter = init_limiter(app, engine)

    # One blueprint under /admin/: admin.py holds the login, importing control.py adds
    # the researcher's pages to it.
    from study_server import admin, control, participant  # noqa: F401

    app.register_blueprint(participant.bp)
    app.register_blueprint(admin.bp)
    limit_views(app, limiter)
    _register_error_pages(app)
    app.after_request(functools.partial(security_headers, app))

    @app.context_processor
    def _study_globals():
        return {"study": study_context(app).study, "html_lang": participant_language(app)}

    return app


def _warn_unfilled_consent(app: Flask) -> None:
    """Say at start-up that participants will be turned away (participant.entry)."""
    unfilled = app.extensions["xaistudy"].study.unfilled_consent_details
    if unfilled and not app.config["XAISTUDY_ALLOW_INCOMPLETE_CONSENT"]:
        app.logger.warning(
            "the study's consent_details %s are empty: participants are turned away until "
            "they are filled in (admin previews still work; docs/study.md)",
            ", ".join(unfilled),
        )


def study_context(app: Flask | None = None) -> StudyContext:
    """The study as this request reads it: in the participant's language (languages.py);
    the researcher's pages get its first language."""
    from flask import current_app

    app = app or current_app._get_current_object()
    ctx = app.extensions["xaistudy"]
    language = participant_language(app)
    return ctx.in_language(language) if language in ctx.languages else ctx


_ERROR_TEXT = {
    400: _l("The request could not be understood."),
    403: _l("This page is not available to you."),
    404: _l("There is no such page."),
    405: _l("This page cannot be used that way."),
    413: _l("What you sent is too large."),
    429: _l("Too many attempts; please wait a few minutes and try again."),
    503: _l(
        "The study cannot reach its database just now. Please wait a few seconds and try "
        "again; everything you answered before is saved."
    ),
}


def _register_error_pages(app: Flask) -> None:
    def render_error(code: int, message: str):
        return render_template("error.html", code=code, message=str(message)), code

    @app.errorhandler(CSRFError)
    def _csrf_error(exc):
        db.session.rollback()
        return render_error(
            400,
            _(
                "This form has expired or was not sent from this site. Please go back to "
                "the study page, reload it and try again."
            ),
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        db.session.rollback()
        code = exc.code or 500
        description = exc.description if getattr(exc, "_xaistudy_message", False) else None
        return render_error(code, description or _ERROR_TEXT.get(code, exc.name))

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeoutError)
    def _database_unavailable(exc):
        # A database that is down, hung (a timeout, engine_options) or briefly read-only:
        # the request is refused whole; the next one gets a fresh connection.
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        app.logger.warning("database unavailable: %s", str(exc).splitlines()[0])
        page, code = render_error(503, _ERROR_TEXT[503])
        return page, code, {"Retry-After": "5"}

    @app.errorhandler(Exception)
    def _unexpected(exc):
        db.session.rollback()
        app.logger.exception("unexpected error")
        return render_error(500, _("Something went wrong on our side. Please reload the page."))

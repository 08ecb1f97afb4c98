"""``xaistudy serve`` and ``xaistudy export``: the study server on one machine, its CSVs."""

from __future__ import annotations

from pathlib import Path

import click

# The options that override a server setting (study_server/config.py), by parameter name.
SETTING_OF_OPTION = {
    "bundle": "XAISTUDY_BUNDLE",
    "study": "XAISTUDY_STUDY",
    "db": "SQLALCHEMY_DATABASE_URI",
    "admin_password": "XAISTUDY_ADMIN_PASSWORD",
}


def given_settings(**options) -> dict[str, str]:
    """The server settings of the options given; an option left out (None) leaves the
    environment's setting, or the default, in force."""
    return {SETTING_OF_OPTION[name]: str(value) for name, value in options.items() if value}


def run_server(config, host: str, port: int, workers: int) -> None:
    """Migrate the database of ``config`` (a study_server Config) and serve it with gunicorn."""
    import flask_migrate
    from gunicorn.app.base import BaseApplication

    from explain.bundle_format import load_manifest
    from study_server import create_app
    from study_server.extensions import db as database

    load_manifest(config.bundle)  # a missing bundle fails before anything is written
    app = create_app(config)  # verifies the bundle and the study before anything starts
    with app.app_context():
        flask_migrate.upgrade()
        database.engine.dispose()  # no connections may cross the fork into the workers

    class _Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 4)
            self.cfg.set("accesslog", "-")

        def load(self):
            return create_app(config)

    click.echo(
        f"Serving {app.extensions['xaistudy'].study.title!r} on http://{host}:{port}/", err=True
    )
    click.echo(
        f"Participants: http://{host}:{port}/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=... ; "
        f"admin: http://{host}:{port}/admin/",
        err=True,
    )
    _Server().run()


@click.command()
@click.option(
    "--bundle",
    type=click.Path(path_type=Path),
    default=None,
    help="Study bundle folder made by 'xaistudy explain' (default: XAISTUDY_BUNDLE).",
)
@click.option(
    "--study",
    type=click.Path(path_type=Path),
    default=None,
    help="Study TOML (default: XAISTUDY_STUDY, else the one shipped, docs/study.md).",
)
@click.option(
    "--db",
    default=None,
    help="Database URL (default: DATABASE_URL, else the SQLite file ./xaistudy.sqlite).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="gunicorn worker processes.",
)
@click.option(
    "--admin-password",
    default=None,
    help="Password of the /admin pages (default: XAISTUDY_ADMIN_PASSWORD).",
)
def serve(bundle, study, db, host, port, workers, admin_password):
    """Serve a study bundle to participants (gunicorn; the database is migrated first)."""
    from study_server.config import Config

    given = given_settings(bundle=bundle, study=study, db=db, admin_password=admin_password)
    run_server(Config(given), host, port, workers)


@click.command("export")
@click.option(
    "--db",
    "db_url",
    default=None,
    help="Database URL (default: the server's, DATABASE_URL, else ./xaistudy.sqlite).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
def export(db_url, out):
    """Write participants.csv, answers.csv, answers_wide.csv, pages.csv and
    explanation_visits.csv."""
    from study_server.config import Config
    from study_server.export import write_export

    written = write_export(Config(given_settings(db=db_url)).database_url, out)
    for name, path in written.items():
        click.echo(f"{name}: {path}")


COMMANDS = [serve, export]

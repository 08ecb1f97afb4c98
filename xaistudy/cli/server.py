"""``xaistudy serve`` and ``xaistudy export``: the study server on one machine, its CSVs."""

from __future__ import annotations

from pathlib import Path

import click


def _secret_for(db_url: str) -> str:
    """A stable random SECRET_KEY kept next to a SQLite database (single-machine use)."""
    import secrets

    from xaistudy.errors import UserError

    if not db_url.startswith("sqlite:///"):
        raise UserError(
            "SECRET_KEY is not set; with a server database set the SECRET_KEY environment "
            "variable (the same value for every worker and host)"
        )
    path = Path(db_url.removeprefix("sqlite:///") + ".secret")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def build_settings(bundle, study, db, admin_password) -> dict:
    import os

    db_url = db or f"sqlite:///{Path('xaistudy.sqlite').resolve()}"
    settings = {
        "XAISTUDY_BUNDLE": str(bundle),
        "SQLALCHEMY_DATABASE_URI": db_url,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or _secret_for(db_url),
    }
    if study:
        settings["XAISTUDY_STUDY"] = str(study)
    if admin_password:
        settings["XAISTUDY_ADMIN_PASSWORD"] = admin_password
    return settings


@click.command()
@click.option(
    "--bundle",
    type=click.Path(path_type=Path),
    envvar="XAISTUDY_BUNDLE",
    required=True,
    help="Study bundle folder made by 'xaistudy explain'.",
)
@click.option(
    "--study",
    type=click.Path(path_type=Path),
    envvar="XAISTUDY_STUDY",
    default=None,
    help="Study TOML (default: the one shipped, docs/study.md).",
)
@click.option(
    "--db",
    default=None,
    envvar="DATABASE_URL",
    help="Database URL (default: sqlite file ./xaistudy.sqlite).",
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
    envvar="XAISTUDY_ADMIN_PASSWORD",
    default=None,
    help="Password of the /admin pages (or XAISTUDY_ADMIN_PASSWORD).",
)
def serve(bundle, study, db, host, port, workers, admin_password):
    """Serve a study bundle to participants (gunicorn; the database is migrated first)."""
    import flask_migrate
    from gunicorn.app.base import BaseApplication

    from explain.bundle_format import load_manifest
    from study_server import create_app
    from study_server.extensions import db as database

    load_manifest(bundle)  # a missing bundle fails before anything is written
    settings = build_settings(bundle, study, db, admin_password)
    app = create_app(settings)  # verifies the bundle and the study before anything starts
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
            return create_app(settings)

    click.echo(
        f"Serving {app.extensions['xaistudy'].study.title!r} on http://{host}:{port}/", err=True
    )
    click.echo(
        f"Participants: http://{host}:{port}/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=... ; "
        f"admin: http://{host}:{port}/admin/",
        err=True,
    )
    _Server().run()


@click.command("export")
@click.option("--db", "db_url", required=True, envvar="DATABASE_URL", help="Database URL.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
def export(db_url, out):
    """Write participants.csv, answers.csv, answers_wide.csv and pages.csv."""
    from study_server.export import write_export

    written = write_export(db_url, out)
    for name, path in written.items():
        click.echo(f"{name}: {path}")


COMMANDS = [serve, export]

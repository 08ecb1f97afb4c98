"""``xaistudy serve`` and ``xaistudy export``: the study server on one machine, its exports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from xaistudy.errors import UserError

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


def read_password_file(path: Path | None) -> str | None:
    """The admin password kept in ``path`` (its first line), so that it never shows in
    ``ps`` as a command-line argument would."""
    if path is None:
        return None
    try:
        password = path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise UserError(f"cannot read the admin password from {path}: {exc}") from exc
    if not password:
        raise UserError(f"the admin password file {path} is empty")
    return password


def control_socket_path(port: int) -> str:
    """gunicorn's control socket for the instance on ``port``: in gunicorn's own folder
    ($XDG_RUNTIME_DIR, else ~/.gunicorn), named per port, so two studies served on one
    host never share (and unlink) one socket."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = runtime if runtime and os.path.isdir(runtime) else os.path.expanduser("~/.gunicorn")
    return os.path.join(folder, f"xaistudy-{port}.ctl")


def gunicorn_command(host: str, port: int, workers: int) -> list[str]:
    """gunicorn with gevent workers: every connection is a greenlet, so clients that send
    their request slowly cost a little memory each instead of holding a worker thread."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gevent",
        "--worker-connections",
        "1000",
        "--workers",
        str(workers),
        "--bind",
        f"{host}:{port}",
        "--access-logfile",
        "-",
        "--control-socket",
        control_socket_path(port),
        "study_server:create_app()",
    ]


def run_server(config, host: str, port: int, workers: int) -> None:
    """Migrate the database of ``config`` (a study_server Config), then become gunicorn.

    The server replaces this process (``exec``) with a fresh interpreter that has imported
    nothing, so that gevent patches the workers before the app and its database drivers
    load; the settings travel in the environment (the admin password hashed), never on
    the command line.
    """
    import flask_migrate

    from explain.bundle_format import load_manifest
    from study_server import create_app
    from study_server.config import environment_of
    from study_server.extensions import db as database

    load_manifest(config.bundle)  # a missing bundle fails before anything is written
    app = create_app(config)  # verifies the bundle and the study before anything starts
    with app.app_context():
        flask_migrate.upgrade()
        database.engine.dispose()

    click.echo(
        f"Serving {app.extensions['xaistudy'].study.title!r} on http://{host}:{port}/", err=True
    )
    click.echo(
        f"Participants: http://{host}:{port}/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=... ; "
        f"admin: http://{host}:{port}/admin/",
        err=True,
    )
    environ = {**os.environ, **environment_of(app.config)}
    sys.stdout.flush()
    sys.stderr.flush()
    command = gunicorn_command(host, port, workers)
    os.execve(command[0], command, environ)


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
    "--admin-password-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File whose first line is the password of the /admin pages "
    "(default: XAISTUDY_ADMIN_PASSWORD).",
)
def serve(bundle, study, db, host, port, workers, admin_password_file):
    """Serve a study bundle to participants (gunicorn; the database is migrated first)."""
    from study_server.config import Config

    password = read_password_file(admin_password_file)
    given = given_settings(bundle=bundle, study=study, db=db, admin_password=password)
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
    """Write every export table (participants, answers, answers_wide, pages, checks,
    explanation_visits, reconciliation, exclusions, audit) as CSV (formulas neutralized,
    for spreadsheets) and Parquet (the raw values)."""
    from study_server.config import Config
    from study_server.export import write_export

    written = write_export(Config(given_settings(db=db_url)).database_url, out)
    for name, path in written.items():
        click.echo(f"{name}: {path}")


COMMANDS = [serve, export]

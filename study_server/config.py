"""The study server's settings: defaults, then the environment, then explicit overrides.

A :class:`Config` reads the environment once, when it is made; what the caller passes
(``xaistudy serve``'s options, a test's settings) overrides that. ``create_app`` takes the
complete :meth:`Config.settings`. The variants: :class:`DevelopmentConfig` (debug mode)
for the demo, :class:`TestConfig` for tests (it reads no environment).
docs/deploy.md documents the variables, the default database and the SECRET_KEY policy.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from werkzeug.security import generate_password_hash

from study_server.sqlite import connect_args, sqlite_file
from xaistudy.errors import UserError
from xaistudy.files import kept_secret

# The database when none is configured: a SQLite file in the working directory.
DEFAULT_DATABASE = "xaistudy.sqlite"
_HASH_PREFIXES = ("scrypt:", "pbkdf2:")


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"a number of seconds is a whole number from 1, got {text!r}")
    return value


# Environment variable -> (setting, how its text is read). Other settings ignore an empty
# variable; a flag that is set, even to "", is read (so "0" turns it off).
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SECRET_KEY": ("SECRET_KEY", str),
    "DATABASE_URL": ("SQLALCHEMY_DATABASE_URI", str),
    "XAISTUDY_BUNDLE": ("XAISTUDY_BUNDLE", str),
    "XAISTUDY_STUDY": ("XAISTUDY_STUDY", str),
    "XAISTUDY_ADMIN_PASSWORD": ("XAISTUDY_ADMIN_PASSWORD", str),
    "XAISTUDY_SECURE_COOKIES": ("SESSION_COOKIE_SECURE", _flag),
    "XAISTUDY_PROXY_FIX": ("XAISTUDY_PROXY_FIX", _flag),
    "XAISTUDY_TRUSTED_PROXIES": ("XAISTUDY_TRUSTED_PROXIES", str),
    "XAISTUDY_ARRIVAL_LIMITS": ("XAISTUDY_ARRIVAL_LIMITS", str),
    "XAISTUDY_LOGIN_LIMITS": ("XAISTUDY_LOGIN_LIMITS", str),
    "XAISTUDY_LOGIN_LIMITS_EVERYONE": ("XAISTUDY_LOGIN_LIMITS_EVERYONE", str),
    "XAISTUDY_STUDY_CAP": ("XAISTUDY_STUDY_CAP", _flag),
    "XAISTUDY_DB_TIMEOUT_S": ("XAISTUDY_DB_TIMEOUT_S", _seconds),
    "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": ("XAISTUDY_ALLOW_INCOMPLETE_CONSENT", _flag),
    "FLASK_DEBUG": ("DEBUG", _flag),
}


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the documented variables of ``environ`` set."""
    values = {}
    for variable, (setting, read) in ENVIRONMENT.items():
        text = environ.get(variable)
        if text is None or (read is not _flag and not text):
            continue
        values[setting] = read(text)
    return values


def environment_of(settings: Mapping[str, Any]) -> dict[str, str]:
    """The variables that make :func:`from_environment` read ``settings`` back: how
    ``xaistudy serve`` hands its settings to the gunicorn it starts."""
    environ = {}
    for variable, (setting, read) in ENVIRONMENT.items():
        value = settings.get(setting)
        if value is None:
            continue
        environ[variable] = ("1" if value else "0") if read is _flag else str(value)
    return environ


def normalize_database_url(url: str) -> str:
    """Point ``postgres://`` and ``postgresql://`` URLs at psycopg 3 (the installed driver)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(url: str, timeout_s: int = 10) -> dict:
    """Engine options per backend.

    SQLite: see :mod:`study_server.sqlite`. PostgreSQL: a pool large enough for the
    concurrent requests of a gunicorn worker, each connection checked before use (a
    restarted database server) and recycled hourly; connecting, waiting for a pooled
    connection, a statement and a lock wait each give up after ``timeout_s``, so a hung
    database server is answered with a "try again shortly" page, not a hung request.
    """
    if url.startswith("sqlite"):
        return {"connect_args": connect_args(url)}
    statement_ms = timeout_s * 1000
    return {
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 20,
        "pool_recycle": 3600,
        "pool_timeout": timeout_s,
        "connect_args": {
            "connect_timeout": timeout_s,
            "options": f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}",
        },
    }


def generated_secret_key(url: str) -> str:
    """The SECRET_KEY policy where none is set: a SQLite database file gets a random key,
    generated once and kept beside it (``<file>.secret``, owner-only), which every worker
    and restart on this machine shares. Any other database may be served by several hosts,
    which must all sign with one key, so the server refuses to start without it."""
    database = sqlite_file(url)
    if database is None:
        raise UserError(
            "SECRET_KEY is not set: set the SECRET_KEY environment variable to a long random "
            "string, the same for every worker and host, e.g. "
            "python -c 'import secrets; print(secrets.token_hex(32))' "
            "(only a SQLite database file gets a generated key, kept beside it)"
        )
    return kept_secret(Path(database + ".secret"))


class Config:
    """Production settings: Flask's and the study's, upper case, with their defaults."""

    reads_environment = True

    SECRET_KEY: str | None = None  # None: generated_secret_key's policy
    SQLALCHEMY_DATABASE_URI: str | None = None  # None: DEFAULT_DATABASE
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}  # on top of engine_options()
    XAISTUDY_BUNDLE: str | None = None
    XAISTUDY_STUDY: str | None = None  # None: the default study that ships with the package
    XAISTUDY_ADMIN_PASSWORD: str | None = None  # plain text or a werkzeug hash
    XAISTUDY_PROXY_FIX: bool = False  # trust one X-Forwarded-For/-Proto hop (reverse proxy)
    XAISTUDY_TRUSTED_PROXIES: str = "127.0.0.1,::1"  # ... sent from these peers only
    # Flask-Limiter limits ("off": none), counted in the database (rate_limits.py):
    XAISTUDY_ARRIVAL_LIMITS: str = "5 per minute; 30 per hour"  # new participants per address
    XAISTUDY_LOGIN_LIMITS: str = "5 per minute"  # admin login attempts per address
    XAISTUDY_LOGIN_LIMITS_EVERYONE: str = "30 per 10 minutes"  # ... of all addresses together
    XAISTUDY_STUDY_CAP: bool = True  # a "study full" page once every condition met its target
    XAISTUDY_DB_TIMEOUT_S: int = 10  # PostgreSQL: connect, pool, statement and lock timeouts
    RATELIMIT_HEADERS_ENABLED = True  # Retry-After on a refused request
    # Let participants in although [consent_details] has gaps: for trying a study out
    # (the demo, tests, simulations), never for a real launch.
    XAISTUDY_ALLOW_INCOMPLETE_CONSENT: bool = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    SESSION_COOKIE_NAME = "xaistudy"
    PERMANENT_SESSION_LIFETIME = timedelta(days=3)
    # The cookie is signed once when it changes (entry, admin login), not on every
    # request: a study lasts far less than the lifetime.
    SESSION_REFRESH_EACH_REQUEST = False
    MAX_CONTENT_LENGTH = 64 * 1024
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the signed session
    # No Referer needed over HTTPS: protection.check_same_origin says why.
    WTF_CSRF_SSL_STRICT = False
    TESTING = False
    DEBUG = False

    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        """Defaults < ``environ`` (default: ``os.environ``) < ``overrides``."""
        if self.reads_environment:
            self._set(from_environment(os.environ if environ is None else environ))
        self._set(overrides or {})

    def _set(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            if not name.isupper():
                raise UserError(f"server settings are upper case, got {name!r}")
            setattr(self, name, value)

    @property
    def database_url(self) -> str:
        url = self.SQLALCHEMY_DATABASE_URI or f"sqlite:///{Path(DEFAULT_DATABASE).resolve()}"
        return normalize_database_url(url)

    @property
    def bundle(self) -> Path:
        if not self.XAISTUDY_BUNDLE:
            raise UserError(
                "no study bundle: set XAISTUDY_BUNDLE (or pass --bundle) to a folder made by "
                "'xaistudy explain'"
            )
        return Path(self.XAISTUDY_BUNDLE)

    def settings(self) -> dict[str, Any]:
        """Every setting, complete for Flask: the database URL and its engine options, a
        secret key (:func:`generated_secret_key` where none is set), the admin password
        hashed."""
        values = {name: getattr(self, name) for name in dir(self) if name.isupper()}
        url = values["SQLALCHEMY_DATABASE_URI"] = self.database_url
        values["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **engine_options(url, self.XAISTUDY_DB_TIMEOUT_S),
            **(self.SQLALCHEMY_ENGINE_OPTIONS or {}),
        }
        values["SECRET_KEY"] = self.SECRET_KEY or generated_secret_key(url)
        password = self.XAISTUDY_ADMIN_PASSWORD
        if password and not password.startswith(_HASH_PREFIXES):
            values["XAISTUDY_ADMIN_PASSWORD"] = generate_password_hash(password)
        return values


class DevelopmentConfig(Config):
    """One person trying the study on their machine (``xaistudy demo``), and simulated
    participants who all arrive from this machine's address."""

    DEBUG = True
    XAISTUDY_ARRIVAL_LIMITS = "off"
    XAISTUDY_ALLOW_INCOMPLETE_CONSENT = True


class TestConfig(Config):
    """Tests: no environment read, an in-memory database, a key for this process only."""

    reads_environment = False
    __test__ = False  # a settings class that pytest must not collect as a test class

    TESTING = True
    XAISTUDY_ALLOW_INCOMPLETE_CONSENT = True
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    SECRET_KEY = secrets.token_hex(32)
    XAISTUDY_ARRIVAL_LIMITS = "off"  # the tests' participants all come from one address

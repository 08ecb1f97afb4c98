"""The server's settings: defaults < environment < explicit options; one SECRET_KEY policy."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from study_server import create_app
from study_server.config import Config, DevelopmentConfig, TestConfig, environment_of
from xaistudy.cli import cli
from xaistudy.cli.server import given_settings
from xaistudy.errors import UserError

REFUSAL = "SECRET_KEY is not set: set the SECRET_KEY environment variable"


def test_explicit_settings_beat_the_environment_which_beats_the_defaults():
    environ = {
        "DATABASE_URL": "postgresql://env.example.org/study",
        "XAISTUDY_STUDY": "env.toml",
        "XAISTUDY_SECURE_COOKIES": "1",
    }
    config = Config({"XAISTUDY_STUDY": "given.toml"}, environ=environ)
    assert config.XAISTUDY_LOGIN_LIMITS == "5 per minute"  # default
    assert config.SESSION_COOKIE_SECURE is True  # environment over default
    assert config.database_url == "postgresql+psycopg://env.example.org/study"
    assert config.XAISTUDY_STUDY == "given.toml"  # explicit over environment


def test_the_environment_is_read_once_when_the_config_is_made(monkeypatch):
    monkeypatch.setenv("XAISTUDY_BUNDLE", "/first")
    config = Config()
    monkeypatch.setenv("XAISTUDY_BUNDLE", "/second")
    assert config.bundle == Path("/first")


def test_empty_variables_are_unset_and_flags_read_both_ways():
    config = Config(environ={"SECRET_KEY": "", "XAISTUDY_PROXY_FIX": "0", "FLASK_DEBUG": "yes"})
    assert config.SECRET_KEY is None
    assert config.XAISTUDY_PROXY_FIX is False and config.DEBUG is True
    assert DevelopmentConfig(environ={}).DEBUG is True
    assert DevelopmentConfig(environ={"FLASK_DEBUG": "0"}).DEBUG is False


def test_the_test_config_reads_no_environment():
    config = TestConfig(environ={"DATABASE_URL": "postgresql://prod/db", "SECRET_KEY": "prod"})
    assert config.TESTING and config.database_url == "sqlite://"
    assert config.SECRET_KEY and config.SECRET_KEY != "prod"


def test_the_default_database_is_one_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'xaistudy.sqlite'}"
    assert Config(environ={}).database_url == expected


def test_a_misspelt_setting_is_refused():
    with pytest.raises(UserError, match="upper case"):
        Config({"secret_key": "x"}, environ={})


def test_settings_travel_to_gunicorn_through_the_environment():
    settings = DevelopmentConfig(
        {"XAISTUDY_BUNDLE": "b", "SQLALCHEMY_DATABASE_URI": "postgresql://h/db", "SECRET_KEY": "k"},
        environ={},
    ).settings()
    read_back = Config(environ=environment_of(settings)).settings()
    for name in ("XAISTUDY_BUNDLE", "SQLALCHEMY_DATABASE_URI", "SECRET_KEY", "DEBUG"):
        assert read_back[name] == settings[name]
    assert read_back["XAISTUDY_ARRIVAL_LIMITS"] == "off"  # the demo's, not production's


def test_serve_passes_only_the_options_given():
    given = given_settings(bundle=Path("b"), study=None, db=None, admin_password=None)
    assert given == {"XAISTUDY_BUNDLE": "b"}
    environ = {"XAISTUDY_BUNDLE": "/env", "DATABASE_URL": "postgresql://env/db"}
    config = Config(given, environ=environ)
    assert config.bundle == Path("b")
    assert config.database_url == "postgresql+psycopg://env/db"


def _secret_key(url: str) -> str:
    return Config({"SQLALCHEMY_DATABASE_URI": url}, environ={}).settings()["SECRET_KEY"]


def test_a_sqlite_file_keeps_one_generated_key_for_every_worker(tmp_path):
    url = f"sqlite:///{tmp_path}/study.sqlite"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_secret_key, [url] * 8)  # workers starting at once
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert _secret_key(url) == keys[0]  # and after a restart
    kept = tmp_path / "study.sqlite.secret"
    assert stat.S_IMODE(kept.stat().st_mode) & 0o077 == 0  # the owner's only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.sqlite.secret"]


def test_a_secret_key_from_the_environment_wins(tmp_path):
    config = Config(
        {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/study.sqlite"},
        environ={"SECRET_KEY": "from-the-environment"},
    )
    assert config.settings()["SECRET_KEY"] == "from-the-environment"
    assert not (tmp_path / "study.sqlite.secret").exists()


@pytest.mark.parametrize("url", ["postgresql://db.example.org/study", "sqlite://"])
def test_a_start_without_a_key_that_can_be_kept_is_refused(url, bundle_dir):
    config = Config({"SQLALCHEMY_DATABASE_URI": url, "XAISTUDY_BUNDLE": str(bundle_dir)}, {})
    with pytest.raises(UserError, match=f"^{REFUSAL}"):
        create_app(config)


def test_serve_refuses_a_server_database_without_a_key_in_one_line(bundle_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["serve", "--bundle", str(bundle_dir), "--db", "postgresql://db.example.org/study"],
        env={"SECRET_KEY": None, "DATABASE_URL": None},
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {REFUSAL}") and result.output.count("\n") == 1


def test_export_reads_the_servers_database_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/from-env.sqlite"}
    result = runner.invoke(cli, ["export", "--out", str(tmp_path / "out")], env=env)
    assert result.exit_code == 2 and "from-env.sqlite does not exist" in result.output
    result = runner.invoke(
        cli, ["export", "--out", str(tmp_path / "out")], env={"DATABASE_URL": None}
    )
    assert result.exit_code == 2 and "xaistudy.sqlite does not exist" in result.output

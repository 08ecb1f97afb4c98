"""Simulated participants through the real study server: in-process and over HTTP."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from xaistudy.cli import cli

ACCURACY = "baseline=0.9,counterfactuals=0.6,concepts=0.3"


def test_simulate_into_a_database_then_analyze_it(bundle_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--bundle",
            str(bundle_dir),
            "--n",
            "6",
            "--accuracy",
            ACCURACY,
            "--attention-fail",
            "0.5",
            "--scale-offset",
            "baseline=1.5,concepts=-1.5",
            "--db",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "completed 6" in result.output
    result = runner.invoke(
        cli,
        [
            "analyze",
            "--db",
            url,
            "--bundle",
            str(bundle_dir),
            "--out",
            str(tmp_path / "report"),
            "--bootstrap",
            "200",
            "--min-seconds",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output

    from study_server.export import export_frames

    people = export_frames(url)["participants"]
    assert len(people) == 6 and people["condition"].value_counts().tolist() == [2, 2, 2]
    failed = int((people["attention_passed"] == False).sum())  # noqa: E712
    exclusions = pd.read_csv(tmp_path / "report" / "exclusions.csv").set_index("reason")
    assert exclusions.loc["attention_failed", "n_excluded"] == failed
    table = pd.read_csv(tmp_path / "report" / "accuracy_by_condition.csv")
    assert failed > 0 and table["n"].sum() == 6 - failed
    assert (tmp_path / "report" / "page_times.csv").exists()
    # the questionnaire after the ratings, answered around the midpoint +- the offset, of
    # the included participants only
    items = pd.read_csv(tmp_path / "report" / "questionnaire_items.csv")
    trust = items[items["item"] == "trust"].set_index("condition")
    assert trust["n"].sum() == 6 - failed
    if {"baseline", "concepts"} <= set(trust.index):
        assert trust.loc["baseline", "mean"] > trust.loc["concepts", "mean"]
    assert "questionnaires (mean [interval] per condition):" in result.output


def test_simulate_refuses_a_scale_shift_off_the_scale(bundle_dir, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["simulate", "--bundle", str(bundle_dir), "--accuracy", ACCURACY, "--scale-change",
         "baseline=9", "--db", f"sqlite:///{tmp_path / 's.sqlite'}"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--scale-change baseline=9 is outside [-6, 6]" in result.output


@pytest.fixture()
def running_server(bundle_dir, tmp_path):

    from simulation.runs import local_server
    from study_server import create_app

    url = f"sqlite:///{tmp_path / 'http.sqlite'}"
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "XAISTUDY_BUNDLE": str(bundle_dir),
            "SECRET_KEY": "http-test",
            "XAISTUDY_ARRIVAL_LIMITS": "off",  # the simulated participants share 127.0.0.1
            "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": True,  # simulated participants only
        }
    )
    with local_server(app) as base:
        yield base, url


def test_simulate_over_http(running_server, bundle_dir):
    base, url = running_server
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--bundle",
            str(bundle_dir),
            "--n",
            "3",
            "--accuracy",
            ACCURACY,
            "--url",
            base,
        ],
    )
    assert result.exit_code == 0, result.output
    from study_server.export import export_frames

    frames = export_frames(url)
    assert sorted(frames["participants"]["status"]) == ["completed"] * 3
    assert len(frames["answers"]) == 3 * 7


@pytest.fixture()
def postgres_url():
    import uuid

    psycopg = pytest.importorskip("psycopg")
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"xaistudy_analysis_{uuid.uuid4().hex[:10]}"  # one database per test and worker
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_simulate_into_postgresql_then_analyze_it(bundle_dir, postgres_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--bundle",
            str(bundle_dir),
            "--n",
            "3",
            "--accuracy",
            ACCURACY,
            "--db",
            postgres_url,
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "analyze",
            "--db",
            postgres_url,
            "--bundle",
            str(bundle_dir),
            "--out",
            str(tmp_path / "report"),
            "--bootstrap",
            "200",
            "--min-seconds",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "report" / "accuracy_by_condition.csv")
    assert sorted(table["condition"]) == ["baseline", "concepts", "counterfactuals"]
    assert table["n"].tolist() == [1, 1, 1]

"""The whole loop through the command line, as a researcher runs it, at a tiny scale.

generate -> train -> explain -> serve (a real HTTP server) -> simulated participants over
HTTP -> analyze. The simulation sets accuracies of 1.0 and 0.0 for two conditions (no
ability spread), which the report must reproduce exactly, and 0.5 for the third, which
must come out near 0.5 with an interval around it: whatever condition the server's
random tie-break gives each participant, these hold.
"""

from __future__ import annotations

import contextlib
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from xaistudy.cli import cli

pytestmark = pytest.mark.slow

TINY_CONFIG = """
name = "e2e-tiny"
input_size = 32
blocks_per_stage = [1, 1, 1]
coupling_widths = [8, 16, 16]
epochs = 2
batch_size = 32
"""
ACCURACY = {"baseline": 1.0, "counterfactuals": 0.0, "concepts": 0.5}
PARTICIPANTS = 45


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def server(tmp_path):
    """The study server on a free port (werkzeug, threaded) over a migrated SQLite file."""

    from simulation.runs import local_server
    from study_server import create_app

    def start(bundle_dir, db_url):
        app = create_app(
            {
                "XAISTUDY_BUNDLE": str(bundle_dir),
                "SQLALCHEMY_DATABASE_URI": db_url,
                "SECRET_KEY": "e2e-secret",
                "XAISTUDY_ADMIN_PASSWORD": "e2e-password",
                "XAISTUDY_ARRIVAL_LIMITS": "off",  # the simulated participants share 127.0.0.1
                "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": True,  # simulated participants only
            }
        )
        return servers.enter_context(local_server(app))

    with contextlib.ExitStack() as servers:
        yield start


def test_generate_train_explain_serve_simulate_analyze(tmp_path, server):
    data, run, bundle, report = (tmp_path / n for n in ("data", "run", "bundle", "report"))
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG)
    db_url = f"sqlite:///{tmp_path / 'study.sqlite'}"

    invoke(
        "generate", "--preset", "iclr2022", "--out", str(data), "--n-train", "256",
        "--n-val", "32", "--n-test", "96", "--size", "32", "--seed", "1", "--interventions",
    )  # fmt: skip
    invoke("train", "--data", str(data), "--out", str(run), "--config", str(config))
    card = json.loads((run / "model_card.json").read_text())
    assert set(card["accuracy"]) >= {"val", "test", "test_intervene_arm_position"}

    invoke(
        "explain", "--model", str(run), "--data", str(data), "--out", str(bundle),
        "--n-test", "96", "--baseline-rows", "4", "--cf-sources", "3", "--concepts", "3",
        "--gt-scenes", "48", "--allow-invalid",  # a tiny model fails the validity checks
    )  # fmt: skip
    assert "is intact" in invoke("bundle", "verify", str(bundle))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["conditions"]) == set(ACCURACY)

    url = server(bundle, db_url)
    accuracy = ",".join(f"{k}={v}" for k, v in ACCURACY.items())
    invoke(
        "simulate", "--bundle", str(bundle), "--n", str(PARTICIPANTS), "--accuracy", accuracy,
        "--ability-sd", "0", "--url", url, "--seed", "5",
    )  # fmt: skip
    invoke(
        "analyze", "--db", db_url, "--bundle", str(bundle), "--out", str(report),
        "--min-seconds", "0", "--bootstrap", "500",
    )  # fmt: skip

    table = pd.read_csv(report / "accuracy_by_condition.csv").set_index("condition")
    assert table["n"].sum() == PARTICIPANTS
    assert table["n"].max() - table["n"].min() <= 1  # balanced assignment
    assert table.loc["baseline", "accuracy"] == pytest.approx(1.0)
    assert table.loc["counterfactuals", "accuracy"] == pytest.approx(0.0)
    concepts = table.loc["concepts"]
    assert abs(concepts["accuracy"] - 0.5) < 0.2
    assert concepts["ci_low"] < concepts["accuracy"] < concepts["ci_high"]
    html = (report / "report.html").read_text()
    assert "baseline" in html and "<img" in html

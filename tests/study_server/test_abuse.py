"""What a public study link invites: odd IDs, formula cells, floods of arrivals, guessed
admin passwords, borrowed identities, a database that stalls. Each test is one attack
and what the server does instead of failing."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from click.testing import CliRunner
from server_helpers import count, login

from simulation.client import ParticipantClient
from simulation.transport import FlaskTransport
from study_server.export import frame_to_csv
from study_server.models import Participant
from study_server.study import load_study
from xaistudy.cli import cli


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize("value", ["abc%0A", "a" * 64 + "%0A", "abc%0D%0A"])
def test_a_trailing_newline_never_passes_the_id_check(app, name, value):
    values = {"PROLIFIC_PID": "NL1", "STUDY_ID": "S1", "SESSION_ID": "X1", name: value}
    url = "/?" + "&".join(f"{k}={v}" for k, v in values.items())
    response = app.test_client().get(url)
    assert response.status_code == 400
    assert f"{name} is not valid" in response.get_data(as_text=True)
    assert count(app, Participant) == 0


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1", "-2+3", "@SUM(A1)"]


def test_formulas_are_neutralized_in_csv_and_kept_raw_in_parquet(sqlite_app, tmp_path):
    plain = ["plain", "a - b", "x=1"]
    reasons = dict(zip(load_study(None).attribute_keys, FORMULAS + plain, strict=True))
    ParticipantClient(FlaskTransport(sqlite_app), prolific_pid="FORMULA").run(
        answer=lambda key, condition: (3, reasons[key])
    )
    url = sqlite_app.config["SQLALCHEMY_DATABASE_URI"]
    result = CliRunner().invoke(cli, ["export", "--db", url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    client = sqlite_app.test_client()
    login(client)
    downloaded = client.get("/admin/export/answers.csv").get_data(as_text=True)
    for csv_text in (downloaded, (tmp_path / "answers.csv").read_text()):
        cells = pd.read_csv(io.StringIO(csv_text), keep_default_na=False)["reason"].tolist()
        assert sorted(cells) == sorted(["'" + f for f in FORMULAS] + plain)
    raw = pd.read_parquet(tmp_path / "answers.parquet")["reason"].tolist()
    assert sorted(raw) == sorted(FORMULAS + plain)


def test_csv_neutralizes_tab_and_carriage_return_starts_but_never_numbers():
    frame = pd.DataFrame({"text": ["\tx", "\rx", "ok"], "number": [-1, 2, -3]})
    assert frame_to_csv(frame) == "text,number\n'\tx,-1\n'\rx,2\nok,-3\n"

"""What a public study link invites: odd IDs, formula cells, floods of arrivals, guessed
admin passwords, borrowed identities, a database that stalls. Each test is one attack
and what the server does instead of failing."""

from __future__ import annotations

import pytest
from server_helpers import count

from study_server.models import Participant


@pytest.mark.parametrize("name", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
@pytest.mark.parametrize("value", ["abc%0A", "a" * 64 + "%0A", "abc%0D%0A"])
def test_a_trailing_newline_never_passes_the_id_check(app, name, value):
    values = {"PROLIFIC_PID": "NL1", "STUDY_ID": "S1", "SESSION_ID": "X1", name: value}
    url = "/?" + "&".join(f"{k}={v}" for k, v in values.items())
    response = app.test_client().get(url)
    assert response.status_code == 400
    assert f"{name} is not valid" in response.get_data(as_text=True)
    assert count(app, Participant) == 0

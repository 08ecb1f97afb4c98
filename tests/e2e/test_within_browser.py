"""Chromium completes a within-subjects forward-simulation study block by block: each
participant walks both conditions of the group, each block opened by its intro page, in
the order their Williams-square row gives; the rows stored are one per trial, in the
participant's order of conditions, with the answers given."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SCREENSHOTS, study_app, study_makers
from tests.e2e.test_forward_simulation_browser import (
    BY_CONDITION,
    stored_walks,
    walk_each_condition,
)

CONDITIONS = ("none", "integrated_gradients")


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir):
    from simulation.runs import local_server

    app = study_app(tmp_path_factory.mktemp("e2e-within"), bundle_dir, study_makers().within_study)
    with local_server(app) as base:
        yield app, base


@pytest.mark.browser
def test_chromium_walks_each_block_of_a_within_study_in_the_participants_order(server, browser):
    app, base = server
    audited: set[str] = set()
    # two arrivals fill the two orders of the square: each condition first once
    walked = walk_each_condition(
        browser,
        base,
        "WTH",
        CONDITIONS,
        audited,
        by_condition=("block-intro", *BY_CONDITION),
        folder="within",
    )
    assert {f"{c} block-intro" for c in CONDITIONS} <= audited
    with app.app_context():
        for participant, rows, given in stored_walks(walked):
            order = participant.condition_order.split("|")
            assert sorted(order) == sorted(CONDITIONS)
            assert len(rows) == 2 * (4 + 8)  # two blocks of 4 learning and 8 test trials
            assert {(r.period, r.phase, r.position + 1): r.prediction for r in rows} == given
            walked_order = [r.condition for r in sorted(rows, key=lambda r: r.answered_at)]
            assert walked_order == [order[0]] * 12 + [order[1]] * 12
            assert all(r.condition == order[r.period - 1] for r in rows)
            assert len({r.scene_id for r in rows}) == 24  # no scene shown twice
    shots = sorted((SCREENSHOTS / "within").glob("*/*block-2.png"))
    assert shots, "the second block's intro was photographed"

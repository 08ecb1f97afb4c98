"""Within-subjects and mixed designs (docs/designs/within-subjects.md): the Williams
square, the study file's [within] table and its refusals, the scene slice of each block,
the assignment balanced over cells (also under simultaneous arrivals, on both backends),
the walk through every block, the stored rows and their export."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter

import flask_migrate
import pytest
from server_helpers import count, enter, make_app, simultaneous_arrivals, walk_trials, within_study
from sqlalchemy import text

from explain.bundle_format import load_manifest
from study_server.export import TRIAL_COLUMNS, export_frames
from study_server.extensions import db
from study_server.models import Participant, Trial
from study_server.study import load_study, parse_study, shipped_studies
from study_server.within import Cell, Within, williams_square
from xaistudy.errors import UserError

THREE = (("none", "integrated_gradients", "grad_cam"),)


# -- the square ----------------------------------------------------------------------


@pytest.mark.parametrize("n", range(2, 9))
def test_the_williams_square_puts_each_condition_once_per_position_and_balances_pairs(n):
    rows = williams_square(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(row) == list(range(n)) for row in rows)  # every order a permutation
    for position in range(n):  # each condition in each position equally often
        assert Counter(row[position] for row in rows) == dict.fromkeys(range(n), len(rows) // n)
    adjacent = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert set(adjacent) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(adjacent.values()) == {1 if n % 2 == 0 else 2}  # first-order carry-over


def test_a_square_over_one_condition_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        williams_square(1)


@pytest.mark.parametrize("n", range(2, 7))
def test_each_condition_meets_each_scene_slice_equally_often(n):
    within = Within(groups=(tuple(f"c{i}" for i in range(n)),), target_n=len(williams_square(n)))
    blocks = [b for cell in within.cells() for b in within.block_plan(cell)]
    per_condition = Counter((b.condition, b.scene_slice) for b in blocks)
    assert set(per_condition.values()) == {len(williams_square(n)) // n}
    for cell in within.cells():  # a participant's blocks never share a slice
        assert sorted(b.scene_slice for b in within.block_plan(cell)) == list(range(n))
    per_period = Counter((b.period, b.scene_slice) for b in blocks)
    if n % 2:  # odd n: the slices are balanced over the periods too
        assert set(per_period.values()) == {2}
    else:  # even n: condition and slice stay apart; the period effect absorbs the slice
        assert len(per_period) < n * n


# -- the study file ------------------------------------------------------------------


def _within_data(tmp_path, **changes) -> dict:
    data = tomllib.loads(within_study(tmp_path).read_text())
    data["within"].update(changes)
    return data


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([["none"]], "a Latin square over one condition orders nothing"),
        ([["none", "lrp"]], "names 'lrp', not a condition of \\[conditions\\]"),
        ([["none", "none", "integrated_gradients"]], "names 'none' more than once"),
        ([["none", "integrated_gradients"], ["none"]], "over one condition"),
        (["none", "integrated_gradients"], "must be a list of groups"),
        ([["integrated_gradients", "none"], ["integrated_gradients", "none"]], "repeats a group"),
    ],
)
def test_bad_groups_are_refused_in_one_line(tmp_path, groups, message):
    with pytest.raises(UserError, match=message) as caught:
        parse_study(_within_data(tmp_path, groups=groups))
    assert "\n" not in str(caught.value)


def test_groups_of_different_sizes_and_a_condition_in_no_group_are_refused(tmp_path):
    data = _within_data(tmp_path, groups=[["none", "integrated_gradients"]])
    data["conditions"]["grad_cam"] = {}
    with pytest.raises(UserError, match="'grad_cam' of \\[conditions\\] are in no group"):
        parse_study(data)
    uneven = [["none", "integrated_gradients"], ["none", "integrated_gradients", "grad_cam"]]
    data["within"]["groups"], data["within"]["target_n"] = uneven, 6
    with pytest.raises(UserError, match="have 2 and 3 conditions"):
        parse_study(data)


def test_a_target_that_leaves_orders_unequal_and_a_conditions_own_target_are_refused(tmp_path):
    with pytest.raises(UserError, match="target_n = 5 is not a multiple of 2"):
        parse_study(_within_data(tmp_path, target_n=5))
    data = _within_data(tmp_path)
    data["conditions"]["none"]["target_n"] = 10
    with pytest.raises(UserError, match="conditions.none.target_n is not read in a within"):
        parse_study(data)


@pytest.mark.parametrize(
    ("shipped", "why"),
    [
        ("default", "would rate the same attributes again"),
        ("counterfactual-simulation", "pre-test"),
    ],
)
def test_within_is_refused_in_designs_that_cannot_repeat_a_block(shipped, why):
    data = tomllib.loads(shipped_studies()[shipped].read_text())
    data["within"] = {"groups": [list(data["conditions"])[:2]], "target_n": 2}
    with pytest.raises(UserError, match=f"does not apply to design.*{why}"):
        parse_study(data)


def test_a_questionnaire_inside_the_blocks_is_refused(tmp_path):
    data = _within_data(tmp_path)
    data["questionnaires"][0]["at"] = "after-learning"
    with pytest.raises(UserError, match="'after-learning'.*after-intro or before-demographics"):
        parse_study(data)


def test_the_targets_are_per_group_and_a_condition_counts_every_group_it_is_in(tmp_path):
    data = _within_data(tmp_path, groups=[["none", "integrated_gradients"], ["none", "grad_cam"]])
    data["conditions"]["grad_cam"] = {}
    study = parse_study(data)
    assert {c.name: c.target_n for c in study.conditions} == {
        "none": 12,
        "integrated_gradients": 6,
        "grad_cam": 6,
    }
    assert study.within.cells() == (Cell(1, 1), Cell(1, 2), Cell(2, 1), Cell(2, 2))


def test_a_bundle_without_scenes_for_disjoint_blocks_is_refused(tmp_path, bundle_dir):
    manifest = load_manifest(bundle_dir)  # 8 learning, 16 test scenes
    study = load_study(within_study(tmp_path, THREE, learning_trials=4, test_trials=4))
    with pytest.raises(UserError, match="3 blocks needs 12 disjoint scenes.*at most 2"):
        study.with_bundle(manifest)
    fits = load_study(within_study(tmp_path, THREE, learning_trials=2, test_trials=5))
    assert fits.with_bundle(manifest).within.blocks == 3


def test_the_shipped_within_study_fits_the_demo_bundles_scenes():
    study = load_study(shipped_studies()["within-forward-simulation"])
    trials = study.forward_simulation
    assert study.within.blocks * trials.learning_trials <= 8  # xaistudy explain's defaults
    assert study.within.blocks * trials.test_trials <= 16
    assert load_study(shipped_studies()["within-forward-simulation"], "de").title


# -- the walk ------------------------------------------------------------------------


@pytest.fixture
def within_app(bundle_dir, tmp_path):
    study = within_study(tmp_path, THREE, target_n=6, learning_trials=2, test_trials=5)
    return make_app(bundle_dir, f"sqlite:///{tmp_path / 'db.sqlite'}", XAISTUDY_STUDY=str(study))


def test_a_participant_walks_one_block_per_condition_in_their_order(within_app, bundle_dir):
    client = within_app.test_client()
    shown = walk_trials(client, lambda phase, scene: "peaky")
    with within_app.app_context():
        participant = db.session.query(Participant).one()
        trials = db.session.query(Trial).order_by(Trial.id).all()
        db.session.expunge_all()  # read: kept as they are after the session
    order = participant.condition_order.split("|")
    assert sorted(order) == sorted(THREE[0]) and participant.condition == order[0]
    assert participant.within_group == 1 and 1 <= participant.within_order <= 6
    assert [name for name in shown if name.startswith("block-")] == [
        "block-1",
        "block-2",
        "block-3",
    ]
    assert "Part 2 of 3" in shown["block-2"] and "A new part starts" in shown["block-2"]
    # one row per trial, each block's condition and period in the participant's order
    assert len(trials) == 3 * (2 + 5)
    assert [(t.period, t.condition) for t in trials] == [
        (period, name) for period, name in enumerate(order, 1) for _ in range(2 + 5)
    ]
    # the blocks never share a scene, and each shows its slice of the bundle's
    manifest = load_manifest(bundle_dir).simulation
    plan = load_study(within_app.config["XAISTUDY_STUDY"]).within.block_plan(
        Cell(participant.within_group, participant.within_order)
    )
    for block in plan:
        mine = [t for t in trials if t.period == block.period]
        for phase, n in (("learning", 2), ("test", 5)):
            positions = sorted(t.scene_index for t in mine if t.phase == phase)
            assert positions == list(range(block.scene_slice * n, (block.scene_slice + 1) * n))
            scenes = getattr(manifest, phase)
            assert all(
                t.scene_id == scenes[t.scene_index].test_index for t in mine if t.phase == phase
            )
    assert len({t.scene_id for t in trials}) == len(trials)
    # a block with maps shows them with its learning scenes, and the participant may load
    # them whichever block they are in; the control's block shows none
    for block in plan:
        page = shown[f"b{block.period}-learning-1"]
        assert f'name="xaistudy-condition" content="{block.condition}"' in page
        caption = "The explanation of the picture on the left"
        assert (caption in page) == (block.condition != "none"), block.condition
        for src in re.findall(r'<img src="([^"]+)"', page):
            assert client.get(src).status_code == 200, (block.condition, src)


def test_a_returning_participant_keeps_their_order_and_blocks(within_app):
    client = within_app.test_client()
    shown = walk_trials(client, lambda phase, scene: "peaky", stop_at="b2-learning-1")
    again = enter(client).get_data(as_text=True)
    assert 'content="b2-learning-1"' in again
    assert shown["b2-learning-1"].count("xaistudy-scene") == again.count("xaistudy-scene")


def test_arrivals_fill_every_cell_once_before_any_twice_and_stop_at_the_target(within_app):
    statuses = [
        enter(within_app.test_client(), f"P{i}", follow=False).status_code for i in range(7)
    ]
    assert statuses == [303] * 6 + [410]  # 6 per group: one per order of the square
    with within_app.app_context():
        cells = Counter((p.within_group, p.within_order) for p in db.session.query(Participant))
        db.session.rollback()
    assert cells == {(1, r): 1 for r in range(1, 7)}


@pytest.fixture
def within_backend_app(bundle_dir, database_url, backend, tmp_path):
    """A 3-condition within study (6 orders, 2 each) on SQLite and PostgreSQL."""
    study = within_study(tmp_path, THREE, target_n=12, learning_trials=2, test_trials=5)
    app = make_app(bundle_dir, database_url, XAISTUDY_STUDY=str(study))
    if backend == "postgres":
        from conftest import _truncate

        _truncate(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_40_simultaneous_arrivals_fill_each_cell_to_its_share_and_no_further(within_backend_app):
    app, arrivals = within_backend_app, 40
    statuses = simultaneous_arrivals(app, arrivals, "WCONC")
    assert sorted(statuses) == [303] * 12 + [410] * 28
    with app.app_context():
        people = db.session.query(Participant).all()
        cells = Counter((p.within_group, p.within_order) for p in people)
        firsts = Counter(p.condition for p in people)
        db.session.rollback()
    assert cells == {(1, r): 2 for r in range(1, 7)}
    assert firsts == dict.fromkeys(THREE[0], 4)  # the square: each condition first alike


def test_a_paused_condition_stops_the_cells_of_its_group(within_app):
    from study_server.models import ConditionState

    with within_app.app_context():
        from study_server.assignment import lock_study

        lock_study(db.session, load_study(within_app.config["XAISTUDY_STUDY"]))
        db.session.add(
            ConditionState(study="within-forward-simulation", condition="grad_cam", state="paused")
        )
        db.session.commit()
    response = enter(within_app.test_client(), "PAUSED", follow=True)
    assert response.status_code == 503
    assert count(within_app, Participant) == 0


# -- the export ----------------------------------------------------------------------


def test_the_export_gives_each_trial_its_condition_and_period(within_app):
    walk_trials(within_app.test_client(), lambda phase, scene: "stretchy")
    frames = export_frames(within_app.config["SQLALCHEMY_DATABASE_URI"])
    trials, people = frames["trials"], frames["participants"]
    assert list(trials.columns) == list(TRIAL_COLUMNS)
    order = people["condition_order"].iloc[0].split("|")
    per_period = trials.groupby("period")["condition"].agg(set).to_dict()
    assert per_period == {p: {name} for p, name in enumerate(order, 1)}
    assert (trials["within_group"] == 1).all()
    assert trials["within_order"].nunique() == 1
    assert list(trials["period"]) == sorted(trials["period"])  # in the order walked


def test_a_between_subjects_export_is_as_before_with_the_new_columns_at_the_end(
    bundle_dir, tmp_path
):
    from server_helpers import trial_app

    app = trial_app(bundle_dir, tmp_path, learning_trials=2, test_trials=2)
    walk_trials(app.test_client(), lambda phase, scene: "peaky")
    frames = export_frames(app.config["SQLALCHEMY_DATABASE_URI"])
    trials, people = frames["trials"], frames["participants"]
    assert list(trials.columns[-3:]) == ["period", "within_group", "within_order"]
    assert (trials["period"] == 1).all() and trials["within_group"].isna().all()
    assert (trials["condition"] == people["condition"].iloc[0]).all()
    assert list(people.columns[-3:]) == ["within_group", "within_order", "condition_order"]
    assert people["condition_order"].isna().all()


def test_0009_gives_earlier_trials_their_participants_condition_and_period_1(bundle_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    app = make_app(bundle_dir, url)
    with app.app_context():
        flask_migrate.downgrade(revision="0008")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO studies (slug, title, attribute_keys, abandonment_timeout_s, "
                    "completed_code, screened_out_code, state, updated_at) VALUES ('s', 't', "
                    "'', 60, 'C', 'S', 'open', '2026-01-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO participants (id, study, prolific_pid, study_id, session_id, "
                    "condition, status, preview, excluded, page, revision, attribute_order, "
                    "comprehension_attempts, started_at, last_seen_at) VALUES (1, 's', 'P', '', "
                    "'', 'baseline', 'completed', 0, 0, 'complete', 0, '', 0, '2026-01-01', "
                    "'2026-01-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO trials (participant_id, design, phase, position, scene_index, "
                    "scene_id, prediction, model_decision, true_label, correct, answered_at) "
                    "VALUES (1, 'forward-simulation', 'test', 0, 0, 5, 'peaky', 'peaky', "
                    "'peaky', 1, '2026-01-01')"
                )
            )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            row = connection.execute(text("SELECT condition, period FROM trials")).one()
        db.engine.dispose()
    assert tuple(row) == ("baseline", 1)


def test_a_preview_of_a_condition_starts_with_its_block(within_app):
    from server_helpers import login

    client = within_app.test_client()
    assert login(client).status_code in (302, 303)
    with within_app.test_request_context():
        from study_server.participant import start_preview

        participant = start_preview("grad_cam")
        assert participant.condition_order.split("|")[0] == "grad_cam"
        assert json.loads(participant.trial_order)["learning-1"]
        db.session.rollback()

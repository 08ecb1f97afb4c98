"""Balanced assignment: the rule itself, 300 simultaneous arrivals on both backends (the
targets cap them), and the study's and conditions' states (open, paused, closed)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from server_helpers import enter, simultaneous_arrivals

from study_server.assignment import choose_condition, condition_counts
from study_server.extensions import db
from study_server.models import Participant, utcnow
from study_server.study import load_study

STUDY = load_study(None)


def test_least_filled_condition_wins_relative_to_target():
    rng = random.Random(0)
    counts = {"baseline": 3, "counterfactuals": 2, "concepts": 3}
    assert choose_condition(counts, STUDY.conditions, rng) == "counterfactuals"
    tied = {"baseline": 1, "counterfactuals": 1, "concepts": 4}
    picks = {choose_condition(tied, STUDY.conditions, rng) for _ in range(50)}
    assert picks == {"baseline", "counterfactuals"}  # random tie-break between the least


def test_previews_excluded_and_abandoned_participants_do_not_fill_a_condition(sqlite_app):
    app = sqlite_app
    now = utcnow()
    with app.app_context():
        from study_server.assignment import lock_study

        lock_study(db.session, STUDY)
        rows = [
            ("baseline", "completed", False, False, now - timedelta(days=2)),
            ("baseline", "started", False, False, now),
            ("counterfactuals", "started", True, False, now),  # preview
            ("counterfactuals", "completed", False, True, now),  # excluded
            ("concepts", "started", False, False, now - timedelta(hours=3)),  # abandoned
            ("concepts", "screened_out", False, False, now),
        ]
        for i, (condition, status, preview, excluded, seen) in enumerate(rows):
            db.session.add(
                Participant(
                    study=STUDY.slug,
                    prolific_pid=f"X{i}",
                    condition=condition,
                    status=status,
                    preview=preview,
                    excluded=excluded,
                    attribute_order="a",
                    last_seen_at=seen,
                )
            )
        db.session.commit()
        counts = condition_counts(db.session, STUDY, utcnow())
    assert counts == {"baseline": 2, "counterfactuals": 0, "concepts": 0}


def test_300_simultaneous_arrivals_stay_balanced_and_stop_at_the_targets(app):
    """80 per condition: 240 are admitted, balanced; the other 60 see the "full" page."""
    arrivals = 300
    statuses = simultaneous_arrivals(app, arrivals, "CONC")
    assert sorted(statuses) == [303] * 240 + [410] * 60
    with app.app_context():
        conditions = [p.condition for p in db.session.query(Participant).all()]
        db.session.rollback()
        db.engine.dispose()
    counts = {name: conditions.count(name) for name in STUDY.condition_names}
    assert counts == {name: 80 for name in STUDY.condition_names}


def test_a_pid_arriving_twice_at_once_is_one_participant(app):
    barrier = threading.Barrier(8)

    def arrive(_):
        client = app.test_client()
        barrier.wait(timeout=30)
        return enter(client, "TWICE", follow=False).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(arrive, range(8))) == [303] * 8
    with app.app_context():
        assert db.session.query(Participant).count() == 1
        db.session.rollback()

"""Stated confidence against accuracy in a trial design's test: an overconfident
condition is told from a calibrated one, each with its interval, and a study that asked
no confidence has no table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.calibration import STATED, calibration_tables


def trials(condition: str, confidence: int, accuracy: float, n: int = 20, seed: int = 0):
    """``n`` participants of ``condition``, 16 test trials each at ``confidence``, right
    with chance ``accuracy``; and 8 learning trials, which the table leaves out."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n):
        for phase, count in (("learning", 8), ("test", 16)):
            for _ in range(count):
                rows.append(
                    {
                        "participant_id": f"{condition}-{p}",
                        "condition": condition,
                        "phase": phase,
                        "correct": bool(rng.random() < accuracy),
                        "confidence": confidence if phase == "test" else None,
                    }
                )
    return pd.DataFrame(rows)


def test_overconfidence_is_what_participants_state_minus_what_they_get_right():
    frame = pd.concat([trials("sure", 5, 0.7), trials("calibrated", 4, 0.875, seed=1)])
    table, curve = calibration_tables(frame, ["sure", "calibrated"], 0.95, 2000, 0)
    table = table.set_index("condition")
    assert table.loc["sure", "trials"] == 20 * 16  # the test trials only
    assert table.loc["sure", "stated"] == STATED[5]
    sure = table.loc["sure"]
    assert sure["overconfidence"] == pytest.approx(1.0 - sure["accuracy"])
    assert 0.2 <= sure["ci_low"] <= 0.3 <= sure["ci_high"]  # set: 1.0 - 0.7
    calibrated = table.loc["calibrated"]
    assert calibrated["ci_low"] <= 0 <= calibrated["ci_high"]  # stated 0.875, right 0.875
    assert set(curve["confidence"]) == {4, 5} and set(curve["stated"]) == {0.875, 1.0}


def test_a_study_that_asked_no_confidence_has_no_calibration():
    frame = trials("none", 3, 0.6)
    frame["confidence"] = None
    table, curve = calibration_tables(frame, ["none"], 0.95, 200, 0)
    assert table.empty and curve.empty

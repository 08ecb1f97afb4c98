"""Whether participants know when they are right: their stated confidence against their
accuracy in a trial design's test (HIVE's agreement calibration, Kim et al. 2022).

Where a study sets ``confidence = true``, each test trial also asks how sure the
participant is, on five points (Guessing, Unsure, Fairly sure, Sure, Certain;
study_server.forms.CONFIDENCE). Every trial design here has two answers balanced so
that a guess is right half the time, so the points are read as the chances 0.5, 0.625,
0.75, 0.875 and 1.0 of being right. Per condition: the test trials answered with a
confidence, their accuracy, the mean stated chance and ``overconfidence`` (stated minus
accuracy: above 0 the participants trusted their answers more than they deserved), with
a percentile bootstrap interval over participants, resampled within the condition; and
per condition and point the accuracy (the calibration curve).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The chance of being right each confidence point states (two balanced answers).
STATED = {1: 0.5, 2: 0.625, 3: 0.75, 4: 0.875, 5: 1.0}


def calibration_tables(
    trials: pd.DataFrame, conditions: list[str], level: float, n_boot: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per condition, per condition and point); both empty when no test trial asked how
    sure the participant was."""
    if "confidence" not in trials:
        return pd.DataFrame(), pd.DataFrame()
    confidence = pd.to_numeric(trials["confidence"], errors="coerce")
    asked = ((trials["phase"] == "test") & confidence.isin(STATED)).to_numpy()
    if not asked.any():
        return pd.DataFrame(), pd.DataFrame()
    rated = trials[asked].copy()
    rated["confidence"] = confidence[asked].to_numpy().astype(int)
    rated["stated"] = rated["confidence"].map(STATED)
    rng = np.random.default_rng([seed, 7])
    tail = (1 - level) / 2 * 100
    rows = []
    for condition in conditions:
        mine = rated[rated["condition"] == condition]
        if mine.empty:
            continue
        sums = mine.groupby("participant_id").agg(
            correct=("correct", "sum"), stated=("stated", "sum"), trials=("correct", "count")
        )
        draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
        totals = sums["trials"].to_numpy(float)[draws].sum(axis=1)
        over = (
            sums["stated"].to_numpy(float)[draws].sum(axis=1)
            - sums["correct"].to_numpy(float)[draws].sum(axis=1)
        ) / totals
        low, high = np.percentile(over, [tail, 100 - tail])
        accuracy = mine["correct"].mean()
        rows.append(
            {
                "condition": condition,
                "participants": len(sums),
                "trials": len(mine),
                "accuracy": accuracy,
                "stated": mine["stated"].mean(),
                "overconfidence": mine["stated"].mean() - accuracy,
                "ci_low": float(low),
                "ci_high": float(high),
            }
        )
    curve = (
        rated.groupby(["condition", "confidence"])["correct"]
        .agg(trials="count", accuracy="mean")
        .reset_index()
    )
    curve["stated"] = curve["confidence"].map(STATED)
    return pd.DataFrame(rows), curve

"""The verification design's measures (docs/designs/verification.md).

A trial shows a scene with the model's decision; the participant says whether it is
right. The trial is correct when the verdict matches the truth: "right" where the model's
decision is the true animal, "wrong" where it is not. Per condition and phase: the
verification accuracy with a percentile bootstrap interval over participants (as in the
forward-simulation design, whose helpers this reuses). Reliance, per condition and phase:
over-reliance is the share of "right" verdicts on the scenes where the model is wrong,
under-reliance the share of "wrong" verdicts where it is right, each with a bootstrap
interval over participants. The gain of a condition is its test accuracy minus the
control's (``none``), with a bootstrap interval and a logistic GEE's odds ratio and
p-value (analysis.forward_simulation.utility_table). The scenes are balanced over the
model's correctness, so accepting every decision (or rejecting every one) scores 0.5.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.calibration import calibration_tables
from analysis.forward_simulation import (
    PHASES,
    accuracy_table,
    bootstrap_ratio,
    included_trials,
    interval,
    utility_table,
    within_tables,
)
from analysis.load import Responses
from analysis.questionnaires import QuestionnaireAnalysis
from analysis.within import WithinAnalysis
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule

# (name, the model's correctness on the trials it is a share of, the verdict it counts)
RELIANCE = (("over_reliance", False, "right"), ("under_reliance", True, "wrong"))


@dataclasses.dataclass
class VerificationAnalysis:
    """What the report shows of a verification study.

    ``trials``: the included participants' trials. ``accuracy``: per condition and phase
    as in the forward-simulation design (``participants``, ``trials``, ``accuracy``,
    ``ci_low``, ``ci_high``, ``median_response_ms``). ``reliance``: per condition and
    phase ``over_reliance`` and ``under_reliance``, each with ``_ci_low``/``_ci_high``,
    and the trials each is a share of (``model_wrong_trials``, ``model_right_trials``).
    ``utility``: the gain in test accuracy over the control (empty without one).
    """

    trials: pd.DataFrame
    accuracy: pd.DataFrame
    reliance: pd.DataFrame
    utility: pd.DataFrame
    exclusions: pd.DataFrame
    sample: pd.DataFrame
    conditions: list[str]
    level: float
    questionnaires: QuestionnaireAnalysis | None = None
    # stated confidence against accuracy in the test (analysis.calibration)
    calibration: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    calibration_curve: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    within: WithinAnalysis | None = None  # a within-subjects study's (analysis.within)


def reliance_table(
    trials: pd.DataFrame, conditions: list[str], level: float, n_boot: int, seed: int
) -> pd.DataFrame:
    """Over- and under-reliance per condition and phase, with bootstrap intervals over
    participants (each participant's verdicts on the scenes the model got wrong, right)."""
    rng = np.random.default_rng([seed, 5])
    rows = []
    for condition in conditions:
        for phase in PHASES:
            mine = trials[(trials["condition"] == condition) & (trials["phase"] == phase)]
            if mine.empty:
                continue
            row: dict = {"condition": condition, "phase": phase}
            row["participants"] = mine["participant_id"].nunique()
            for name, model_correct, verdict in RELIANCE:
                group = mine[mine["model_correct"] == model_correct]
                counts = group.groupby("participant_id")["verdict"].agg(
                    hits=lambda v, verdict=verdict: int((v == verdict).sum()), trials="count"
                )
                kind = "model_right_trials" if model_correct else "model_wrong_trials"
                row[kind] = int(counts["trials"].sum())
                if counts.empty:
                    row.update({name: None, f"{name}_ci_low": None, f"{name}_ci_high": None})
                    continue
                draws = bootstrap_ratio(counts["hits"], counts["trials"], n_boot, rng)
                low, high = interval(draws, level)
                row[name] = counts["hits"].sum() / counts["trials"].sum()
                row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low, high
            rows.append(row)
    return pd.DataFrame(rows)


def analyze_verification(
    responses: Responses,
    exclusions: TooFastRule | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> VerificationAnalysis:
    """Apply the exclusions and compute every table of :class:`VerificationAnalysis`."""
    if not responses.is_verification:
        raise UserError(f"{responses.source} holds no verification trials")
    kept = included_trials(responses, exclusions, level, n_boot)
    trials, conditions = kept.trials, kept.conditions
    accuracy, draws = accuracy_table(trials, conditions, level, n_boot, seed)
    calibration, curve = calibration_tables(trials, conditions, level, n_boot, seed)
    return VerificationAnalysis(
        trials=trials,
        accuracy=accuracy,
        reliance=reliance_table(trials, conditions, level, n_boot, seed),
        utility=utility_table(accuracy, draws, trials, conditions, level),
        exclusions=kept.exclusions,
        sample=kept.sample,
        conditions=conditions,
        level=level,
        calibration=calibration,
        calibration_curve=curve,
        within=within_tables(responses, trials, conditions, level, n_boot, seed),
    )

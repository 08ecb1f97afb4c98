"""The counterfactual-simulation design's measures (docs/designs/counterfactual-simulation.md).

A pair trial is correct when the participant predicted the model's decision on the changed
scene. Per condition and phase (pre, learning, post): the accuracy with a percentile
bootstrap interval over participants (analysis.forward_simulation). Per participant: the
gain, post-test accuracy minus pre-test accuracy; per condition its mean with a bootstrap
interval. The utility of a condition (Hase & Bansal 2020) is its mean gain minus the
explanation-free control's (``none``), with a bootstrap interval, and its test: a logistic
GEE of the pre- and post-test trials on the phase, the condition and their interaction
(participants as clusters, robust standard errors), whose interaction odds ratio (the
post-over-pre odds gained beyond the control's) and Wald p-value the table gives. The
accuracy on pairs whose change flips the model's decision and on those whose change does
not shows whether participants learned when a change matters. The same exclusions as the
other designs apply (analysis.scoring.apply_exclusions).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.forward_simulation import (
    accuracy_table,
    included_trials,
    interval,
    logistic_gee,
)
from analysis.load import Responses
from analysis.questionnaires import QuestionnaireAnalysis
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import NO_EXPLANATION

PHASES = ("pre", "learning", "post")
TESTS = ("pre", "post")


@dataclasses.dataclass
class PairAnalysis:
    """What the report shows of a counterfactual-simulation study.

    ``trials``: the included participants' trials. ``accuracy``: per condition and phase
    as in the forward-simulation design. ``participants``: per participant its ``pre``
    and ``post`` accuracy and ``gain``. ``gain``: per condition the mean ``pre``,
    ``post`` and ``gain`` with ``ci_low``/``ci_high``. ``utility``: per condition but the
    control, its and the control's gain, ``utility`` with ``ci_low``/``ci_high``, and the
    GEE interaction's ``odds_ratio`` (with ``or_ci_low``/``or_ci_high``) and ``p_value``
    (empty without a control). ``by_flip``: accuracy per condition, test and ``flips``.
    """

    trials: pd.DataFrame
    accuracy: pd.DataFrame
    participants: pd.DataFrame
    gain: pd.DataFrame
    utility: pd.DataFrame
    by_flip: pd.DataFrame
    exclusions: pd.DataFrame
    sample: pd.DataFrame
    conditions: list[str]
    level: float
    questionnaires: QuestionnaireAnalysis | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def participant_gains(trials: pd.DataFrame) -> pd.DataFrame:
    """Per participant (with the condition): pre-test and post-test accuracy and the gain;
    a participant without both tests is left out (they cannot have gained)."""
    tests = trials[trials["phase"].isin(TESTS)]
    table = tests.pivot_table(
        index=["condition", "participant_id"], columns="phase", values="correct", aggfunc="mean"
    )
    table = table.reindex(columns=list(TESTS)).dropna().reset_index()
    table.columns.name = None
    table["gain"] = table["post"] - table["pre"]
    return table


def gain_table(
    gains: pd.DataFrame, conditions: list[str], level: float, n_boot: int, seed: int
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per condition the mean gain with its bootstrap interval (participants resampled),
    and the bootstrap mean gains by condition."""
    rng = np.random.default_rng([seed, 5])
    rows, draws = [], {}
    for condition in conditions:
        mine = gains[gains["condition"] == condition]
        if mine.empty:
            continue
        values = mine["gain"].to_numpy(dtype=float)
        draws[condition] = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
        low, high = interval(draws[condition], level)
        rows.append(
            {
                "condition": condition,
                "participants": len(mine),
                "pre": float(mine["pre"].mean()),
                "post": float(mine["post"].mean()),
                "gain": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows), draws


def utility_table(
    gain: pd.DataFrame, draws: dict[str, np.ndarray], trials: pd.DataFrame, level: float
) -> pd.DataFrame:
    """Each condition's gain over the control's, with its interval and the GEE's test of
    the condition x post-test interaction."""
    if NO_EXPLANATION not in draws or len(draws) < 2:
        return pd.DataFrame()
    means = gain.set_index("condition")["gain"]
    others = [c for c in gain["condition"] if c != NO_EXPLANATION]
    rows = []
    for condition in others:
        low, high = interval(draws[condition] - draws[NO_EXPLANATION], level)
        rows.append(
            {
                "condition": condition,
                "gain": means[condition],
                "control_gain": means[NO_EXPLANATION],
                "utility": means[condition] - means[NO_EXPLANATION],
                "ci_low": low,
                "ci_high": high,
            }
        )
    tests = trials[trials["phase"].isin(TESTS) & trials["condition"].isin(draws)]
    post = (tests["phase"] == "post").to_numpy(float)
    columns = {"post": post}
    for condition in others:
        mine = (tests["condition"] == condition).to_numpy(float)
        columns[condition] = mine
        columns[f"{condition}:post"] = mine * post
    tested = logistic_gee(tests, columns)
    interaction = tested[tested["term"].str.endswith(":post")].assign(
        condition=lambda t: t["term"].str.removesuffix(":post")
    )
    return pd.DataFrame(rows).merge(interaction.drop(columns="term"), on="condition", how="left")


def flip_table(trials: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Accuracy per condition and test on the pairs whose change flips the model's
    decision and on those whose change does not."""
    tests = trials[trials["phase"].isin(TESTS)].astype({"flips": bool})
    table = (
        tests.groupby(["condition", "phase", "flips"])["correct"]
        .agg(trials="count", accuracy="mean")
        .reset_index()
    )
    ranks = {
        "condition": {c: i for i, c in enumerate(conditions)},
        "phase": {p: i for i, p in enumerate(TESTS)},
    }
    return table.sort_values(
        ["condition", "phase", "flips"],
        key=lambda c: c.map(ranks[c.name]) if c.name in ranks else c,
    ).reset_index(drop=True)


def analyze_pairs(
    responses: Responses,
    exclusions: TooFastRule | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> PairAnalysis:
    """Apply the exclusions and compute every table of :class:`PairAnalysis`."""
    if not responses.is_counterfactual_simulation:
        raise UserError(f"{responses.source} holds no counterfactual-simulation trials")
    if "flips" not in responses.trials.columns:
        raise UserError(
            f"{responses.source}: the trials lack the column flips (whether a pair's change "
            "flips the model's decision); export them again with this version"
        )
    kept = included_trials(responses, exclusions, level, n_boot)
    trials, conditions = kept.trials, kept.conditions
    accuracy, _ = accuracy_table(trials, conditions, level, n_boot, seed, PHASES)
    gains = participant_gains(trials)
    if gains.empty:
        raise UserError(f"{responses.source}: no included participant took both tests")
    gain, draws = gain_table(gains, conditions, level, n_boot, seed)
    utility = utility_table(gain, draws, trials, level)
    return PairAnalysis(
        trials=trials,
        accuracy=accuracy,
        participants=gains,
        gain=gain,
        utility=utility,
        by_flip=flip_table(trials, conditions),
        exclusions=kept.exclusions,
        sample=kept.sample,
        conditions=conditions,
        level=level,
    )

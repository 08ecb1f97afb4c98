"""The forward-simulation design's measures (docs/designs/forward-simulation.md).

A trial is correct when the participant predicted the model's decision. Per condition
and phase: the simulation accuracy (correct trials over trials) with a percentile
bootstrap interval over participants, resampled within each condition. The utility of
a condition is its test accuracy minus the explanation-free control's (``none``), with a
bootstrap interval, and its test: a logistic GEE of the test trials on the condition
(the control as reference, participants as clusters, exchangeable working correlation,
robust standard errors; statsmodels), whose odds ratio and Wald p-value the table gives.
The same exclusions as the rating design apply (analysis.scoring.apply_exclusions).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.load import Responses
from analysis.scoring import apply_exclusions
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import NO_EXPLANATION

PHASES = ("learning", "test")


@dataclasses.dataclass
class SimulationAnalysis:
    """What the report shows of a forward-simulation study.

    ``trials``: the included participants' trials. ``accuracy``: per condition and phase
    ``participants``, ``trials``, ``accuracy``, ``ci_low``, ``ci_high`` and the median
    ``response_ms``. ``utility``: per condition but the control, its and the control's
    test accuracy, ``gain`` with ``ci_low``/``ci_high``, ``odds_ratio`` and ``p_value``
    (empty without a control). ``exclusions`` and ``sample`` as in the rating design.
    """

    trials: pd.DataFrame
    accuracy: pd.DataFrame
    utility: pd.DataFrame
    exclusions: pd.DataFrame
    sample: pd.DataFrame
    conditions: list[str]
    level: float
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def _per_participant(trials: pd.DataFrame) -> pd.DataFrame:
    """Correct trials and trials per participant (one row each, with the condition)."""
    return (
        trials.groupby(["condition", "participant_id"])["correct"]
        .agg(correct="sum", trials="count")
        .reset_index()
    )


def _bootstrap_accuracy(counts: pd.DataFrame, n_boot: int, rng) -> np.ndarray:
    """(n_boot,) accuracies of participants resampled with replacement."""
    correct = counts["correct"].to_numpy(dtype=float)
    total = counts["trials"].to_numpy(dtype=float)
    draws = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    return correct[draws].sum(axis=1) / total[draws].sum(axis=1)


def interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap ``draws`` at ``level``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def accuracy_table(
    trials: pd.DataFrame,
    conditions: list[str],
    level: float,
    n_boot: int,
    seed: int,
    phases: tuple[str, ...] = PHASES,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """The ``accuracy`` table, and the bootstrap accuracies by (condition, phase)."""
    rng = np.random.default_rng([seed, 3])
    rows, all_draws = [], {}
    for condition in conditions:
        for phase in phases:
            mine = trials[(trials["condition"] == condition) & (trials["phase"] == phase)]
            if mine.empty:
                continue
            counts = _per_participant(mine)
            draws = _bootstrap_accuracy(counts, n_boot, rng)
            all_draws[condition, phase] = draws
            low, high = interval(draws, level)
            timed = pd.to_numeric(mine.get("response_ms"), errors="coerce")
            rows.append(
                {
                    "condition": condition,
                    "phase": phase,
                    "participants": len(counts),
                    "trials": int(counts["trials"].sum()),
                    "accuracy": counts["correct"].sum() / counts["trials"].sum(),
                    "ci_low": low,
                    "ci_high": high,
                    "median_response_ms": float(timed.median()) if timed.notna().any() else None,
                }
            )
    return pd.DataFrame(rows), all_draws


def logistic_gee(trials: pd.DataFrame, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """A logistic GEE of ``correct`` on an intercept and ``columns`` (name -> (n,)),
    participants as clusters, exchangeable working correlation, robust standard errors
    (statsmodels): per column its ``odds_ratio``, 95% interval and Wald ``p_value``."""
    import statsmodels.api as sm

    x = np.column_stack([np.ones(len(trials)), *columns.values()])
    model = sm.GEE(
        trials["correct"].to_numpy(dtype=float),
        x,
        groups=pd.factorize(trials["participant_id"])[0],
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    result = model.fit(maxiter=100)
    params, errors = np.asarray(result.params)[1:], np.asarray(result.bse)[1:]
    return pd.DataFrame(
        {
            "term": list(columns),
            "odds_ratio": np.exp(params),
            "or_ci_low": np.exp(params - 1.96 * errors),
            "or_ci_high": np.exp(params + 1.96 * errors),
            "p_value": np.asarray(result.pvalues)[1:],
        }
    )


def gee_odds_ratios(test: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Each condition's odds of a correct test prediction over the control's: a logistic
    GEE with participants as clusters; ``odds_ratio``, its interval and ``p_value``."""
    others = [c for c in conditions if c != NO_EXPLANATION]
    columns = {c: (test["condition"] == c).to_numpy(float) for c in others}
    return logistic_gee(test, columns).rename(columns={"term": "condition"})


def utility_table(
    accuracy: pd.DataFrame,
    draws: dict[tuple[str, str], np.ndarray],
    trials: pd.DataFrame,
    conditions: list[str],
    level: float,
) -> pd.DataFrame:
    """Test accuracy gained over the control, with its interval and the GEE's test."""
    test_draws = {c: d for (c, phase), d in draws.items() if phase == "test"}
    if NO_EXPLANATION not in test_draws or len(test_draws) < 2:
        return pd.DataFrame()
    test = accuracy[accuracy["phase"] == "test"].set_index("condition")["accuracy"]
    rows = []
    for condition in conditions:
        if condition == NO_EXPLANATION or condition not in test_draws:
            continue
        gain = test_draws[condition] - test_draws[NO_EXPLANATION]  # independent resamples
        low, high = interval(gain, level)
        rows.append(
            {
                "condition": condition,
                "test_accuracy": test[condition],
                "control_accuracy": test[NO_EXPLANATION],
                "gain": test[condition] - test[NO_EXPLANATION],
                "ci_low": low,
                "ci_high": high,
            }
        )
    table = pd.DataFrame(rows)
    tested = trials[(trials["phase"] == "test") & trials["condition"].isin(test_draws)]
    return table.merge(gee_odds_ratios(tested, list(test_draws)), on="condition", how="left")


def sample_table(participants: pd.DataFrame | None, included: pd.DataFrame) -> pd.DataFrame:
    recorded = (
        participants.groupby("condition").size()
        if participants is not None
        else included.groupby("condition").size()
    )
    kept = included.groupby("condition").size()
    table = pd.DataFrame({"recorded": recorded, "included": kept}).fillna(0).astype(int)
    table["excluded"] = table["recorded"] - table["included"]
    return table.reset_index(names="condition")[["condition", "recorded", "excluded", "included"]]


def included_trials(
    responses: Responses, exclusions: TooFastRule | None, level: float, n_boot: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """The options checked and the exclusions applied: the included participants' trials,
    the exclusions table, the included participants, and the conditions (the control
    first, then the others in the order participants arrived in them)."""
    if n_boot < 100:
        raise UserError(f"--bootstrap must be at least 100 resamples, got {n_boot}")
    if not 0.5 <= level < 1:
        raise UserError(f"--level must be in [0.5, 1), got {level}")
    included, table, _, _ = apply_exclusions(responses, exclusions or TooFastRule())
    trials = responses.trials[responses.trials["participant_id"].isin(included["participant_id"])]
    trials = trials.dropna(subset=["correct"]).astype({"correct": bool})
    if trials.empty:
        raise UserError(f"{responses.source}: no included participant answered a trial")
    present = set(trials["condition"])
    conditions = [NO_EXPLANATION] * (NO_EXPLANATION in present) + [
        c for c in dict.fromkeys(trials["condition"]) if c != NO_EXPLANATION
    ]
    return trials, table, included, conditions


def analyze_trials(
    responses: Responses,
    exclusions: TooFastRule | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> SimulationAnalysis:
    """Apply the exclusions and compute every table of :class:`SimulationAnalysis`."""
    if not responses.is_forward_simulation:
        raise UserError(f"{responses.source} holds no forward-simulation trials")
    trials, table, included, conditions = included_trials(responses, exclusions, level, n_boot)
    accuracy, draws = accuracy_table(trials, conditions, level, n_boot, seed)
    utility = utility_table(accuracy, draws, trials, conditions, level)
    sample = sample_table(responses.participants, included)
    return SimulationAnalysis(trials, accuracy, utility, table, sample, conditions, level)

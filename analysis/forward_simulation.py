"""The trial designs' measures (docs/designs/forward-simulation.md, distinction.md).

A trial is correct when the participant predicted the model's decision (forward
simulation) or picked the explanation of it (distinction). Per condition and phase: the
accuracy (correct trials over trials) with a percentile bootstrap interval over
participants, resampled within each condition, and a one-sample t-test of the
participants' accuracies against chance (0.5: the scenes are balanced over the model's
decisions and correctness, the two panels over the sides). The utility of
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

from analysis.calibration import calibration_tables
from analysis.load import Responses
from analysis.questionnaires import QuestionnaireAnalysis
from analysis.scoring import apply_exclusions
from analysis.within import WithinAnalysis, analyze_within, is_within
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import DISTINCTION, FORWARD_SIMULATION, NO_EXPLANATION

PHASES = ("learning", "test")
CHANCE = 0.5  # two answers, balanced


@dataclasses.dataclass
class SimulationAnalysis:
    """What the report shows of a trial design's study.

    ``trials``: the included participants' trials. ``accuracy``: per condition and phase
    ``participants``, ``trials``, ``accuracy``, ``ci_low``, ``ci_high``, ``p_chance`` (the
    t-test against 0.5) and the median ``response_ms``. ``utility``: per condition but the
    control, its and the control's test accuracy, ``gain`` with ``ci_low``/``ci_high``,
    ``odds_ratio`` and ``p_value`` (empty without a control). ``exclusions`` and
    ``sample`` as in the rating design.
    """

    trials: pd.DataFrame
    accuracy: pd.DataFrame
    utility: pd.DataFrame
    exclusions: pd.DataFrame
    sample: pd.DataFrame
    conditions: list[str]
    level: float
    design: str = FORWARD_SIMULATION  # the trials' design: forward-simulation | distinction
    # stated confidence against accuracy in the test (analysis.calibration; empty when
    # the study asked no confidence)
    calibration: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    calibration_curve: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    questionnaires: QuestionnaireAnalysis | None = None
    # a within-subjects study's contrasts and period effect (analysis.within); None
    # between subjects
    within: WithinAnalysis | None = None


def _per_participant(trials: pd.DataFrame) -> pd.DataFrame:
    """Correct trials and trials per participant (one row each, with the condition)."""
    return (
        trials.groupby(["condition", "participant_id"])["correct"]
        .agg(correct="sum", trials="count")
        .reset_index()
    )


def bootstrap_ratio(hits: np.ndarray, totals: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(n_boot,) ratios of summed ``hits`` to summed ``totals`` (one entry per
    participant) over participants resampled with replacement."""
    hits, totals = np.asarray(hits, dtype=float), np.asarray(totals, dtype=float)
    draws = rng.integers(0, len(hits), size=(n_boot, len(hits)))
    with np.errstate(invalid="ignore"):  # a resample without any total: NaN, left out
        return hits[draws].sum(axis=1) / totals[draws].sum(axis=1)


def interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap ``draws`` at ``level``."""
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
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
            draws = bootstrap_ratio(counts["correct"], counts["trials"], n_boot, rng)
            all_draws[condition, phase] = draws
            low, high = interval(draws, level)
            timed = pd.to_numeric(mine.get("response_ms"), errors="coerce")
            own = counts["correct"] / counts["trials"]
            rows.append(
                {
                    "condition": condition,
                    "phase": phase,
                    "participants": len(counts),
                    "trials": int(counts["trials"].sum()),
                    "accuracy": counts["correct"].sum() / counts["trials"].sum(),
                    "ci_low": low,
                    "ci_high": high,
                    "p_chance": _against_chance(own.to_numpy(dtype=float)),
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


def _against_chance(accuracies: np.ndarray) -> float:
    """Two-sided p of a one-sample t-test of participants' accuracies against 0.5; NaN
    below two participants or when they all scored the same."""
    from scipy import stats

    if len(accuracies) < 2 or np.ptp(accuracies) == 0:
        return float("nan")
    return float(stats.ttest_1samp(accuracies, CHANCE).pvalue)


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
    """Participants recorded, excluded and included per condition."""
    recorded = (
        participants.groupby("condition").size()
        if participants is not None
        else included.groupby("condition").size()
    )
    kept = included.groupby("condition").size()
    table = pd.DataFrame({"recorded": recorded, "included": kept}).fillna(0).astype(int)
    table["excluded"] = table["recorded"] - table["included"]
    return table.reset_index(names="condition")[["condition", "recorded", "excluded", "included"]]


@dataclasses.dataclass
class IncludedTrials:
    """The trials of a trial design's study that its analysis uses."""

    trials: pd.DataFrame  # the included participants' answered trials
    exclusions: pd.DataFrame
    sample: pd.DataFrame
    conditions: list[str]  # the control first, then the others as participants arrived


def included_trials(
    responses: Responses, exclusions: TooFastRule | None, level: float, n_boot: int
) -> IncludedTrials:
    """The checks of the settings, the exclusions applied, the trials that remain."""
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
    # the control first, then the others in the order participants arrived in them
    conditions = [NO_EXPLANATION] * (NO_EXPLANATION in present) + [
        c for c in dict.fromkeys(trials["condition"]) if c != NO_EXPLANATION
    ]
    sample = sample_table(responses.participants, included)
    return IncludedTrials(trials, table, sample, conditions)


def analyze_trials(
    responses: Responses,
    exclusions: TooFastRule | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> SimulationAnalysis:
    """Apply the exclusions and compute every table of :class:`SimulationAnalysis`."""
    if responses.trial_design not in (FORWARD_SIMULATION, DISTINCTION):
        raise UserError(f"{responses.source} holds no forward-simulation or distinction trials")
    kept = included_trials(responses, exclusions, level, n_boot)
    trials, conditions = kept.trials, kept.conditions
    accuracy, draws = accuracy_table(trials, conditions, level, n_boot, seed)
    utility = utility_table(accuracy, draws, trials, conditions, level)
    calibration, curve = calibration_tables(trials, conditions, level, n_boot, seed)
    return SimulationAnalysis(
        trials,
        accuracy,
        utility,
        kept.exclusions,
        kept.sample,
        conditions,
        level,
        design=responses.trial_design,
        calibration=calibration,
        calibration_curve=curve,
        within=within_tables(responses, trials, conditions, level, n_boot, seed),
    )


def within_tables(
    responses: Responses,
    trials: pd.DataFrame,
    conditions: list[str],
    level: float,
    n_boot: int,
    seed: int,
) -> WithinAnalysis | None:
    """A within-subjects study's analysis (analysis.within); None between subjects."""
    if not is_within(trials):
        return None
    return analyze_within(trials, conditions, responses.participants, level, n_boot, seed)

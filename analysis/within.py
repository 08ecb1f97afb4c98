"""The analysis of a within-subjects or mixed study (docs/designs/within-subjects.md).

Each participant answered the test trials of several conditions, one block each, in an
order from a Williams square. On the test trials (the learning trials are practice with
feedback):

- per condition, the accuracy with a percentile bootstrap interval over participants
  (participants resampled with all their trials, so that one resample keeps each
  person's conditions together);
- per condition but the reference (the control ``none``, else the first condition), the
  within-subject contrast: the accuracy difference with a paired bootstrap interval
  (the same resampled participants for both), and the odds ratio of a logistic mixed
  model of correctness with a random intercept per participant and condition and period
  as fixed effects (statsmodels ``BinomialBayesMixedGLM``, variational Bayes, as
  analysis/mixed_model.py fits the rating design; up to
  :data:`~analysis.mixed_model.BAYES_MAX_PARTICIPANTS` participants), beside the
  population-averaged GEE of the same terms (exchangeable within participant, robust
  standard errors) as the robust alternative;
- per period (the block's position), the accuracy, its difference from the first period
  (paired bootstrap) and the period's odds ratio from both models: the order (practice
  or fatigue) effect that the counterbalancing keeps out of the condition contrasts;
- the participants per group and order.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

from analysis.mixed_model import BAYES_MAX_PARTICIPANTS, _fit_bayes, _fit_gee
from xaistudy.vocabulary import NO_EXPLANATION


@dataclasses.dataclass
class WithinAnalysis:
    """``accuracy``: per condition ``participants``, ``trials``, ``accuracy``,
    ``ci_low``/``ci_high``. ``contrasts``: per condition but ``reference``: ``difference``
    in accuracy with ``ci_low``/``ci_high``, the mixed model's ``odds_ratio`` with
    ``or_ci_low``/``or_ci_high``, the GEE's ``gee_odds_ratio``, its interval and
    ``gee_p_value``. ``periods``: the same per period against period 1. ``orders``:
    participants per ``within_group``, ``within_order`` and ``condition_order``."""

    accuracy: pd.DataFrame
    contrasts: pd.DataFrame
    periods: pd.DataFrame
    orders: pd.DataFrame
    reference: str
    model: str  # what was fitted, in words
    level: float


def is_within(trials: pd.DataFrame) -> bool:
    """Whether ``trials`` are a within-subjects study's: some trial was in a later block."""
    if "period" not in trials.columns:
        return False
    return bool((pd.to_numeric(trials["period"], errors="coerce") > 1).any())


def _matrix(trials: pd.DataFrame, column: str, levels: list, people: pd.Index):
    """(participants, levels) correct trials and trials per participant and level."""
    hits = trials.pivot_table(
        index="participant_id", columns=column, values="correct", aggfunc="sum", fill_value=0
    )
    totals = trials.pivot_table(
        index="participant_id", columns=column, values="correct", aggfunc="count", fill_value=0
    )
    shape = {"index": people, "columns": levels, "fill_value": 0}
    return hits.reindex(**shape).to_numpy(float), totals.reindex(**shape).to_numpy(float)


def _bootstrap(hits, totals, n_boot: int, rng) -> np.ndarray:
    """(n_boot, levels) accuracies over participants resampled with replacement (the same
    resample for every level: paired)."""
    draws = rng.integers(0, len(hits), size=(n_boot, len(hits)))
    with np.errstate(invalid="ignore"):
        return hits[draws].sum(axis=1) / totals[draws].sum(axis=1)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def _design(trials: pd.DataFrame, conditions: list[str], periods: list[int]):
    """Intercept, condition (treatment against ``conditions[0]``) and period (treatment
    against ``periods[0]``) columns, and their names."""
    columns, names = [np.ones(len(trials))], ["Intercept"]
    for name in conditions[1:]:
        columns.append((trials["condition"] == name).to_numpy(float))
        names.append(f"condition[{name}]")
    for period in periods[1:]:
        columns.append((trials["period"] == period).to_numpy(float))
        names.append(f"period[{period}]")
    return np.column_stack(columns), names


def _fits(trials: pd.DataFrame, conditions: list[str], periods: list[int]):
    """{term: (estimate, standard error)} of the mixed model (None above its size) and of
    the GEE, with the GEE's p-values."""
    x, names = _design(trials, conditions, periods)
    y = trials["correct"].to_numpy(float)
    groups = trials["participant_id"].to_numpy()
    mixed = None
    if trials["participant_id"].nunique() <= BAYES_MAX_PARTICIPANTS:
        mean, cov, _ = _fit_bayes(y, x, groups, names)
        mixed = dict(zip(names, zip(mean, np.sqrt(np.diag(cov)), strict=True), strict=True))
    mean, cov, _ = _fit_gee(y, x, groups, names)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    p = 2 * stats.norm.sf(np.abs(mean / se))
    gee = {n: (m, s, q) for n, m, s, q in zip(names, mean, se, p, strict=True)}
    return mixed, gee


def _odds(term: str, mixed, gee, level: float) -> dict[str, float]:
    z = float(stats.norm.ppf(0.5 + level / 2))
    row = {}
    if mixed is not None:
        estimate, se = mixed[term]
        row.update(
            odds_ratio=np.exp(estimate),
            or_ci_low=np.exp(estimate - z * se),
            or_ci_high=np.exp(estimate + z * se),
        )
    estimate, se, p = gee[term]
    row.update(
        gee_odds_ratio=np.exp(estimate),
        gee_ci_low=np.exp(estimate - z * se),
        gee_ci_high=np.exp(estimate + z * se),
        gee_p_value=p,
    )
    return row


def _orders(participants: pd.DataFrame | None, people: pd.Index) -> pd.DataFrame:
    columns = ["within_group", "within_order", "condition_order"]
    if participants is None or not set(columns) <= set(participants.columns):
        return pd.DataFrame(columns=[*columns, "participants"])
    mine = participants[participants["participant_id"].astype(str).isin(people)]
    return mine.groupby(columns).size().reset_index(name="participants")


def analyze_within(
    trials: pd.DataFrame,
    conditions: list[str],
    participants: pd.DataFrame | None,
    level: float,
    n_boot: int,
    seed: int,
) -> WithinAnalysis:
    """The tables of :class:`WithinAnalysis` from the included participants' ``trials``
    (the conditions in ``conditions``' order; the control first when there is one)."""
    test = trials[trials["phase"] == "test"].copy()
    test["period"] = pd.to_numeric(test["period"]).astype(int)
    reference = NO_EXPLANATION if NO_EXPLANATION in conditions else conditions[0]
    conditions = [reference, *(c for c in conditions if c != reference)]
    periods = sorted(test["period"].unique())
    people = pd.Index(sorted(test["participant_id"].unique()))
    rng = np.random.default_rng([seed, 17])

    hits, totals = _matrix(test, "condition", conditions, people)
    draws = _bootstrap(hits, totals, n_boot, rng)
    accuracy = pd.DataFrame(
        [
            {
                "condition": name,
                "participants": int((totals[:, k] > 0).sum()),
                "trials": int(totals[:, k].sum()),
                "accuracy": hits[:, k].sum() / totals[:, k].sum(),
                **dict(zip(("ci_low", "ci_high"), _interval(draws[:, k], level), strict=True)),
            }
            for k, name in enumerate(conditions)
        ]
    )
    mixed, gee = _fits(test, conditions, periods)
    point = accuracy["accuracy"].to_numpy()
    contrasts = pd.DataFrame(
        [
            {
                "condition": name,
                "reference": reference,
                "difference": point[k] - point[0],
                **dict(
                    zip(
                        ("ci_low", "ci_high"),
                        _interval(draws[:, k] - draws[:, 0], level),
                        strict=True,
                    )
                ),
                **_odds(f"condition[{name}]", mixed, gee, level),
            }
            for k, name in enumerate(conditions)
            if k > 0
        ]
    )

    p_hits, p_totals = _matrix(test, "period", periods, people)
    p_draws = _bootstrap(p_hits, p_totals, n_boot, rng)
    period_rows = []
    for k, period in enumerate(periods):
        low, high = _interval(p_draws[:, k], level)
        row = {
            "period": int(period),
            "trials": int(p_totals[:, k].sum()),
            "accuracy": p_hits[:, k].sum() / p_totals[:, k].sum(),
            "ci_low": low,
            "ci_high": high,
        }
        if k:
            first = p_hits[:, 0].sum() / p_totals[:, 0].sum()
            diff_low, diff_high = _interval(p_draws[:, k] - p_draws[:, 0], level)
            row.update(
                difference=row["accuracy"] - first,
                difference_ci_low=diff_low,
                difference_ci_high=diff_high,
                **_odds(f"period[{period}]", mixed, gee, level),
            )
        period_rows.append(row)

    fitted = (
        "a logistic mixed model (statsmodels BinomialBayesMixedGLM, variational Bayes) with a "
        "random intercept per participant, and a GEE logistic model (exchangeable within "
        "participant, robust standard errors)"
        if mixed is not None
        else f"a GEE logistic model (exchangeable within participant, robust standard "
        f"errors); the mixed model is left out above {BAYES_MAX_PARTICIPANTS} participants"
    )
    return WithinAnalysis(
        accuracy=accuracy,
        contrasts=contrasts,
        periods=pd.DataFrame(period_rows),
        orders=_orders(participants, people),
        reference=reference,
        model=f"{fitted}; fixed effects condition (reference {reference}) and period "
        f"(reference {periods[0]}), on the test trials",
        level=level,
    )

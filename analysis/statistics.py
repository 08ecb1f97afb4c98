"""Accuracy with bootstrap intervals over participants, and condition comparisons.

The bootstrap resamples participants within each condition (the design is
between-subjects, so conditions are independent samples). It works on a participant x
attribute matrix of correct answers: one resample is a vector of participant weights
(how often each was drawn), and every accuracy of that resample is a weighted sum, so
B resamples of n participants cost two (B x n) @ (n x A) products per condition.
"""

from __future__ import annotations

import dataclasses
import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.scoring import ScoredStudy

# Largest number of participant draws held at once (resamples x participants); bounds memory.
_DRAWS_PER_CHUNK = 4_000_000


@dataclasses.dataclass
class ParticipantMatrix:
    """``correct`` and ``answered``: (n participants, A attributes) float arrays of 0/1;
    ``condition_index``: (n,) index into ``conditions``."""

    participant_ids: np.ndarray
    condition_index: np.ndarray
    correct: np.ndarray
    answered: np.ndarray
    conditions: list[str]
    attributes: list[str]


def participant_matrix(scored: ScoredStudy) -> ParticipantMatrix:
    answers = scored.answers
    attributes = list(scored.attributes["attribute"])
    pid_codes, pids = pd.factorize(answers["participant_id"])
    attr_codes = pd.Categorical(answers["attribute"], categories=attributes).codes
    n, a = len(pids), len(attributes)
    correct = np.zeros((n, a))
    answered = np.zeros((n, a))
    correct[pid_codes, attr_codes] = answers["correct"].to_numpy(dtype=float)
    answered[pid_codes, attr_codes] = 1.0
    first_condition = answers.groupby(pid_codes, sort=True)["condition"].first().to_numpy()
    condition_index = pd.Categorical(first_condition, categories=scored.conditions).codes
    return ParticipantMatrix(
        np.asarray(pids), condition_index, correct, answered, scored.conditions, attributes
    )


@dataclasses.dataclass
class Bootstrap:
    """Per-resample sums: ``correct`` and ``answered`` of shape (B, K conditions, A)."""

    correct: np.ndarray
    answered: np.ndarray

    def condition(self) -> np.ndarray:
        """(B, K) accuracy per condition."""
        return _ratio(self.correct.sum(2), self.answered.sum(2))

    def cell(self) -> np.ndarray:
        """(B, K, A) accuracy per condition x attribute."""
        return _ratio(self.correct, self.answered)

    def attribute(self) -> np.ndarray:
        """(B, A) accuracy per attribute, conditions pooled."""
        return _ratio(self.correct.sum(1), self.answered.sum(1))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-300), np.nan)


def bootstrap(matrix: ParticipantMatrix, n_boot: int = 2000, seed: int = 0) -> Bootstrap:
    """Resample participants within each condition ``n_boot`` times."""
    rng = np.random.default_rng(seed)
    k, a = len(matrix.conditions), len(matrix.attributes)
    sum_correct = np.zeros((n_boot, k, a))
    sum_answered = np.zeros((n_boot, k, a))
    for ci in range(k):
        rows = np.flatnonzero(matrix.condition_index == ci)
        n = len(rows)
        if n == 0:
            continue
        correct, answered = matrix.correct[rows], matrix.answered[rows]
        chunk = max(1, _DRAWS_PER_CHUNK // n)
        for start in range(0, n_boot, chunk):
            b = min(chunk, n_boot - start)
            draws = rng.integers(0, n, size=(b, n))
            offsets = (np.arange(b) * n)[:, None]
            weights = np.bincount((draws + offsets).ravel(), minlength=b * n).reshape(b, n)
            weights = weights.astype(float)
            sum_correct[start : start + b, ci] = weights @ correct
            sum_answered[start : start + b, ci] = weights @ answered
    return Bootstrap(sum_correct, sum_answered)


def _interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - level) / 2 * 100
    with np.errstate(invalid="ignore"):
        low = np.nanpercentile(samples, tail, axis=0) if samples.size else np.nan
        high = np.nanpercentile(samples, 100 - tail, axis=0) if samples.size else np.nan
    return low, high


@dataclasses.dataclass
class AccuracyTables:
    by_condition: pd.DataFrame
    by_attribute: pd.DataFrame
    by_condition_attribute: pd.DataFrame
    participant_accuracy: pd.DataFrame  # participant_id, condition, accuracy, n_answers


def accuracy_tables(
    matrix: ParticipantMatrix, boot: Bootstrap, relevant: dict[str, bool], level: float = 0.95
) -> AccuracyTables:
    """Point estimates (pooled answers) with percentile bootstrap intervals."""
    k = len(matrix.conditions)
    idx = matrix.condition_index
    correct_ka = np.stack([matrix.correct[idx == c].sum(0) for c in range(k)])
    answered_ka = np.stack([matrix.answered[idx == c].sum(0) for c in range(k)])
    people_ka = np.stack([(matrix.answered[idx == c] > 0).sum(0) for c in range(k)])
    n_k = np.bincount(idx, minlength=k)

    low, high = _interval(boot.condition(), level)
    by_condition = pd.DataFrame(
        {
            "condition": matrix.conditions,
            "accuracy": _ratio(correct_ka.sum(1), answered_ka.sum(1)),
            "ci_low": low,
            "ci_high": high,
            "n": n_k,
            "n_answers": answered_ka.sum(1).astype(int),
        }
    )

    low, high = _interval(boot.attribute(), level)
    by_attribute = pd.DataFrame(
        {
            "attribute": matrix.attributes,
            "relevant": [relevant[a] for a in matrix.attributes],
            "accuracy": _ratio(correct_ka.sum(0), answered_ka.sum(0)),
            "ci_low": low,
            "ci_high": high,
            "n": people_ka.sum(0),
        }
    )

    low, high = _interval(boot.cell(), level)
    cells = _ratio(correct_ka, answered_ka)
    by_cell = pd.DataFrame(
        {
            "condition": np.repeat(matrix.conditions, len(matrix.attributes)),
            "attribute": np.tile(matrix.attributes, k),
            "accuracy": cells.ravel(),
            "ci_low": np.asarray(low).ravel(),
            "ci_high": np.asarray(high).ravel(),
            "n": people_ka.ravel(),
        }
    )
    by_cell["relevant"] = by_cell["attribute"].map(relevant).astype(bool)

    per_person = pd.DataFrame(
        {
            "participant_id": matrix.participant_ids,
            "condition": np.asarray(matrix.conditions, dtype=object)[idx],
            "accuracy": _ratio(matrix.correct.sum(1), matrix.answered.sum(1)),
            "n_answers": matrix.answered.sum(1).astype(int),
        }
    )
    return AccuracyTables(by_condition, by_attribute, by_cell, per_person)


def cohens_h(p_a: float, p_b: float) -> float:
    """Cohen's h for two proportions: 2 asin(sqrt(p_a)) - 2 asin(sqrt(p_b))."""
    return float(2 * np.arcsin(np.sqrt(p_a)) - 2 * np.arcsin(np.sqrt(p_b)))


def compare_conditions(
    tables: AccuracyTables, boot: Bootstrap, conditions: list[str], level: float = 0.95
) -> pd.DataFrame:
    """Every pair of conditions (later minus earlier in the bundle's order).

    ``difference`` in accuracy with its bootstrap interval, Cohen's h, and a Welch t-test
    on per-participant accuracy with Holm-adjusted p-values across the pairs.
    """
    samples = boot.condition()
    accuracy = tables.by_condition.set_index("condition")["accuracy"]
    per_person = tables.participant_accuracy
    rows = []
    for i, j in combinations(range(len(conditions)), 2):
        a, b = conditions[j], conditions[i]
        low, high = _interval(samples[:, j] - samples[:, i], level)
        acc_a = per_person.loc[per_person["condition"] == a, "accuracy"].dropna()
        acc_b = per_person.loc[per_person["condition"] == b, "accuracy"].dropna()
        if len(acc_a) > 1 and len(acc_b) > 1:
            with warnings.catch_warnings():
                # Nearly identical accuracies (tiny samples) only lose precision; the
                # p-value is still reported.
                warnings.simplefilter("ignore", RuntimeWarning)
                test = stats.ttest_ind(acc_a, acc_b, equal_var=False)
            t_stat, p_value = float(test.statistic), float(test.pvalue)
        else:
            t_stat, p_value = np.nan, np.nan
        rows.append(
            {
                "condition_a": a,
                "condition_b": b,
                "accuracy_a": accuracy[a],
                "accuracy_b": accuracy[b],
                "difference": accuracy[a] - accuracy[b],
                "ci_low": float(low),
                "ci_high": float(high),
                "cohens_h": cohens_h(accuracy[a], accuracy[b]),
                "t": t_stat,
                "p_value": p_value,
                "n_a": len(acc_a),
                "n_b": len(acc_b),
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "condition_a",
            "condition_b",
            "accuracy_a",
            "accuracy_b",
            "difference",
            "ci_low",
            "ci_high",
            "cohens_h",
            "t",
            "p_value",
            "n_a",
            "n_b",
        ],
    )
    valid = table["p_value"].notna()
    table["p_holm"] = np.nan
    if valid.any():
        table.loc[valid, "p_holm"] = multipletests(table.loc[valid, "p_value"], method="holm")[1]
    return table

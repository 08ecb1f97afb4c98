"""Human accuracy beside the technical scores of the attribution methods: does a score the
literature uses predict how much a method helps people?

Per condition, the participants' accuracy with its bootstrap interval sits beside each
headline technical score of the condition's method (``explain.manifest.TechnicalScores.
headline``: larger is better for every one). Across conditions, Spearman's rank
correlation of accuracy and each score, with the number of conditions it rests on: with
fewer than :data:`MIN_CONDITIONS` no correlation is given, and any correlation over a
handful of conditions is a hint, not a finding (the report says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

MIN_CONDITIONS = 3  # a rank correlation over fewer is not computed


def accuracy_beside_scores(by_condition: pd.DataFrame, technical: pd.DataFrame) -> pd.DataFrame:
    """One row per condition that has technical scores and participants: ``condition``,
    ``accuracy``, ``ci_low``, ``ci_high`` and the headline scores."""
    if technical.empty:
        return pd.DataFrame()
    accuracy = by_condition[["condition", "accuracy", "ci_low", "ci_high"]]
    return accuracy.merge(technical, on="condition", how="inner")


def score_columns(table: pd.DataFrame) -> list[str]:
    """The headline scores present for at least one condition."""
    fixed = {"condition", "accuracy", "ci_low", "ci_high"}
    return [c for c in table.columns if c not in fixed and table[c].notna().any()]


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Per score: Spearman's rho of accuracy and the score across conditions, its p-value
    and ``n_conditions``; rho and p are empty below :data:`MIN_CONDITIONS` or when the
    score (or the accuracy) does not vary."""
    rows = []
    for score in score_columns(table):
        pairs = table[["accuracy", score]].dropna().astype(float)
        rho = p = np.nan
        varies = pairs[score].nunique() > 1 and pairs["accuracy"].nunique() > 1
        if len(pairs) >= MIN_CONDITIONS and varies:
            result = spearmanr(pairs["accuracy"], pairs[score])
            rho, p = float(result.statistic), float(result.pvalue)
        rows.append({"score": score, "rho": rho, "p": p, "n_conditions": len(pairs)})
    return pd.DataFrame(rows, columns=["score", "rho", "p", "n_conditions"])


def correlation_note(correlations: pd.DataFrame) -> str:
    """What the correlations rest on, in words for the report."""
    n = int(correlations["n_conditions"].max()) if not correlations.empty else 0
    if n < MIN_CONDITIONS:
        return (
            f"The scores are known for {n} condition(s) with participants: too few for a rank "
            f"correlation (at least {MIN_CONDITIONS}), so none is given."
        )
    return (
        f"Each correlation rests on {n} conditions, one point each: with so few, even a "
        "large rho can arise by chance (see p), so read it as a hint about which scores "
        "to test in a study designed for it, not as a finding."
    )

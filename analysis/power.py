"""Power by simulation: how likely a study of N participants per condition detects a
difference between conditions with the accuracies given.

Each simulated study draws every participant's ability (mean = the condition's
accuracy, sd ``ability_sd``, as :mod:`analysis.simulate` does), their number of correct
answers out of ``n_attributes`` (binomial), and tests each pair of conditions with a
two-sided Welch t-test on per-participant accuracy at ``alpha`` -- the test the report
runs. Power is the share of simulated studies in which the test rejects.

A within-subjects study (``within=True``; docs/designs/within-subjects.md) has ``n``
participants who each meet every condition. A participant's abilities in the conditions
correlate (``correlation``: some people are better at the task whatever the condition):
each is the condition's accuracy plus a person effect shared over the conditions and an
effect of their own, normal with variances ``correlation * ability_sd**2`` and
``(1 - correlation) * ability_sd**2``, clipped to [0.01, 0.99]. Each pair of conditions
is tested with a paired t-test on the per-participant accuracies.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.simulate import draw_abilities
from xaistudy.errors import UserError


def _participant_accuracy(
    rng: np.random.Generator, p: float, n: int, sims: int, n_attributes: int, ability_sd: float
) -> np.ndarray:
    """(sims, n) per-participant accuracy of simulated studies."""
    ability = draw_abilities(rng, p, sims * n, ability_sd).reshape(sims, n)
    return rng.binomial(n_attributes, ability) / n_attributes


def _within_accuracy(
    rng: np.random.Generator,
    accuracy: dict[str, float],
    n: int,
    sims: int,
    n_attributes: int,
    ability_sd: float,
    correlation: float,
) -> dict[str, np.ndarray]:
    """Condition -> (sims, n) per-participant accuracy of simulated within studies: the
    same participants (one person effect each) in every condition."""
    person = rng.normal(0, ability_sd * np.sqrt(correlation), (sims, n))
    own_sd = ability_sd * np.sqrt(1 - correlation)
    samples = {}
    for name, p in accuracy.items():
        ability = np.clip(p + person + rng.normal(0, own_sd, (sims, n)), 0.01, 0.99)
        samples[name] = rng.binomial(n_attributes, ability) / n_attributes
    return samples


def power_analysis(
    accuracy: dict[str, float],
    n: int,
    sims: int = 500,
    n_attributes: int = 7,
    ability_sd: float = 0.1,
    alpha: float = 0.05,
    seed: int = 0,
    within: bool = False,
    correlation: float = 0.5,
) -> pd.DataFrame:
    """One row per pair of conditions (later minus earlier): ``condition_a``,
    ``condition_b``, ``difference``, ``n`` (per condition; within: participants, each in
    every condition), ``power`` and its 95% Wilson interval (``power_ci_low``,
    ``power_ci_high``) over the ``sims`` simulated studies. ``n_attributes``: the answers
    a participant gives per condition (attributes rated, or test trials)."""
    if len(accuracy) < 2:
        raise UserError("--accuracy needs at least two conditions to compare")
    if n < 2:
        raise UserError(f"--n must be at least 2 participants per condition, got {n}")
    if sims < 1:
        raise UserError(f"--sims must be at least 1, got {sims}")
    if n_attributes < 1:
        raise UserError(f"--attributes must be at least 1, got {n_attributes}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {alpha}")
    if not 0 <= correlation < 1:
        raise UserError(f"--correlation must be in [0, 1), got {correlation}")
    rng = np.random.default_rng(seed)
    names = list(accuracy)
    if within:
        samples = _within_accuracy(rng, accuracy, n, sims, n_attributes, ability_sd, correlation)
    else:
        samples = {
            name: _participant_accuracy(rng, accuracy[name], n, sims, n_attributes, ability_sd)
            for name in names
        }
    rows = []
    for i, j in combinations(range(len(names)), 2):
        a, b = names[j], names[i]
        with np.errstate(invalid="ignore", divide="ignore"):
            if within:
                p_values = stats.ttest_rel(samples[a], samples[b], axis=1).pvalue
            else:
                p_values = stats.ttest_ind(samples[a], samples[b], axis=1, equal_var=False).pvalue
        detected = int(np.sum(np.nan_to_num(p_values, nan=1.0) < alpha))
        low, high = _wilson(detected, sims)
        rows.append(
            {
                "condition_a": a,
                "condition_b": b,
                "accuracy_a": accuracy[a],
                "accuracy_b": accuracy[b],
                "difference": accuracy[a] - accuracy[b],
                "n": n,
                "power": detected / sims,
                "power_ci_low": low,
                "power_ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def power_curve(
    accuracy: dict[str, float], ns: list[int], sims: int = 500, seed: int = 0, **kwargs
) -> pd.DataFrame:
    """:func:`power_analysis` for each N in ``ns``, stacked (column ``n``)."""
    frames = [
        power_analysis(accuracy, n, sims=sims, seed=seed + i, **kwargs) for i, n in enumerate(ns)
    ]
    return pd.concat(frames, ignore_index=True)


def _wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    p = successes / trials
    center = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(center - half, 0.0)), float(min(center + half, 1.0))


def default_ns(n: int) -> list[int]:
    """N values for a power curve around ``n``: from n/4 to 3n in ten steps."""
    low, high = max(4, n // 4), max(8, 3 * n)
    return sorted({int(round(v)) for v in np.linspace(low, high, 10)})

"""The logistic model of correctness: condition x attribute fixed effects, participant effect.

Two fits, both from statsmodels:

- ``bayes``: :class:`~statsmodels.genmod.bayes_mixed_glm.BinomialBayesMixedGLM`, a
  logistic mixed model with a random intercept per participant, fitted by variational
  Bayes (mean-field; fixed-effect prior N(0, 2^2), log-sd prior N(0, 1)). Its cost grows
  with the number of participants (one random effect each): about 2 s for 240 and
  20 s for 2,000 on one core.
- ``gee``: a GEE logistic model with exchangeable correlation within participant, the
  robust population-averaged alternative; seconds even for 10,000 participants.

``auto`` (the default) fits ``bayes`` up to :data:`BAYES_MAX_PARTICIPANTS` and ``gee``
above; the report states which model was fitted and how long it took.

Coding: condition by treatment coding against the first condition, attribute by sum
(deviation) coding, so a condition's coefficient is its log odds ratio against the
first condition averaged over attributes, and ``exp`` of it the effect size reported.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import sparse, stats

from analysis.scoring import ScoredStudy
from xaistudy.errors import UserError

BAYES_MAX_PARTICIPANTS = 1000
METHODS = ("auto", "bayes", "gee")
_Z95 = float(stats.norm.ppf(0.975))


@dataclasses.dataclass
class ModelFit:
    """``table``: term, estimate (log odds), std_error, ci_low, ci_high, odds_ratio.
    ``odds_ratios``: condition_a, condition_b, odds_ratio, or_ci_low, or_ci_high."""

    method: str
    description: str
    table: pd.DataFrame
    odds_ratios: pd.DataFrame
    seconds: float
    n_participants: int
    n_observations: int
    random_effect_sd: float | None
    notes: list[str]


def design_matrix(
    conditions: np.ndarray, attributes: np.ndarray, condition_levels: list, attribute_levels: list
) -> tuple[np.ndarray, list[str]]:
    """(N, P) fixed-effects design: intercept, condition (treatment), attribute (sum), and
    their interactions; returns it with the term names."""
    n = len(conditions)
    columns, names = [np.ones(n)], ["Intercept"]
    cond_cols, cond_names = [], []
    for level in condition_levels[1:]:
        cond_cols.append((conditions == level).astype(float))
        cond_names.append(f"condition[{level}]")
    attr_cols, attr_names = [], []
    last = attribute_levels[-1]
    for level in attribute_levels[:-1]:
        attr_cols.append((attributes == level).astype(float) - (attributes == last).astype(float))
        attr_names.append(f"attribute[S.{level}]")
    columns += cond_cols + attr_cols
    names += cond_names + attr_names
    for c_col, c_name in zip(cond_cols, cond_names, strict=True):
        for a_col, a_name in zip(attr_cols, attr_names, strict=True):
            columns.append(c_col * a_col)
            names.append(f"{c_name}:{a_name}")
    return np.column_stack(columns), names


def _fit_bayes(y, x, groups, names):
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    codes, uniques = pd.factorize(groups)
    z = sparse.csr_array(
        (np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(uniques))
    )
    model = BinomialBayesMixedGLM(
        y, x, z, np.zeros(len(uniques), dtype=int), fep_names=names, vcp_names=["participant"]
    )
    result = model.fit_vb(fit_method="L-BFGS-B")
    mean, sd = np.asarray(result.fe_mean), np.asarray(result.fe_sd)
    cov = np.diag(sd**2)  # mean-field: posterior of the fixed effects taken as independent
    return mean, cov, float(np.exp(result.vcp_mean[0]))


def _fit_gee(y, x, groups, names):
    import statsmodels.api as sm

    model = sm.GEE(
        y,
        x,
        groups=pd.factorize(groups)[0],
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Exchangeable(),
    )
    result = model.fit(maxiter=100)
    return np.asarray(result.params), np.asarray(result.cov_params()), None


def fit_model(scored: ScoredStudy, method: str = "auto") -> ModelFit:
    """Fit the logistic model of ``correct`` on condition x attribute (see module doc)."""
    if method not in METHODS:
        raise UserError(f"unknown model {method!r}; allowed are {', '.join(METHODS)}")
    answers = scored.answers
    n_people = answers["participant_id"].nunique()
    if method == "auto":
        method = "bayes" if n_people <= BAYES_MAX_PARTICIPANTS else "gee"
    conditions = scored.conditions
    attributes = list(scored.attributes["attribute"])
    x, names = design_matrix(
        answers["condition"].to_numpy(), answers["attribute"].to_numpy(), conditions, attributes
    )
    y = answers["correct"].to_numpy(dtype=float)
    groups = answers["participant_id"].to_numpy()

    notes: list[str] = []
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if method == "bayes":
                mean, cov, re_sd = _fit_bayes(y, x, groups, names)
            else:
                mean, cov, re_sd = _fit_gee(y, x, groups, names)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise UserError(f"the {method} model could not be fitted to these data: {exc}") from exc
    seconds = time.perf_counter() - start
    notes += sorted({str(w.message).splitlines()[0] for w in caught})

    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    table = pd.DataFrame(
        {
            "term": names,
            "estimate": mean,
            "std_error": se,
            "ci_low": mean - _Z95 * se,
            "ci_high": mean + _Z95 * se,
        }
    )
    table["odds_ratio"] = np.exp(table["estimate"])

    # Condition contrasts: beta_a - beta_b (the first condition's coefficient is 0).
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for i, j in combinations(range(len(conditions)), 2):
        a, b = conditions[j], conditions[i]
        weights = np.zeros(len(names))
        if f"condition[{a}]" in index:
            weights[index[f"condition[{a}]"]] += 1
        if f"condition[{b}]" in index:
            weights[index[f"condition[{b}]"]] -= 1
        log_or = float(weights @ mean)
        log_se = float(np.sqrt(max(weights @ cov @ weights, 0.0)))
        rows.append(
            {
                "condition_a": a,
                "condition_b": b,
                "odds_ratio": np.exp(log_or),
                "or_ci_low": np.exp(log_or - _Z95 * log_se),
                "or_ci_high": np.exp(log_or + _Z95 * log_se),
            }
        )
    odds = pd.DataFrame(
        rows, columns=["condition_a", "condition_b", "odds_ratio", "or_ci_low", "or_ci_high"]
    )
    if method == "bayes":
        description = (
            "Logistic mixed model (statsmodels BinomialBayesMixedGLM, variational Bayes): "
            "random intercept per participant; fixed effects condition (treatment coding, "
            f"reference {conditions[0]}) x attribute (sum coding). Estimates are posterior "
            "means; intervals are mean +- 1.96 posterior sd."
        )
    else:
        description = (
            "GEE logistic model with exchangeable correlation within participant "
            "(statsmodels GEE; population-averaged, robust standard errors); fixed effects "
            f"condition (treatment coding, reference {conditions[0]}) x attribute (sum "
            "coding). Fitted instead of the variational-Bayes mixed model because the study "
            f"has more than {BAYES_MAX_PARTICIPANTS} participants, or as asked."
        )
    return ModelFit(
        method=method,
        description=description,
        table=table,
        odds_ratios=odds,
        seconds=seconds,
        n_participants=n_people,
        n_observations=len(y),
        random_effect_sd=re_sd,
        notes=notes,
    )

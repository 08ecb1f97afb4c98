"""Questionnaire measures (docs/designs/questionnaires.md): Likert items and free text.

Per questionnaire, point, item and condition: the mean and the median answer, each with
a percentile bootstrap interval over participants (a participant gives one answer per
item and point, so resampling answers resamples participants), resampled within each
condition. For a pre/post block (a questionnaire asked at several points): each
participant's change from the first point to the last, its mean with a bootstrap
interval and a Wilcoxon signed-rank test per condition. Between conditions: a
Kruskal-Wallis test per item and point. Free-text answers are listed for reading.
Only the participants the design's analysis includes are counted.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats


@dataclasses.dataclass
class QuestionnaireAnalysis:
    """``items``: per questionnaire, point, item and condition ``n``, ``mean`` with
    ``mean_ci_low``/``mean_ci_high``, ``median`` with ``median_ci_low``/``median_ci_high``.
    ``change``: per pre/post questionnaire, item and condition ``pre``, ``post`` (the
    points), ``n`` (participants answering both), ``change`` (mean post - pre) with
    ``ci_low``/``ci_high``, ``wilcoxon`` and ``p_value``. ``between``: per questionnaire,
    point and item the Kruskal-Wallis ``h``, ``p_value`` and ``conditions`` compared.
    ``texts``: every free-text answer with its condition, point and item."""

    items: pd.DataFrame
    change: pd.DataFrame
    between: pd.DataFrame
    texts: pd.DataFrame
    level: float

    @property
    def empty(self) -> bool:
        return self.items.empty and self.texts.empty


KEYS = ["questionnaire", "point", "item"]


def _bootstrap(values: np.ndarray, statistic, n_boot: int, rng, level: float) -> tuple:
    """Percentile interval of ``statistic`` over ``values`` resampled with replacement."""
    draws = values[rng.integers(0, len(values), size=(n_boot, len(values)))]
    samples = statistic(draws, axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def item_table(likert: pd.DataFrame, level: float, n_boot: int, rng) -> pd.DataFrame:
    rows = []
    for (questionnaire, point, item, condition), group in likert.groupby(
        [*KEYS, "condition"], sort=False
    ):
        values = group["value"].to_numpy(dtype=float)
        mean_low, mean_high = _bootstrap(values, np.mean, n_boot, rng, level)
        median_low, median_high = _bootstrap(values, np.median, n_boot, rng, level)
        rows.append(
            {
                "questionnaire": questionnaire,
                "point": point,
                "item": item,
                "condition": condition,
                "n": len(values),
                "mean": float(values.mean()),
                "mean_ci_low": mean_low,
                "mean_ci_high": mean_high,
                "median": float(np.median(values)),
                "median_ci_low": median_low,
                "median_ci_high": median_high,
            }
        )
    return pd.DataFrame(rows)


def _wilcoxon(differences: np.ndarray) -> tuple[float, float]:
    """The signed-rank statistic and p-value; NaN when every difference is zero."""
    if len(differences) == 0 or not np.any(differences):
        return np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small samples: scipy notes the normal approximation
        result = stats.wilcoxon(differences)
    return float(result.statistic), float(result.pvalue)


def change_table(likert: pd.DataFrame, level: float, n_boot: int, rng) -> pd.DataFrame:
    """Per pre/post questionnaire (its points in walk order as answered), the change of
    each participant from the first point to the last."""
    rows = []
    for questionnaire, asked in likert.groupby("questionnaire", sort=False):
        points = list(dict.fromkeys(asked.sort_values("answered_at")["point"]))
        if len(points) < 2:
            continue
        pre, post = points[0], points[-1]
        wide = asked[asked["point"].isin([pre, post])].pivot_table(
            index=["item", "condition", "participant_id"], columns="point", values="value"
        )
        wide = wide.dropna()
        for (item, condition), group in wide.groupby(level=["item", "condition"], sort=False):
            differences = (group[post] - group[pre]).to_numpy(dtype=float)
            low, high = _bootstrap(differences, np.mean, n_boot, rng, level)
            statistic, p_value = _wilcoxon(differences)
            rows.append(
                {
                    "questionnaire": questionnaire,
                    "item": item,
                    "condition": condition,
                    "pre": pre,
                    "post": post,
                    "n": len(differences),
                    "change": float(differences.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "wilcoxon": statistic,
                    "p_value": p_value,
                }
            )
    return pd.DataFrame(rows)


def between_table(likert: pd.DataFrame) -> pd.DataFrame:
    """A Kruskal-Wallis test across the conditions of each item at each point."""
    rows = []
    for (questionnaire, point, item), group in likert.groupby(KEYS, sort=False):
        samples = [g["value"].to_numpy(dtype=float) for _, g in group.groupby("condition")]
        h, p_value = np.nan, np.nan
        if len(samples) >= 2 and len(np.unique(group["value"])) > 1:
            h, p_value = (float(v) for v in stats.kruskal(*samples))
        rows.append(
            {
                "questionnaire": questionnaire,
                "point": point,
                "item": item,
                "conditions": len(samples),
                "h": h,
                "p_value": p_value,
            }
        )
    return pd.DataFrame(rows)


def analyze_questionnaires(
    answers: pd.DataFrame | None,
    included: pd.Series,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> QuestionnaireAnalysis | None:
    """Every table of :class:`QuestionnaireAnalysis` over the ``included`` participants'
    answers (the export's ``questionnaire`` table); None when there are none."""
    if answers is None:
        return None
    answers = answers[answers["participant_id"].isin(set(included))]
    if answers.empty:
        return None
    rng = np.random.default_rng([seed, 7])
    likert = answers[answers["value"].notna()].astype({"value": float})
    texts = answers[answers["text"].notna() & (answers["text"].astype(str).str.strip() != "")]
    texts = texts[["questionnaire", "item", "point", "condition", "participant_id", "text"]]
    return QuestionnaireAnalysis(
        items=item_table(likert, level, n_boot, rng),
        change=change_table(likert, level, n_boot, rng),
        between=between_table(likert),
        texts=texts.sort_values(["questionnaire", "item", "point", "condition"]).reset_index(
            drop=True
        ),
        level=level,
    )

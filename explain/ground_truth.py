"""Ground truth: how much each attribute really moves the model.

For each factor (``xaistudy.vocabulary.FACTORS``) the same test scenes are rendered
with only that factor redrawn independently of the class (the dataset's intervention
split). Per scene ``delta = logit(intervened) - logit(original)``; then

- ``effect``: mean |delta|, with a percentile-bootstrap 95% interval ``ci``;
- ``flip_rate``: share of scenes whose decision (logit > 0) changes;
- ``variance_share``: ``mean(delta**2) / (2 var(logit))``, the Jansen estimator of the
  factor's total-effect (Sobol) index: the share of the logit's variance that goes away
  when the factor alone is held fixed; clipped to [0, 1].

A :class:`RelevanceRule` turns the numbers into relevant / irrelevant labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from explain.manifest import Attribute, FactorTruth
from xaistudy.errors import UserError
from xaistudy.key_values import dataclass_values, read_key_values
from xaistudy.vocabulary import STUDY_ATTRIBUTES

COMBINE_CHOICES = ("any", "all")


@dataclass(frozen=True)
class RelevanceRule:
    """A factor is relevant when its flip rate reaches ``min_flip_rate`` and/or (see
    ``combine``) its variance share reaches ``min_variance_share``, and in every case the
    lower end of its effect's 95% interval is at least ``min_effect``."""

    min_flip_rate: float = 0.05
    min_variance_share: float = 0.05
    min_effect: float = 0.0
    combine: str = "any"

    def __post_init__(self) -> None:
        if self.combine not in COMBINE_CHOICES:
            raise UserError(
                f"relevance rule combine={self.combine!r}; allowed are {', '.join(COMBINE_CHOICES)}"
            )
        for name in ("min_flip_rate", "min_variance_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"relevance rule {name}={value} must be between 0 and 1")
        if self.min_effect < 0:
            raise UserError(f"relevance rule min_effect={self.min_effect} must be >= 0")

    @classmethod
    def parse(cls, text: str | None) -> RelevanceRule:
        """From ``None`` (defaults), a TOML file path, or ``key=value,key=value``."""
        if not text:
            return cls()
        values = read_key_values(
            text,
            "relevance rule",
            section="relevance",
            example="min_flip_rate=0.05,min_variance_share=0.05,combine=any",
        )
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict) -> RelevanceRule:
        return cls(**dataclass_values(cls, values, "relevance rule"))

    def is_relevant(self, entry: dict) -> bool:
        tests = [
            entry["flip_rate"] >= self.min_flip_rate,
            entry["variance_share"] >= self.min_variance_share,
        ]
        passed = any(tests) if self.combine == "any" else all(tests)
        return bool(passed and entry["ci"][0] >= self.min_effect)

    def to_dict(self) -> dict:
        joiner = "or" if self.combine == "any" else "and"
        return {
            **asdict(self),
            "description": (
                f"relevant if flip_rate >= {self.min_flip_rate:g} {joiner} variance_share >= "
                f"{self.min_variance_share:g}, and the lower end of the effect's 95% interval "
                f">= {self.min_effect:g}"
            ),
        }


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, n_resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap)."""
    values = np.asarray(values, dtype=np.float64)
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])  # no spread: the interval is the point
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def factor_effect(
    original: np.ndarray, intervened: np.ndarray, logit_variance: float, seed: int = 0
) -> dict:
    """Numbers for one factor from paired logits (n,) before and after the intervention."""
    original = np.asarray(original, dtype=np.float64)
    intervened = np.asarray(intervened, dtype=np.float64)
    delta = intervened - original
    change = np.abs(delta)
    share = float(np.mean(delta**2) / (2.0 * logit_variance)) if logit_variance > 0 else 0.0
    low, high = bootstrap_ci(change, seed)
    return {
        "effect": float(change.mean()),
        "ci": [low, high],
        "flip_rate": float(np.mean((original > 0) != (intervened > 0))),
        "variance_share": min(max(share, 0.0), 1.0),
        "mean_change": float(delta.mean()),
        "n": int(len(delta)),
    }


def ground_truth(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]],
    logit_variance: float,
    rule: RelevanceRule,
    seed: int = 0,
) -> dict[str, FactorTruth]:
    """``pairs``: factor -> (original logits, intervened logits); returns the manifest's
    ``ground_truth`` with ``relevant`` set by ``rule`` and ``rank`` by effect (1 = largest)."""
    numbers = {
        factor: factor_effect(before, after, logit_variance, seed + i)
        for i, (factor, (before, after)) in enumerate(pairs.items())
    }
    ranked = sorted(numbers, key=lambda f: -numbers[f]["effect"])
    return {
        factor: FactorTruth(
            **{**entry, "ci": tuple(entry["ci"])},
            rank=ranked.index(factor) + 1,
            relevant=rule.is_relevant(entry),
        )
        for factor, entry in numbers.items()
    }


def attribute_entries(truth: dict[str, FactorTruth]) -> tuple[Attribute, ...]:
    """The manifest's ``attributes``: one per study attribute, relevant if any factor is."""
    return tuple(
        Attribute(
            key=attribute.key,
            name=attribute.name,
            factors=attribute.factors,
            relevant=any(truth[f].relevant for f in attribute.factors),
            effect=max(truth[f].effect for f in attribute.factors),
        )
        for attribute in STUDY_ATTRIBUTES
    )

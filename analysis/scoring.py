"""Exclusions and scoring: which participants count, and which answers are correct.

An answer is correct when its rating agrees with the bundle's ground-truth label of the
attribute: by default 4-5 ("relies on") for a relevant attribute, 1-2 ("does not") for
an irrelevant one; 3 is never correct. Both sides are configurable.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.load import Bundle, Responses, check_bundle_matches
from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule
from xaistudy.vocabulary import ABANDONED, Status

SCALE = (1, 2, 3, 4, 5)


def parse_ratings(text: str, option: str) -> tuple[int, ...]:
    """``"4,5"`` -> ``(4, 5)``; every value must be on the 1..5 scale."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise UserError(f"{option} {text!r}: {part!r} is not a rating 1..5") from None
        if value not in SCALE:
            raise UserError(f"{option} {text!r}: {value} is outside the rating scale 1..5")
        values.append(value)
    if not values:
        raise UserError(f"{option} is empty; give ratings such as 4,5")
    return tuple(sorted(set(values)))


@dataclasses.dataclass(frozen=True)
class ScoringRule:
    """Which ratings mean "the model relies on it" and which mean "it does not"."""

    relies_on: tuple[int, ...] = (4, 5)
    not_relies_on: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        overlap = sorted(set(self.relies_on) & set(self.not_relies_on))
        if overlap:
            raise UserError(
                f"rating(s) {overlap} are both 'relies on' and 'does not rely on'; "
                "the two sides must not overlap"
            )
        for value in (*self.relies_on, *self.not_relies_on):
            if value not in SCALE:
                raise UserError(f"rating {value} is outside the scale 1..5")

    @classmethod
    def parse(cls, relies_on: str = "4,5", not_relies_on: str = "1,2") -> ScoringRule:
        return cls(
            parse_ratings(relies_on, "--relies-on"),
            parse_ratings(not_relies_on, "--not-relies-on"),
        )

    def correct(self, rating: np.ndarray, relevant: np.ndarray) -> np.ndarray:
        """Element-wise correctness; ``rating`` and ``relevant`` of the same shape."""
        rating = np.asarray(rating)
        says_relies = np.isin(rating, self.relies_on)
        says_not = np.isin(rating, self.not_relies_on)
        return np.where(np.asarray(relevant, dtype=bool), says_relies, says_not)

    def describe(self) -> str:
        yes = ",".join(map(str, self.relies_on))
        no = ",".join(map(str, self.not_relies_on))
        return f"ratings {yes} = relies on, {no} = does not rely on, others never correct"


# (reason, description), in the order reasons are assigned: a participant is counted
# under the first reason that applies to them.
EXCLUSION_REASONS = (
    ("preview", "researcher previews"),
    ("screened_out", "screened out (e.g. failed the comprehension check)"),
    ("incomplete", "did not complete (started, returned or abandoned)"),
    ("admin_excluded", "excluded by an administrator"),
    ("attention_failed", "failed an attention check"),
    ("too_fast", "completed too fast"),
)


@dataclasses.dataclass
class ScoredStudy:
    """Included participants and their scored answers.

    ``answers``: one row per included participant x attribute with ``participant_id``,
    ``condition``, ``attribute``, ``rating``, ``relevant``, ``correct``.
    ``participants``: one row per included participant (``participant_id``, ``condition``).
    ``exclusions``: ``reason``, ``description``, ``n_excluded`` (first reason only),
    ``n_matching`` (all who meet it), ``applicable``. ``sample``: per condition, the
    participants ``recorded``, ``excluded`` and ``included`` (participants without an
    assigned condition, e.g. screened out before assignment, are not listed).
    """

    answers: pd.DataFrame
    participants: pd.DataFrame
    exclusions: pd.DataFrame
    attributes: pd.DataFrame
    conditions: list[str]
    n_recorded: int
    sample: pd.DataFrame  # condition, recorded, excluded, included
    rule: ScoringRule
    too_fast_seconds: float | None


def _exclusion_masks(
    participants: pd.DataFrame, rules: TooFastRule
) -> tuple[dict[str, pd.Series], float | None]:
    status = participants["status"].astype(str)
    masks = {
        "preview": participants["preview"].fillna(False).astype(bool),
        "screened_out": status.eq(Status.SCREENED_OUT),
        "incomplete": status.isin([Status.STARTED, Status.RETURNED, ABANDONED]),
        "admin_excluded": participants["excluded"].fillna(False).astype(bool),
        "attention_failed": participants["attention_passed"].eq(False).fillna(False).astype(bool),
    }
    completed = status.eq(Status.COMPLETED) & ~masks["preview"]
    durations = participants.loc[completed, "duration_s"].dropna()
    threshold = rules.threshold(float(durations.median()) if len(durations) else None)
    if threshold is None:
        masks["too_fast"] = pd.Series(False, index=participants.index)
    else:
        masks["too_fast"] = completed & participants["duration_s"].lt(threshold).fillna(False)
    return masks, threshold


def apply_exclusions(
    responses: Responses, rules: TooFastRule
) -> tuple[pd.DataFrame, pd.DataFrame, float | None, int]:
    """Return (included participants, exclusion table, too-fast threshold, n recorded)."""
    if responses.participants is None:
        included = (
            responses.answers.groupby("participant_id", sort=False)["condition"]
            .first()
            .reset_index()
        )
        table = pd.DataFrame(
            [
                {
                    "reason": reason,
                    "description": description,
                    "n_excluded": 0,
                    "n_matching": 0,
                    "applicable": False,
                }
                for reason, description in EXCLUSION_REASONS
            ]
        )
        return included, table, None, len(included)

    participants = responses.participants.drop_duplicates("participant_id")
    masks, threshold = _exclusion_masks(participants, rules)
    remaining = pd.Series(True, index=participants.index)
    rows = []
    for reason, description in EXCLUSION_REASONS:
        mask = masks[reason]
        if reason == "too_fast" and threshold is not None:
            description = f"{description} (under {threshold:.3g} s)"
        rows.append(
            {
                "reason": reason,
                "description": description,
                "n_excluded": int((mask & remaining).sum()),
                "n_matching": int(mask.sum()),
                "applicable": True,
            }
        )
        remaining &= ~mask
    included = participants.loc[remaining, ["participant_id", "condition"]].reset_index(drop=True)
    return included, pd.DataFrame(rows), threshold, len(participants)


def score_study(
    responses: Responses,
    bundle: Bundle,
    rule: ScoringRule | None = None,
    exclusions: TooFastRule | None = None,
) -> ScoredStudy:
    """Apply the exclusions, join the ground truth and mark each answer correct or not."""
    rule = rule or ScoringRule()
    exclusions = exclusions or TooFastRule()
    check_bundle_matches(responses, bundle)
    included, table, threshold, n_recorded = apply_exclusions(responses, exclusions)

    answers = responses.answers
    answers = answers[answers["participant_id"].isin(included["participant_id"])]
    # One answer per participant and attribute: a re-submitted page keeps the last rating.
    answers = answers.drop_duplicates(["participant_id", "attribute"], keep="last")
    labels = bundle.attributes.set_index("attribute")["relevant"]
    scored = answers[["participant_id", "condition", "attribute", "rating"]].copy()
    scored["relevant"] = scored["attribute"].map(labels).astype(bool)
    scored["correct"] = rule.correct(scored["rating"].to_numpy(), scored["relevant"].to_numpy())
    scored = scored.reset_index(drop=True)
    if scored.empty:
        raise UserError(
            f"no answers remain after the exclusions ({n_recorded} participants recorded, "
            f"{int(table['n_excluded'].sum())} excluded); nothing to analyze"
        )

    included = included[included["participant_id"].isin(scored["participant_id"])]
    asked = set(scored["attribute"])
    attributes = bundle.attributes[bundle.attributes["attribute"].isin(asked)].reset_index(
        drop=True
    )
    present = set(scored["condition"])
    conditions = [c for c in bundle.conditions if c in present]
    recorded_by = (
        responses.participants.drop_duplicates("participant_id")
        if responses.participants is not None
        else responses.answers.drop_duplicates("participant_id")
    )["condition"].value_counts()
    included_by = included["condition"].value_counts()
    sample = pd.DataFrame({"condition": [c for c in bundle.conditions if c in recorded_by]})
    sample["recorded"] = sample["condition"].map(recorded_by).fillna(0).astype(int)
    sample["included"] = sample["condition"].map(included_by).fillna(0).astype(int)
    sample["excluded"] = sample["recorded"] - sample["included"]
    return ScoredStudy(
        answers=scored,
        participants=included.reset_index(drop=True),
        exclusions=table,
        attributes=attributes,
        conditions=conditions,
        n_recorded=n_recorded,
        sample=sample[["condition", "recorded", "excluded", "included"]],
        rule=rule,
        too_fast_seconds=threshold,
    )


# (column, what the participant answers): strategies that need no understanding of the
# model. Their accuracy against the answer key is the floor a condition must clear.
TRIVIAL_STRATEGIES = (
    ("relies_on_everything", "'relies on' to every attribute"),
    ("relies_on_nothing", "'does not rely on' to every attribute"),
    ("neutral_everything", "the middle of the scale to every attribute"),
)


def trivial_strategy_ratings(rule: ScoringRule) -> dict[str, int]:
    """The rating each of ``TRIVIAL_STRATEGIES`` gives (any rating on a side scores the
    same; the middle of the scale is the neutral answer)."""
    return {
        "relies_on_everything": max(rule.relies_on),
        "relies_on_nothing": min(rule.not_relies_on),
        "neutral_everything": SCALE[len(SCALE) // 2],
    }


def trivial_strategies(scored: ScoredStudy) -> pd.DataFrame:
    """Per condition, the accuracy each of ``TRIVIAL_STRATEGIES`` would get.

    Scored with the study's own rule against the same answer key and the same answers
    (each included participant's rating replaced by the strategy's), so a column sits
    beside the condition's accuracy like for like. Columns: ``condition``, one per
    strategy, ``n_answers``.
    """
    ratings = trivial_strategy_ratings(scored.rule)
    answers = scored.answers
    rows = []
    for condition in scored.conditions:
        relevant = answers.loc[answers["condition"] == condition, "relevant"].to_numpy()
        row = {"condition": condition}
        for name, rating in ratings.items():
            row[name] = float(scored.rule.correct(np.full(len(relevant), rating), relevant).mean())
        rows.append({**row, "n_answers": len(relevant)})
    return pd.DataFrame(rows)

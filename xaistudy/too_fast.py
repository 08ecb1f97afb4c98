"""The too-fast rule: which completed participants finished faster than anyone reading could.

One home for the rule, so that the study server's live view flags the same speeders that
the analysis excludes: a completed participant is too fast when their duration is below
``min_seconds``, or, without it, below ``min_median_fraction`` times the median duration
of the completed participants (previews not counted).
"""

from __future__ import annotations

import dataclasses

from xaistudy.errors import UserError


@dataclasses.dataclass(frozen=True)
class TooFastRule:
    """The too-fast threshold: absolute seconds, or else a fraction of the median duration."""

    min_seconds: float | None = None
    min_median_fraction: float | None = 0.3

    def __post_init__(self) -> None:
        if self.min_seconds is not None and self.min_seconds < 0:
            raise UserError(f"--min-seconds must be >= 0, got {self.min_seconds}")
        fraction = self.min_median_fraction
        if fraction is not None and not 0 <= fraction < 1:
            raise UserError(f"--min-median-fraction must be in [0, 1), got {fraction}")

    def threshold(self, median_seconds: float | None) -> float | None:
        """Seconds under which a completion is too fast; None when the rule cannot apply
        (no absolute threshold, and no completed participant to take a median of)."""
        if self.min_seconds is not None:
            return float(self.min_seconds)
        if self.min_median_fraction is None or median_seconds is None:
            return None
        return float(self.min_median_fraction * median_seconds)

    def describe(self) -> str:
        if self.min_seconds is not None:
            return f"completed in under {self.min_seconds:g} s"
        if self.min_median_fraction is None:
            return "never (the rule is off)"
        return (
            f"completed in under {self.min_median_fraction:g} times the median duration "
            "of the completed participants"
        )

"""The baseline condition: real test images arranged in columns by the model's logit.

Columns are logit bins centered on 0 and on symmetric percentiles of |logit| (see
:func:`symmetric_centers`); bin edges lie halfway between neighboring centers and the
outermost bins are open. Each column holds ``rows`` images drawn without replacement
from its bin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explain.manifest import BaselineCell, BaselineCondition, BaselineLayout, Bins
from explain.wording import condition_text, confidence_labels
from xaistudy.errors import UserError

LABEL_WORDS = ("peaky", "stretchy")  # logit < 0 | > 0


def symmetric_centers(logits: np.ndarray, count: int, max_percentile: float = 90.0) -> np.ndarray:
    """``count`` (odd) values: 0 and +-percentiles of |logit|, ascending.

    With ``m = (count - 1) / 2`` the k-th positive center is the
    ``max_percentile * k / m`` percentile of |logit|, so the outermost centers sit at
    ``max_percentile`` and the inner ones are spaced evenly in rank below it.
    """
    if count < 1 or count % 2 == 0:
        raise UserError(f"the number of logit bins/targets must be odd and >= 1, got {count}")
    if not 0 < max_percentile <= 100:
        raise UserError(f"max percentile must be in (0, 100], got {max_percentile}")
    m = (count - 1) // 2
    magnitude = np.abs(np.asarray(logits, dtype=np.float64))
    percentiles = [max_percentile * k / m for k in range(1, m + 1)]
    positive = np.percentile(magnitude, percentiles) if m else np.empty(0)
    if m and np.any(np.diff(np.concatenate([[0.0], positive])) <= 0):
        raise UserError(
            "the model's logits do not spread enough to make distinct bins "
            f"(|logit| percentiles {np.round(positive, 4).tolist()}); use fewer columns"
        )
    return np.concatenate([-positive[::-1], [0.0], positive])


@dataclass(frozen=True)
class Binning:
    """Logit bins: ``centers`` (C,), ``edges`` (C+1,) with -inf/+inf at the ends."""

    centers: np.ndarray
    edges: np.ndarray
    percentiles: list[float]

    @classmethod
    def from_logits(cls, logits: np.ndarray, columns: int, max_percentile: float = 90.0):
        centers = symmetric_centers(logits, columns, max_percentile)
        inner = (centers[:-1] + centers[1:]) / 2.0
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
        m = (columns - 1) // 2
        percentiles = [max_percentile * k / m for k in range(1, m + 1)]
        return cls(centers=centers, edges=edges, percentiles=percentiles)

    def assign(self, logits: np.ndarray) -> np.ndarray:
        """Column index (N,) of each logit: bin j holds edges[j] <= logit < edges[j+1]."""
        return np.searchsorted(self.edges, np.asarray(logits), side="right") - 1

    def column_labels(self) -> list[str]:
        """Participant-facing labels in words, one per column (see :func:`confidence_labels`)."""
        return confidence_labels(len(self.centers))

    def edge_labels(self) -> list[str]:
        """The exact logit range of each column (for messages to the researcher)."""
        labels = []
        for low, high in zip(self.edges[:-1], self.edges[1:], strict=True):
            if np.isinf(low):
                labels.append(f"logit below {high:.2f}")
            elif np.isinf(high):
                labels.append(f"logit {low:.2f} and above")
            else:
                labels.append(f"logit {low:.2f} to {high:.2f}")
        return labels

    def layout(self, rows: int) -> BaselineLayout:
        """A grid of ``rows`` draws per column, the columns labeled in words."""
        return BaselineLayout(
            rows=rows,
            columns=len(self.centers),
            row_labels=("",) * rows,  # rows are draws, not groups: nothing to name
            column_labels=tuple(self.column_labels()),
            bins=self.record(),
        )

    def record(self) -> Bins:
        """The manifest's ``layout.bins``; infinite edges are written as null."""
        return Bins(
            centres=tuple(float(c) for c in self.centers),
            edges=tuple(None if np.isinf(e) else float(e) for e in self.edges),
            rule="edge j <= logit < edge j+1; centers 0 and +-percentiles of |logit|",
            percentiles_of_abs_logit=tuple(self.percentiles),
        )


def decision_word(logit: float) -> str:
    return LABEL_WORDS[int(logit > 0)]


def select_grid(
    logits: np.ndarray, binning: Binning, rows: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices (rows, columns) into ``logits``: per column, ``rows`` draws without replacement.

    Rows within a column are sorted by logit, so the grid reads smoothly top to bottom.
    """
    columns = binning.assign(logits)
    grid = np.empty((rows, len(binning.centers)), dtype=np.int64)
    for column in range(len(binning.centers)):
        members = np.flatnonzero(columns == column)
        if len(members) < rows:
            raise UserError(
                f"baseline column {column} ({binning.edge_labels()[column]}) has only "
                f"{len(members)} test images but {rows} rows were asked for; "
                "use fewer rows or a larger test split"
            )
        chosen = rng.choice(members, size=rows, replace=False)
        grid[:, column] = chosen[np.argsort(logits[chosen], kind="stable")]
    return grid


def baseline_condition(
    logits: np.ndarray,
    image_path: Callable[[int], str],
    rows: int = 30,
    columns: int = 5,
    max_percentile: float = 90.0,
    seed: int = 0,
) -> BaselineCondition:
    """The ``conditions.baseline`` manifest entry.

    ``logits`` (N,) of the test images; ``image_path(i)`` stores test image i and
    returns its bundle path.
    """
    binning = Binning.from_logits(logits, columns, max_percentile)
    grid = select_grid(logits, binning, rows, np.random.default_rng(seed))
    labels = binning.column_labels()
    stimuli = []
    for row in range(rows):
        for column in range(columns):
            index = int(grid[row, column])
            logit = float(logits[index])
            stimuli.append(
                BaselineCell(
                    image=image_path(index),
                    caption=labels[column],
                    row=row,
                    column=column,
                    logit=logit,
                    decision=decision_word(logit),
                    test_index=index,
                )
            )
    return BaselineCondition(
        **condition_text("baseline"), layout=binning.layout(rows), stimuli=tuple(stimuli)
    )

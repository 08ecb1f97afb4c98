"""The counterfactual condition: source images moved along the classifier to target logits.

For each source image the model's latent is edited so that the classifier's logit equals
each target exactly: only the component of the classifier head along the classifier's
weight vector moves (``model.edit_logit``), the orthogonal part and the split-off
latents stay, and the edited latent is inverted to an image (``model.decode``).

Only rows whose stored images show what their captions say are served: more candidate
sources than rows are edited, each stored (8-bit) image is scored again, and the rows
whose images all land near their target, on its side of the decision boundary, with
almost no clipped pixel values, are chosen (:func:`check_rows`, :func:`choose_rows`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from explain.baseline import decision_word, symmetric_centers
from explain.batching import to_tensor, to_uint8_images
from explain.manifest import (
    CounterfactualCell,
    CounterfactualChecks,
    CounterfactualCondition,
    CounterfactualSource,
    Layout,
    Rejected,
)
from explain.wording import (
    condition_text,
    confidence_labels,
    counterfactual_row_label,
    source_label,
)


def spread_sources(logits: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` distinct images spread evenly over the logit range.

    Picks the images at the quantiles (k + 0.5) / count of the logits, ascending.
    """
    order = np.argsort(logits, kind="stable")
    count = min(count, len(order))
    ranks = np.floor((np.arange(count) + 0.5) / count * len(order)).astype(int)
    return order[np.unique(ranks)]


@dataclass
class CounterfactualSet:
    """``images`` (S, T, H, W, 3) uint8; ``logits`` (S, T) model logit of each edited
    image as decoded (before clipping to [0, 1] and rounding to 8 bits); ``targets`` (T,);
    ``sources`` (S,); ``stored_logits`` (S, T) the model's logit of the stored 8-bit
    image; ``clipped`` (S, T) share of the decoded pixel values outside [0, 1]."""

    sources: np.ndarray
    source_logits: np.ndarray
    targets: np.ndarray
    images: np.ndarray
    logits: np.ndarray
    stored_logits: np.ndarray
    clipped: np.ndarray


@torch.no_grad()
def compute_counterfactuals(
    model, images: np.ndarray, sources: np.ndarray, targets: np.ndarray, device: torch.device
) -> CounterfactualSet:
    """Edit each source image (N x H x W x 3 uint8, indexed by ``sources``) to each target.

    Editing and inverting run in float64 on a copy of the model: an edit far from the
    data can drive the inverse flow to very large values, where float32 round-off would
    make the decoded image miss its target logit. One batch of S sources is encoded once;
    each of the T targets is one decode.
    """
    exact = copy.deepcopy(model).double().eval()
    x = to_tensor(images[sources], device).double()
    encoding = exact.encode(x)
    source_logits = model.logit(x.float()).double().cpu().numpy()
    s, t = len(sources), len(targets)
    out_images = np.empty((s, t, *images.shape[1:]), dtype=np.uint8)
    out_logits, stored_logits, clipped = np.empty((s, t)), np.empty((s, t)), np.empty((s, t))
    for j, target in enumerate(targets):
        goal = torch.full((s,), float(target), device=device, dtype=torch.float64)
        edited = exact.decode(exact.edit_logit(encoding, goal))
        out_logits[:, j] = exact.logit(edited).cpu().numpy()
        clipped[:, j] = ((edited < 0) | (edited > 1)).flatten(1).double().mean(1).cpu().numpy()
        out_images[:, j] = to_uint8_images(edited)
        stored = to_tensor(out_images[:, j], device)
        stored_logits[:, j] = model.logit(stored).double().cpu().numpy()
    return CounterfactualSet(
        sources=np.asarray(sources),
        source_logits=source_logits,
        targets=np.asarray(targets, dtype=np.float64),
        images=out_images,
        logits=out_logits,
        stored_logits=stored_logits,
        clipped=clipped,
    )


@dataclass
class RowChecks:
    """Whether each stored counterfactual shows what its caption says.

    ``off_target``, ``wrong_side``, ``clipped`` (S, T) bool: the stored image's logit is
    more than the tolerance from the target; it lies on the other side of 0 than a
    non-zero target; more than the tolerated share of decoded values was clipped.
    """

    off_target: np.ndarray
    wrong_side: np.ndarray
    clipped: np.ndarray
    worst: np.ndarray = field(repr=False)  # (S,) largest error relative to its tolerance

    @property
    def failing(self) -> np.ndarray:
        """(S, T) bool: the image fails any check."""
        return self.off_target | self.wrong_side | self.clipped

    @property
    def passes(self) -> np.ndarray:
        """(S,) bool: every image of the row passes."""
        return ~self.failing.any(axis=1)

    def rejected(self) -> Rejected:
        """Counts of failing rows, in total and per check (a row can fail several)."""
        return Rejected(
            total=int((~self.passes).sum()),
            off_target=int(self.off_target.any(axis=1).sum()),
            wrong_side=int(self.wrong_side.any(axis=1).sum()),
            clipped=int(self.clipped.any(axis=1).sum()),
        )


def check_rows(
    result: CounterfactualSet, logit_tolerance: float = 0.5, clipped_tolerance: float = 0.03
) -> RowChecks:
    """Check every stored image of ``result`` against its target (see :class:`RowChecks`)."""
    targets = result.targets[None, :]
    error = np.abs(result.stored_logits - targets)
    wrong_side = (targets != 0) & (np.sign(result.stored_logits) != np.sign(targets))
    relative = np.maximum(error / logit_tolerance, result.clipped / max(clipped_tolerance, 1e-12))
    return RowChecks(
        off_target=error > logit_tolerance,
        wrong_side=wrong_side,
        clipped=result.clipped > clipped_tolerance,
        worst=relative.max(axis=1),
    )


def spread_choice(positions: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Indices of ``len(goals)`` of the ascending ``positions``, in order, that lie
    closest to the ascending ``goals`` (least total absolute distance; dynamic program
    over the monotone assignments)."""
    m, n = len(positions), len(goals)
    distance = np.abs(positions[None, :] - goals[:, None])  # (n, m)
    cost = np.full((n, m), np.inf)
    back = np.zeros((n, m), dtype=int)
    cost[0] = distance[0]
    for k in range(1, n):
        for j in range(k, m):
            previous = int(np.argmin(cost[k - 1, :j]))
            cost[k, j] = distance[k, j] + cost[k - 1, previous]
            back[k, j] = previous
    chosen = [int(np.argmin(cost[n - 1]))]
    for k in range(n - 1, 0, -1):
        chosen.append(int(back[k, chosen[-1]]))
    return np.array(chosen[::-1])


def choose_rows(logits: np.ndarray, candidates: np.ndarray, checks: RowChecks, count: int):
    """Indices into ``candidates`` (ascending logit) of the ``count`` rows to show.

    Among the candidates that pass every check, those whose ranks among all ``logits``
    lie closest to the quantiles (k + 0.5) / count. When fewer pass, all that pass and
    the failing ones with the fewest failing images (then the smallest relative error).
    Returned in ascending logit.
    """
    passing = np.flatnonzero(checks.passes)
    if len(passing) >= count:
        ranks = np.searchsorted(np.sort(logits), logits[candidates[passing]]) / len(logits)
        goals = (np.arange(count) + 0.5) / count
        return passing[spread_choice(ranks, goals)]
    failing = np.flatnonzero(~checks.passes)
    severity = np.lexsort((checks.worst[failing], checks.failing[failing].sum(axis=1)))
    chosen = np.concatenate([passing, failing[severity[: count - len(passing)]]])
    return np.sort(chosen)  # candidates ascend in logit, so their indices do too


def counterfactual_condition(
    model,
    images: np.ndarray,
    logits: np.ndarray,
    store: Callable[[np.ndarray], str],
    device: torch.device,
    n_sources: int = 6,
    n_targets: int = 5,
    max_percentile: float = 90.0,
    candidates_per_source: int = 4,
    logit_tolerance: float = 0.5,
    clipped_tolerance: float = 0.03,
) -> CounterfactualCondition:
    """The ``conditions.counterfactuals`` manifest entry.

    ``images`` N x H x W x 3 uint8 test images, ``logits`` (N,) their logits; ``store``
    encodes one H x W x 3 uint8 image into the bundle and returns its path.
    ``candidates_per_source * n_sources`` candidate sources spread over the logit range
    are edited; ``n_sources`` rows that pass :func:`check_rows` are shown (ascending
    logit). Column 0 is the unedited source, columns 1.. the targets (ascending).
    """
    targets = symmetric_centers(logits, n_targets, max_percentile)
    candidates = spread_sources(logits, candidates_per_source * n_sources)
    result = compute_counterfactuals(model, images, candidates, targets, device)
    checks = check_rows(result, logit_tolerance, clipped_tolerance)
    rows = choose_rows(logits, candidates, checks, n_sources)
    labels = confidence_labels(len(targets))
    stimuli = []
    for row, candidate in enumerate(rows):
        stimuli.append(_source_stimulus(images, logits, store, int(candidates[candidate]), row))
        for j, target in enumerate(targets):
            stimuli.append(
                CounterfactualCell(
                    image=store(result.images[candidate, j]),
                    caption=labels[j],
                    row=row,
                    column=j + 1,
                    logit=float(result.logits[candidate, j]),
                    stored_logit=float(result.stored_logits[candidate, j]),
                    clipped_fraction=float(result.clipped[candidate, j]),
                    target=float(target),
                    decision=decision_word(target),
                    test_index=int(candidates[candidate]),
                    source=False,
                    passes_checks=not bool(checks.failing[candidate, j]),
                )
            )
    return CounterfactualCondition(
        **condition_text("counterfactuals"),
        layout=Layout(
            rows=len(rows),
            columns=len(targets) + 1,
            row_labels=tuple(
                counterfactual_row_label(row, float(logits[candidates[c]]), targets)
                for row, c in enumerate(rows)
            ),
            column_labels=(source_label(), *labels),
        ),
        targets=tuple(float(t) for t in targets),
        target_columns=tuple(range(1, len(targets) + 1)),
        target_percentiles_of_abs_logit=tuple(
            max_percentile * k / ((n_targets - 1) // 2) for k in range(1, (n_targets + 1) // 2)
        ),
        sources=tuple(
            CounterfactualSource(
                test_index=int(candidates[c]),
                logit=float(logits[candidates[c]]),
                passes_checks=bool(checks.passes[c]),
            )
            for c in rows
        ),
        checks=CounterfactualChecks(
            logit_tolerance=logit_tolerance,
            clipped_tolerance=clipped_tolerance,
            rule="|stored_logit - target| <= logit_tolerance, stored_logit on the "
            "target's side of 0 (targets != 0), clipped_fraction <= clipped_tolerance",
        ),
        candidates=len(candidates),
        rejected=checks.rejected(),
        rows_failing_checks=int((~checks.passes[rows]).sum()),
        max_abs_logit_error=float(np.max(np.abs(result.logits[rows] - targets[None, :]))),
        max_abs_stored_logit_error=float(
            np.max(np.abs(result.stored_logits[rows] - targets[None, :]))
        ),
        max_clipped_fraction=float(result.clipped[rows].max()),
        stimuli=tuple(stimuli),
    )


def _source_stimulus(images, logits, store, index: int, row: int) -> CounterfactualCell:
    """Test image ``index`` unedited at the start of its row (``"source": true``); its
    ``target`` and ``stored_logit`` are the model's logit on it, which it shows as is."""
    logit = float(logits[index])
    return CounterfactualCell(
        image=store(images[index]),
        caption=source_label(),
        row=row,
        column=0,
        logit=logit,
        stored_logit=logit,
        clipped_fraction=0.0,
        target=logit,
        decision=decision_word(logit),
        test_index=index,
        source=True,
        passes_checks=True,
    )

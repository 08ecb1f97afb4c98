"""The counterfactual condition: source images moved along the classifier to target logits.

For each source image the model's latent is edited so that the classifier's logit equals
each target exactly: only the component of the classifier head along the classifier's
weight vector moves (``model.edit_logit``), the orthogonal part and the split-off
latents stay, and the edited latent is inverted to an image (``model.decode``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from explain.baseline import decision_word, symmetric_centres
from explain.batching import to_tensor, to_uint8_images


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


def counterfactual_condition(
    model,
    images: np.ndarray,
    logits: np.ndarray,
    store: Callable[[np.ndarray], str],
    device: torch.device,
    n_sources: int = 6,
    n_targets: int = 5,
    max_percentile: float = 90.0,
) -> dict:
    """The ``conditions.counterfactuals`` manifest entry.

    ``images`` N x H x W x 3 uint8 test images, ``logits`` (N,) their logits; ``store``
    encodes one H x W x 3 uint8 image into the bundle and returns its path.
    Rows are source images (ascending logit), columns are targets (ascending).
    """
    targets = symmetric_centres(logits, n_targets, max_percentile)
    sources = spread_sources(logits, n_sources)
    result = compute_counterfactuals(model, images, sources, targets, device)
    stimuli = []
    for row in range(len(sources)):
        for column, target in enumerate(targets):
            stimuli.append(
                {
                    "image": store(result.images[row, column]),
                    "caption": f"edited to logit {target:+.2f}: {decision_word(target)}",
                    "row": row,
                    "column": column,
                    "logit": float(result.logits[row, column]),
                    "stored_logit": float(result.stored_logits[row, column]),
                    "clipped_fraction": float(result.clipped[row, column]),
                    "target": float(target),
                    "decision": decision_word(target),
                    "test_index": int(sources[row]),
                }
            )
    max_error = float(np.max(np.abs(result.logits - targets[None, :])))
    return {
        "title": "The model's view of what would change its mind",
        "description": (
            "Each row starts from one real test image. Going from left to right, the image "
            "has been changed just enough that the model's output (its logit) takes the "
            "value written above the column: the left columns show how the image would have "
            "to look for the model to call it a peaky, the right columns a stretchy. Look "
            "for what changes along a row: that is what the model uses to decide."
        ),
        "layout": {
            "rows": len(sources),
            "columns": len(targets),
            "row_labels": [
                f"source {i + 1}: logit {result.source_logits[i]:+.2f}" for i in range(len(sources))
            ],
            "column_labels": [f"logit {t:+.2f}" for t in targets],
        },
        "targets": [float(t) for t in targets],
        "target_percentiles_of_abs_logit": [
            max_percentile * k / ((n_targets - 1) // 2) for k in range(1, (n_targets + 1) // 2)
        ],
        "sources": [
            {"test_index": int(i), "logit": float(v)}
            for i, v in zip(sources, result.source_logits, strict=True)
        ],
        "max_abs_logit_error": max_error,
        "max_abs_stored_logit_error": float(
            np.max(np.abs(result.stored_logits - targets[None, :]))
        ),
        "max_clipped_fraction": float(result.clipped.max()),
        "stimuli": stimuli,
    }

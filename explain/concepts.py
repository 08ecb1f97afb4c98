"""The concept condition (ICE-style): activations factorized into K concepts.

Per-pixel activation vectors at an intermediate layer (N x C x h x w, flattened to
(N*h*w) x C) are factorized as ``A ~ S P`` into K concept vectors ``P`` (K x C, unit
norm) and per-pixel concept scores ``S``. Non-negative activations are factorized
with NMF; otherwise with PCA ("signed": ``A ~ mean + S P``). A concept's importance
is the derivative of the logit when its score rises by one at every pixel,
``mean_n sum_pixels <dlogit/dA, P_k>``; fidelity is how well the logit computed from
the reconstructed activations reproduces the model's logit.

Concepts that show the same thing (their per-image or per-pixel scores correlate at
``merge_threshold`` or more, or half of their strongest images are the same) are merged
into one (:func:`merge_duplicates`), so no two rows of the condition show the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import NMF, PCA

from explain.batching import batches, to_tensor
from explain.images import concept_highlight
from explain.manifest import (
    ConceptCell,
    ConceptCondition,
    ConceptRow,
    Fidelity,
    Layout,
    MergedConcept,
)
from explain.wording import (
    concept_caption,
    concept_column_labels,
    concept_row_label,
    condition_text,
)

NONNEGATIVE_TOLERANCE = 1e-6


@dataclass
class Factorization:
    """``A ~ offset + scores @ concepts``; concepts (K, C) with unit-norm rows, offset (C,).

    ``raw_transform`` maps (M, C) rows to the estimator's own (M, K) coefficients;
    ``scale`` (K,) rescales them to scores of the unit-norm concepts.
    """

    kind: str  # "nmf" | "signed"
    concepts: np.ndarray
    offset: np.ndarray
    raw_transform: Callable[[np.ndarray], np.ndarray]
    scale: np.ndarray

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(M, C) activation vectors -> (M, K) concept scores."""
        return self.raw_transform(rows) * self.scale[None, :]

    def reconstruct(self, scores: np.ndarray) -> np.ndarray:
        """(M, K) scores -> (M, C) activation vectors."""
        return self.offset[None, :] + scores @ self.concepts

    def merged(self, groups: list[list[int]], weights: np.ndarray) -> Factorization:
        """One concept per group (a partition of the K concepts): the unit-norm sum of the
        group's concept vectors, each weighted by ``weights`` (K,) (the spread of its
        scores). A merged score is the group's reconstruction ``sum_i s_i P_i`` projected
        onto the merged vector, so identical concepts add their scores and non-negative
        factorizations stay non-negative."""
        vectors = np.stack([weights[g] @ self.concepts[g] for g in groups])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        projection = np.zeros((len(self.concepts), len(groups)))
        for column, group in enumerate(groups):
            projection[group, column] = self.concepts[group] @ vectors[column]
        return Factorization(
            kind=self.kind,
            concepts=vectors,
            offset=self.offset,
            raw_transform=lambda m: self.scores(m) @ projection,
            scale=np.ones(len(groups)),
        )


def factorize(rows: np.ndarray, k: int, seed: int = 0, max_fit_rows: int = 20000) -> Factorization:
    """Factorize (M, C) activation vectors into ``k`` concepts (NMF if all are >= 0).

    The factorization is fitted on at most ``max_fit_rows`` rows drawn at random (the
    scores of every row come from ``transform``), which keeps it fast on large test sets.
    """
    rng = np.random.default_rng(seed)
    fit_rows = rows
    if len(rows) > max_fit_rows:
        fit_rows = rows[rng.choice(len(rows), size=max_fit_rows, replace=False)]
    k = min(k, rows.shape[1])
    if rows.min() >= -NONNEGATIVE_TOLERANCE:
        nmf = NMF(n_components=k, init="nndsvda", max_iter=400, random_state=seed)
        nmf.fit(np.clip(fit_rows, 0.0, None))
        # NMF's transform needs non-negative input: clip round-off below zero.
        kind, components, offset = "nmf", nmf.components_, np.zeros(rows.shape[1])
        raw_transform = lambda m: nmf.transform(np.clip(m, 0.0, None))  # noqa: E731
    else:
        pca = PCA(n_components=k, random_state=seed)
        pca.fit(fit_rows)
        kind, components, offset = "signed", pca.components_, pca.mean_.astype(np.float64)
        raw_transform = pca.transform
    norms = np.linalg.norm(components, axis=1)
    norms = np.where(norms > 0, norms, 1.0)
    if kind == "signed":
        # PCA's signs are arbitrary: orient each component so that its long tail (the
        # pixels where it is strongly present) has positive scores (positive skewness).
        signs = np.sign(np.mean((raw_transform(fit_rows) * norms) ** 3, axis=0))
        signs[signs == 0] = 1.0
        norms = norms * signs
    return Factorization(
        kind=kind,
        concepts=(components / norms[:, None]).astype(np.float64),
        offset=offset,
        raw_transform=raw_transform,
        scale=norms.astype(np.float64),
    )


def _correlation(values: np.ndarray) -> np.ndarray:
    """(K, K) Pearson correlation of the columns of (M, K) ``values``; 0 for constant ones."""
    centered = values - values.mean(axis=0)
    norms = np.linalg.norm(centered, axis=0)
    norms = np.where(norms > 0, norms, np.inf)
    return (centered.T @ centered) / np.outer(norms, norms)


def _shared_strongest(per_image: np.ndarray, n: int) -> np.ndarray:
    """(K, K) share of the ``n`` images with the highest score that two concepts have in
    common; ``per_image`` (N, K). These are the images a participant sees for each."""
    top = np.argsort(-per_image, axis=0, kind="stable")[:n]  # (n, K)
    member = np.zeros(per_image.shape[::-1], dtype=bool)  # (K, N)
    member[np.arange(per_image.shape[1])[None, :], top] = True
    return (member.astype(float) @ member.T.astype(float)) / n


def merge_duplicates(
    fact: Factorization,
    rows: np.ndarray,
    n_images: int,
    threshold: float = 0.9,
    n_strongest: int = 4,
    shared_threshold: float = 0.5,
) -> tuple[Factorization, list[list[int]], list[dict]]:
    """Merge concepts that show the same thing, until none do.

    ``rows`` (N*h*w, C) are the activation vectors of ``n_images`` images, image-major.
    Two concepts are duplicates when their per-image mean scores or their per-pixel
    scores correlate at ``threshold`` or more, or when at least ``shared_threshold`` of
    their ``n_strongest`` images (the examples the condition shows) are the same;
    duplicates (and chains of them) become one concept (:meth:`Factorization.merged`).
    Returns the factorization, the original concepts each concept stands for, and one
    record per merged concept: ``{"concepts": [original indices], "correlation",
    "shared_strongest"}`` (the highest values seen between its parts).
    """
    members = [[k] for k in range(len(fact.concepts))]
    records: dict[tuple[int, ...], dict] = {}
    while len(members) > 1:
        scores = fact.scores(rows)
        per_image = scores.reshape(n_images, -1, scores.shape[1]).mean(axis=1)
        correlation = np.maximum(_correlation(per_image), _correlation(scores))
        shared = _shared_strongest(per_image, min(n_strongest, n_images))
        np.fill_diagonal(correlation, -np.inf)
        np.fill_diagonal(shared, -np.inf)
        pairs = np.argwhere(np.triu((correlation >= threshold) | (shared >= shared_threshold)))
        if not len(pairs):
            break
        groups = _connected_groups(len(members), pairs)
        for group in groups:
            if len(group) > 1:
                parts = [records.pop(tuple(members[g]), {}) for g in group]
                block = np.ix_(group, group)
                records[tuple(sorted(i for g in group for i in members[g]))] = {
                    key: float(max(values[block].max(), *(p.get(key, -1.0) for p in parts)))
                    for key, values in (("correlation", correlation), ("shared_strongest", shared))
                }
        members = [sorted(i for g in group for i in members[g]) for group in groups]
        fact = fact.merged(groups, scores.std(axis=0))
    merged = [{"concepts": list(key), **values} for key, values in records.items()]
    return fact, members, merged


def _connected_groups(count: int, pairs: np.ndarray) -> list[list[int]]:
    """Partition ``range(count)`` into the connected components of the ``pairs`` graph,
    ordered by their smallest member."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in pairs:
        parent[max(root(a), root(b))] = min(root(a), root(b))
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def r_squared(truth: np.ndarray, estimate: np.ndarray) -> float:
    """1 - SSE/SST of ``estimate`` against ``truth`` (1 is perfect)."""
    truth = np.asarray(truth, dtype=np.float64)
    residual = np.sum((truth - estimate) ** 2)
    total = np.sum((truth - truth.mean()) ** 2)
    return float(1.0 - residual / total) if total > 0 else float(residual == 0)


def collect_activations(
    model, images: np.ndarray, layer: int, device: torch.device, batch_size: int = 128
) -> np.ndarray:
    """Activations (N, C, h, w) float32 after stage ``layer`` for uint8 N x H x W x 3 images."""
    parts = []
    with torch.no_grad():
        for part in batches(len(images), batch_size):
            parts.append(model.activations(to_tensor(images[part], device), layer).float().cpu())
    return torch.cat(parts).numpy()


def logits_and_gradients(
    model, activations: np.ndarray, layer: int, device: torch.device, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Logit (N,) from ``activations`` (N, C, h, w) and its gradient (N, C, h, w)."""
    logits = np.empty(len(activations))
    grads = np.empty_like(activations, dtype=np.float32)
    for part in batches(len(activations), batch_size):
        h = torch.from_numpy(np.ascontiguousarray(activations[part])).to(device)
        h.requires_grad_(True)
        out = model.logit_from_activations(h, layer)
        (grad,) = torch.autograd.grad(out.sum(), h)
        logits[part] = out.detach().double().cpu().numpy()
        grads[part] = grad.float().cpu().numpy()
    return logits, grads


@torch.no_grad()
def logits_from_activations(
    model, activations: np.ndarray, layer: int, device: torch.device, batch_size: int = 128
) -> np.ndarray:
    out = np.empty(len(activations))
    for part in batches(len(activations), batch_size):
        h = torch.from_numpy(np.ascontiguousarray(activations[part], dtype=np.float32))
        out[part] = model.logit_from_activations(h.to(device), layer).double().cpu().numpy()
    return out


@dataclass
class ConceptAnalysis:
    """Everything the concept condition shows.

    ``score_maps`` (N, K, h, w) per-pixel concept scores; ``importance`` (K,);
    ``order`` concepts by descending |importance|; ``fidelity`` a dict of numbers;
    ``members`` the factorization's original concepts each concept stands for and
    ``merged`` the records of :func:`merge_duplicates`.
    """

    kind: str
    layer: int
    score_maps: np.ndarray
    importance: np.ndarray
    order: np.ndarray
    fidelity: dict
    image_scores: np.ndarray  # (N, K) mean score over pixels
    members: list[list[int]]
    merged: list[dict]
    merge_threshold: float
    shared_threshold: float


def analyze_concepts(
    model,
    images: np.ndarray,
    device: torch.device,
    k: int = 8,
    layer: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
    merge_threshold: float = 0.9,
    n_strongest: int = 4,
    shared_threshold: float = 0.5,
) -> ConceptAnalysis:
    """Factorize the activations of ``images`` (N x H x W x 3 uint8) into ``k`` concepts,
    then merge duplicates (:func:`merge_duplicates` with ``merge_threshold``,
    ``n_strongest`` and ``shared_threshold``)."""
    layer = model.default_concept_layer() if layer is None else int(layer)
    acts = collect_activations(model, images, layer, device, batch_size)
    n, c, h, w = acts.shape
    rows = acts.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float64)
    fact, members, merged = merge_duplicates(
        factorize(rows, k, seed), rows, n, merge_threshold, n_strongest, shared_threshold
    )
    scores = fact.scores(rows)  # (N*h*w, K)
    k = scores.shape[1]
    recon = fact.reconstruct(scores).reshape(n, h, w, c).transpose(0, 3, 1, 2)

    logits, grads = logits_and_gradients(model, acts, layer, device, batch_size)
    # d logit / d (score_k at every pixel) = sum over pixels of <grad, P_k>.
    per_image = np.einsum("nchw,kc->nk", grads.astype(np.float64), fact.concepts)
    importance = per_image.mean(axis=0)
    recon_logits = logits_from_activations(
        model, recon.astype(np.float32), layer, device, batch_size
    )

    fidelity = {
        "logit_r2": r_squared(logits, recon_logits),
        "decision_agreement": float(np.mean((logits > 0) == (recon_logits > 0))),
        "mean_abs_logit_error": float(np.mean(np.abs(logits - recon_logits))),
        "activation_r2": float(
            1.0
            - np.sum((rows - fact.reconstruct(scores)) ** 2) / np.sum((rows - rows.mean(0)) ** 2)
        ),
        "images": int(n),
    }
    score_maps = scores.reshape(n, h, w, k).transpose(0, 3, 1, 2)
    return ConceptAnalysis(
        kind=fact.kind,
        layer=layer,
        score_maps=score_maps,
        importance=importance,
        order=np.argsort(-np.abs(importance), kind="stable"),
        fidelity=fidelity,
        image_scores=score_maps.mean(axis=(2, 3)),
        members=members,
        merged=merged,
        merge_threshold=merge_threshold,
        shared_threshold=shared_threshold,
    )


def concept_condition(
    analysis: ConceptAnalysis,
    images: np.ndarray,
    store: Callable[[np.ndarray], str],
    n_highest: int = 4,
    n_lowest: int = 2,
    overlay_size: int = 128,
) -> ConceptCondition:
    """The ``conditions.concepts`` manifest entry: one row per concept (by |importance|),
    columns = the ``n_highest`` images with the highest concept score, then the
    ``n_lowest`` with the lowest, each dimmed where the concept is absent
    (:func:`explain.images.concept_highlight`)."""
    column_labels = concept_column_labels(n_highest, n_lowest)
    strongest = float(np.max(np.abs(analysis.importance))) if len(analysis.order) else 0.0
    stimuli, row_labels, concepts = [], [], []
    for row, concept in enumerate(analysis.order):
        ranked = np.argsort(-analysis.image_scores[:, concept], kind="stable")
        chosen = list(ranked[:n_highest]) + list(ranked[::-1][:n_lowest])
        maps = analysis.score_maps[:, concept]
        positive = maps[maps > 0]
        vmax = float(np.percentile(positive, 99)) if positive.size else 1.0
        importance = float(analysis.importance[concept])
        direction = "stretchy" if importance > 0 else "peaky"
        row_labels.append(concept_row_label(row, len(analysis.order), importance, strongest))
        concepts.append(
            ConceptRow(
                row=row,
                index=int(concept),
                merged_from=tuple(analysis.members[concept]),
                importance=importance,
                toward=direction,
                heatmap_vmax=vmax,
            )
        )
        for column, index in enumerate(chosen):
            highlighted = concept_highlight(images[index], maps[index], overlay_size, vmax)
            stimuli.append(
                ConceptCell(
                    image=store(highlighted),
                    caption=concept_caption(row, column_labels[column]),
                    row=row,
                    column=column,
                    concept_score=float(analysis.image_scores[index, concept]),
                    test_index=int(index),
                )
            )
    return ConceptCondition(
        **condition_text("concepts"),
        layout=Layout(
            rows=len(analysis.order),
            columns=n_highest + n_lowest,
            row_labels=tuple(row_labels),
            column_labels=tuple(column_labels),
        ),
        strongest_columns=n_highest,
        factorisation=analysis.kind,
        layer=analysis.layer,
        fidelity=Fidelity(**analysis.fidelity),
        importance=tuple(float(analysis.importance[c]) for c in analysis.order),
        merged=tuple(
            MergedConcept(
                concepts=tuple(m["concepts"]),
                correlation=m["correlation"],
                shared_strongest=m["shared_strongest"],
            )
            for m in analysis.merged
        ),
        merge_threshold=analysis.merge_threshold,
        shared_strongest_threshold=analysis.shared_threshold,
        concepts=tuple(concepts),
        stimuli=tuple(stimuli),
    )

"""The concept condition (ICE-style): activations factorised into K concepts.

Per-pixel activation vectors at an intermediate layer (N x C x h x w, flattened to
(N*h*w) x C) are factorised as ``A ~ S P`` into K concept vectors ``P`` (K x C, unit
norm) and per-pixel concept scores ``S``. Non-negative activations are factorised
with NMF; otherwise with PCA ("signed": ``A ~ mean + S P``). A concept's importance
is the derivative of the logit when its score rises by one at every pixel,
``mean_n sum_pixels <dlogit/dA, P_k>``; fidelity is how well the logit computed from
the reconstructed activations reproduces the model's logit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import NMF, PCA

from explain.batching import batches, to_tensor
from explain.images import heatmap_overlay

NONNEGATIVE_TOLERANCE = 1e-6


@dataclass
class Factorisation:
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


def factorise(rows: np.ndarray, k: int, seed: int = 0, max_fit_rows: int = 20000) -> Factorisation:
    """Factorise (M, C) activation vectors into ``k`` concepts (NMF if all are >= 0).

    The factorisation is fitted on at most ``max_fit_rows`` rows drawn at random (the
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
    return Factorisation(
        kind=kind,
        concepts=(components / norms[:, None]).astype(np.float64),
        offset=offset,
        raw_transform=raw_transform,
        scale=norms.astype(np.float64),
    )


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
    ``order`` concepts by descending |importance|; ``fidelity`` a dict of numbers.
    """

    kind: str
    layer: int
    score_maps: np.ndarray
    importance: np.ndarray
    order: np.ndarray
    fidelity: dict
    image_scores: np.ndarray  # (N, K) mean score over pixels


def analyse_concepts(
    model,
    images: np.ndarray,
    device: torch.device,
    k: int = 8,
    layer: int | None = None,
    seed: int = 0,
    batch_size: int = 128,
) -> ConceptAnalysis:
    """Factorise the activations of ``images`` (N x H x W x 3 uint8) into ``k`` concepts."""
    layer = model.default_concept_layer() if layer is None else int(layer)
    acts = collect_activations(model, images, layer, device, batch_size)
    n, c, h, w = acts.shape
    rows = acts.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float64)
    fact = factorise(rows, k, seed)
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
    )


def concept_condition(
    analysis: ConceptAnalysis,
    images: np.ndarray,
    store: Callable[[np.ndarray], str],
    n_highest: int = 4,
    n_lowest: int = 2,
    overlay_size: int = 128,
) -> dict:
    """The ``conditions.concepts`` manifest entry: one row per concept (by |importance|),
    columns = the ``n_highest`` images with the highest concept score, then the
    ``n_lowest`` with the lowest, each with the concept's heatmap overlaid."""
    columns = n_highest + n_lowest
    stimuli, row_labels, concepts = [], [], []
    for row, concept in enumerate(analysis.order):
        ranked = np.argsort(-analysis.image_scores[:, concept], kind="stable")
        chosen = list(ranked[:n_highest]) + list(ranked[::-1][:n_lowest])
        maps = analysis.score_maps[:, concept]
        positive = maps[maps > 0]
        vmax = float(np.percentile(positive, 99)) if positive.size else 1.0
        importance = float(analysis.importance[concept])
        direction = "stretchy" if importance > 0 else "peaky"
        row_labels.append(f"concept {row + 1}: importance {importance:+.3f} (towards {direction})")
        concepts.append(
            {
                "row": row,
                "index": int(concept),
                "importance": importance,
                "towards": direction,
                "heatmap_vmax": vmax,
            }
        )
        for column, index in enumerate(chosen):
            kind = "highest" if column < n_highest else "lowest"
            rank = column + 1 if column < n_highest else column - n_highest + 1
            overlay = heatmap_overlay(images[index], maps[index], overlay_size, vmax)
            stimuli.append(
                {
                    "image": store(overlay),
                    "caption": f"concept {row + 1}, {kind} score {rank}: "
                    f"{analysis.image_scores[index, concept]:.3f}",
                    "row": row,
                    "column": column,
                    "concept_score": float(analysis.image_scores[index, concept]),
                    "test_index": int(index),
                }
            )
    return {
        "title": "Concepts the model has learned",
        "description": (
            "The model's internal features were grouped into concepts. Each row shows one "
            "concept: on the left the test images in which the concept is strongest, on the "
            "right those in which it is weakest; the bright overlay marks where in the image "
            "the concept is found. The importance says how much the concept pushes the "
            "model's output towards stretchy (positive) or peaky (negative); rows are sorted "
            "from the most to the least important concept."
        ),
        "layout": {
            "rows": len(analysis.order),
            "columns": columns,
            "row_labels": row_labels,
            "column_labels": [f"highest {i + 1}" for i in range(n_highest)]
            + [f"lowest {i + 1}" for i in range(n_lowest)],
        },
        "factorisation": analysis.kind,
        "layer": analysis.layer,
        "fidelity": analysis.fidelity,
        "importance": [float(analysis.importance[c]) for c in analysis.order],
        "concepts": concepts,
        "stimuli": stimuli,
    }

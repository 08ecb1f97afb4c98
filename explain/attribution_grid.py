"""An attribution-map condition: real test scenes in columns by the model's logit (as the
baseline), each with its map under it.

The scenes are chosen exactly as the baseline's (:class:`explain.baseline.Binning`,
:func:`explain.baseline.select_grid`, same seed), so an attribution condition and the
baseline show the same pictures and differ only by the maps. The maps come from
``explain.attribution`` (Captum, Zennit, the information bottleneck); this module turns
them into pictures and the manifest entry.

A map is its own picture under the scene, never painted over it, so the animal's colors
(which participants rate) stay as they are. One color scale per condition: the 99th
percentile of |relevance| over all its maps maps to full color, so maps of two scenes
compare. Signed maps (evidence for and against the decision) are red where a part
counted for the model's decision and blue where it counted against; unsigned maps
(Grad-CAM, the bottleneck's bits) go from black through red to yellow (matplotlib's
"inferno"). Dark means "did not matter" in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps

from explain.baseline import Binning, decision_word, select_grid
from explain.manifest import AttributionCell, AttributionCondition, SceneMap
from explain.wording import attribution_caption, condition_text
from xaistudy.errors import UserError

SCALE_PERCENTILE = 99.0  # of |relevance| over a condition's maps: full color


@dataclass(frozen=True)
class MapMethod:
    """What the condition records about the method that made its maps."""

    name: str
    library: str
    library_version: str
    settings: dict[str, Any]
    signed: bool


def map_scale(maps: np.ndarray) -> float:
    """The |relevance| drawn at full color: a high percentile, so one extreme pixel
    does not leave every other map dark."""
    magnitude = np.abs(np.asarray(maps, dtype=np.float64))
    positive = magnitude[magnitude > 0]
    return float(np.percentile(positive, SCALE_PERCENTILE)) if positive.size else 1.0


def render_map(relevance: np.ndarray, scale: float, signed: bool) -> np.ndarray:
    """(H, W) relevance -> (H, W, 3) uint8 picture (module docstring)."""
    value = np.asarray(relevance, dtype=np.float64) / scale
    if signed:
        value = np.clip(value, -1.0, 1.0)
        rgb = np.stack([np.maximum(value, 0), np.zeros_like(value), np.maximum(-value, 0)], -1)
    else:
        rgb = colormaps["inferno"](np.clip(value, 0.0, 1.0))[..., :3]
    return np.round(rgb * 255).astype(np.uint8)


def map_rendering(signed: bool) -> str:
    """The manifest's words for how maps became pictures (for the researcher)."""
    scale = f"|relevance| at the {SCALE_PERCENTILE:g}th percentile of the condition's maps"
    if signed:
        return f"red = for the decision, blue = against, black = 0; full color at {scale}"
    return f"matplotlib 'inferno' from 0 (black) to {scale} (yellow)"


def _checked_maps(compute_maps, indices: np.ndarray, name: str) -> np.ndarray:
    """``compute_maps(indices)``, refused unless one finite (H, W) map per scene."""
    maps = np.asarray(compute_maps(indices), dtype=np.float32)
    if maps.shape[0] != indices.size or maps.ndim != 3:
        raise UserError(
            f"{name} gave maps of shape {maps.shape} for {indices.size} scenes; "
            "expected (scenes, height, width)"
        )
    if not np.all(np.isfinite(maps)):
        raise UserError(f"{name} gave maps with NaN or infinite values")
    return maps


def attribution_condition(
    logits: np.ndarray,
    image_path: Callable[[int], str],
    compute_maps: Callable[[np.ndarray], np.ndarray],
    store: Callable[[np.ndarray], str],
    method: MapMethod,
    rows: int = 6,
    columns: int = 5,
    max_percentile: float = 90.0,
    seed: int = 0,
    scenes: np.ndarray | None = None,
) -> AttributionCondition:
    """The ``conditions.<method>`` manifest entry.

    ``logits`` (N,) of the test images; ``image_path(i)`` stores test image i and returns
    its bundle path; ``compute_maps(indices)`` gives the method's (len, H, W) maps of
    those test images (evidence for the model's decision is positive), called for the
    grid's scenes first, then for ``scenes``; ``store`` puts a rendered map into the
    bundle. ``scenes``: test indices beyond the grid (the simulation scenes, learning and
    test) whose maps are kept as ``scene_maps``, on the grid's color scale.
    """
    binning = Binning.from_logits(logits, columns, max_percentile)
    grid = select_grid(logits, binning, rows, np.random.default_rng(seed))
    maps = _checked_maps(compute_maps, grid.reshape(-1), method.name)
    extra = np.asarray([] if scenes is None else scenes, dtype=np.int64)
    extra_maps = _checked_maps(compute_maps, extra, method.name) if extra.size else maps[:0]
    scale = map_scale(maps)
    labels = binning.column_labels()
    stimuli = []
    for position, index in enumerate(grid.reshape(-1)):
        row, column = divmod(position, columns)
        logit = float(logits[index])
        for shows, image in (
            ("scene", image_path(int(index))),
            ("map", store(render_map(maps[position], scale, method.signed))),
        ):
            stimuli.append(
                AttributionCell(
                    image=image,
                    caption=attribution_caption(labels[column], shows),
                    row=row,
                    column=column,
                    shows=shows,
                    logit=logit,
                    decision=decision_word(logit),
                    test_index=int(index),
                )
            )
    return AttributionCondition(
        **condition_text(method.name, signed=method.signed),
        layout=binning.layout(rows),
        stimuli=tuple(stimuli),
        method=method.name,
        library=method.library,
        library_version=method.library_version,
        settings=dict(method.settings),
        signed=method.signed,
        map_rendering=map_rendering(method.signed),
        scene_maps=None
        if scenes is None
        else tuple(
            SceneMap(test_index=int(index), image=store(render_map(m, scale, method.signed)))
            for index, m in zip(extra, extra_maps, strict=True)
        ),
    )

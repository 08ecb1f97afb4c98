"""Technical scores of an attribution method, computed on the scenes its condition shows,
for the report to set beside what participants got out of the maps.

Maps are (N, H, W), positive = evidence for the model's decision; ``masks`` are the
dataset's (N, H, W) block ids (1..8, 0 background; ``explain.validation.REGIONS``).
``explain`` functions take (N, H, W, 3) uint8 scenes and return their maps.

- **Localization** against the parts known to matter, from the masks (Quantus): the
  pointing game (is the strongest pixel on the region?), relevance mass accuracy (the
  share of positive relevance on it) and relevance rank accuracy (the share of the
  region's size in top-ranked pixels that lie on it). Two regions: the arm blocks (the
  attribute the iclr2022 biases make decisive) and the whole animal.
- **Faithfulness**: deletion and insertion curves (salience-guided degradation): pixels
  are replaced by a blurred copy of the scene (deletion) or revealed on it (insertion) in
  order of relevance, in ``steps`` equal parts, and the decided class's logit is read
  after each part. Scores are the areas under the curves of the logit relative to the
  scene's own (deletion: lower is better; insertion: higher), and the same for a random
  order, so the method's gain over chance shows.
- **Sanity** (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"): the model's
  parameters are randomized cascading from the output layer to the input, and after each
  layer the maps are compared with the trained model's (Spearman rank correlation of
  |map|): a method whose maps survive randomization explains the image, not the model.
- **Salience at scale** (Crum et al., 2023): the mean entropy of the maps (as a
  distribution of |relevance| over pixels); how the maps change out of set (mean entropy
  and arm mass on scenes of another preset, minus in set); whether they follow a mirror
  image and a shift (rank correlation with the mirrored / shifted maps of the original);
  their stability across two independently trained models (rank correlation); and the
  degradation response above.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from explain.manifest import (
    Faithfulness,
    Geometry,
    Localization,
    OutOfSet,
    Sanity,
    TechnicalScores,
)
from explain.validation import REGIONS

Explain = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 -> (N, H, W) maps
LogitFn = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) float in [0, 1] -> (N,) logits


# --------------------------------------------------------------------- localization


def region_masks(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean (N, H, W) masks of the regions scored: the arm blocks and the animal."""
    masks = np.asarray(masks)
    return {
        "arms": np.isin(masks, REGIONS["arms"]),
        "animal": masks > 0,
    }


def localization(maps: np.ndarray, masks: np.ndarray) -> dict[str, dict[str, float]]:
    """Per region: Quantus' pointing game, relevance mass and rank accuracy, averaged over
    the scenes whose region is visible."""
    import quantus

    maps = np.asarray(maps, dtype=np.float64)
    out = {}
    for name, region in region_masks(masks).items():
        visible = region.reshape(len(region), -1).any(1)
        if not visible.any():
            continue
        a = np.maximum(maps[visible], 0)[:, None]  # relevance for the decision
        s = region[visible][:, None].astype(np.float64)
        x = np.zeros((int(visible.sum()), 1, *maps.shape[1:]), dtype=np.float32)
        y = np.zeros(int(visible.sum()), dtype=int)
        scores = {}
        for key, metric in (
            ("pointing_game", quantus.PointingGame),
            ("relevance_mass_accuracy", quantus.RelevanceMassAccuracy),
            ("relevance_rank_accuracy", quantus.RelevanceRankAccuracy),
        ):
            values = metric(disable_warnings=True)(
                model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True
            )
            scores[key] = float(np.mean(np.asarray(values, dtype=np.float64)))
        scores["region_share"] = float(s.mean())  # what a map spread evenly would score
        out[name] = scores
    return out


# ------------------------------------------------------------------- faithfulness


@dataclass(frozen=True)
class Curves:
    """Areas under the deletion and insertion curves (decided-class logit relative to the
    scene's own), for the method's order and a random one."""

    deletion: float
    insertion: float
    deletion_random: float
    insertion_random: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([gaussian_filter(im, sigma=(sigma, sigma, 0)) for im in images])


def _curve(
    logit_fn: LogitFn, start: np.ndarray, end: np.ndarray, order: np.ndarray, steps: int
) -> np.ndarray:
    """Logits (steps + 1, N) while pixels move from ``start`` to ``end`` in ``order``
    ((N, H*W) pixel indices, first moved first)."""
    n, h, w, _ = start.shape
    current = start.reshape(n, h * w, 3).copy()
    target = end.reshape(n, h * w, 3)
    rows = np.arange(n)[:, None]
    bounds = np.linspace(0, h * w, steps + 1).round().astype(int)
    logits = [logit_fn(current.reshape(start.shape))]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        part = order[:, lo:hi]
        current[rows, part] = target[rows, part]
        logits.append(logit_fn(current.reshape(start.shape)))
    return np.stack(logits)


def deletion_insertion(
    logit_fn: LogitFn,
    images: np.ndarray,
    maps: np.ndarray,
    steps: int = 16,
    blur_sigma: float = 4.0,
    seed: int = 0,
) -> Curves:
    """Deletion and insertion areas (module docstring) on (N, H, W, 3) uint8 ``images``."""
    scenes = np.asarray(images, dtype=np.float32) / 255.0
    blurred = _blurred(scenes, blur_sigma)
    own = logit_fn(scenes)
    sign = np.where(own >= 0, 1.0, -1.0)  # the decided class: its logit is sign * logit
    scale = np.maximum(np.abs(own), 1e-6)
    n = len(scenes)
    method = np.argsort(-np.asarray(maps).reshape(n, -1), axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    chance = np.stack([rng.permutation(method.shape[1]) for _ in range(n)])

    def area(start, end, order) -> float:
        relative = _curve(logit_fn, start, end, order, steps) * sign / scale
        return float(np.trapezoid(relative, dx=1.0 / steps, axis=0).mean())

    return Curves(
        deletion=area(scenes, blurred, method),
        insertion=area(blurred, scenes, method),
        deletion_random=area(scenes, blurred, chance),
        insertion_random=area(blurred, scenes, chance),
    )


# ------------------------------------------------------------------------ sanity


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Spearman rank correlation of |a| and |b|, map by map (0 for a constant map)."""
    values = []
    for x, y in zip(np.abs(a).reshape(len(a), -1), np.abs(b).reshape(len(b), -1), strict=True):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            values.append(0.0)
            continue
        values.append(float(spearmanr(x, y).statistic))
    return float(np.mean(values))


def parameter_layers(model: torch.nn.Module) -> list[str]:
    """Names of the modules that own parameters, from the output back to the input (the
    order of the cascade); a module's own parameters only, not its children's."""
    names = [
        name
        for name, module in model.named_modules()
        if name and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def randomization_sanity(
    explain_for: Callable[[torch.nn.Module], Explain],
    model: torch.nn.Module,
    images: np.ndarray,
    checkpoints: int = 4,
    seed: int = 0,
) -> dict[str, list]:
    """Cascading randomization: ``explain_for(model)`` gives the method's explain function
    for a model; the maps of copies of ``model`` with more and more layers (output first)
    re-drawn from a normal distribution of each parameter's own scale are compared with
    the trained model's. Returns the layers randomized at each of ``checkpoints`` points
    of the cascade and the rank similarity there (1 = the maps did not change)."""
    reference = explain_for(model)(images)
    layers = parameter_layers(model)
    steps = range(1, checkpoints + 1)
    marks = sorted({max(1, round(len(layers) * k / checkpoints)) for k in steps})
    generator = torch.Generator().manual_seed(seed)
    randomized = copy.deepcopy(model)
    modules = dict(randomized.named_modules())
    done, similarity, reached = 0, [], []
    for mark in marks:
        for name in layers[done:mark]:
            _redraw(modules[name], generator)
        done = mark
        reached.append(layers[mark - 1])
        similarity.append(rank_similarity(reference, explain_for(randomized)(images)))
    return {"layers_randomized": marks, "down_to": reached, "rank_similarity": similarity}


@torch.no_grad()
def _redraw(module: torch.nn.Module, generator: torch.Generator) -> None:
    """A module's own parameters drawn anew from a normal distribution of their own
    spread (a bias or scale of one value: of spread 1)."""
    for parameter in module.parameters(recurse=False):
        spread = float(parameter.float().std()) if parameter.numel() > 1 else 1.0
        noise = torch.randn(parameter.shape, generator=generator) * (spread or 1.0)
        parameter.copy_(noise.to(parameter.device, parameter.dtype))


# ------------------------------------------------------------- salience at scale


def mean_entropy(maps: np.ndarray) -> float:
    """Mean Shannon entropy (bits) of each map's |relevance| as a distribution over
    pixels: 0 for one pixel, log2(H*W) for a flat map."""
    flat = np.abs(np.asarray(maps, dtype=np.float64)).reshape(len(maps), -1)
    totals = flat.sum(1, keepdims=True)
    p = np.divide(flat, totals, out=np.full_like(flat, 1.0 / flat.shape[1]), where=totals > 0)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return float(-(p * logs).sum(1).mean())


def arm_mass(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean share of positive relevance on the arm blocks."""
    positive = np.maximum(np.asarray(maps, dtype=np.float64), 0)
    arms = region_masks(masks)["arms"]
    totals = positive.reshape(len(positive), -1).sum(1)
    on_arms = (positive * arms).reshape(len(positive), -1).sum(1)
    return float(np.mean(np.divide(on_arms, totals, out=np.zeros_like(totals), where=totals > 0)))


def geometric_consistency(explain: Explain, images: np.ndarray, shift: int = 4) -> dict[str, float]:
    """Whether the maps follow the scene: rank similarity between the maps of a mirrored
    (shifted) scene and the mirrored (shifted) maps of the original. Shifting rolls the
    scene, so nothing leaves the picture; the rolled-in border is compared too."""
    images = np.asarray(images)
    maps = explain(images)
    mirrored = explain(images[:, :, ::-1].copy())
    shifted = explain(np.roll(images, shift, axis=2))
    return {
        "mirror": rank_similarity(mirrored, maps[:, :, ::-1]),
        "shift": rank_similarity(shifted, np.roll(maps, shift, axis=2)),
    }


def out_of_set_change(
    maps_in: np.ndarray, masks_in: np.ndarray, maps_out: np.ndarray, masks_out: np.ndarray
) -> dict[str, float]:
    """How the maps change on scenes of another preset: out-of-set minus in-set mean
    entropy and arm mass."""
    return {
        "entropy": mean_entropy(maps_out) - mean_entropy(maps_in),
        "arm_mass": arm_mass(maps_out, masks_out) - arm_mass(maps_in, masks_in),
    }


def stability_across_models(maps_a: np.ndarray, maps_b: np.ndarray) -> float:
    """Rank similarity of two independently trained models' maps of the same scenes."""
    return rank_similarity(maps_a, maps_b)


# ------------------------------------------------------------------------- all of it


@dataclass(frozen=True)
class TechnicalSettings:
    """The knobs of the technical scores (recorded in ``explain_settings``)."""

    steps: int = 16  # deletion / insertion: pixels moved in this many equal parts
    blur_sigma: float = 4.0  # the blurred scene pixels are deleted to (pixels)
    sanity_checkpoints: int = 4  # points of the randomization cascade measured
    sanity_scenes: int = 8  # scenes the randomized models are explained on
    shift: int = 4  # pixels of the shift consistency check
    seed: int = 0


@dataclass(frozen=True)
class OtherScenes:
    """Scenes of another preset, for the out-of-set change."""

    preset: str
    images: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) block ids


def technical_scores(
    explain: Explain,
    logit_fn: LogitFn,
    images: np.ndarray,
    masks: np.ndarray,
    maps: np.ndarray | None = None,
    explain_for: Callable[[torch.nn.Module], Explain] | None = None,
    model: torch.nn.Module | None = None,
    other_model_maps: np.ndarray | None = None,
    out_of_set: OtherScenes | None = None,
    settings: TechnicalSettings | None = None,
) -> TechnicalScores:
    """Every score of the module docstring for one method on ``images`` (its condition's
    scenes) with their ``masks``. ``maps``: the method's maps of them when already
    computed. The sanity check needs ``explain_for`` and ``model``; the stability, the maps
    of a second, independently trained model; the out-of-set change, other scenes."""
    settings = settings or TechnicalSettings()
    maps = explain(images) if maps is None else np.asarray(maps)
    sanity = None
    if explain_for is not None and model is not None:
        few = images[: settings.sanity_scenes]
        sanity = Sanity(
            **{
                key: tuple(value)
                for key, value in randomization_sanity(
                    explain_for, model, few, settings.sanity_checkpoints, settings.seed
                ).items()
            }
        )
    other = None
    if out_of_set is not None:
        change = out_of_set_change(maps, masks, explain(out_of_set.images), out_of_set.masks)
        other = OutOfSet(preset=out_of_set.preset, scenes=len(out_of_set.images), **change)
    curves = deletion_insertion(
        logit_fn, images, maps, settings.steps, settings.blur_sigma, settings.seed
    )
    return TechnicalScores(
        scenes=len(images),
        localization={
            region: Localization(**scores) for region, scores in localization(maps, masks).items()
        },
        faithfulness=Faithfulness(**curves.to_dict()),
        entropy=mean_entropy(maps),
        geometry=Geometry(**geometric_consistency(explain, images, settings.shift)),
        sanity=sanity,
        out_of_set=other,
        stability_across_models=(
            None if other_model_maps is None else stability_across_models(maps, other_model_maps)
        ),
    )


def technical_table(conditions) -> str:
    """The technical scores of a manifest's attribution conditions as one plain-text
    table (headline scores, larger is better; ``xaistudy bundle validate`` prints it);
    empty when none has them."""
    rows = [
        (name, condition.technical)
        for name, condition in conditions.items()
        if getattr(condition, "technical", None) is not None
    ]
    if not rows:
        return ""
    columns = ("pointing_game_arms", "mass_accuracy_arms", "deletion_gain", "insertion_gain",
               "randomization_change", "mirror_consistency", "stability_across_models")  # fmt: skip
    short = ("point", "mass", "del+", "ins+", "random", "mirror", "stable")
    lines = [
        "technical scores (on each condition's scenes; arms: the arm blocks; docs/methods.md)",
        f"  {'method':<22}" + "".join(f"{s:>8}" for s in short) + f"{'entropy':>9}",
    ]
    for name, scores in rows:
        headline = scores.headline()
        cells = "".join(
            f"{'-':>8}" if headline[c] is None else f"{headline[c]:>8.2f}" for c in columns
        )
        lines.append(f"  {name:<22}{cells}{scores.entropy:>9.1f}")
    return "\n".join(lines)

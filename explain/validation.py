"""Validation of a study bundle: are the stimuli what their captions say, as served?

Four groups of numbers, stored in the manifest under ``validation`` (docs/bundle.md,
"Validation", describes every one):

- ``counterfactuals``: every stored counterfactual image decoded from its PNG file as a
  browser gets it and re-scored by the model (does it land on its caption's target, on
  the target's side of the boundary?), the share of clipped pixel values, and the
  ``attribute_trends``: what the attribute probe (:mod:`explain.probe`) sees change
  along each row;
- ``concepts``: what each concept row is about (correlation of its image scores with the
  true scene attributes, where its heatmap lies on the object) and near-duplicate pairs;
- ``ground_truth``: what trivial answer strategies score against the answer key, and the
  margin between the weakest relevant and the strongest irrelevant attribute;
- ``probe``: the probe's own test R^2 per attribute.

:class:`Thresholds` turns the numbers into ``failures`` and ``passed``. The torch-free
parts (thresholds, the checks on stored numbers, the table) are importable without
torch; scoring images imports it when called.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from explain.manifest import (
    AnswerKeyValidation,
    Attribute,
    CellCheck,
    ConceptAbout,
    ConceptPair,
    ConceptValidation,
    CounterfactualCondition,
    CounterfactualValidation,
    KeyEffect,
    Mass,
    ProbeSummary,
    Stimulus,
    Trend,
    Validation,
)
from xaistudy.errors import UserError
from xaistudy.key_values import dataclass_values, read_key_values
from xaistudy.vocabulary import CONDITIONS, FACTORS, STUDY_ATTRIBUTES

YAW = "obj_rotation_yaw"
# Mask block ids (docs/dataset.md) of the heatmap regions a concept can lie on.
REGIONS = {"arms": (1, 2, 7, 8), "blocks": (3, 4, 5, 6), "background": (0,)}


@dataclass(frozen=True)
class Thresholds:
    """The gate: a bundle passes when every measured value is within these limits."""

    max_clipped_fraction_mean: float = 0.01
    max_clipped_fraction: float = 0.03
    max_stored_logit_error: float = 0.5
    max_wrong_side: int = 0
    max_concept_similarity: float = 0.9
    min_effect_ratio: float = 2.0
    max_irrelevant_trend_r2: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise UserError(f"validation threshold {f.name}={getattr(self, f.name)} is < 0")

    @classmethod
    def parse(cls, text: str | None) -> Thresholds:
        """From ``None`` (defaults), a TOML file path, or ``key=value,key=value``."""
        if not text:
            return cls()
        values = read_key_values(
            text,
            "validation thresholds",
            section="validation",
            example="max_clipped_fraction=0.05,min_effect_ratio=1.5",
        )
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict) -> Thresholds:
        return cls(**dataclass_values(cls, values, "validation threshold"))

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- counterfactuals


def trend_readings() -> dict[str, tuple[str, ...]]:
    """Study attribute -> the probe readings that stand for it (yaw as sine and cosine)."""
    out = {}
    for attribute in STUDY_ATTRIBUTES:
        names = [a for f in attribute.factors for a in FACTORS[f]]
        readings = [(f"{a}_sin", f"{a}_cos") if a == YAW else (a,) for a in names]
        out[attribute.key] = tuple(r for pair in readings for r in pair)
    return out


def reading_span(reading: str) -> float:
    """Width of the valid range of a probe reading (sine and cosine: 2)."""
    from generator.attributes import RANGES

    if reading in RANGES:
        low, high = RANGES[reading]
        return high - low
    return 2.0


def within_row_trend(
    rows: np.ndarray, targets: np.ndarray, readings: np.ndarray
) -> tuple[float, float]:
    """(slope, R^2) of ``readings`` against ``targets`` within rows, all (n,).

    Targets and readings are centered per row, then pooled: the slope is that of one line
    through every row (reading units per logit unit), R^2 the share of the within-row
    variance of the readings it explains. Differences between rows (the sources) do not
    count, only what changes along a row.
    """
    x = np.asarray(targets, dtype=np.float64).copy()
    y = np.asarray(readings, dtype=np.float64).copy()
    for row in np.unique(rows):
        members = rows == row
        x[members] -= x[members].mean()
        y[members] -= y[members].mean()
    sxx, syy, sxy = float(x @ x), float(y @ y), float(x @ y)
    if sxx == 0 or syy == 0:
        return 0.0, 0.0
    return sxy / sxx, sxy * sxy / (sxx * syy)


def attribute_trends(
    rows: np.ndarray, targets: np.ndarray, readings: dict[str, np.ndarray], relevant: dict
) -> dict[str, Trend]:
    """Per study attribute the within-row trend of its strongest-trending probe reading.

    ``relevant``: attribute key -> the answer key's label (or None when unknown).
    ``range_share`` is the change along a whole row as a share of the reading's range.
    """
    span = float(np.ptp(targets)) if len(targets) else 0.0
    out = {}
    for key, names in trend_readings().items():
        best = None
        for name in names:
            slope, r2 = within_row_trend(rows, targets, readings[name])
            if best is None or r2 > best["r2"]:
                best = {"reading": name, "slope": slope, "r2": r2}
        best["range_share"] = abs(best["slope"]) * span / reading_span(best["reading"])
        out[key] = Trend(**best, relevant=relevant.get(key))
    return out


def decode_stimuli(bundle_dir: Path, stimuli: Sequence[Stimulus]) -> np.ndarray:
    """The stimuli's images as a browser gets them: PNG -> RGB uint8, N x H x W x 3."""
    images = []
    for stimulus in stimuli:
        path = Path(bundle_dir) / stimulus.image
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read stimulus image {path}: {exc}") from exc
        with Image.open(io.BytesIO(data)) as image:
            images.append(np.asarray(image.convert("RGB")))
    return np.stack(images)


def counterfactual_checks(
    bundle_dir: Path,
    condition: CounterfactualCondition,
    attributes: Sequence[Attribute],
    model,
    probe,
    device,
    batch_size: int = 128,
) -> CounterfactualValidation:
    """Re-score every stored counterfactual image and read its attributes with the probe.

    ``condition`` is ``conditions.counterfactuals``; ``attributes`` the manifest's
    ``attributes`` (their ``relevant`` labels go beside the trends).
    """
    from explain.batching import batched_logits

    # The unedited source that starts each row is a real test image, not an edit.
    stimuli = [s for s in condition.stimuli if not s.source]
    images = decode_stimuli(bundle_dir, stimuli)
    logits = batched_logits(model.logit, images, device, batch_size)
    readings = probe.read(images)
    targets = np.array([s.target for s in stimuli], dtype=np.float64)
    rows = np.array([s.row for s in stimuli])
    clipped = np.array([s.clipped_fraction for s in stimuli], dtype=np.float64)
    error = np.abs(logits - targets)
    wrong = (targets != 0) & ((logits > 0) != (targets > 0))
    manifest_logits = np.array([s.stored_logit for s in stimuli], dtype=float)
    cells = tuple(
        CellCheck(
            row=s.row,
            column=s.column,
            target=float(targets[i]),
            logit=float(logits[i]),
            error=float(error[i]),
            wrong_side=bool(wrong[i]),
            clipped_fraction=float(clipped[i]),
        )
        for i, s in enumerate(stimuli)
    )
    relevant = {a.key: a.relevant for a in attributes}
    return CounterfactualValidation(
        n=len(stimuli),
        clipped_fraction_mean=float(clipped.mean()),
        clipped_fraction_max=float(clipped.max()),
        stored_logit_error_max=float(error.max()),
        wrong_side=int(wrong.sum()),
        # The manifest's stored_logit against the file as served: a large value means a
        # file was replaced after the bundle was made.
        manifest_logit_mismatch_max=float(np.nanmax(np.abs(manifest_logits - logits)))
        if np.isfinite(manifest_logits).any()
        else None,
        cells=cells,
        attribute_trends=attribute_trends(rows, targets, readings, relevant),
    )


# ---------------------------------------------------------------------- concepts


def region_fractions(masks: np.ndarray, h: int, w: int) -> np.ndarray:
    """Share of each coarse cell covered by each region of ``REGIONS``.

    ``masks`` N x H x W block ids -> (N, h, w, len(REGIONS)); each cell of the h x w
    score map covers the mask pixels whose scaled coordinates fall into it.
    """
    masks = np.asarray(masks)
    _, height, width = masks.shape
    ys = (np.arange(height) * h) // height
    xs = (np.arange(width) * w) // width
    y_starts = np.flatnonzero(np.diff(ys, prepend=-1))
    x_starts = np.flatnonzero(np.diff(xs, prepend=-1))
    out = []
    for ids in REGIONS.values():
        inside = np.isin(masks, ids).astype(np.float64)
        summed = np.add.reduceat(np.add.reduceat(inside, y_starts, axis=1), x_starts, axis=2)
        counts = np.outer(np.diff(np.append(y_starts, height)), np.diff(np.append(x_starts, width)))
        out.append(summed / counts[None])
    return np.stack(out, axis=-1)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel() - np.mean(a)
    b = np.asarray(b, dtype=np.float64).ravel() - np.mean(b)
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else 0.0


def concept_checks(
    score_maps: np.ndarray, image_scores: np.ndarray, order, params, masks: np.ndarray
) -> ConceptValidation:
    """What each concept row is about, and how alike the rows are.

    ``score_maps`` (N, K, h, w) and ``image_scores`` (N, K) of the test images,
    ``order`` the concept index of each row, ``params`` the test scenes' table (N rows)
    and ``masks`` their N x H x W block ids.

    Per row: ``correlations`` of the image scores with every true attribute (yaw as sine
    and cosine) and the label, the strongest as ``about``; ``mass``: the share of the
    heatmap (the positive scores, as shown) on the arms, the other blocks and the
    background. Per pair of rows: the correlation of their image scores and of their
    score maps; ``similarity`` is the larger.
    """
    from explain.probe import TARGETS, target_table

    truth = target_table(params)
    columns = {name: truth[:, i] for i, name in enumerate(TARGETS)}
    columns["label"] = params["label"].to_numpy(dtype=np.float64)
    _, _, h, w = score_maps.shape
    regions = region_fractions(masks, h, w)  # (N, h, w, R)
    rows = []
    for row, concept in enumerate(order):
        scores = image_scores[:, concept]
        correlations = {name: _correlation(scores, values) for name, values in columns.items()}
        about = max(correlations, key=lambda name: abs(correlations[name]))
        heat = np.clip(score_maps[:, concept], 0.0, None)
        total = float(heat.sum())
        shares = np.einsum("nhw,nhwr->r", heat, regions) / total if total > 0 else np.zeros(3)
        rows.append(
            ConceptAbout(
                row=row,
                index=int(concept),
                about=about,
                about_correlation=correlations[about],
                correlations=correlations,
                mass=Mass(**{name: float(s) for name, s in zip(REGIONS, shares, strict=True)}),
            )
        )
    pairs = []
    for a in range(len(order)):
        for b in range(a + 1, len(order)):
            ca, cb = order[a], order[b]
            by_image = _correlation(image_scores[:, ca], image_scores[:, cb])
            by_map = _correlation(score_maps[:, ca], score_maps[:, cb])
            pairs.append(
                ConceptPair(
                    rows=(a, b),
                    image_score_correlation=by_image,
                    score_map_correlation=by_map,
                    similarity=max(by_image, by_map),
                )
            )
    return ConceptValidation(rows=tuple(rows), pairs=tuple(pairs))


# ------------------------------------------------------------------ ground truth


def ground_truth_checks(attributes: Sequence[Attribute]) -> AnswerKeyValidation:
    """Trivial answer strategies against the answer key (``attributes[].relevant``).

    A participant who answers every attribute "relies on" is right on the relevant
    ones, "does not rely on" on the irrelevant ones; the neutral answer (3) is never
    right under the default scoring. ``effect_ratio`` = weakest relevant effect /
    strongest irrelevant effect (None when either group is empty or the strongest
    irrelevant effect is 0).
    """
    relevant = [a for a in attributes if a.relevant]
    irrelevant = [a for a in attributes if not a.relevant]
    n = len(attributes)
    weakest = min(relevant, key=lambda a: a.effect) if relevant else None
    strongest = max(irrelevant, key=lambda a: a.effect) if irrelevant else None
    ratio = None
    if weakest is not None and strongest is not None and strongest.effect > 0:
        ratio = float(weakest.effect / strongest.effect)
    return AnswerKeyValidation(
        relevant=len(relevant),
        irrelevant=len(irrelevant),
        all_relies_on=len(relevant) / n if n else 0.0,
        all_does_not=len(irrelevant) / n if n else 0.0,
        all_neutral=0.0,
        weakest_relevant=_entry(weakest),
        strongest_irrelevant=_entry(strongest),
        effect_ratio=ratio,
    )


def _entry(attribute: Attribute | None) -> KeyEffect | None:
    return None if attribute is None else KeyEffect(key=attribute.key, effect=attribute.effect)


# ------------------------------------------------------------------------- gate


def failures(
    numbers: dict, thresholds: Thresholds, held: tuple[str, ...] = CONDITIONS
) -> list[str]:
    """One line per failed check, naming the check, the measured value and the limit.

    ``numbers`` holds ``counterfactuals``, ``concepts`` and ``ground_truth`` as made by
    the functions above. ``held``: the bundle's conditions; the group of a held condition
    that is missing is itself a failure (a missing answer key not).
    """
    t = thresholds
    out = []
    cf = numbers.get("counterfactuals")
    if cf is None:
        if "counterfactuals" in held:
            out.append("counterfactuals: not checked")
    else:
        for key, limit in (
            ("clipped_fraction_mean", t.max_clipped_fraction_mean),
            ("clipped_fraction_max", t.max_clipped_fraction),
            ("stored_logit_error_max", t.max_stored_logit_error),
        ):
            value = getattr(cf, key)
            if value > limit:
                out.append(f"counterfactuals: {key} {value:.3g} > {limit:g}")
        if cf.wrong_side > t.max_wrong_side:
            out.append(
                f"counterfactuals: wrong_side {cf.wrong_side} of {cf.n} images > {t.max_wrong_side}"
            )
        for key, trend in cf.attribute_trends.items():
            if trend.relevant is False and trend.r2 > t.max_irrelevant_trend_r2:
                out.append(
                    f"counterfactuals: trend of irrelevant {key} ({trend.reading}) "
                    f"r2 {trend.r2:.3g} > {t.max_irrelevant_trend_r2:g}"
                )
    concepts = numbers.get("concepts")
    if concepts is None:
        if "concepts" in held:
            out.append("concepts: not checked (the bundle has no stored concept checks)")
    else:
        for pair in concepts.pairs:
            if pair.similarity >= t.max_concept_similarity:
                a, b = (r + 1 for r in pair.rows)
                out.append(
                    f"concepts: concepts {a} and {b} are duplicates, similarity "
                    f"{pair.similarity:.3f} >= {t.max_concept_similarity:g}"
                )
    truth = numbers.get("ground_truth")
    if truth is not None:
        if truth.relevant == 0 or truth.irrelevant == 0:
            group = "relevant" if truth.relevant == 0 else "irrelevant"
            out.append(f"ground_truth: no {group} attribute in the answer key (need >= 1)")
        elif truth.effect_ratio is not None and truth.effect_ratio < t.min_effect_ratio:
            weak, strong = truth.weakest_relevant, truth.strongest_irrelevant
            out.append(
                f"ground_truth: effect_ratio {truth.effect_ratio:.3g} < {t.min_effect_ratio:g} "
                f"(weakest relevant {weak.key} {weak.effect:.3g}, strongest irrelevant "
                f"{strong.key} {strong.effect:.3g})"
            )
    return out


def assemble(
    numbers: dict,
    probe_card: dict | None,
    thresholds: Thresholds,
    held: tuple[str, ...] = CONDITIONS,
) -> Validation:
    """The manifest's ``validation`` from the measured groups (``held``: the bundle's
    conditions)."""
    failed = failures(numbers, thresholds, held)
    return Validation(
        counterfactuals=numbers.get("counterfactuals"),
        concepts=numbers.get("concepts"),
        ground_truth=numbers.get("ground_truth"),
        probe=probe_summary(probe_card) if probe_card else None,
        thresholds=thresholds.to_dict(),
        failures=tuple(failed),
        passed=not failed,
    )


def probe_summary(card: dict) -> ProbeSummary:
    keys = ("architecture", "fingerprint", "train_images", "seconds", "test_r2")
    return ProbeSummary(**{k: card.get(k) for k in keys})


class InvalidBundle(UserError):
    """A bundle that failed validation: nothing was published. ``validation`` says why,
    so that a caller with other options than ``xaistudy explain`` words its own advice."""

    def __init__(self, validation: Validation):
        super().__init__(gate_message(validation))
        self.validation = validation


def gate_message(validation: Validation) -> str:
    """The one-line error of a bundle that failed validation."""
    return (
        f"the bundle failed validation ({'; '.join(validation.failures)}); nothing was "
        "published. Pass --allow-invalid to publish it anyway (the manifest records it), or "
        "set the limits with --thresholds key=value,... or a .toml file "
        f"(allowed keys: {', '.join(f.name for f in fields(Thresholds))})"
    )


# ------------------------------------------------------------------------ table


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}"


def format_table(validation: Validation) -> str:
    """Every number of ``validation`` as one readable plain-text table."""
    lines = []
    thresholds = validation.thresholds
    cf = validation.counterfactuals
    if cf:
        lines.append("counterfactuals (stored PNGs re-scored by the model)")
        for key, limit in (
            ("clipped_fraction_mean", "max_clipped_fraction_mean"),
            ("clipped_fraction_max", "max_clipped_fraction"),
            ("stored_logit_error_max", "max_stored_logit_error"),
            ("wrong_side", "max_wrong_side"),
        ):
            value = getattr(cf, key)
            lines.append(f"  {key:<34}{_fmt(value):>10}   limit {_fmt(thresholds.get(limit))}")
        mismatch = _fmt(cf.manifest_logit_mismatch_max)
        lines.append(f"  {'manifest_logit_mismatch_max':<34}{mismatch:>10}")
        lines.append("  attribute trends along rows (probe)")
        header = f"{'attribute':<15}{'reading':<22}{'slope':>9}{'r2':>7}{'row change':>12}"
        lines.append(f"    {header}  answer key")
        for key, trend in cf.attribute_trends.items():
            label = {True: "relevant", False: "irrelevant", None: "-"}[trend.relevant]
            lines.append(
                f"    {key:<15}{trend.reading:<22}{trend.slope:>9.3g}{trend.r2:>7.3f}"
                f"{trend.range_share:>12.1%}  {label}"
            )
    concepts = validation.concepts
    if concepts:
        lines.append("concepts (what each row is about; heatmap share on arms / blocks / bg)")
        for row in concepts.rows:
            mass = row.mass
            lines.append(
                f"  concept {row.row + 1:<3} about {row.about:<22} "
                f"r {row.about_correlation:+.2f}   arms {mass.arms:.0%}  "
                f"blocks {mass.blocks:.0%}  bg {mass.background:.0%}"
            )
        top = sorted(concepts.pairs, key=lambda p: -p.similarity)[:3]
        for pair in top:
            a, b = (r + 1 for r in pair.rows)
            lines.append(
                f"  most alike: concepts {a} and {b}  similarity {pair.similarity:.3f} "
                f"(images {pair.image_score_correlation:+.2f}, maps "
                f"{pair.score_map_correlation:+.2f})   limit "
                f"{_fmt(thresholds.get('max_concept_similarity'))}"
            )
    truth = validation.ground_truth
    if truth:
        lines.append("answer key (trivial strategies' accuracy)")
        for key in ("all_relies_on", "all_does_not", "all_neutral"):
            lines.append(f"  {key:<34}{getattr(truth, key):>10.0%}")
        weak, strong = truth.weakest_relevant, truth.strongest_irrelevant
        if weak:
            lines.append(f"  weakest relevant    {weak.key:<18}effect {weak.effect:.3g}")
        if strong:
            lines.append(f"  strongest irrelevant {strong.key:<17}effect {strong.effect:.3g}")
        lines.append(
            f"  {'effect_ratio':<34}{_fmt(truth.effect_ratio):>10}   limit "
            f">= {_fmt(thresholds.get('min_effect_ratio'))}"
        )
    probe = validation.probe
    if probe and probe.test_r2:
        lines.append("attribute probe (test R^2)")
        for name, r2 in probe.test_r2.items():
            lines.append(f"  {name:<34}{r2:>10.3f}")
    failed = validation.failures
    lines.append("PASSED" if not failed else f"FAILED ({len(failed)} check(s)):")
    lines += [f"  - {line}" for line in failed]
    if validation.published_despite_failures:
        lines.append("  published despite the failures (--allow-invalid)")
    return "\n".join(lines)


# ------------------------------------------------------------ bundle validate


def validate_bundle(
    bundle_dir: Path,
    run_dir: Path,
    device,
    thresholds: Thresholds = Thresholds(),
    data_dir: Path | None = None,
    progress: bool = True,
) -> Validation:
    """``xaistudy bundle validate``: re-check a published bundle against its model.

    The counterfactual checks are recomputed from the image files (the model and the
    probe from ``RUN_DIR/probe``, trained on ``data_dir`` when missing or made for
    another dataset), the answer key's from the manifest's ``attributes``; the concept
    checks need the concept analysis, so their stored numbers are re-judged.
    """
    from explain.bundle_format import load_manifest
    from explain.probe import PROBE_DIR, ensure_probe
    from generator.dataset import DatasetFolder
    from modeling import load_run

    manifest = load_manifest(bundle_dir)
    run = load_run(run_dir, device)
    if run.card != manifest.model_card:
        raise UserError(
            f"bundle {bundle_dir} was not made from the model in {run_dir} (their model cards "
            "differ); pass the run folder the bundle was explained with"
        )
    dataset = DatasetFolder(data_dir) if data_dir is not None else None
    probe = ensure_probe(Path(run_dir) / PROBE_DIR, dataset, device, progress=progress)
    size = manifest.dataset.size
    if probe.card["image_size"] != size:
        raise UserError(
            f"the attribute probe in {run_dir} reads {probe.card['image_size']} px images but "
            f"the bundle has {size} px; pass --data with the bundle's dataset to retrain it"
        )
    held = manifest.conditions
    numbers = {
        "concepts": manifest.validation.concepts if manifest.validation else None,
        "ground_truth": ground_truth_checks(manifest.attributes),
    }
    if "counterfactuals" in held:
        numbers["counterfactuals"] = counterfactual_checks(
            bundle_dir, held.counterfactuals, manifest.attributes, run.model, probe, device
        )
    return assemble(numbers, probe.card, thresholds, held=tuple(held))

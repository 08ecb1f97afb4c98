"""``xaistudy explain``: all three conditions, ground truth and tutorial into one bundle.

Everything is computed on the same model and the same test images (the first
``n_test`` of the dataset's test split), batched, on the device chosen once by the
caller; or, given an executor (``--executor ray``), each condition and the scene
renderings as tasks on the CPU, with the same result. The bundle is written to a
temporary folder and renamed when complete (:class:`explain.bundle_format.BundleWriter`).
Just before that, the images as written are validated (:mod:`explain.validation`); a
bundle that fails is not published unless ``allow_invalid``.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from explain.attribution_grid import MapMethod, attribution_condition
from explain.baseline import baseline_condition
from explain.batching import batched_logits
from explain.bundle_format import BundleWriter, ImageCollector, verify_bundle
from explain.concepts import analyze_concepts, concept_condition
from explain.counterfactuals import counterfactual_condition
from explain.ground_truth import RelevanceRule, attribute_entries, ground_truth
from explain.images import encode_png
from explain.manifest import (
    AttributionCondition,
    Conditions,
    Dataset,
    GroundTruthRule,
    Manifest,
    Validation,
)
from explain.probe import PROBE_DIR, ProbeSettings, ensure_probe
from explain.stimuli import PairCandidates, counterfactual_section, simulation_section
from explain.technical import OtherScenes, TechnicalSettings, technical_scores
from explain.tutorial import tutorial_section
from explain.validation import (
    InvalidBundle,
    Thresholds,
    assemble,
    concept_checks,
    counterfactual_checks,
    ground_truth_checks,
)
from generator.attributes import intervention_split
from generator.dataset import DatasetFolder
from modeling.card import ModelCard
from xaistudy.errors import UserError
from xaistudy.executors import Executor
from xaistudy.files import Stopwatch
from xaistudy.vocabulary import ALL_CONDITIONS, ATTRIBUTION_METHODS, CONDITIONS, FACTORS

STAGES = ("logits", "ground_truth", "tutorial", "validation", "write")  # and each condition
# Scenes below which a rendering is not worth another Ray task (a task costs about a second).
MIN_SCENES_PER_RENDER_TASK = 64


@dataclass(frozen=True)
class ExplainSettings:
    """Every knob of ``xaistudy explain`` (defaults are the study's)."""

    n_test: int = 1000  # test images the conditions draw from
    baseline_rows: int = 30
    baseline_columns: int = 5
    max_percentile: float = 90.0  # outermost bin center / target, percentile of |logit|
    counterfactual_sources: int = 6
    counterfactual_targets: int = 5
    concepts: int = 8
    concept_layer: int | None = None  # None: the model's default (8 x 8 at 64 px)
    concept_highest: int = 4
    concept_lowest: int = 2
    concept_overlay_size: int = 128
    ground_truth_scenes: int = 500  # intervened scenes per factor
    tutorial_examples: int = 4
    batch_size: int = 128
    seed: int = 0
    relevance_rule: RelevanceRule = field(default_factory=RelevanceRule)
    probe: ProbeSettings = field(default_factory=ProbeSettings)  # the attribute probe
    conditions: tuple[str, ...] = CONDITIONS  # which to build (xaistudy.vocabulary)
    attribution_rows: int = 6  # scenes per column of an attribution condition
    attribution_reference: int = 256  # test images giving IBA its noise statistics
    technical: TechnicalSettings = field(default_factory=TechnicalSettings)
    out_of_set_preset: str | None = "unbiased"  # its scenes for the out-of-set change
    out_of_set_scenes: int = 30
    # The forward-simulation scenes (explain.stimuli); 0 and 0: the bundle has none.
    simulation_learning: int = 8
    simulation_test: int = 16
    simulation_strata: int = 3  # difficulty strata by |logit|
    # The counterfactual-simulation pairs (explain.stimuli) out of the ground truth's
    # intervened scenes; 0 and 0: the bundle has none.
    counterfactual_pre: int = 8
    counterfactual_post: int = 8

    def to_dict(self) -> dict:
        data = asdict(self)
        data["relevance_rule"] = self.relevance_rule.to_dict()
        data["conditions"] = list(self.conditions)
        return data


def check_condition_names(names: tuple[str, ...]) -> None:
    """Refuse a condition list that is empty, repeats or names an unknown condition."""
    unknown = [n for n in names if n not in ALL_CONDITIONS]
    if unknown or not names:
        raise UserError(
            f"unknown condition(s) {', '.join(unknown) or '(none given)'}; allowed are "
            f"{', '.join(ALL_CONDITIONS)}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"a condition is named twice in {', '.join(names)}")


def check_conditions(names: tuple[str, ...], model_or_architecture) -> None:
    """Refuse, before any work, a bad condition list (:func:`check_condition_names`) or a
    condition a model (or an architecture, ``"invertible"``/``"resnet"``: a config's
    before training) cannot be explained by."""
    check_condition_names(names)
    kind = model_or_architecture
    if not isinstance(kind, str):
        kind = "invertible" if hasattr(kind, "edit_logit") else type(kind).__name__
    for name in names:
        if name in ATTRIBUTION_METHODS:
            from explain.attribution import check_supported

            check_supported(name, model_or_architecture)
    if "counterfactuals" in names and kind != "invertible":
        raise UserError(
            "counterfactuals need the invertible network (they edit its latent and invert "
            f"it); this model is a {kind}. Leave counterfactuals out of the conditions for it"
        )


class ImageStore:
    """PNG-encodes images into a :class:`BundleWriter` (or an :class:`ImageCollector`);
    test images are stored once."""

    def __init__(self, writer: BundleWriter | ImageCollector, test_images: np.ndarray):
        self.writer = writer
        self.test_images = test_images
        self._test_paths: dict[int, str] = {}

    def __call__(self, image: np.ndarray) -> str:
        return self.writer.add_image_bytes(encode_png(np.asarray(image)))

    def test_image(self, index: int) -> str:
        if index not in self._test_paths:
            self._test_paths[index] = self(self.test_images[index])
        return self._test_paths[index]


def default_renderer(
    device: torch.device, batch_size: int
) -> Callable[[pd.DataFrame, int], np.ndarray]:
    """``render(params, size) -> images`` using the generator's renderer on ``device``."""

    def render(params: pd.DataFrame, size: int) -> np.ndarray:
        from generator.render import render_scenes

        images, _ = render_scenes(
            params, size=size, device=device, batch_size=batch_size, antialias=True, progress=False
        )
        return np.asarray(images)

    return render


def _render_part(params: pd.DataFrame, size: int, batch_size: int) -> np.ndarray:
    """One task's share of :func:`executor_renderer`: on the CPU, in one process."""
    from generator.render import render_scenes

    images, _ = render_scenes(
        params,
        size=size,
        device=torch.device("cpu"),
        batch_size=batch_size,
        antialias=True,
        workers=1,
    )
    return np.asarray(images)


def executor_renderer(
    executor: Executor, batch_size: int
) -> Callable[[pd.DataFrame, int], np.ndarray]:
    """``render(params, size) -> images`` as tasks on ``executor``: the rows cut into one
    part per CPU (at least ``MIN_SCENES_PER_RENDER_TASK`` scenes each). The pixels are
    those of :func:`default_renderer` on the CPU: they do not depend on the batching."""

    def render(params: pd.DataFrame, size: int) -> np.ndarray:
        parts = max(1, min(executor.cpus, math.ceil(len(params) / MIN_SCENES_PER_RENDER_TASK)))
        bounds = [len(params) * i // parts for i in range(parts + 1)]
        pieces = [params.iloc[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        return np.concatenate(executor.map(_render_part, pieces, size, batch_size))

    return render


class GroundTruthScenes:
    """Paired (original, intervened) scenes per factor: from the dataset's intervention
    split, or made on the fly with the generator when the dataset lacks it."""

    def __init__(self, dataset: DatasetFolder, test_params: pd.DataFrame, render, seed: int):
        self.dataset = dataset
        self.index_of_id = {str(i): n for n, i in enumerate(test_params["id"].astype(str))}
        self.test_params = test_params
        self.render = render
        self.seed = seed
        self.made_on_the_fly: list[str] = []

    def scenes(self, factor: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(test indices (m,), intervened images m x H x W x 3 uint8) with m <= n."""
        name = intervention_split(factor)
        if self.dataset.has_split(name):
            split = self.dataset.split(name)
            params = split.params.iloc[:n]
            images = np.asarray(split.images[: len(params)])
        else:
            params, images = self._make(factor, n)
        try:
            originals = np.array([self.index_of_id[str(i)] for i in params["original_id"]])
        except KeyError as exc:
            raise UserError(
                f"split {name} names original scene {exc.args[0]!r}, which is not in the test split"
            ) from exc
        return originals, images

    def _make(self, factor: str, n: int) -> tuple[pd.DataFrame, np.ndarray]:
        from generator.biases import load_spec
        from generator.generate import intervene

        if "spec" not in self.dataset.meta:
            raise UserError(
                f"dataset {self.dataset.root} has no {intervention_split(factor)} split and no "
                "bias specification in meta.json to make it; regenerate with --interventions"
            )
        spec = load_spec(self.dataset.meta["spec"])
        rng = np.random.default_rng([self.seed, list(FACTORS).index(factor)])
        params = intervene(self.test_params.iloc[:n].reset_index(drop=True), factor, spec, rng)
        self.made_on_the_fly.append(factor)
        return params, self.render(params, self.dataset.size)


def build_bundle(
    model,
    model_card: ModelCard,
    dataset: DatasetFolder,
    out: Path,
    device: torch.device,
    settings: ExplainSettings = ExplainSettings(),
    render: Callable[[pd.DataFrame, int], np.ndarray] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    thresholds: Thresholds | None = None,
    allow_invalid: bool = False,
    probe_dir: Path | None = None,
    compare_model=None,
    executor: Executor | None = None,
) -> tuple[Path, dict[str, float]]:
    """Write the study bundle for ``model`` on ``dataset`` to ``out``.

    ``executor``: where the conditions (one task each) and the renderings of scenes run
    (None or a local one: here, one after another). Tasks compute on the CPU with one
    torch thread; on the CPU their bundle equals the local one byte for byte.

    ``compare_model``: a second, independently trained model of the same task whose maps
    give the attribution conditions' stability across models (None: not measured).

    Before publishing, the bundle is validated against ``thresholds`` (default
    :class:`Thresholds`); if a check fails a :class:`UserError` names the failures and
    nothing is published, unless ``allow_invalid``. The attribute probe is cached in
    ``probe_dir`` (``RUN_DIR/probe`` for a run folder; None: trained, not kept).
    Returns the bundle's path and the seconds each stage took (``STAGES``).
    """
    model.eval()
    remote = executor is not None and executor.remote
    if render is None and remote:
        render = executor_renderer(executor, settings.batch_size)
    render = render or default_renderer(device, settings.batch_size)
    if dataset.size != model.input_size:
        raise UserError(
            f"the model takes {model.input_size} px images but dataset {dataset.root} has "
            f"{dataset.size} px; explain a model with the dataset it was trained for"
        )
    test = dataset.split("test")
    n = min(settings.n_test, len(test))
    images = np.asarray(test.images[:n])
    masks = np.asarray(test.masks[:n])
    params = test.params.iloc[:n].reset_index(drop=True)
    writer = BundleWriter(out, overwrite=overwrite)
    store = ImageStore(writer, images)
    watch = Stopwatch()
    check_conditions(settings.conditions, model)
    bar = tqdm(
        total=len(STAGES) + len(settings.conditions),
        desc="explain",
        unit="stage",
        disable=not progress,
    )

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        bar.set_postfix_str(name)
        with watch(name):
            yield
        bar.update(1)

    try:
        with stage("logits"):
            logits = batched_logits(model.logit, images, device, settings.batch_size)
            simulation = _simulation(logits, params["label"].to_numpy(), store, settings)
        mapped = None if simulation is None else simulation.scene_ids()
        built, analysis, other = {}, None, None
        if set(settings.conditions) & set(ATTRIBUTION_METHODS):
            other = other_scenes(settings, dataset.size, device)
        if remote:  # all at once, one task each
            bar.set_postfix_str(", ".join(settings.conditions))
            inputs = _TaskInputs(
                images, logits, masks, settings, other, model, compare_model, mapped
            )
            built, analysis = _conditions_as_tasks(executor, inputs, writer, watch)
            bar.update(len(built))
        else:
            for name in settings.conditions:
                with stage(name):
                    context = _Context(
                        images, logits, masks, store, device, settings, other, mapped
                    )
                    built[name], found = _build_condition(name, model, compare_model, context)
                    analysis = analysis if found is None else found
        with stage("ground_truth"):
            truth, made, intervened = _ground_truth(
                model, dataset, test, logits, render, device, settings, progress
            )
            counterfactual = _counterfactual_simulation(
                intervened, logits, params["label"].to_numpy(), store, settings, simulation
            )
        with stage("tutorial"):
            tutorial = tutorial_section(
                images,
                params["label"].to_numpy(),
                store,
                render,
                dataset.size,
                n_examples=settings.tutorial_examples,
                seed=settings.seed,
            )
        manifest = Manifest(
            model_card=model_card,
            dataset=Dataset(
                fingerprint=dataset.fingerprint(),
                preset=dataset.meta.get("preset"),
                size=dataset.size,
                test_images=n,
            ),
            ground_truth=truth,
            ground_truth_rule=GroundTruthRule(
                **settings.relevance_rule.to_dict(),
                scenes_per_factor=settings.ground_truth_scenes,
                made_on_the_fly=tuple(made),
            ),
            attributes=attribute_entries(truth),
            tutorial=tutorial,
            conditions=Conditions(**built),
            explain_settings=settings.to_dict(),
            simulation=simulation,
            counterfactual_simulation=counterfactual,
        )
        with stage("validation"):
            validation = _validation(
                model, dataset, writer.tmp, manifest, analysis, device, settings, progress,
                thresholds or Thresholds(), probe_dir,
            )  # fmt: skip
            validation = replace(validation, published_despite_failures=not validation.passed)
            manifest = replace(manifest, validation=validation)
            if not validation.passed and not allow_invalid:
                raise InvalidBundle(validation)
        with stage("write"):
            path = writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return path, watch.seconds


@dataclass(frozen=True)
class _Context:
    """What every condition is built from: the test images, their logits and masks."""

    images: np.ndarray
    logits: np.ndarray
    masks: np.ndarray  # block ids
    store: ImageStore
    device: torch.device
    settings: ExplainSettings
    other: OtherScenes | None  # another preset's scenes, for the out-of-set change
    # the simulation scenes (learning and test): each gets its map, and the map for the
    # class the model did not decide (distinction trials)
    mapped: list[int] | None


def _simulation(logits, labels, store: ImageStore, settings: ExplainSettings):
    """The manifest's forward-simulation scenes (explain.stimuli), or None when the
    settings ask for none."""
    if settings.simulation_learning == 0 and settings.simulation_test == 0:
        return None
    return simulation_section(
        logits,
        labels,
        store.test_image,
        settings.simulation_learning,
        settings.simulation_test,
        strata=settings.simulation_strata,
        seed=settings.seed,
    )


@dataclass(frozen=True)
class _Intervened:
    """The ground truth's intervened scenes of the first test images, per factor: the
    original scenes' test indices, the model's logits on both scenes, the changed images."""

    test_index: dict[str, np.ndarray]
    original_logit: dict[str, np.ndarray]
    changed_logit: dict[str, np.ndarray]
    images: dict[str, np.ndarray]


def _counterfactual_simulation(
    intervened: _Intervened, logits, labels, store: ImageStore, settings, simulation
):
    """The manifest's counterfactual-simulation pairs (explain.stimuli), or None when the
    settings ask for none. A change that left the picture as it was is no pair."""
    if settings.counterfactual_pre == 0 and settings.counterfactual_post == 0:
        return None
    factors = list(intervened.test_index)
    changed = {
        f: (intervened.images[f] != store.test_images[intervened.test_index[f]]).any(axis=(1, 2, 3))
        for f in factors
    }
    rows = [(f, i) for f in factors for i in np.flatnonzero(changed[f])]

    def column(values: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([values[f][i] for f, i in rows])

    candidates = PairCandidates(
        factor=np.array([f for f, _ in rows], dtype=object),
        test_index=column(intervened.test_index).astype(int),
        original_logit=column(intervened.original_logit).astype(float),
        changed_logit=column(intervened.changed_logit).astype(float),
    )
    learned = () if simulation is None else (
        s.test_index for s in (*simulation.learning, *simulation.test)
    )  # fmt: skip
    return counterfactual_section(
        candidates,
        labels,
        logits,
        store.test_image,
        lambda row: store(intervened.images[rows[row][0]][rows[row][1]]),
        settings.counterfactual_pre,
        settings.counterfactual_post,
        exclude=set(learned),
        strata=settings.simulation_strata,
        seed=settings.seed,
    )


def _build_condition(name, model, compare_model, context: _Context):
    """Condition ``name``'s manifest entry, and the concept analysis it made (concepts
    only: the validation re-judges it; otherwise None)."""
    analysis = None
    if name == "concepts":
        settings = context.settings
        analysis = analyze_concepts(
            model,
            context.images,
            context.device,
            k=settings.concepts,
            layer=settings.concept_layer,
            seed=settings.seed,
            batch_size=settings.batch_size,
        )
    return _condition(name, model, context, analysis, compare_model), analysis


@dataclass(frozen=True)
class _TaskInputs:
    """What a condition task gets, through the object store once for all of them."""

    images: np.ndarray
    logits: np.ndarray
    masks: np.ndarray
    settings: ExplainSettings
    other: OtherScenes | None
    model: torch.nn.Module  # on the CPU
    compare_model: torch.nn.Module | None
    mapped: list[int] | None


@dataclass(frozen=True)
class _BuiltCondition:
    """A condition task's result: its entry, its encoded images (path -> PNG bytes), the
    concept analysis (concepts only) and the seconds it took."""

    entry: object
    images: dict[str, bytes]
    analysis: object | None
    seconds: float


def _condition_task(name: str, inputs: _TaskInputs) -> _BuiltCondition:
    """Build one condition away from the bundle folder: its images are collected in
    memory under their bundle paths (content hashes) and sent back to the driver."""
    started = time.perf_counter()
    collector = ImageCollector()
    context = _Context(
        inputs.images, inputs.logits, inputs.masks, ImageStore(collector, inputs.images),
        torch.device("cpu"), inputs.settings, inputs.other, inputs.mapped,
    )  # fmt: skip
    entry, analysis = _build_condition(name, inputs.model, inputs.compare_model, context)
    return _BuiltCondition(entry, collector.images, analysis, time.perf_counter() - started)


def _on_cpu(model):
    """``model`` itself on the CPU, else a CPU copy (tasks may run where no GPU is)."""
    if model is None or next(model.parameters()).device.type == "cpu":
        return model
    return copy.deepcopy(model).cpu()


def _conditions_as_tasks(executor: Executor, inputs: _TaskInputs, writer, watch):
    """Every condition of ``inputs.settings`` as one task on ``executor``; their images
    go into ``writer`` and their seconds into ``watch``. Returns (entries, analysis)."""
    names = inputs.settings.conditions
    inputs = replace(
        inputs, model=_on_cpu(inputs.model), compare_model=_on_cpu(inputs.compare_model)
    )
    built, analysis = {}, None
    for name, result in zip(names, executor.map(_condition_task, names, inputs), strict=True):
        for rel, data in result.images.items():
            stored = writer.add_image_bytes(data, ext=rel.rsplit(".", 1)[1])
            assert stored == rel, f"{name}: image {rel} stored as {stored}"
        built[name] = result.entry
        watch.seconds[name] = result.seconds
        analysis = analysis if result.analysis is None else result.analysis
    return built, analysis


def _condition(name, model, context: _Context, analysis, compare_model):
    """The manifest entry of condition ``name`` (``analysis``: the concept analysis)."""
    settings, images, logits, store = (
        context.settings, context.images, context.logits, context.store
    )  # fmt: skip
    if name == "baseline":
        return baseline_condition(
            logits,
            store.test_image,
            rows=settings.baseline_rows,
            columns=settings.baseline_columns,
            max_percentile=settings.max_percentile,
            seed=settings.seed,
        )
    if name == "counterfactuals":
        return counterfactual_condition(
            model,
            images,
            logits,
            store,
            context.device,
            n_sources=settings.counterfactual_sources,
            n_targets=settings.counterfactual_targets,
            max_percentile=settings.max_percentile,
        )
    if name == "concepts":
        return concept_condition(
            analysis,
            images,
            store,
            n_highest=settings.concept_highest,
            n_lowest=settings.concept_lowest,
            overlay_size=settings.concept_overlay_size,
        )
    if name in ATTRIBUTION_METHODS:
        return _attribution(name, model, context, compare_model)
    raise UserError(f"condition {name!r} cannot be built by this version")


def _attribution(name, model, context: _Context, compare_model):
    """An attribution method's condition (explain.attribution_grid) with its technical
    scores (explain.technical) on the scenes it shows."""
    from explain.attribution import attribute, method_info, supports

    settings, images = context.settings, context.images
    reference = images[: settings.attribution_reference]

    def explain_with(which, other_class: bool = False):
        def explain(scenes: np.ndarray) -> np.ndarray:
            return attribute(
                name, which, scenes, context.device, batch_size=settings.batch_size,
                reference=reference, other_class=other_class,
            )  # fmt: skip

        return explain

    shown: dict[str, np.ndarray] = {}

    def compute(indices: np.ndarray) -> np.ndarray:
        maps = explain_with(model)(images[indices])
        # the first call is the grid's: its scenes get the technical scores
        shown.setdefault("indices", indices)
        shown.setdefault("maps", maps)
        return maps

    info = method_info(name, None, model)
    method = MapMethod(
        name, info.library, info.version, {**info.settings, "layer": info.layer}, info.signed
    )
    condition = attribution_condition(
        context.logits,
        context.store.test_image,
        compute,
        context.store,
        method,
        rows=settings.attribution_rows,
        columns=settings.baseline_columns,
        max_percentile=settings.max_percentile,
        seed=settings.seed,
        scenes=None if context.mapped is None else np.asarray(context.mapped),
        compute_other_maps=lambda indices: explain_with(model, other_class=True)(images[indices]),
    )
    scenes = images[shown["indices"]]
    compared = compare_model is not None and supports(name, compare_model)
    scores = technical_scores(
        explain_with(model),
        _logit_fn(model, context.device, settings.batch_size),
        scenes,
        context.masks[shown["indices"]],
        maps=shown["maps"],
        explain_for=explain_with,
        model=model,
        other_model_maps=explain_with(compare_model)(scenes) if compared else None,
        out_of_set=context.other,
        settings=settings.technical,
    )
    return replace(condition, technical=scores)


def _logit_fn(model, device, batch_size):
    """(N, H, W, 3) floats in [0, 1] -> the model's logits (N,), for the faithfulness
    curves (they feed part-deleted scenes, not 8-bit pictures)."""

    def logits(scenes: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(scenes), batch_size):
                part = torch.from_numpy(np.ascontiguousarray(scenes[start : start + batch_size]))
                x = part.to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
                out.append(model(x).logit.double().cpu().numpy())
        return np.concatenate(out)

    return logits


def other_scenes(settings: ExplainSettings, size: int, device) -> OtherScenes | None:
    """Scenes of ``settings.out_of_set_preset`` with their masks (None: no preset), for
    the technical scores' out-of-set change."""
    from generator.biases import load_spec
    from generator.render import render_scenes

    if settings.out_of_set_preset is None:
        return None
    params = load_spec(settings.out_of_set_preset).sample(
        settings.out_of_set_scenes, np.random.default_rng([settings.seed, 7])
    )
    images, masks = render_scenes(params, size=size, device=device, antialias=True)
    return OtherScenes(settings.out_of_set_preset, np.asarray(images), np.asarray(masks))


def _ground_truth(model, dataset, test, logits, render, device, settings, progress):
    """``ground_truth`` for every factor, the factors whose split was made on the fly, and
    the intervened scenes of the first ``len(logits)`` test images (:class:`_Intervened`).

    ``test`` is the whole test split; ``logits`` those of its first ``len(logits)`` images
    (originals beyond them are run through the model here).
    """
    scenes = GroundTruthScenes(dataset, test.params, render, settings.seed)
    pairs = {}
    kept = _Intervened({}, {}, {}, {})
    for factor in tqdm(FACTORS, desc="ground truth", leave=False, disable=not progress):
        originals, intervened = scenes.scenes(factor, settings.ground_truth_scenes)
        if originals.size == 0:
            raise UserError(f"no intervened scenes for {factor}: the split is empty")
        before = np.empty(len(originals))
        known = originals < len(logits)
        before[known] = logits[originals[known]]
        if not known.all():
            extra = np.asarray(test.images[np.sort(originals[~known])])
            order = np.argsort(np.argsort(originals[~known]))
            before[~known] = batched_logits(model.logit, extra, device, settings.batch_size)[order]
        after = batched_logits(model.logit, intervened, device, settings.batch_size)
        pairs[factor] = (before, after)
        kept.test_index[factor], kept.images[factor] = originals[known], intervened[known]
        kept.original_logit[factor], kept.changed_logit[factor] = before[known], after[known]
    variance = float(np.var(logits))
    truth = ground_truth(pairs, variance, settings.relevance_rule, settings.seed)
    return truth, scenes.made_on_the_fly, kept


def _validation(
    model, dataset, bundle_dir, manifest, analysis, device, settings, progress, thresholds,
    probe_dir,
) -> Validation:  # fmt: skip
    """The manifest's ``validation``, on the images as written to ``bundle_dir``."""
    if probe_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            probe = ensure_probe(Path(tmp) / PROBE_DIR, dataset, device, settings.probe, progress)
    else:
        probe = ensure_probe(Path(probe_dir), dataset, device, settings.probe, progress)
    test = dataset.split("test")
    n = manifest.dataset.test_images
    held = manifest.conditions
    numbers = {"ground_truth": ground_truth_checks(manifest.attributes)}
    if "counterfactuals" in held:
        numbers["counterfactuals"] = counterfactual_checks(
            bundle_dir,
            held.counterfactuals,
            manifest.attributes,
            model,
            probe,
            device,
            settings.batch_size,
        )
    if "concepts" in held:
        numbers["concepts"] = concept_checks(
            analysis.score_maps,
            analysis.image_scores,
            [c.index for c in held.concepts.concepts],
            test.params.iloc[:n].reset_index(drop=True),
            np.asarray(test.masks[:n]),
        )
    return assemble(numbers, probe.card, thresholds, held=tuple(held))


def explain(
    run_dir: Path,
    data_dir: Path,
    out: Path,
    device: torch.device,
    settings: ExplainSettings = ExplainSettings(),
    overwrite: bool = False,
    progress: bool = True,
    thresholds: Thresholds | None = None,
    allow_invalid: bool = False,
    compare_run: Path | None = None,
    executor: Executor | None = None,
) -> tuple[Path, dict[str, float]]:
    """Load the run and the dataset, then :func:`build_bundle` (the attribute probe is
    cached in ``RUN_DIR/probe``; ``compare_run``: a second run on the same dataset, for the
    maps' stability across models; ``executor``: see :func:`build_bundle`). Adds a ``load``
    timing."""
    from modeling import load_run

    watch = Stopwatch()
    with watch("load"):
        dataset = DatasetFolder(data_dir)
        run = load_run(run_dir, device)
        other = load_run(compare_run, device) if compare_run is not None else None
    if other is not None and other.card.dataset.fingerprint != run.card.dataset.fingerprint:
        raise UserError(
            f"--compare-model {compare_run} was trained on another dataset than {run_dir}; "
            "the stability across models compares two models of the same data"
        )
    path, timings = build_bundle(
        run.model,
        run.card,
        dataset,
        out,
        device,
        settings,
        overwrite=overwrite,
        progress=progress,
        thresholds=thresholds,
        allow_invalid=allow_invalid,
        probe_dir=Path(run_dir) / PROBE_DIR,
        compare_model=other.model if other is not None else None,
        executor=executor,
    )
    return path, {**watch.seconds, **timings}


def bundle_is_current(
    bundle_dir: Path,
    run_dir: Path,
    dataset: DatasetFolder,
    conditions: tuple[str, ...] = CONDITIONS,
) -> bool:
    """Whether ``bundle_dir`` is a whole bundle (every file's hash verifies) of exactly
    ``conditions``, with the forward- and counterfactual-simulation scenes, explaining the
    finished run in ``run_dir`` on ``dataset`` as they are now."""
    from modeling.checkpoint import read_model_card

    try:
        manifest = verify_bundle(bundle_dir)
        card = read_model_card(run_dir)
    except UserError:  # no bundle, a damaged one, or no finished run
        return False
    return (
        manifest.model_card == card
        and manifest.dataset.fingerprint == dataset.fingerprint()
        and set(manifest.conditions) == set(conditions)
        and manifest.simulation is not None  # bundles made before the scenes lack them
        and manifest.counterfactual_simulation is not None
        and maps_every_scene(manifest)
    )


def maps_every_scene(manifest: Manifest) -> bool:
    """Whether each attribution condition has both maps (the decided class's and the
    other's) of every simulation scene (bundles made before the verification design
    mapped the learning scenes only, before the distinction design one class only)."""
    scenes = set(manifest.simulation.scene_ids())
    return all(
        scenes <= {m.test_index for m in condition.scene_maps or () if m.other_image}
        for _, condition in manifest.conditions.items()
        if isinstance(condition, AttributionCondition)
    )

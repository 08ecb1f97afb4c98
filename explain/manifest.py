"""The study bundle's ``manifest.json`` as typed, frozen records (schema version 1).

``xaistudy explain`` builds a :class:`Manifest` and writes ``manifest.to_json()``; the
study server, the analysis and the command line read it with
``Manifest.from_json(data)`` (through :func:`explain.bundle_format.load_manifest`), which
is the validation: a missing key, a value of the wrong type, an unknown key or condition
raises one :class:`BundleError` naming the key path and what is allowed. The JSON on
disk is exactly ``to_json()``; docs/bundle.md describes every key. Like
:mod:`explain.bundle_format`, this module imports neither torch nor numpy.

The layout of a manifest::

    schema_version, created, files          the bundle itself
    model_card                              the run's model card (modeling.card)
    dataset                                 the test images' dataset
    ground_truth, ground_truth_rule         per factor: how much it moves the model
    attributes                              per study attribute: the answer key
    tutorial                                the animals and a row per attribute
    conditions.<name>                       any of baseline, counterfactuals, concepts and
                                            the attribution methods: title, description,
                                            layout, stimuli, details
    simulation                              optional: the forward-simulation scenes
    counterfactual_simulation               optional: the counterfactual-simulation pairs
    explain_settings                        every setting the bundle was made with
    validation                              optional: the checks of the stored images
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from modeling.card import ModelCard
from xaistudy.errors import UserError
from xaistudy.records import Invalid, Record, join
from xaistudy.records import key as spec
from xaistudy.vocabulary import ALL_CONDITIONS, FACTORS, STUDY_ATTRIBUTE_KEYS

SCHEMA_VERSION = 1
ANIMALS = ("peaky", "stretchy")  # logit < 0 | > 0
Animal = Literal["peaky", "stretchy"]


class BundleError(UserError):
    """A bundle that is missing, damaged or not of this schema."""


@dataclass(frozen=True, kw_only=True)
class Part(Record):
    """A part of the manifest: its errors are the manifest's."""

    json_noun = "bundle manifest"
    json_error = BundleError


# ------------------------------------------------------------------------ stimuli


@dataclass(frozen=True, kw_only=True)
class Stimulus(Part):
    """One image as participants see it, with its caption."""

    image: str  # "images/<sha256[:16]>.png", listed in ``files``
    caption: str
    test_index: int | None = spec(optional=True)  # row of the test split, where known


@dataclass(frozen=True, kw_only=True)
class Cell(Stimulus):
    """A stimulus in a condition's grid (0-based ``row`` and ``column``)."""

    row: int
    column: int


@dataclass(frozen=True, kw_only=True)
class BaselineCell(Cell):
    logit: float | None = spec(optional=True)  # the model's output, > 0 means stretchy
    decision: Animal | None = spec(optional=True)


@dataclass(frozen=True, kw_only=True)
class CounterfactualCell(Cell):
    target: float  # the logit the image was edited to (the source's own in column 0)
    logit: float  # the model on the decoded image
    stored_logit: float  # the model on the stored 8-bit PNG
    clipped_fraction: float  # share of decoded pixel values outside [0, 1]
    source: bool  # the unedited test image (column 0)
    passes_checks: bool
    decision: Animal | None = spec(optional=True)


@dataclass(frozen=True, kw_only=True)
class ConceptCell(Cell):
    concept_score: float  # the image's mean score of the row's concept


# ------------------------------------------------------------------------- layout


@dataclass(frozen=True, kw_only=True)
class Layout(Part):
    rows: int
    columns: int
    row_labels: tuple[str, ...]
    column_labels: tuple[str, ...]

    def check(self, path: str) -> None:
        if self.rows < 1 or self.columns < 1:
            raise Invalid(
                path, f"needs positive rows and columns, not {self.rows} x {self.columns}"
            )
        for name, count, each in (
            ("row_labels", self.rows, "row"),
            ("column_labels", self.columns, "column"),
        ):
            if len(getattr(self, name)) != count:
                raise Invalid(join(path, name), f"must hold {count} labels, one per {each}")


@dataclass(frozen=True, kw_only=True)
class Bins(Part):
    """The baseline's logit bins: column j holds ``edges[j] <= logit < edges[j+1]``."""

    centres: tuple[float, ...]  # the format's key keeps this spelling
    edges: tuple[float | None, ...]  # null: -infinity (first), +infinity (last)
    rule: str
    percentiles_of_abs_logit: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class BaselineLayout(Layout):
    bins: Bins


# --------------------------------------------------------------------- conditions


@dataclass(frozen=True, kw_only=True)
class Condition(Part):
    """What every condition has: words for participants, the grid and its stimuli
    (row-major order)."""

    title: str
    description: str  # one paragraph for participants on how to read it
    layout: Layout
    stimuli: tuple[Cell, ...] = spec(nonempty=True)

    def check(self, path: str) -> None:
        rows, columns = self.layout.rows, self.layout.columns
        for i, cell in enumerate(self.stimuli):
            if not (0 <= cell.row < rows and 0 <= cell.column < columns):
                raise Invalid(
                    join(join(path, "stimuli"), i),
                    f"has row {cell.row}, column {cell.column}: outside the {rows} x {columns} "
                    "layout",
                )

    def images(self) -> list[str]:
        return [s.image for s in self.stimuli]

    def grid(self) -> list[list[list[Cell]]]:
        """rows -> columns -> the stimuli in that cell."""
        cells: list[list[list[Cell]]] = [
            [[] for _ in range(self.layout.columns)] for _ in range(self.layout.rows)
        ]
        for stimulus in self.stimuli:
            cells[stimulus.row][stimulus.column].append(stimulus)
        return cells


@dataclass(frozen=True, kw_only=True)
class BaselineCondition(Condition):
    """Real test images in columns by the model's logit."""

    layout: BaselineLayout
    stimuli: tuple[BaselineCell, ...] = spec(nonempty=True)


@dataclass(frozen=True, kw_only=True)
class CounterfactualSource(Part):
    test_index: int
    logit: float
    passes_checks: bool


@dataclass(frozen=True, kw_only=True)
class CounterfactualChecks(Part):
    logit_tolerance: float
    clipped_tolerance: float
    rule: str


@dataclass(frozen=True, kw_only=True)
class Rejected(Part):
    """Candidate rows that failed the checks, in all and per check."""

    total: int
    off_target: int
    wrong_side: int
    clipped: int


@dataclass(frozen=True, kw_only=True)
class CounterfactualCondition(Condition):
    """Source test images edited until the model's logit reaches each target."""

    stimuli: tuple[CounterfactualCell, ...] = spec(nonempty=True)
    targets: tuple[float, ...]
    target_columns: tuple[int, ...]
    target_percentiles_of_abs_logit: tuple[float, ...]
    sources: tuple[CounterfactualSource, ...]  # the rows shown
    checks: CounterfactualChecks
    candidates: int
    rejected: Rejected
    rows_failing_checks: int
    max_abs_logit_error: float
    max_abs_stored_logit_error: float
    max_clipped_fraction: float


@dataclass(frozen=True, kw_only=True)
class Fidelity(Part):
    """How well the concepts reproduce the model."""

    logit_r2: float
    decision_agreement: float
    mean_abs_logit_error: float
    activation_r2: float
    images: int


@dataclass(frozen=True, kw_only=True)
class MergedConcept(Part):
    concepts: tuple[int, ...]  # the original indices
    correlation: float
    shared_strongest: float


@dataclass(frozen=True, kw_only=True)
class ConceptRow(Part):
    row: int
    index: int  # after merging
    merged_from: tuple[int, ...]
    importance: float  # > 0 pushes toward stretchy
    toward: Animal
    heatmap_vmax: float


@dataclass(frozen=True, kw_only=True)
class ConceptCondition(Condition):
    """ICE-style concepts: one row per concept, its strongest and weakest images."""

    stimuli: tuple[ConceptCell, ...] = spec(nonempty=True)
    strongest_columns: int  # columns 0.. hold the strongest pictures, the rest the weakest
    factorisation: Literal["nmf", "signed"]  # the format's key keeps this spelling
    layer: int
    fidelity: Fidelity
    importance: tuple[float, ...]  # per row
    merged: tuple[MergedConcept, ...]
    merge_threshold: float
    shared_strongest_threshold: float
    concepts: tuple[ConceptRow, ...]  # per row


@dataclass(frozen=True, kw_only=True)
class AttributionCell(Cell):
    """A test scene, or its attribution map (``shows``), in a column by the model's logit.

    A grid cell holds both: the scene first, its map under it, same row and column."""

    shows: Literal["scene", "map"]
    logit: float  # the model's output on the scene, > 0 means stretchy
    decision: Animal


@dataclass(frozen=True, kw_only=True)
class Localization(Part):
    """Quantus' localization scores of a method's maps on one region (explain.technical)."""

    pointing_game: float
    relevance_mass_accuracy: float
    relevance_rank_accuracy: float
    region_share: float  # the region's share of the picture: what an even map scores


@dataclass(frozen=True, kw_only=True)
class Faithfulness(Part):
    """Areas under the deletion and insertion curves, the method's order and chance's."""

    deletion: float  # lower is better
    insertion: float  # higher is better
    deletion_random: float
    insertion_random: float


@dataclass(frozen=True, kw_only=True)
class Sanity(Part):
    """Cascading parameter randomization: rank similarity of the maps to the trained
    model's after more and more layers (output first) are randomized."""

    layers_randomized: tuple[int, ...]
    down_to: tuple[str, ...]
    rank_similarity: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Geometry(Part):
    mirror: float  # rank similarity of a mirrored scene's map and the mirrored map
    shift: float


@dataclass(frozen=True, kw_only=True)
class OutOfSet(Part):
    preset: str  # the other preset's scenes
    scenes: int
    entropy: float  # out-of-set minus in-set mean entropy
    arm_mass: float  # out-of-set minus in-set mean share of positive relevance on the arms


@dataclass(frozen=True, kw_only=True)
class TechnicalScores(Part):
    """An attribution condition's technical scores, on its own scenes (explain.technical)."""

    scenes: int
    localization: dict[str, Localization] = spec(allowed=("arms", "animal"), noun="region")
    faithfulness: Faithfulness
    entropy: float  # mean bits of |relevance| over pixels
    geometry: Geometry
    sanity: Sanity | None = spec(optional=True)
    out_of_set: OutOfSet | None = spec(optional=True)
    stability_across_models: float | None = spec(optional=True)

    def headline(self) -> dict[str, float | None]:
        """One number per family, each larger = better, for the report's comparison."""
        arms = self.localization.get("arms")
        faith = self.faithfulness
        return {
            "pointing_game_arms": arms.pointing_game if arms else None,
            "mass_accuracy_arms": arms.relevance_mass_accuracy if arms else None,
            "deletion_gain": faith.deletion_random - faith.deletion,
            "insertion_gain": faith.insertion - faith.insertion_random,
            "randomization_change": 1 - self.sanity.rank_similarity[-1] if self.sanity else None,
            "mirror_consistency": self.geometry.mirror,
            "stability_across_models": self.stability_across_models,
        }


@dataclass(frozen=True, kw_only=True)
class SceneMap(Part):
    """An attribution map of one test scene outside the condition's grid, and the same
    method's map for the class the model did not decide (a distinction trial's other
    panel), both on the condition's color scale."""

    test_index: int
    image: str
    other_image: str | None = spec(optional=True)


@dataclass(frozen=True, kw_only=True)
class AttributionCondition(Condition):
    """Real test scenes in columns by the model's logit (as the baseline), each with the
    map of an attribution method (explain.attribution) under it."""

    layout: BaselineLayout
    stimuli: tuple[AttributionCell, ...] = spec(nonempty=True)
    method: str  # the method's name, the condition's own
    library: str  # the package that computed the maps ("captum", "zennit", "xaistudy")
    library_version: str
    settings: dict[str, Any]  # the method's settings, as explain.attribution records them
    signed: bool  # maps show evidence against the decision too (blue), not only for it
    map_rendering: str  # how a map's values became colors, for the researcher
    technical: TechnicalScores | None = spec(optional=True)  # when computed
    # The maps of the simulation scenes (``Manifest.simulation``, learning and test: the
    # verification design shows them in both phases), drawn on the grid's color scale;
    # absent in bundles without simulation scenes.
    scene_maps: tuple[SceneMap, ...] | None = spec(optional=True)

    def images(self) -> list[str]:
        maps = self.scene_maps or ()
        return (
            super().images()
            + [m.image for m in maps]
            + [m.other_image for m in maps if m.other_image is not None]
        )

    def scene_map(self, test_index: int) -> str | None:
        """The map picture of test scene ``test_index`` among the scene maps, or None."""
        return next((m.image for m in self.scene_maps or () if m.test_index == test_index), None)


@dataclass(frozen=True, kw_only=True)
class Conditions(Part):
    """The conditions a bundle holds, by name: any non-empty subset of
    ``xaistudy.vocabulary.ALL_CONDITIONS`` (the ICLR 2022 study's three by default)."""

    json_key_noun = "condition"

    baseline: BaselineCondition | None = spec(optional=True)
    counterfactuals: CounterfactualCondition | None = spec(optional=True)
    concepts: ConceptCondition | None = spec(optional=True)
    integrated_gradients: AttributionCondition | None = spec(optional=True)
    smoothgrad: AttributionCondition | None = spec(optional=True)
    grad_cam: AttributionCondition | None = spec(optional=True)
    occlusion: AttributionCondition | None = spec(optional=True)
    lrp: AttributionCondition | None = spec(optional=True)
    contrastive_lrp: AttributionCondition | None = spec(optional=True)
    iba: AttributionCondition | None = spec(optional=True)

    def check(self, path: str) -> None:
        if not list(self):
            raise Invalid(path, f"must hold at least one of {', '.join(ALL_CONDITIONS)}")
        for name in self:
            condition = self[name]
            if isinstance(condition, AttributionCondition) and condition.method != name:
                raise Invalid(join(join(path, name), "method"), f"must be {name!r}")

    def __getitem__(self, name: str) -> Condition:
        condition = getattr(self, name, None) if name in ALL_CONDITIONS else None
        if condition is None:
            raise KeyError(name)
        return condition

    def __contains__(self, name: object) -> bool:
        return name in ALL_CONDITIONS and getattr(self, str(name)) is not None

    def __iter__(self) -> Iterator[str]:
        """The names of the conditions held, in ``ALL_CONDITIONS`` order."""
        return iter(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def items(self) -> list[tuple[str, Condition]]:
        return [(name, self[name]) for name in self]


# ------------------------------------------------------------- forward simulation


@dataclass(frozen=True, kw_only=True)
class SimulationScene(Part):
    """A test scene of the forward-simulation design with the model's output on it."""

    image: str
    test_index: int  # row of the test split: the scene's id
    logit: float  # > 0 means stretchy
    decision: Animal  # the model's
    label: Animal  # the truth
    stratum: int  # difficulty by |logit|: 0 = hardest (closest to the boundary)

    @property
    def model_correct(self) -> bool:
        return self.decision == self.label


@dataclass(frozen=True, kw_only=True)
class SimulationStimuli(Part):
    """The learning and test scenes of the forward-simulation design (explain.stimuli):
    disjoint, each balanced over the model's true/false positives/negatives and spread
    over difficulty strata."""

    learning: tuple[SimulationScene, ...] = spec(nonempty=True)
    test: tuple[SimulationScene, ...] = spec(nonempty=True)
    strata_edges: tuple[float, ...]  # |logit| bounds between the strata, ascending
    rule: str

    def check(self, path: str) -> None:
        shared = {s.test_index for s in self.learning} & {s.test_index for s in self.test}
        if shared:
            raise Invalid(join(path, "test"), f"repeats learning scene(s) {sorted(shared)[:5]}")
        for phase in ("learning", "test"):
            indices = [s.test_index for s in getattr(self, phase)]
            if len(set(indices)) != len(indices):
                raise Invalid(join(path, phase), "names a scene twice")

    def images(self) -> list[str]:
        return [s.image for s in (*self.learning, *self.test)]

    def scene_ids(self) -> list[int]:
        """The test indices of every scene, learning then test: those that attribution
        conditions keep a map of (``AttributionCondition.scene_maps``)."""
        return [s.test_index for s in (*self.learning, *self.test)]


# ------------------------------------------------------- counterfactual simulation


@dataclass(frozen=True, kw_only=True)
class CounterfactualPair(Part):
    """A test scene and the same scene with one factor redrawn (the dataset's intervention
    split), with the model's output on each as stored."""

    test_index: int  # row of the test split: the original scene's id
    factor: str  # the one factor redrawn (xaistudy.vocabulary.FACTORS)
    original_image: str
    changed_image: str
    original_logit: float  # > 0 means stretchy
    changed_logit: float
    original_decision: Animal  # the model's
    changed_decision: Animal  # the model's: what participants predict
    label: Animal  # the truth (the intervention keeps the animal)
    stratum: int  # difficulty by |original logit|: 0 = closest to the boundary

    def check(self, path: str) -> None:
        if self.factor not in FACTORS:
            raise Invalid(
                join(path, "factor"), f"is {self.factor!r}; allowed are {', '.join(FACTORS)}"
            )

    @property
    def flips(self) -> bool:
        """Whether the change turns the model's decision."""
        return self.changed_decision != self.original_decision


@dataclass(frozen=True, kw_only=True)
class CounterfactualStimuli(Part):
    """The pre-test and post-test pairs of the counterfactual-simulation design
    (explain.stimuli): disjoint scenes, each phase half flipping the model's decision,
    spread over the factors and difficulty strata."""

    pre: tuple[CounterfactualPair, ...] = spec(nonempty=True)
    post: tuple[CounterfactualPair, ...] = spec(nonempty=True)
    strata_edges: tuple[float, ...]  # |logit| bounds between the strata, ascending
    rule: str

    def check(self, path: str) -> None:
        shared = {p.test_index for p in self.pre} & {p.test_index for p in self.post}
        if shared:
            raise Invalid(join(path, "post"), f"repeats pre-test scene(s) {sorted(shared)[:5]}")
        for phase in ("pre", "post"):
            indices = [p.test_index for p in getattr(self, phase)]
            if len(set(indices)) != len(indices):
                raise Invalid(join(path, phase), "names a scene twice")

    def scene_ids(self) -> set[int]:
        return {p.test_index for p in (*self.pre, *self.post)}

    def images(self) -> list[str]:
        pairs = (*self.pre, *self.post)
        return [image for p in pairs for image in (p.original_image, p.changed_image)]


# ------------------------------------------------------------------- ground truth


@dataclass(frozen=True, kw_only=True)
class FactorTruth(Part):
    """How much intervening on one factor moves the model (docs/bundle.md)."""

    effect: float  # mean |delta|
    ci: tuple[float, float]  # bootstrap 95% interval of effect
    flip_rate: float
    variance_share: float
    mean_change: float
    n: int
    rank: int  # 1 = largest effect
    relevant: bool


@dataclass(frozen=True, kw_only=True)
class GroundTruthRule(Part):
    """The relevance rule the labels were made with."""

    min_flip_rate: float
    min_variance_share: float
    min_effect: float
    combine: Literal["any", "all"]
    description: str
    scenes_per_factor: int
    made_on_the_fly: tuple[str, ...]  # factors whose intervention split was rendered here


@dataclass(frozen=True, kw_only=True)
class Attribute(Part):
    """A study attribute and the answer key: relevant when any of its factors is."""

    key: str
    name: str
    factors: tuple[str, ...] = spec(nonempty=True)
    relevant: bool
    effect: float  # the largest of its factors'

    def check(self, path: str) -> None:
        if self.key not in STUDY_ATTRIBUTE_KEYS:
            raise Invalid(
                join(path, "key"),
                f"is {self.key!r}, not a study attribute (allowed: "
                f"{', '.join(STUDY_ATTRIBUTE_KEYS)})",
            )


# ----------------------------------------------------------------------- tutorial


@dataclass(frozen=True, kw_only=True)
class TutorialExamples(Part):
    json_key_noun = "animal"

    peaky: tuple[Stimulus, ...] = spec(nonempty=True)
    stretchy: tuple[Stimulus, ...] = spec(nonempty=True)

    def __getitem__(self, animal: str) -> tuple[Stimulus, ...]:
        if animal not in ANIMALS:
            raise KeyError(animal)
        return getattr(self, animal)


@dataclass(frozen=True, kw_only=True)
class TutorialRow(Part):
    """One study attribute varied alone, from Two4Two's neutral scene."""

    caption: str
    images: tuple[Stimulus, ...]


@dataclass(frozen=True, kw_only=True)
class Tutorial(Part):
    examples: TutorialExamples
    attributes: dict[str, TutorialRow] = spec(allowed=STUDY_ATTRIBUTE_KEYS, noun="study attribute")

    def images(self) -> list[str]:
        return [s.image for animal in ANIMALS for s in self.examples[animal]] + [
            s.image for row in self.attributes.values() for s in row.images
        ]


# --------------------------------------------------------------------- validation


@dataclass(frozen=True, kw_only=True)
class CellCheck(Part):
    """One stored counterfactual image, decoded and re-scored by the model."""

    row: int
    column: int
    target: float
    logit: float  # of the stored image
    error: float
    wrong_side: bool
    clipped_fraction: float


@dataclass(frozen=True, kw_only=True)
class Trend(Part):
    """The attribute probe's reading of the stored images against the target, within rows."""

    reading: str
    slope: float
    r2: float
    range_share: float
    relevant: bool | None  # the answer key's label; null when unknown


@dataclass(frozen=True, kw_only=True)
class CounterfactualValidation(Part):
    n: int
    clipped_fraction_mean: float
    clipped_fraction_max: float
    stored_logit_error_max: float
    wrong_side: int
    manifest_logit_mismatch_max: float | None
    cells: tuple[CellCheck, ...]
    attribute_trends: dict[str, Trend] = spec(allowed=STUDY_ATTRIBUTE_KEYS, noun="study attribute")


@dataclass(frozen=True, kw_only=True)
class Mass(Part):
    """Share of a concept's heatmap on the arms, the other blocks and the background."""

    arms: float
    blocks: float
    background: float


@dataclass(frozen=True, kw_only=True)
class ConceptAbout(Part):
    row: int
    index: int
    about: str  # the attribute (or "label") its image scores correlate with most
    about_correlation: float
    correlations: dict[str, float]
    mass: Mass


@dataclass(frozen=True, kw_only=True)
class ConceptPair(Part):
    rows: tuple[int, int]
    image_score_correlation: float
    score_map_correlation: float
    similarity: float  # the larger


@dataclass(frozen=True, kw_only=True)
class ConceptValidation(Part):
    rows: tuple[ConceptAbout, ...]
    pairs: tuple[ConceptPair, ...]


@dataclass(frozen=True, kw_only=True)
class KeyEffect(Part):
    key: str
    effect: float


@dataclass(frozen=True, kw_only=True)
class AnswerKeyValidation(Part):
    """The answer key against trivial strategies (``validation.ground_truth``)."""

    relevant: int
    irrelevant: int
    all_relies_on: float
    all_does_not: float
    all_neutral: float
    weakest_relevant: KeyEffect | None
    strongest_irrelevant: KeyEffect | None
    effect_ratio: float | None  # null when a group is empty


@dataclass(frozen=True, kw_only=True)
class ProbeSummary(Part):
    architecture: str | None
    fingerprint: str | None
    train_images: int | None
    seconds: float | None
    test_r2: dict[str, float] | None  # per reading


@dataclass(frozen=True, kw_only=True)
class Validation(Part):
    """The checks of the bundle as served (explain.validation)."""

    counterfactuals: CounterfactualValidation | None
    concepts: ConceptValidation | None  # null: not checked
    ground_truth: AnswerKeyValidation | None
    probe: ProbeSummary | None
    thresholds: dict[str, float]  # explain.validation.Thresholds
    failures: tuple[str, ...]  # one line per failed check
    passed: bool
    published_despite_failures: bool | None = spec(optional=True)


# ----------------------------------------------------------------------- manifest


@dataclass(frozen=True, kw_only=True)
class Dataset(Part):
    fingerprint: str
    preset: str | None
    size: int  # image side in pixels
    test_images: int  # the first n of the test split the conditions draw from


@dataclass(frozen=True, kw_only=True)
class Manifest(Part):
    """``manifest.json``."""

    # The bundle's own fields: BundleWriter.finish stamps them.
    schema_version: int = SCHEMA_VERSION
    created: str = ""  # ISO time
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 hex; all but this
    model_card: ModelCard
    dataset: Dataset
    ground_truth: dict[str, FactorTruth] = spec(nonempty=True, allowed=FACTORS, noun="factor")
    ground_truth_rule: GroundTruthRule
    attributes: tuple[Attribute, ...] = spec(nonempty=True)
    tutorial: Tutorial
    conditions: Conditions
    explain_settings: dict[str, Any]  # explain.build.ExplainSettings.to_dict()
    validation: Validation | None = spec(optional=True)  # bundles made before it lack it
    simulation: SimulationStimuli | None = spec(optional=True)  # forward-simulation scenes
    # the counterfactual-simulation pairs; bundles made before them lack them
    counterfactual_simulation: CounterfactualStimuli | None = spec(optional=True)

    def check(self, path: str) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise Invalid(
                "schema_version",
                f"is {self.schema_version}; this version reads {SCHEMA_VERSION}",
            )
        for i, attribute in enumerate(self.attributes):
            unknown = [f for f in attribute.factors if f not in self.ground_truth]
            if unknown:
                raise Invalid(
                    f"attributes[{i}].factors",
                    f"names {', '.join(unknown)}, not in ground_truth (allowed: "
                    f"{', '.join(self.ground_truth)})",
                )
        if self.simulation is not None and self.counterfactual_simulation is not None:
            # the forward-simulation scenes are the counterfactual design's learning scenes
            learned = {s.test_index for s in (*self.simulation.learning, *self.simulation.test)}
            shared = sorted(learned & self.counterfactual_simulation.scene_ids())
            if shared:
                raise Invalid(
                    "counterfactual_simulation",
                    f"repeats forward-simulation scene(s) {shared[:5]}",
                )

    def images(self) -> list[str]:
        """Every image path the tutorial and the conditions' stimuli point at."""
        shared = self.tutorial.images() + [
            image
            for section in (self.simulation, self.counterfactual_simulation)
            if section is not None
            for image in section.images()
        ]
        return shared + [
            image for _, condition in self.conditions.items() for image in condition.images()
        ]

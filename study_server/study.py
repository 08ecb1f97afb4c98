"""The study definition: a TOML file (docs/study.md), loaded into frozen dataclasses.

``load_study(None)`` reads the default that ships with the package
(``study_server/studies/default.toml``); every unknown key or bad value raises
:class:`UserError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study_server.within import Within, check_target, parse_groups, williams_square
from xaistudy.errors import UserError
from xaistudy.files import atomic_write_text
from xaistudy.vocabulary import (
    ALL_CONDITIONS,
    COUNTERFACTUAL_SIMULATION,
    DISTINCTION,
    FORWARD_SIMULATION,
    NO_EXPLANATION,
    TRIAL_DESIGNS,
    VERIFICATION,
)

if TYPE_CHECKING:
    from explain.manifest import Manifest

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # a whole string: fullmatch


@dataclasses.dataclass(frozen=True)
class Attribute:
    key: str
    name: str


@dataclasses.dataclass(frozen=True)
class Condition:
    name: str
    target_n: int
    tutorial: str | None = None  # None: the bundle's description of the condition


# The facts a consent text must state, each a ``{placeholder}`` in ``consent`` filled from
# ``[consent_details]``, with what the default study file asks for.
CONSENT_DETAILS: dict[str, str] = {
    "researcher_contact": "who runs the study and how to reach them",
    "ethics_approval": "the ethics committee and the approval's reference",
    "payment": "what participants are paid",
    "data_controller": "who is responsible for the data",
    "retention": "how long the data are kept",
    "withdrawal": "how to withdraw, also after completing the study",
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]*)\}")


@dataclasses.dataclass(frozen=True)
class Question:
    """A multiple-choice question: comprehension (``after_rating`` 0) or attention check."""

    id: str
    question: str
    options: tuple[str, ...]
    correct: str
    conditions: tuple[str, ...] = ()
    after_rating: int = 0
    example_row: int | None = None  # the grid row of the condition shown with it
    labels: tuple[str, ...] = ()  # the options as shown in the study's language; () as given

    @property
    def shown_options(self) -> tuple[tuple[str, str], ...]:
        """(value, label) per option: the value (stored, compared with ``correct``) is the
        option in the study's first language, the label what the participant reads."""
        return tuple(zip(self.options, self.labels or self.options, strict=True))


# The study designs (docs/designs/): what participants do after the introduction.
ATTRIBUTE_RATING = "attribute-rating"  # explanations, then a 5-point rating per attribute
# FORWARD_SIMULATION: learn the model's decisions, then predict them; VERIFICATION: judge
# whether the model's decision is right; DISTINCTION: pick the map of the model's decision
# among two; COUNTERFACTUAL_SIMULATION: predict the model on a changed scene, before and
# after learning its decisions (xaistudy.vocabulary, which the analysis shares)
DESIGNS = (ATTRIBUTE_RATING, *TRIAL_DESIGNS)
# The trial designs of learning then test trials on the bundle's simulation scenes (their
# settings: Trials; their pages: pages._TRIAL_KINDS)
LEARN_THEN_TEST = (FORWARD_SIMULATION, VERIFICATION, DISTINCTION)
# The trial designs compared with the explanation-free control ``none`` (a distinction
# trial without explanations would have nothing to pick).
CONTROLLED_DESIGNS = (FORWARD_SIMULATION, VERIFICATION, COUNTERFACTUAL_SIMULATION)


def settings_table(design: str) -> str:
    """The study file's table of a trial design's settings: ``[forward_simulation]``,
    ``[verification]``, ``[distinction]``, ``[counterfactual_simulation]``."""
    return design.replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Trials:
    """``[forward_simulation]``, ``[verification]`` or ``[distinction]``: the trials of a
    trial design."""

    learning_trials: int  # the first n of the bundle's learning scenes
    test_trials: int  # the first n of its test scenes
    feedback: bool  # after each learning trial: the model's decision (and the truth)
    confidence: bool  # each test trial also asks how sure the participant is

    phases = ("learning", "test")  # the trial phases, in the order walked


@dataclasses.dataclass(frozen=True)
class CounterfactualSimulation:
    """``[counterfactual_simulation]``: the trials of the counterfactual-simulation design:
    a pre-test, the learning block of the forward-simulation design, a post-test."""

    pre_trials: int  # the first n of the bundle's pre-test pairs
    learning_trials: int  # the first n of its forward-simulation learning scenes
    post_trials: int  # the first n of its post-test pairs
    feedback: bool  # after each learning trial: what the model decided

    phases = ("pre", "learning", "post")
    confidence = False  # no trial asks how sure


# The points of each design's walk where a questionnaire can go (docs/designs/
# questionnaires.md), in walk order: a questionnaire given several is asked at each.
QUESTIONNAIRE_POINTS: dict[str, tuple[str, ...]] = {
    ATTRIBUTE_RATING: ("after-intro", "after-explanations", "after-ratings", "before-demographics"),
    **dict.fromkeys(
        TRIAL_DESIGNS, ("after-intro", "after-learning", "after-test", "before-demographics")
    ),
}
LIKERT = "likert"  # a statement rated on a 5- or 7-point agreement scale
FREE_TEXT = "text"  # a prompt answered in the participant's own words
ITEM_KINDS = (LIKERT, FREE_TEXT)
LIKERT_POINTS = (5, 7)


@dataclasses.dataclass(frozen=True)
class QuestionnaireItem:
    """One item: a Likert statement (``points``, anchors ``low``/``high``) or a free-text
    ``prompt`` (``max_length``); ``text`` is the statement or prompt as shown."""

    id: str
    kind: str  # LIKERT | FREE_TEXT
    text: str
    required: bool
    points: int = 0  # likert only
    low: str = ""
    high: str = ""
    max_length: int = 0  # free text only


@dataclasses.dataclass(frozen=True)
class Questionnaire:
    """``[[questionnaires]]``: items asked on one page at each of the points ``at`` (a
    pre/post block when there are several), to the ``conditions`` named (all when empty)."""

    id: str
    title: str
    at: tuple[str, ...]
    items: tuple[QuestionnaireItem, ...]
    conditions: tuple[str, ...] = ()

    def shown_to(self, condition: str) -> bool:
        return not self.conditions or condition in self.conditions

    def item(self, item_id: str) -> QuestionnaireItem:
        return next(i for i in self.items if i.id == item_id)


# The languages a study can be shown in: those with a message catalog
# (study_server/translations, docs/study.md).
LANGUAGES = ("en", "de")


@dataclasses.dataclass(frozen=True)
class Study:
    slug: str
    languages: tuple[str, ...]  # offered; the study file's unsuffixed texts are in the first
    language: str  # the default of a participant whose link does not ask for one
    shown_in: str  # the language of this object's texts (load_study's ``language``)
    title: str
    estimated_minutes: int
    abandonment_timeout_minutes: int
    reason_max_chars: int
    consent: str  # a template: CONSENT_DETAILS as {placeholders}
    consent_details: tuple[tuple[str, str], ...]  # (placeholder, text), filled or ""
    intro: str
    scale_statement: str
    scale_labels: tuple[str, ...]
    attributes: tuple[Attribute, ...]
    conditions: tuple[Condition, ...]
    comprehension_max_attempts: int
    comprehension_from_bundle: bool
    comprehension: tuple[Question, ...]
    attention_checks: tuple[Question, ...]
    demographics: bool
    completed_code: str
    screened_out_code: str
    per_participant_codes: bool
    completion_url: str
    screened_out_payment: str | None
    design: str = ATTRIBUTE_RATING
    forward_simulation: Trials | None = None  # the design's settings
    verification: Trials | None = None  # the design's settings
    distinction: Trials | None = None  # the design's settings
    counterfactual_simulation: CounterfactualSimulation | None = None  # the design's settings
    # ``[within]``: each participant sees the conditions of one group, one block each
    # (docs/designs/within-subjects.md); None: between subjects, one condition each
    within: Within | None = None

    @property
    def trials(self) -> Trials | CounterfactualSimulation | None:
        """The settings of a trial design's trials (TRIAL_DESIGNS); None in the rating
        design."""
        return (
            self.forward_simulation
            or self.verification
            or self.distinction
            or self.counterfactual_simulation
        )

    questionnaires: tuple[Questionnaire, ...] = ()

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.attributes)

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    def attribute(self, key: str) -> Attribute:
        return next(a for a in self.attributes if a.key == key)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)

    def comprehension_for(self, condition: str) -> tuple[Question, ...]:
        return tuple(q for q in self.comprehension if not q.conditions or condition in q.conditions)

    def attention_check(self, check_id: str) -> Question:
        return next(q for q in self.attention_checks if q.id == check_id)

    def questionnaire(self, questionnaire_id: str) -> Questionnaire:
        return next(q for q in self.questionnaires if q.id == questionnaire_id)

    def completion_link(self, code: str) -> str:
        return self.completion_url.replace("{code}", code)

    def explains(self, condition: str) -> bool:
        """Whether participants of ``condition`` see explanations (not the control)."""
        return condition != NO_EXPLANATION

    def how_to_read(self, condition: str, bundle_description: str) -> str:
        """The one text that teaches a condition: the study file's, else the bundle's."""
        return self.condition(condition).tutorial or bundle_description

    @property
    def unfilled_consent_details(self) -> tuple[str, ...]:
        """The consent details still empty: participants are not let in until none is."""
        return tuple(key for key, value in self.consent_details if not value)

    def consent_text(self) -> str:
        """The consent text with its details filled in; an empty one is shown marked, as
        only a preview may see it."""
        details = dict(self.consent_details)
        return _PLACEHOLDER.sub(
            lambda m: details[m.group(1)] or f"[{m.group(1).replace('_', ' ')}: not filled in]",
            self.consent,
        )

    def with_bundle(self, manifest: Manifest) -> Study:
        """This study checked against the bundle it serves (:meth:`check_bundle`), with the
        bundle's comprehension question for each condition added when it asks for them."""
        from study_server.comprehension import example_questions

        self.check_bundle(manifest)
        if self.design in LEARN_THEN_TEST:
            self.check_simulation(manifest)
        elif self.design == COUNTERFACTUAL_SIMULATION:
            self.check_counterfactual(manifest)
        if not self.comprehension_from_bundle:
            return self
        from study_server.languages import translator

        # a question shared by the bundle's attribution conditions: for this study's only
        derived = tuple(
            dataclasses.replace(
                q, conditions=tuple(c for c in q.conditions if c in self.condition_names)
            )
            for q in example_questions(manifest, translator(self.shown_in))
            if set(q.conditions) & set(self.condition_names)
        )
        clash = {q.id for q in derived} & {
            q.id for q in (*self.comprehension, *self.attention_checks)
        }
        if clash:
            raise UserError(
                f"study: question id(s) {', '.join(sorted(clash))} are taken by the questions "
                "made from the bundle (comprehension.from_bundle); choose other ids"
            )
        return dataclasses.replace(self, comprehension=derived + self.comprehension)

    def check_bundle(self, manifest: Manifest) -> None:
        """Every attribute and condition asked about must exist in the bundle manifest."""
        bundle_keys = {a.key for a in manifest.attributes}
        missing = [k for k in self.attribute_keys if k not in bundle_keys]
        if missing:
            raise UserError(
                f"study attribute(s) {', '.join(missing)} are not in the bundle; "
                f"the bundle has {', '.join(sorted(bundle_keys))}"
            )
        absent = [
            c for c in self.condition_names if self.explains(c) and c not in manifest.conditions
        ]
        if absent:
            raise UserError(
                f"study condition(s) {', '.join(absent)} are not in the bundle; "
                f"the bundle has {', '.join(sorted(manifest.conditions))}"
            )

    def check_simulation(self, manifest: Manifest) -> None:
        """A trial design needs the bundle's simulation scenes, as many as it asks for,
        and each attribution condition's maps of the scenes it shows with their map: the
        learning scenes (forward and counterfactual simulation), the learning and the test
        scenes (verification; distinction: the maps of both classes, telling them apart)."""
        from explain.manifest import AttributionCondition

        design, table = self.trials, settings_table(self.design)
        section = manifest.simulation
        if section is None:
            raise UserError(
                f'study: design = "{self.design}" needs the bundle\'s simulation scenes, '
                "which this bundle lacks; rebuild it with xaistudy explain "
                "(--simulation-trials LEARNING,TEST)"
            )
        blocks = self.within.blocks if self.within else 1  # each block its own scenes
        enough = functools.partial(_enough, blocks=blocks)
        enough(f"{table}.learning_trials", design.learning_trials, len(section.learning))
        learning = [s.test_index for s in section.learning[: blocks * design.learning_trials]]
        mapped, which = learning, "learning"
        if self.design in (VERIFICATION, DISTINCTION):  # a map with the test scenes too
            enough(f"{table}.test_trials", design.test_trials, len(section.test))
            test = [s.test_index for s in section.test[: blocks * design.test_trials]]
            mapped, which = learning + test, "trial"
        elif self.design == FORWARD_SIMULATION:
            enough(f"{table}.test_trials", design.test_trials, len(section.test))
        for name in self.condition_names:
            condition = manifest.conditions[name] if self.explains(name) else None
            if self.design == DISTINCTION:
                _check_distinction(name, condition, mapped)
            elif isinstance(condition, AttributionCondition):
                _check_maps(name, [condition.scene_map(i) for i in mapped], mapped, which)
            # else: no per-scene explanation: its page comes before the trials

    def check_counterfactual(self, manifest: Manifest) -> None:
        """A counterfactual-simulation study needs the bundle's pairs, as many as it asks
        for, and the simulation learning scenes (with their maps) it learns from."""
        design = self.counterfactual_simulation
        pairs = manifest.counterfactual_simulation
        if pairs is None:
            raise UserError(
                f'study: design = "{COUNTERFACTUAL_SIMULATION}" needs the bundle\'s '
                "counterfactual-simulation pairs, which this bundle lacks; rebuild it with "
                "xaistudy explain (--counterfactual-pairs PRE,POST)"
            )
        _enough("counterfactual_simulation.pre_trials", design.pre_trials, len(pairs.pre))
        _enough("counterfactual_simulation.post_trials", design.post_trials, len(pairs.post))
        self.check_simulation(manifest)


def _enough(key: str, wanted: int, held: int, blocks: int = 1) -> None:
    if blocks > 1 and wanted * blocks > held:
        raise UserError(
            f"study: {key} = {wanted} in each of {blocks} blocks needs {wanted * blocks} "
            f"disjoint scenes (blocks never share one), but the bundle has {held}; ask for at "
            f"most {held // blocks} or rebuild the bundle with more (xaistudy explain "
            "--simulation-trials)"
        )
    if wanted > held:
        raise UserError(
            f"study: {key} = {wanted}, but the bundle has {held} such scenes; ask for at most "
            f"{held} or rebuild the bundle with more"
        )


def _check_maps(name: str, maps: list, scenes: list[int], which: str) -> None:
    lacking = [i for i, m in zip(scenes, maps, strict=True) if m is None]
    if lacking:
        raise UserError(
            f"study: condition {name!r} has no maps of the {which} scene(s) "
            f"{lacking[:5]} in this bundle; rebuild it with xaistudy explain"
        )


def _check_distinction(name: str, condition, scenes: list[int]) -> None:
    """A distinction trial shows a scene's map for the model's decision and for the other
    class: the condition needs both for every trial scene, and they must differ, or the
    trial has no right answer (SmoothGrad's magnitudes are the same for both classes)."""
    from explain.manifest import AttributionCondition

    if not isinstance(condition, AttributionCondition):
        raise UserError(
            f'study: design = "{DISTINCTION}" shows a map per class for each scene; '
            f"condition {name!r} has none: use attribution methods only "
            "(docs/designs/distinction.md)"
        )
    entries = {m.test_index: m for m in condition.scene_maps or ()}
    _check_maps(name, [entries.get(i) for i in scenes], scenes, "trial")
    others = [entries[i].other_image for i in scenes]
    _check_maps(name, others, scenes, "other-class trial")
    # stored under their content's hash: the same file means the same picture
    same = [i for i in scenes if entries[i].image == entries[i].other_image]
    if same:
        raise UserError(
            f"study: condition {name!r} draws the same map for both classes on scene(s) "
            f"{same[:5]} ({len(same)} of {len(scenes)}): a distinction trial on them has no "
            f"right answer; {name} cannot be used in a distinction study"
        )


def default_study_path() -> Path:
    return Path(str(resources.files("study_server") / "studies" / "default.toml"))


def shipped_studies() -> dict[str, Path]:
    """The study files that ship with the server (``study_server/studies``), by name."""
    folder = default_study_path().parent
    return {path.stem: path for path in sorted(folder.glob("*.toml"))}


def study_file(name_or_path: str | Path) -> Path:
    """A study file given as a path, or by the name of a shipped one (``default``,
    ``forward-simulation``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_studies()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise UserError(
        f"study {str(name_or_path)!r} is neither a file nor a shipped study; the shipped "
        f"ones are {', '.join(shipped)}"
    )


class _Reader:
    """Typed access to one TOML table that remembers which keys were used."""

    def __init__(self, table: Any, where: str, language: str = "", others: tuple = ()):
        if not isinstance(table, dict):
            raise UserError(f"study: {where} must be a table")
        self.table, self.where, self.used = table, where, set()
        # ``language``: the suffix of the texts read ("" for the unsuffixed ones); the
        # variants of the ``others`` offered languages are allowed, read by their own pass.
        self.language, self.others = language, others

    def _translated(self, key: str, required: bool) -> str:
        """The key of ``key``'s text in this reader's language (``key_de``); needed when
        the unsuffixed text is given (or required)."""
        self.used.update(f"{key}_{other}" for other in self.others)
        if not self.language or (not required and key not in self.table):
            return key
        self.used.add(key)
        variant = f"{key}_{self.language}"
        if variant not in self.table:
            full = f"{self.where}.{variant}".lstrip(".")
            raise UserError(
                f"study: {full} is missing: the study offers {self.language}, so each "
                f"participant text needs its {self.language} version (docs/study.md)"
            )
        return variant

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        full = f"{self.where}.{key}" if self.where else key
        if key not in self.table:
            if default is _REQUIRED:
                raise UserError(f"study: {full} is missing")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise UserError(f"study: {full} must be {name}, got {value!r}")
        return value

    def text(
        self, key: str, default: Any = None, max_len: int = 20000, translated: bool = False
    ) -> str | None:
        """A non-empty string; ``default`` _ABSENT makes the key optional (None);
        ``translated``: a participant text, read in this reader's language."""
        if translated:
            key = self._translated(key, required=default is None)
        value = self._get(key, str, _REQUIRED if default is None else default)
        if value is _ABSENT:
            return None
        value = value.strip()
        if not value:
            raise UserError(f"study: {self.where}.{key} must not be empty".lstrip("."))
        if len(value) > max_len:
            raise UserError(f"study: {key} is longer than {max_len} characters")
        return value

    def fact(self, key: str, default: str | None) -> str | None:
        """A fact such as a name, an address or an amount: the same in every language
        unless a language's own version (``key_de``) is given."""
        value = self._get(key, str, default)
        self.used.update(f"{key}_{other}" for other in self.others)
        if self.language:
            value = self._get(f"{key}_{self.language}", str, value)
        return value

    def integer(self, key: str, low: int, high: int, default: Any = None) -> int:
        value = self._get(key, int, _REQUIRED if default is None else default)
        if not low <= value <= high:
            raise UserError(f"study: {key} = {value} is outside the allowed range {low}..{high}")
        return value

    def texts(self, key: str, translated: bool = False) -> tuple[str, ...]:
        if translated:
            key = self._translated(key, required=True)
        value = self._get(key, list, _REQUIRED)
        if not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise UserError(f"study: {self.where}.{key} must be a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def tables(self, key: str) -> list[_Reader]:
        value = self._get(key, list, [])
        return [self._child(t, f"{self.where}.{key}[{i}]".lstrip(".")) for i, t in enumerate(value)]

    def table_of(self, key: str, required: bool = True) -> _Reader:
        return self._child(self._get(key, dict, _REQUIRED if required else {}), key)

    def _child(self, table: Any, where: str) -> _Reader:
        return _Reader(table, where, self.language, self.others)

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise UserError(
                f"study: unknown key(s) {', '.join(unknown)} in {self.where or 'the top level'}; "
                f"allowed are {', '.join(sorted(self.used))}"
            )


_REQUIRED = object()
_ABSENT = object()  # an optional text left out


def _question(reader: _Reader, conditions: tuple[str, ...], attention: bool) -> Question:
    qid = reader.text("id")
    if not _ID.fullmatch(qid):
        raise UserError(f"study: {reader.where}.id {qid!r} must be lowercase letters/digits/-/_")
    options = reader.texts("options")
    labels = reader.texts("options", translated=True)
    if len(labels) != len(options):
        raise UserError(
            f"study: {reader.where}.options_{reader.language} must have as many entries as "
            f"options ({len(options)})"
        )
    correct = reader.text("correct")
    if correct not in options:
        raise UserError(f"study: {reader.where}.correct {correct!r} is not one of its options")
    kwargs: dict[str, Any] = {}
    if attention:
        kwargs["after_rating"] = reader.integer("after_rating", 1, 100)
    else:
        allowed = reader._get("conditions", list, [])
        bad = [c for c in allowed if c not in conditions]
        if bad:
            raise UserError(
                f"study: {reader.where}.conditions names unknown condition(s) {bad}; "
                f"allowed are {', '.join(conditions)}"
            )
        kwargs["conditions"] = tuple(allowed)
    question = Question(
        id=qid,
        question=reader.text("question", translated=True),
        options=options,
        labels=labels,
        correct=correct,
        **kwargs,
    )
    reader.done()
    return question


def _braced(keys) -> str:
    return ", ".join("{" + key + "}" for key in keys)


def _consent_details(top: _Reader, consent: str) -> tuple[tuple[str, str], ...]:
    """``[consent_details]``: one text per CONSENT_DETAILS key, each a placeholder of the
    consent text; a detail left out or empty is unfilled (see Study.unfilled_consent_details)."""
    used = _PLACEHOLDER.findall(consent)
    unknown = sorted(set(used) - set(CONSENT_DETAILS))
    if unknown:
        raise UserError(
            f"study: consent has unknown placeholder(s) {_braced(unknown)}; "
            f"allowed are {_braced(CONSENT_DETAILS)}"
        )
    missing = [key for key in CONSENT_DETAILS if key not in used]
    if missing:
        raise UserError(
            f"study: consent must state {', '.join(CONSENT_DETAILS[k] for k in missing)}: "
            f"add {_braced(missing)} to its text and fill them in [consent_details]"
        )
    table = top.table_of("consent_details", required=False)
    details = []
    for key in CONSENT_DETAILS:
        value = table.fact(key, "")
        if len(value) > 2000:
            raise UserError(f"study: consent_details.{key} is longer than 2000 characters")
        details.append((key, value.strip()))
    table.done()
    return tuple(details)


def _languages(top: _Reader) -> tuple[tuple[str, ...], str]:
    """``languages`` (offered, default ["en"]) and ``language`` (default: the first)."""
    offered = top._get("languages", list, ["en"])
    if (
        not offered
        or any(code not in LANGUAGES for code in offered)
        or len(set(offered)) != len(offered)
    ):
        raise UserError(
            f"study: languages = {offered!r} must list distinct languages out of "
            f"{', '.join(LANGUAGES)}"
        )
    default = top._get("language", str, offered[0])
    if default not in offered:
        raise UserError(
            f"study: language = {default!r} must be one of languages ({', '.join(offered)})"
        )
    return tuple(offered), default


def _conditions(top: _Reader, design: str, within: bool = False) -> tuple[Condition, ...]:
    """``[conditions]``: the bundle's conditions served, and in a study of a controlled
    design (CONTROLLED_DESIGNS) the explanation-free control ``none``. In a within study
    (``within``) their targets come from ``[within]`` (:func:`_within`), 0 until then."""
    allowed = ALL_CONDITIONS + ((NO_EXPLANATION,) if design in CONTROLLED_DESIGNS else ())
    conditions_table = top.table_of("conditions")
    conditions = []
    for name in list(conditions_table.table):
        if name not in allowed:
            raise UserError(
                f"study: unknown condition {name!r}; allowed are {', '.join(allowed)}"
                + (
                    ""
                    if design in CONTROLLED_DESIGNS
                    else f" ({NO_EXPLANATION!r}: the control of the designs "
                    f"{', '.join(CONTROLLED_DESIGNS)} only)"
                )
            )
        reader = conditions_table.table_of(name)
        reader.where = f"conditions.{name}"
        if within and "target_n" in reader.table:
            raise UserError(
                f"study: conditions.{name}.target_n is not read in a within-subjects study: "
                "within.target_n sets how many participants each group has"
            )
        conditions.append(
            Condition(
                name=name,
                target_n=0 if within else reader.integer("target_n", 1, 100000),
                tutorial=reader.text("tutorial", default=_ABSENT, translated=True),
            )
        )
        reader.done()
    conditions_table.done()
    if not conditions:
        raise UserError("study: [conditions] must name at least one condition")
    return tuple(conditions)


# Why the designs outside LEARN_THEN_TEST take no [within] (docs/designs/within-subjects.md).
WITHIN_REFUSED = {
    ATTRIBUTE_RATING: "its ratings ask once which attributes the model relies on; a second "
    "method's block would rate the same attributes again, with the first method's answers "
    "in mind",
    COUNTERFACTUAL_SIMULATION: "its pre-test measures the participant before any "
    "explanation; a second block would have no fresh pre-test",
}


def _within(top: _Reader, design: str, conditions: tuple[Condition, ...]) -> Within | None:
    """``[within]``: the groups seen within subjects and the participants per group; None
    when absent (between subjects)."""
    if "within" not in top.table:
        return None
    table = top.table_of("within")
    table.where = "within"
    groups = parse_groups(table._get("groups", list, _REQUIRED), tuple(c.name for c in conditions))
    within = Within(groups=groups, target_n=table.integer("target_n", 1, 100000))
    table.done()
    check_target(within)
    return within


# What only the attribute-rating design reads from a study file.
RATING_KEYS = ("scale", "attributes", "comprehension", "attention_checks")


def _rating_parts(top: _Reader, condition_names: tuple[str, ...]) -> dict[str, Any]:
    """The attribute-rating design's keys: the scale, the attributes, the comprehension
    questions and the attention checks."""
    scale = top.table_of("scale")
    statement = scale.text("statement", translated=True)
    if "{attribute}" not in statement:
        raise UserError("study: scale.statement must contain {attribute}")
    labels = scale.texts("labels", translated=True)
    if len(labels) != 5:
        raise UserError(
            f"study: scale.labels must have 5 entries (a 5-point scale), got {len(labels)}"
        )
    scale.done()

    attributes = []
    for reader in top.tables("attributes"):
        attributes.append(
            Attribute(key=reader.text("key"), name=reader.text("name", translated=True))
        )
        reader.done()
    if not attributes:
        raise UserError("study: at least one [[attributes]] entry is needed")
    keys = [a.key for a in attributes]
    if len(set(keys)) != len(keys):
        raise UserError(f"study: attribute keys repeat: {keys}")

    comprehension = top.table_of("comprehension")
    max_attempts = comprehension.integer("max_attempts", 1, 10)
    from_bundle = comprehension._get("from_bundle", bool, True)
    questions = tuple(
        _question(r, condition_names, attention=False) for r in comprehension.tables("questions")
    )
    comprehension.done()
    for name in condition_names:
        if not from_bundle and not any(not q.conditions or name in q.conditions for q in questions):
            raise UserError(
                f"study: condition {name!r} has no comprehension question "
                "(add one, or set comprehension.from_bundle = true)"
            )

    checks = tuple(
        _question(r, condition_names, attention=True) for r in top.tables("attention_checks")
    )
    for check in checks:
        if check.after_rating > len(attributes):
            raise UserError(
                f"study: attention check {check.id!r} comes after rating {check.after_rating}, "
                f"but there are only {len(attributes)} attributes"
            )
    ids = [q.id for q in (*questions, *checks)]
    if len(set(ids)) != len(ids):
        raise UserError(f"study: question ids repeat: {ids}")

    return {
        "scale_statement": statement,
        "scale_labels": labels,
        "attributes": tuple(attributes),
        "comprehension_max_attempts": max_attempts,
        "comprehension_from_bundle": from_bundle,
        "comprehension": questions,
        "attention_checks": checks,
    }


# What a trial design's study holds in place of the rating design's keys.
_NO_RATINGS: dict[str, Any] = {
    "scale_statement": "",
    "scale_labels": (),
    "attributes": (),
    "comprehension_max_attempts": 1,
    "comprehension_from_bundle": False,
    "comprehension": (),
    "attention_checks": (),
}


def _settings_reader(top: _Reader, design: str) -> _Reader:
    """The design's settings table, after refusing the rating design's keys (they would do
    nothing) and another trial design's table."""
    present = [key for key in RATING_KEYS if key in top.table]
    if present:
        raise UserError(
            f'study: {", ".join(present)} belong to design = "{ATTRIBUTE_RATING}"; a '
            f"{design} study has no ratings, comprehension questions or attention "
            f"checks (docs/designs/{design}.md)"
        )
    name = settings_table(design)
    foreign = [
        settings_table(d) for d in TRIAL_DESIGNS if d != design and settings_table(d) in top.table
    ]
    if foreign:
        raise UserError(
            f"study: [{foreign[0]}] belongs to design = "
            f'"{foreign[0].replace("_", "-")}"; a {design} study reads [{name}]'
        )
    table = top.table_of(name, required=False)
    table.where = name
    return table


def _trial_parts(top: _Reader, design: str) -> dict[str, Any]:
    """``[forward_simulation]``, ``[verification]`` or ``[distinction]`` (``design``'s
    table)."""
    table = _settings_reader(top, design)
    trials = Trials(
        learning_trials=table.integer("learning_trials", 1, 200, default=8),
        test_trials=table.integer("test_trials", 1, 400, default=16),
        feedback=table._get("feedback", bool, True),
        confidence=table._get("confidence", bool, False),
    )
    table.done()
    return {**_NO_RATINGS, settings_table(design): trials}


def _counterfactual_simulation_parts(top: _Reader) -> dict[str, Any]:
    """``[counterfactual_simulation]``."""
    table = _settings_reader(top, COUNTERFACTUAL_SIMULATION)
    design = CounterfactualSimulation(
        pre_trials=table.integer("pre_trials", 1, 200, default=8),
        learning_trials=table.integer("learning_trials", 1, 200, default=8),
        post_trials=table.integer("post_trials", 1, 200, default=8),
        feedback=table._get("feedback", bool, True),
    )
    table.done()
    return {**_NO_RATINGS, "counterfactual_simulation": design}


_QUESTIONNAIRE_ID = re.compile(r"[a-z0-9][a-z0-9_]{0,23}")  # a page name part: no "-"
PAGE_NAME_MAX = 40  # the stored page pointer's length (models.Participant.page)


def _questionnaire_id(reader: _Reader, what: str) -> str:
    value = reader.text("id")
    if not _QUESTIONNAIRE_ID.fullmatch(value):
        raise UserError(
            f"study: {reader.where}.id {value!r} must be 1 to 24 lowercase letters, digits "
            f"or _ (it names the {what} in page names and the export)"
        )
    return value


def _likert_item(reader: _Reader, item_id: str, required: bool) -> QuestionnaireItem:
    points = reader._get("points", int, 5)
    if points not in LIKERT_POINTS:
        raise UserError(
            f"study: {reader.where}.points = {points!r}; allowed are "
            f"{' or '.join(map(str, LIKERT_POINTS))}"
        )
    return QuestionnaireItem(
        id=item_id,
        kind=LIKERT,
        text=reader.text("statement", max_len=500, translated=True),
        required=required,
        points=points,
        low=reader.text("low", max_len=80, translated=True),
        high=reader.text("high", max_len=80, translated=True),
    )


def _text_item(reader: _Reader, item_id: str, required: bool) -> QuestionnaireItem:
    return QuestionnaireItem(
        id=item_id,
        kind=FREE_TEXT,
        text=reader.text("prompt", max_len=500, translated=True),
        required=required,
        max_length=reader.integer("max_length", 1, 10000, default=1000),
    )


def _questionnaire_item(reader: _Reader) -> QuestionnaireItem:
    item_id = _questionnaire_id(reader, "item")
    kind = reader._get("kind", str, _REQUIRED)
    if kind not in ITEM_KINDS:
        raise UserError(
            f"study: {reader.where}.kind = {kind!r} is not known; allowed are "
            f"{', '.join(ITEM_KINDS)}"
        )
    required = reader._get("required", bool, kind == LIKERT)
    read = _likert_item if kind == LIKERT else _text_item
    item = read(reader, item_id, required)
    reader.done()
    return item


def _unique(ids: list[str], what: str) -> None:
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise UserError(f"study: {what} repeat: {', '.join(repeated)}; each must be unique")


def _points(reader: _Reader, design: str) -> tuple[str, ...]:
    """``at``: one point of the design's walk, or a list of them in walk order."""
    allowed = QUESTIONNAIRE_POINTS[design]
    value = reader._get("at", (str, list), _REQUIRED)
    points = [value] if isinstance(value, str) else value
    unknown = [p for p in points if p not in allowed]
    if not points or unknown:
        named = f"names point(s) {unknown} that design {design!r} does not have"
        raise UserError(
            f"study: {reader.where}.at = {value!r} {named if unknown else 'names no point'}; "
            f"allowed are {', '.join(allowed)} (design {design!r})"
        )
    if len(set(points)) != len(points) or sorted(points, key=allowed.index) != points:
        raise UserError(
            f"study: {reader.where}.at = {value!r} must list distinct points in the order "
            f"of the walk ({', '.join(allowed)})"
        )
    return tuple(points)


# The points of a within study's walk where a questionnaire can go: before the first
# block and after the last (a point inside the blocks would be asked once, about one of them).
WITHIN_QUESTIONNAIRE_POINTS = ("after-intro", "before-demographics")


def _check_within_questionnaire(reader: _Reader, named: list) -> None:
    """A within study's questionnaire is asked of everyone, outside the blocks."""
    if named:
        raise UserError(
            f"study: {reader.where}.conditions: in a within-subjects study every participant "
            "sees several conditions, so a questionnaire cannot be limited to some of them"
        )
    value = reader.table.get("at")
    points = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    inside = [p for p in points if p not in WITHIN_QUESTIONNAIRE_POINTS]
    if inside:
        raise UserError(
            f"study: {reader.where}.at names {', '.join(map(repr, inside))}: a within-subjects "
            "study walks a learning and a test per block, so its questionnaires go at "
            f"{' or '.join(WITHIN_QUESTIONNAIRE_POINTS)}"
        )


def questionnaire_page_name(questionnaire_id: str, point: str, repeated: bool) -> str:
    """``questionnaire-<id>``, or ``questionnaire-<id>-<point>`` for one asked at several
    points (its page URL and the stored page pointer)."""
    return f"questionnaire-{questionnaire_id}" + (f"-{point}" if repeated else "")


def _check_page_names(reader: _Reader, questionnaire_id: str, points: tuple[str, ...]) -> None:
    """A questionnaire asked at several points names a page per point, which must fit the
    stored page pointer."""
    names = [questionnaire_page_name(questionnaire_id, p, len(points) > 1) for p in points]
    longest = max(names, key=len)
    if len(longest) > PAGE_NAME_MAX:
        raise UserError(
            f"study: {reader.where}.id {questionnaire_id!r} makes the page name {longest!r} "
            f"longer than {PAGE_NAME_MAX} characters; choose a shorter id"
        )


def _questionnaires(
    top: _Reader, design: str, conditions: tuple[str, ...], within: bool = False
) -> tuple:
    """``[[questionnaires]]`` with their ``[[questionnaires.items]]``."""
    questionnaires = []
    for reader in top.tables("questionnaires"):
        questionnaire_id = _questionnaire_id(reader, "questionnaire")
        named = reader._get("conditions", list, [])
        if within:
            _check_within_questionnaire(reader, named)
        unknown = [c for c in named if c not in conditions]
        if unknown:
            raise UserError(
                f"study: {reader.where}.conditions names unknown condition(s) {unknown}; "
                f"allowed are {', '.join(conditions)}"
            )
        items = tuple(_questionnaire_item(r) for r in reader.tables("items"))
        if not items:
            raise UserError(f"study: {reader.where} needs at least one [[questionnaires.items]]")
        _unique([i.id for i in items], f"the item ids of questionnaire {questionnaire_id!r}")
        points = _points(reader, design)
        _check_page_names(reader, questionnaire_id, points)
        questionnaires.append(
            Questionnaire(
                id=questionnaire_id,
                title=reader.text("title", max_len=200, translated=True),
                at=points,
                items=items,
                conditions=tuple(named),
            )
        )
        reader.done()
    _unique([q.id for q in questionnaires], "questionnaire ids")
    return tuple(questionnaires)


def parse_study(data: dict[str, Any], language: str | None = None) -> Study:
    """Build a :class:`Study` from parsed TOML, raising :class:`UserError` on bad input;
    its texts are in ``language`` (default: the file's first language)."""
    probe = _Reader(data, "")
    languages, default = _languages(probe)
    if language is None:
        language = languages[0]
    if language not in languages:
        raise UserError(f"study: language {language!r} is not offered ({', '.join(languages)})")
    suffix = "" if language == languages[0] else language
    top = _Reader(data, "", suffix, tuple(lang for lang in languages[1:] if lang != suffix))
    top.used |= {"languages", "language"}
    slug = top.text("slug")
    if not _ID.fullmatch(slug):
        raise UserError(f"study: slug {slug!r} must be lowercase letters, digits, - or _")

    design = top._get("design", str, ATTRIBUTE_RATING)
    if design not in DESIGNS:
        raise UserError(
            f"study: design = {design!r} is not known; allowed are {', '.join(DESIGNS)}"
        )
    if "within" in top.table and design not in LEARN_THEN_TEST:  # before its conditions
        raise UserError(
            f'study: [within] does not apply to design = "{design}": {WITHIN_REFUSED[design]}; '
            f"within-subjects designs are {', '.join(LEARN_THEN_TEST)}"
        )
    conditions = _conditions(top, design, within="within" in top.table)
    within = _within(top, design, conditions)
    if within is not None:  # a condition's target: the participants who see it
        conditions = tuple(
            dataclasses.replace(c, target_n=within.target_n * len(within.groups_of(c.name)))
            for c in conditions
        )
    if design in LEARN_THEN_TEST:
        parts = _trial_parts(top, design)
    elif design == COUNTERFACTUAL_SIMULATION:
        parts = _counterfactual_simulation_parts(top)
    else:
        parts = _rating_parts(top, tuple(c.name for c in conditions))

    demographics = top.table_of("demographics", required=False)
    demographics_enabled = demographics._get("enabled", bool, True)
    demographics.done()

    completion = top.table_of("completion")
    completed_code = completion.text("completed_code", max_len=64)
    screened_code = completion.text("screened_out_code", max_len=64)
    url = completion.text("url", max_len=500)
    if not url.startswith(("https://", "http://")) or "{code}" not in url:
        raise UserError("study: completion.url must be an http(s) URL containing {code}")
    per_participant_codes = completion._get("per_participant_codes", bool, False)
    screened_out_payment = completion.fact("screened_out_payment", None)
    if screened_out_payment is not None and not 0 < len(screened_out_payment.strip()) <= 200:
        raise UserError("study: completion.screened_out_payment must have 1 to 200 characters")
    completion.done()
    consent = top.text("consent", translated=True)

    study = Study(
        slug=slug,
        languages=languages,
        language=default,
        shown_in=language,
        title=top.text("title", max_len=200, translated=True),
        estimated_minutes=top.integer("estimated_minutes", 1, 600, default=20),
        abandonment_timeout_minutes=top.integer("abandonment_timeout_minutes", 1, 24 * 60),
        reason_max_chars=top.integer("reason_max_chars", 20, 10000, default=1000),
        consent=consent,
        consent_details=_consent_details(top, consent),
        intro=top.text("intro", translated=True),
        conditions=conditions,
        demographics=demographics_enabled,
        completed_code=completed_code,
        screened_out_code=screened_code,
        per_participant_codes=per_participant_codes,
        completion_url=url,
        screened_out_payment=screened_out_payment,
        design=design,
        questionnaires=_questionnaires(
            top, design, tuple(c.name for c in conditions), within is not None
        ),
        within=within,
        **parts,
    )
    top.done()
    return study


def _keep_for_conditions(table: dict[str, Any], conditions: Sequence[str]) -> bool:
    """Whether a question or questionnaire limited to ``conditions`` (its ``conditions``
    narrowed to them in place) is still shown to any of them."""
    named = table.get("conditions")
    if not named:
        return True
    table["conditions"] = [c for c in named if c in conditions]
    return bool(table["conditions"])


def study_for_conditions(
    conditions: Sequence[str], target_n: int = 80, source: str | Path | None = None
) -> dict[str, Any]:
    """The data of the study file ``source`` (default: the shipped default) serving
    ``conditions`` instead of its own, each with ``target_n``; comprehension questions
    and questionnaires for none of them are left out. Refused like a study file when it
    is not a study."""
    path = default_study_path() if source is None else Path(source)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if "within" in data:
        data["conditions"] = {name: {} for name in conditions}
        data["within"] = _within_for_conditions(data["within"], conditions, target_n)
    else:
        data["conditions"] = {name: {"target_n": target_n} for name in conditions}
    kept = [
        q
        for q in data.get("comprehension", {}).get("questions", [])
        if _keep_for_conditions(q, conditions)
    ]
    if "comprehension" in data:
        data["comprehension"]["questions"] = kept
    data["questionnaires"] = [
        q for q in data.get("questionnaires", []) if _keep_for_conditions(q, conditions)
    ]
    if not data["questionnaires"]:
        del data["questionnaires"]
    parse_study(data)
    return data


def _within_for_conditions(
    table: dict[str, Any], conditions: Sequence[str], target_n: int
) -> dict[str, Any]:
    """A study file's ``[within]`` serving ``conditions``: its groups when they name
    exactly these, else one group of them all; ``target_n`` per group, rounded up to a
    multiple of every group's orders."""
    from math import lcm

    groups = table.get("groups")
    named = {c for group in groups for c in group} if isinstance(groups, list) else set()
    if named != set(conditions):
        groups = [list(conditions)]
    orders = lcm(*(len(williams_square(len(g))) for g in groups if len(g) >= 2))
    return {**table, "groups": groups, "target_n": -(-target_n // orders) * orders}


def write_study(data: dict[str, Any], path: str | Path, header: str) -> Path:
    """Write study data as a TOML study file, ``header`` (lines) as its first comment."""
    import tomli_w

    comment = "".join(f"# {line}\n" for line in header.splitlines())
    atomic_write_text(Path(path), comment + "\n" + tomli_w.dumps(data))
    return Path(path)


def load_study(path: str | Path | None = None, language: str | None = None) -> Study:
    """Load a study TOML file; ``None`` loads the default that ships with the package.
    ``language``: the one of its languages its texts are read in (default: the first)."""
    path = default_study_path() if path is None else Path(path)
    if not path.is_file():
        raise UserError(f"study file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"study file {path} is not valid TOML: {exc}") from exc
    return parse_study(data, language)

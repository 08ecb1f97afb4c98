"""The study definition: a TOML file (docs/study.md), loaded into frozen dataclasses.

``load_study(None)`` reads the default that ships with the package
(``study_server/studies/default.toml``); every unknown key or bad value raises
:class:`UserError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xaistudy.errors import UserError
from xaistudy.files import atomic_write_text
from xaistudy.vocabulary import ALL_CONDITIONS, NO_EXPLANATION

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
FORWARD_SIMULATION = "forward-simulation"  # learn the model's decisions, then predict them
# predict the model on a changed scene, before and after learning its decisions
COUNTERFACTUAL_SIMULATION = "counterfactual-simulation"
DESIGNS = (ATTRIBUTE_RATING, FORWARD_SIMULATION, COUNTERFACTUAL_SIMULATION)
TRIAL_DESIGNS = (FORWARD_SIMULATION, COUNTERFACTUAL_SIMULATION)  # with the control "none"


@dataclasses.dataclass(frozen=True)
class ForwardSimulation:
    """``[forward_simulation]``: the trials of the forward-simulation design."""

    learning_trials: int  # the first n of the bundle's learning scenes
    test_trials: int  # the first n of its test scenes
    feedback: bool  # after each learning trial: what the model decided
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
    forward_simulation: ForwardSimulation | None = None  # the design's settings
    counterfactual_simulation: CounterfactualSimulation | None = None  # the design's settings

    @property
    def trials(self) -> ForwardSimulation | CounterfactualSimulation | None:
        """The settings of the study's trials (a simulation design), else None."""
        return self.forward_simulation or self.counterfactual_simulation

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
        if self.forward_simulation is not None:
            self.check_simulation(manifest)
        if self.counterfactual_simulation is not None:
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
        """A forward-simulation study needs the bundle's simulation scenes, as many as it
        asks for, and each attribution condition's maps of the learning scenes it shows."""
        design = self.forward_simulation
        section = _simulation_scenes(manifest, FORWARD_SIMULATION)
        _enough("forward_simulation.test_trials", design.test_trials, len(section.test))
        self._check_learning(manifest, "forward_simulation")

    def check_counterfactual(self, manifest: Manifest) -> None:
        """A counterfactual-simulation study needs the bundle's pairs, as many as it asks
        for, and the forward-simulation learning scenes (with their maps) it learns from."""
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
        _simulation_scenes(manifest, COUNTERFACTUAL_SIMULATION)
        self._check_learning(manifest, "counterfactual_simulation")

    def _check_learning(self, manifest: Manifest, table: str) -> None:
        """Enough learning scenes, and each attribution condition's map of each."""
        from explain.manifest import AttributionCondition

        wanted = self.trials.learning_trials
        _enough(f"{table}.learning_trials", wanted, len(manifest.simulation.learning))
        learning = [s.test_index for s in manifest.simulation.learning[:wanted]]
        for name in self.condition_names:
            condition = manifest.conditions[name] if self.explains(name) else None
            if not isinstance(condition, AttributionCondition):
                continue  # no per-scene explanation: its page comes before the trials
            lacking = [i for i in learning if condition.scene_map(i) is None]
            if lacking:
                raise UserError(
                    f"study: condition {name!r} has no maps of the learning scene(s) "
                    f"{lacking[:5]} in this bundle; rebuild it with xaistudy explain"
                )


def _simulation_scenes(manifest: Manifest, design: str):
    """The bundle's forward-simulation scenes, which a trial design learns from."""
    if manifest.simulation is None:
        raise UserError(
            f'study: design = "{design}" needs the bundle\'s forward-simulation scenes, '
            "which this bundle lacks; rebuild it with xaistudy explain "
            "(--simulation-trials LEARNING,TEST)"
        )
    return manifest.simulation


def _enough(key: str, wanted: int, held: int) -> None:
    if wanted > held:
        raise UserError(
            f"study: {key} = {wanted}, but the bundle has {held} such scenes; ask for at most "
            f"{held} or rebuild the bundle with more"
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


def _conditions(top: _Reader, design: str) -> tuple[Condition, ...]:
    """``[conditions]``: the bundle's conditions served, and in a forward-simulation study
    the explanation-free control ``none``."""
    allowed = ALL_CONDITIONS + ((NO_EXPLANATION,) if design in TRIAL_DESIGNS else ())
    conditions_table = top.table_of("conditions")
    conditions = []
    for name in list(conditions_table.table):
        if name not in allowed:
            raise UserError(
                f"study: unknown condition {name!r}; allowed are {', '.join(allowed)}"
                + (
                    ""
                    if design in TRIAL_DESIGNS
                    else f" ({NO_EXPLANATION!r}: the control of the designs "
                    f"{' and '.join(TRIAL_DESIGNS)} only)"
                )
            )
        reader = conditions_table.table_of(name)
        reader.where = f"conditions.{name}"
        conditions.append(
            Condition(
                name=name,
                target_n=reader.integer("target_n", 1, 100000),
                tutorial=reader.text("tutorial", default=_ABSENT, translated=True),
            )
        )
        reader.done()
    conditions_table.done()
    if not conditions:
        raise UserError("study: [conditions] must name at least one condition")
    return tuple(conditions)


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


def _refuse_rating_keys(top: _Reader, design: str) -> None:
    """A trial design refuses the rating design's keys (they would do nothing)."""
    present = [key for key in RATING_KEYS if key in top.table]
    if present:
        raise UserError(
            f'study: {", ".join(present)} belong to design = "{ATTRIBUTE_RATING}"; a '
            f"{design} study has no ratings, comprehension questions or attention "
            f"checks (docs/designs/{design}.md)"
        )


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


def _forward_simulation_parts(top: _Reader) -> dict[str, Any]:
    """``[forward_simulation]``; the rating design's keys are refused."""
    _refuse_rating_keys(top, FORWARD_SIMULATION)
    table = top.table_of("forward_simulation", required=False)
    table.where = "forward_simulation"
    design = ForwardSimulation(
        learning_trials=table.integer("learning_trials", 1, 200, default=8),
        test_trials=table.integer("test_trials", 1, 400, default=16),
        feedback=table._get("feedback", bool, True),
        confidence=table._get("confidence", bool, False),
    )
    table.done()
    return {**_NO_RATINGS, "forward_simulation": design}


def _counterfactual_simulation_parts(top: _Reader) -> dict[str, Any]:
    """``[counterfactual_simulation]``; the rating design's keys are refused."""
    _refuse_rating_keys(top, COUNTERFACTUAL_SIMULATION)
    table = top.table_of("counterfactual_simulation", required=False)
    table.where = "counterfactual_simulation"
    design = CounterfactualSimulation(
        pre_trials=table.integer("pre_trials", 1, 200, default=8),
        learning_trials=table.integer("learning_trials", 1, 200, default=8),
        post_trials=table.integer("post_trials", 1, 200, default=8),
        feedback=table._get("feedback", bool, True),
    )
    table.done()
    return {**_NO_RATINGS, "counterfactual_simulation": design}


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
    conditions = _conditions(top, design)
    if design == FORWARD_SIMULATION:
        parts = _forward_simulation_parts(top)
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
        **parts,
    )
    top.done()
    return study


def study_for_conditions(
    conditions: Sequence[str], target_n: int = 80, source: str | Path | None = None
) -> dict[str, Any]:
    """The data of the study file ``source`` (default: the shipped default) serving
    ``conditions`` instead of its own, each with ``target_n``; comprehension questions
    for none of them are left out. Refused like a study file when it is not a study."""
    path = default_study_path() if source is None else Path(source)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["conditions"] = {name: {"target_n": target_n} for name in conditions}
    kept = []
    for question in data.get("comprehension", {}).get("questions", []):
        named = question.get("conditions")
        if named:
            question["conditions"] = [c for c in named if c in conditions]
            if not question["conditions"]:
                continue
        kept.append(question)
    if "comprehension" in data:
        data["comprehension"]["questions"] = kept
    parse_study(data)
    return data


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

"""Reading what the analysis needs: the responses (CSV export or frames) and the bundle.

Responses come as three tables in the study server's export format (docs/analysis.md):
``participants`` (one row per participant), ``answers`` (long: one row per participant
and attribute) and ``pages`` (time spent per page), read from an export folder or handed
in as frames (the command line reads a study database through the server's export).
``--responses`` may also be a single ``answers.csv``; then the exclusions that need
participant columns are reported as not applicable. The export of a study of a trial
design holds no answers but ``trials`` (long: one row per trial; its ``design`` column
says which: analysis/forward_simulation.py, analysis/verification.py,
analysis/counterfactual_simulation.py). Any study's export may hold ``questionnaire``
(long: one row per questionnaire item answered; analysis/questionnaires.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from xaistudy.errors import UserError
from xaistudy.vocabulary import (
    ABANDONED,
    COUNTERFACTUAL_SIMULATION,
    FORWARD_SIMULATION,
    NO_EXPLANATION,
    TRIAL_DESIGNS,
    VERIFICATION,
    Status,
)

if TYPE_CHECKING:
    from explain.manifest import GroundTruthRule, ModelCard

ANSWER_COLUMNS = ("participant_id", "condition", "attribute", "rating")
PARTICIPANT_COLUMNS = (
    "participant_id",
    "condition",
    "status",
    "preview",
    "excluded",
    "attention_passed",
    "duration_s",
)
PAGE_COLUMNS = ("participant_id", "condition", "page", "seconds")
TRIAL_COLUMNS = ("participant_id", "condition", "phase", "scene_id", "correct")
# What a verification study's trials need besides: the answer and the model's correctness.
VERIFICATION_COLUMNS = ("verdict", "model_correct")
QUESTIONNAIRE_COLUMNS = (
    "participant_id",
    "condition",
    "questionnaire",
    "point",
    "item",
    "value",
    "text",
    "answered_at",
)
# The statuses an export holds: those stored, and "abandoned" that the export derives.
STATUSES = (*Status, ABANDONED)
_ID_COLUMNS = {"participant_id": str, "prolific_pid": str, "study_id": str, "session_id": str}


@dataclasses.dataclass
class Responses:
    """The study's responses; ``participants`` and ``pages`` are None when not available,
    ``trials`` when the study had no trials (the rating design)."""

    answers: pd.DataFrame
    participants: pd.DataFrame | None
    pages: pd.DataFrame | None
    source: str
    trials: pd.DataFrame | None = None
    questionnaire: pd.DataFrame | None = None  # None: the study asked no questionnaire

    @property
    def trial_design(self) -> str | None:
        """The trial design whose trials these are (TRIAL_DESIGNS), by the trials'
        ``design`` column (an export without it is a forward simulation's); None when they
        are a rating study's answers."""
        if not self.answers.empty or self.trials is None or self.trials.empty:
            return None
        if "design" not in self.trials.columns:
            return FORWARD_SIMULATION
        designs = sorted(set(self.trials["design"].dropna()))
        if len(designs) != 1 or designs[0] not in TRIAL_DESIGNS:
            raise UserError(
                f"{self.source}: trials.csv holds the trials of {', '.join(designs) or 'no'} "
                f"design; analyze one study of {', '.join(TRIAL_DESIGNS)} at a time"
            )
        return designs[0]

    @property
    def is_forward_simulation(self) -> bool:
        return self.trial_design == FORWARD_SIMULATION

    @property
    def is_verification(self) -> bool:
        return self.trial_design == VERIFICATION

    @property
    def is_counterfactual_simulation(self) -> bool:
        return self.trial_design == COUNTERFACTUAL_SIMULATION


@dataclasses.dataclass
class Bundle:
    """What the analysis takes from a study bundle's manifest.

    ``attributes``: one row per study attribute (``attribute``, ``name``, ``relevant``,
    ``factors``), the labels answers are scored against. ``ground_truth``: one row per
    factor (``factor``, ``effect``, ``ci_low``, ``ci_high``, ``flip_rate``,
    ``variance_share``, ``relevant``).
    """

    path: Path
    attributes: pd.DataFrame
    ground_truth: pd.DataFrame
    conditions: list[str]
    model_card: ModelCard
    ground_truth_rule: GroundTruthRule
    # one row per attribution condition with technical scores: ``condition`` and the
    # headline scores (explain.manifest.TechnicalScores.headline); empty when none has
    technical: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    # the forward-simulation scenes' model decisions by scene id; empty when none
    simulation_decisions: dict[int, str] = dataclasses.field(default_factory=dict)
    # their true animals by scene id (the verification design scores against them)
    simulation_labels: dict[int, str] = dataclasses.field(default_factory=dict)
    # (trial scene id, map picture's bundle path) -> the animal it explains; empty when none
    # (a picture alone says too little: two scenes may share one, an empty map say)
    map_explains: dict[tuple[int, str], str] = dataclasses.field(default_factory=dict)
    # the counterfactual-simulation pairs' model decisions on the changed scene, by the
    # original scene's id; empty when none
    pair_decisions: dict[int, str] = dataclasses.field(default_factory=dict)


def load_bundle(bundle_dir: Path) -> Bundle:
    """Read a bundle's manifest (structure checked, no hashing: the images are not used)."""
    from explain.bundle_format import load_manifest

    manifest = load_manifest(Path(bundle_dir))
    section = manifest.simulation
    scenes = (*section.learning, *section.test) if section else ()
    decisions = {scene.test_index: scene.decision for scene in scenes}
    attributes = pd.DataFrame(
        [
            {
                "attribute": a.key,
                "name": a.name,
                "relevant": a.relevant,
                "factors": ", ".join(a.factors),
            }
            for a in manifest.attributes
        ]
    )
    truth_rows = [
        {
            "factor": factor,
            "effect": float(entry.effect),
            "ci_low": float(entry.ci[0]),
            "ci_high": float(entry.ci[1]),
            "flip_rate": float(entry.flip_rate),
            "variance_share": float(entry.variance_share),
            "relevant": entry.relevant,
        }
        for factor, entry in manifest.ground_truth.items()
    ]
    section = manifest.simulation
    scenes = (*section.learning, *section.test) if section else ()
    return Bundle(
        path=Path(bundle_dir),
        attributes=attributes,
        ground_truth=pd.DataFrame(truth_rows),
        conditions=list(manifest.conditions),
        model_card=manifest.model_card,
        ground_truth_rule=manifest.ground_truth_rule,
        technical=pd.DataFrame(
            [
                {"condition": name, **condition.technical.headline()}
                for name, condition in manifest.conditions.items()
                if getattr(condition, "technical", None) is not None
            ]
        ),
        simulation_decisions=decisions,
        simulation_labels={scene.test_index: scene.label for scene in scenes},
        map_explains=_map_explains(manifest, decisions),
        pair_decisions={
            pair.test_index: pair.changed_decision
            for pair in (
                (*manifest.counterfactual_simulation.pre, *manifest.counterfactual_simulation.post)
                if manifest.counterfactual_simulation
                else ()
            )
        },
    )


def _map_explains(manifest, decisions: dict[int, str]) -> dict[tuple[int, str], str]:
    """Each trial scene's maps -> the animal each explains: its map the model's decision,
    its other map the other animal (explain.manifest.SceneMap)."""
    explains = {}
    for _, condition in manifest.conditions.items():
        for entry in getattr(condition, "scene_maps", None) or ():
            decided = decisions.get(entry.test_index)
            if decided is None:
                continue
            explains[entry.test_index, entry.image] = decided
            if entry.other_image is not None:
                other = "peaky" if decided == "stretchy" else "stretchy"
                explains[entry.test_index, entry.other_image] = other
    return explains


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(
            f"{what} lacks column(s) {', '.join(missing)}; it needs {', '.join(required)}"
        )


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=_ID_COLUMNS, keep_default_na=True)
    except pd.errors.EmptyDataError as exc:
        raise UserError(f"{path} is empty: it has no header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV file: {exc}") from exc


def read_export(path: Path) -> Responses:
    """Read an export folder (participants.csv, answers.csv, pages.csv) or one answers.csv."""
    path = Path(path)
    if path.is_dir():
        answers_path = path / "answers.csv"
        if not answers_path.exists():
            raise UserError(
                f"{path} holds no answers.csv; --responses takes the export folder "
                "(participants.csv, answers.csv, pages.csv) or a single answers.csv"
            )
        participants_path = path / "participants.csv"
        participants = _read_csv(participants_path) if participants_path.exists() else None
        pages_path = path / "pages.csv"
        pages = _read_csv(pages_path) if pages_path.exists() else None
        trials_path = path / "trials.csv"
        trials = _read_csv(trials_path) if trials_path.exists() else None
        questionnaire_path = path / "questionnaire.csv"
        questionnaire = _read_csv(questionnaire_path) if questionnaire_path.exists() else None
        answers = _read_csv(answers_path)
        source = str(path)
    elif path.is_file():
        answers, participants, pages, trials = _read_csv(path), None, None, None
        questionnaire = None
        source = str(path)
    else:
        raise UserError(f"responses {path} do not exist")
    responses = Responses(answers, participants, pages, source, trials, questionnaire)
    return _normalize(responses, answers_name=source)


def responses_from_frames(frames: Mapping[str, pd.DataFrame], source: str) -> Responses:
    """The export's ``participants``, ``answers`` and ``pages`` frames, checked.

    ``frames`` as study_server.export.export_frames returns them; ``source`` names where
    they came from in messages and in the report.
    """
    participants = frames.get("participants")
    if participants is None or participants.empty:
        raise UserError(f"{source} has no participants yet")
    responses = Responses(
        answers=frames["answers"],
        participants=participants,
        pages=frames.get("pages"),
        source=source,
        trials=frames.get("trials"),
        questionnaire=frames.get("questionnaire"),
    )
    return _normalize(responses, answers_name=f"the answers table of {source}")


def as_bool(series: pd.Series) -> pd.Series:
    """Booleans as written by CSV/SQL (True/False, true/false, 1/0, t/f); empty stays NA."""
    mapping = {"true": True, "t": True, "1": True, "yes": True, "1.0": True}
    mapping |= {"false": False, "f": False, "0": False, "no": False, "0.0": False}

    def convert(value):
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
            return pd.NA
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("", "nan", "none"):
            return pd.NA
        if text not in mapping:
            raise UserError(f"{series.name} holds {value!r}, which is not a boolean (true/false)")
        return mapping[text]

    return series.map(convert).astype("boolean")


def _normalize(responses: Responses, answers_name: str) -> Responses:
    answers = responses.answers
    _require_columns(answers, ANSWER_COLUMNS, answers_name)
    answers = answers.copy()
    answers["participant_id"] = answers["participant_id"].astype(str)
    answers["condition"] = answers["condition"].astype(str)
    answers["attribute"] = answers["attribute"].astype(str)
    answers["rating"] = pd.to_numeric(answers["rating"], errors="coerce")
    answers = answers[answers["rating"].notna()]
    bad = ~answers["rating"].isin([1, 2, 3, 4, 5])
    if bad.any():
        row = answers[bad].iloc[0]
        raise UserError(
            f"rating {row['rating']!r} of participant {row['participant_id']} "
            f"(attribute {row['attribute']}) is outside the scale 1..5"
        )
    answers["rating"] = answers["rating"].astype(int)

    participants = responses.participants
    if participants is not None:
        _require_columns(participants, PARTICIPANT_COLUMNS, "participants.csv")
        participants = participants.copy()
        participants["participant_id"] = participants["participant_id"].astype(str)
        participants["condition"] = participants["condition"].astype(str)
        for column in ("preview", "excluded", "attention_passed"):
            participants[column] = as_bool(participants[column])
        participants["duration_s"] = pd.to_numeric(participants["duration_s"], errors="coerce")
        unknown = sorted(set(participants["status"].dropna().astype(str)) - set(STATUSES))
        if unknown:
            raise UserError(
                f"participants.csv has unknown status value(s) {', '.join(unknown)}; "
                f"allowed are {', '.join(STATUSES)}"
            )

    pages = responses.pages
    if pages is not None:
        _require_columns(pages, PAGE_COLUMNS, "pages.csv")
        pages = pages.copy()
        pages["participant_id"] = pages["participant_id"].astype(str)
        pages["seconds"] = pd.to_numeric(pages["seconds"], errors="coerce")

    trials = responses.trials
    if trials is not None:
        _require_columns(trials, TRIAL_COLUMNS, "trials.csv")
        trials = trials.copy()
        trials["participant_id"] = trials["participant_id"].astype(str)
        trials["condition"] = trials["condition"].astype(str)
        trials["correct"] = as_bool(trials["correct"])
        if "design" in trials.columns and (trials["design"] == VERIFICATION).any():
            _require_columns(trials, TRIAL_COLUMNS + VERIFICATION_COLUMNS, "trials.csv")
            trials["model_correct"] = as_bool(trials["model_correct"])
        if "flips" in trials.columns:  # a pair trial's; empty in the others
            trials["flips"] = as_bool(trials["flips"])

    questionnaire = responses.questionnaire
    if questionnaire is not None:
        _require_columns(questionnaire, QUESTIONNAIRE_COLUMNS, "questionnaire.csv")
        questionnaire = questionnaire.copy()
        for column in ("participant_id", "condition", "questionnaire", "point", "item"):
            questionnaire[column] = questionnaire[column].astype(str)
        questionnaire["value"] = pd.to_numeric(questionnaire["value"], errors="coerce")
        questionnaire["condition"] = _by_order(questionnaire, responses.participants)
        bad = questionnaire["value"].notna() & ~questionnaire["value"].isin(range(1, 8))
        if bad.any():
            row = questionnaire[bad].iloc[0]
            raise UserError(
                f"questionnaire value {row['value']:g} of participant {row['participant_id']} "
                f"(item {row['questionnaire']}.{row['item']}) is outside the scales 1..5 and 1..7"
            )

    if answers.empty and (trials is None or trials.empty):
        raise UserError(f"{responses.source} holds no answers to analyze")
    return Responses(answers, participants, pages, responses.source, trials, questionnaire)


def _by_order(questionnaire: pd.DataFrame, participants: pd.DataFrame | None) -> pd.Series:
    """The group each questionnaire answer is reported in: its condition, or in a
    within-subjects study, where a participant met every condition of their group, the
    order they met them in (``none > integrated_gradients``)."""
    if participants is None or "condition_order" not in participants:
        return questionnaire["condition"]
    orders = participants.set_index(participants["participant_id"].astype(str))["condition_order"]
    orders = orders.dropna().astype(str)
    orders = orders[orders != ""].str.replace("|", " > ", regex=False)
    # without any within participant the mapping is all missing (float): make it text
    mapped = questionnaire["participant_id"].map(orders).astype("string")
    return mapped.fillna(questionnaire["condition"])


def check_bundle_matches(responses: Responses, bundle: Bundle) -> None:
    """The answers' attributes and conditions must be ones the bundle defines."""
    known = set(bundle.attributes["attribute"])
    asked = sorted(set(responses.answers["attribute"]))
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise UserError(
            f"the responses rate attribute(s) {', '.join(unknown)} that bundle "
            f"{bundle.path} does not define (it defines {', '.join(sorted(known))}); "
            "analyze with the bundle the study served"
        )
    conditions = set(responses.answers["condition"])
    if responses.participants is not None:
        conditions |= set(responses.participants["condition"].dropna())
    unknown = sorted(conditions - set(bundle.conditions) - {NO_EXPLANATION, "nan", "None", ""})
    if unknown:
        raise UserError(
            f"the responses use condition(s) {', '.join(unknown)} that bundle {bundle.path} "
            f"does not define (it defines {', '.join(bundle.conditions)})"
        )

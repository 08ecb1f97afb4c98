"""The pages of the participant flow: one class per kind of page, and their order.

A page knows its name (in its URL and in the participant's page pointer), its form, what
its template shows beyond what every page shows, and what an accepted post of it changes.
The view (participant.py) does the rest: the revision check, the compare-and-set update
of the page pointer and the commit. A new kind of task is a new subclass placed in
:func:`page_sequence`; its template is ``templates/pages/<kind>.html``.

The walk, for a study of N attributes: consent, intro, tutorial, comprehension,
explanations, rating-1 .. rating-N (attention checks ``attention-<id>`` placed between
them), demographics (when the study asks), complete. The end pages screened-out and
declined are reached only from the comprehension check and the consent.

A forward-simulation study (docs/designs/forward-simulation.md) walks: consent, intro,
learning-intro, learning-1 (each followed by feedback-1 when the study gives feedback)
.. learning-L, test-intro, test-1 .. test-T, demographics, complete. Verification
(docs/designs/verification.md) and distinction (docs/designs/distinction.md) studies walk
the same names with their own kinds of page: verification shows the model's decision and
asks whether it is right; distinction shows two maps of the scene and asks which one
explains the model's decision.

A within-subjects study of these designs (docs/designs/within-subjects.md) walks one block
per condition of the participant's group, in their order: block-1 (what the part is),
b1-learning-intro, b1-learning-1 .. b1-test-T, block-2, b2-learning-intro, ..., then the
questionnaires before the demographics; a page of block k is shown in the participant's
k-th condition (:meth:`Page.condition`).

A counterfactual-simulation study (docs/designs/counterfactual-simulation.md) walks:
consent, intro, pre-intro, pre-1 .. pre-P, the learning block as above (learning-intro,
learning-1, feedback-1 .. learning-L), post-intro, post-1 .. post-Q, demographics, complete.

Questionnaires (docs/designs/questionnaires.md) are placed at the named points of each
walk (``QUESTIONNAIRE_POINTS``): ``questionnaire-<id>``, or ``questionnaire-<id>-<point>``
for one asked at several points; a participant of a condition it is not shown to skips it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from flask_babel import gettext
from sqlalchemy import select

from explain.manifest import AttributionCondition, CounterfactualPair, SimulationScene
from explain.wording import factor_name
from study_server.extensions import db
from study_server.forms import (
    PANEL_KEYS,
    PREDICTION_KEYS,
    VERDICT_KEYS,
    ConsentForm,
    ContinueForm,
    DemographicsForm,
    StepForm,
    choice_form,
    panel_form,
    prediction_form,
    questionnaire_form,
    rating_form,
)
from study_server.models import Answer, CheckAnswer, Participant, QuestionnaireAnswer, Trial
from study_server.study import (
    COUNTERFACTUAL_SIMULATION,
    DISTINCTION,
    FORWARD_SIMULATION,
    LIKERT,
    VERIFICATION,
    Question,
    Study,
    questionnaire_page_name,
)
from study_server.within import Block, Cell
from xaistudy.vocabulary import Status

if TYPE_CHECKING:
    from study_server import StudyContext


@dataclasses.dataclass(frozen=True)
class Visit:
    """What a page's submit step decides from: who posted, when, and where the walk goes on."""

    study: Study
    participant: Participant
    now: datetime
    following: Page  # the page after this one in the walk


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an accepted post does: the page shown next, the participant's changed
    columns, and the rows (answers) to store with it."""

    next_page: Page
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)
    rows: list[Answer | CheckAnswer | Trial | QuestionnaireAnswer] = dataclasses.field(
        default_factory=list
    )


class Page:
    """A page with only a "Next" button; subclasses add a form, context and answers."""

    kind: ClassVar[str]  # the template's name, and what a simulated participant fills in
    script: ClassVar[str | None] = None  # a static script the page runs (else none may)

    @property
    def name(self) -> str:
        return self.kind

    def form_class(self, study: Study, participant: Participant) -> type[StepForm]:
        return ContinueForm

    def context(self, ctx: StudyContext, participant: Participant) -> dict[str, Any]:
        """Template values of this page beyond those every page gets."""
        return {}

    def submit(self, visit: Visit, form: StepForm) -> Outcome:
        """The outcome of a valid post of ``form`` (its revision already checked)."""
        return Outcome(visit.following)

    def arrival(self, visit: Visit) -> dict[str, Any]:
        """Participant columns set when a post (``visit``, of the page before) leads here."""
        return {}

    def shown_to(self, study: Study, condition: str) -> bool:
        """Whether participants of ``condition`` see this page (else the walk skips it)."""
        return True

    block = 0  # the block of a within-subjects walk the page is part of (1-based); 0: none

    def condition(self, participant: Participant) -> str:
        """The condition the page is shown in: the participant's, or their block's."""
        return participant.block_condition(self.block)


@dataclasses.dataclass(frozen=True)
class ConsentPage(Page):
    kind: ClassVar[str] = "consent"

    def form_class(self, study, participant):
        return ConsentForm

    def submit(self, visit, form):
        return Outcome(visit.following if form.consent.data == "yes" else DECLINED)


@dataclasses.dataclass(frozen=True)
class IntroPage(Page):
    kind: ClassVar[str] = "intro"

    def context(self, ctx, participant):
        shown = ctx.manifest.tutorial.attributes
        rows = [(ctx.study.attribute(k), shown[k]) for k in ctx.study.attribute_keys if k in shown]
        return {"attribute_rows": rows}


@dataclasses.dataclass(frozen=True)
class TutorialPage(Page):
    kind: ClassVar[str] = "tutorial"


@dataclasses.dataclass(frozen=True)
class ComprehensionPage(Page):
    """The questions on the tutorial; all right goes on, too many wrong attempts screen out."""

    kind: ClassVar[str] = "comprehension"

    def form_class(self, study, participant):
        return choice_form(study.comprehension_for(participant.condition))

    def context(self, ctx, participant):
        study = ctx.study
        questions = study.comprehension_for(participant.condition)
        rows = sorted({q.example_row for q in questions if q.example_row is not None})
        return {
            "attempts_left": study.comprehension_max_attempts - participant.comprehension_attempts,
            "example_rows": rows,
        }

    def submit(self, visit, form):
        participant = visit.participant
        attempt = participant.comprehension_attempts + 1
        rows = [
            _check_answer(visit, "comprehension", question, form, attempt)
            for question in visit.study.comprehension_for(participant.condition)
        ]
        if all(row.correct for row in rows):
            next_page = visit.following
        elif attempt >= visit.study.comprehension_max_attempts:
            next_page = SCREENED_OUT
        else:
            next_page = self  # shown again, with the attempts left
        return Outcome(next_page, {"comprehension_attempts": attempt}, rows)


@dataclasses.dataclass(frozen=True)
class ExplanationsPage(Page):
    kind: ClassVar[str] = "explanations"


@dataclasses.dataclass(frozen=True)
class RatingPage(Page):
    """The ``index``-th attribute of the participant's own order, rated with a reason."""

    kind: ClassVar[str] = "rating"
    index: int  # 1-based position in the participant's attribute order

    @property
    def name(self) -> str:
        return f"rating-{self.index}"

    def form_class(self, study, participant):
        return rating_form(study)

    def context(self, ctx, participant):
        study = ctx.study
        attribute = study.attribute(participant.order[self.index - 1])
        return {
            "index": self.index,
            "total": len(participant.order),
            "attribute": attribute,
            "statement": study.scale_statement.replace("{attribute}", attribute.name),
            "attribute_row": ctx.manifest.tutorial.attributes.get(attribute.key),
        }

    def submit(self, visit, form):
        answer = Answer(
            participant_id=visit.participant.id,
            attribute=visit.participant.order[self.index - 1],
            position=self.index - 1,
            rating=form.rating.data,
            reason=form.reason.data.strip(),
            answered_at=visit.now,
        )
        return Outcome(visit.following, rows=[answer])


@dataclasses.dataclass(frozen=True)
class AttentionPage(Page):
    """One attention check; a participant passes when they answer every one right."""

    kind: ClassVar[str] = "attention"
    check_id: str

    @property
    def name(self) -> str:
        return f"attention-{self.check_id}"

    def form_class(self, study, participant):
        return choice_form((study.attention_check(self.check_id),))

    def submit(self, visit, form):
        check = visit.study.attention_check(self.check_id)
        row = _check_answer(visit, "attention", check, form, attempt=1)
        passed = row.correct and visit.participant.attention_passed is not False
        return Outcome(visit.following, {"attention_passed": passed}, [row])


@dataclasses.dataclass(frozen=True)
class DemographicsPage(Page):
    kind: ClassVar[str] = "demographics"

    def form_class(self, study, participant):
        return DemographicsForm

    def submit(self, visit, form):
        changes = {
            "age": form.age.data,
            "gender": form.gender.data or None,
            "ml_experience": form.ml_experience.data or None,
        }
        return Outcome(visit.following, changes)


@dataclasses.dataclass(frozen=True)
class QuestionnairePage(Page):
    """A questionnaire's items at one of its points: one row per item answered (an
    optional item left empty stores none)."""

    kind: ClassVar[str] = "questionnaire"
    questionnaire_id: str
    point: str
    repeated: bool  # asked at several points: the point is part of the name

    @property
    def name(self) -> str:
        return questionnaire_page_name(self.questionnaire_id, self.point, self.repeated)

    def shown_to(self, study, condition):
        return study.questionnaire(self.questionnaire_id).shown_to(condition)

    def form_class(self, study, participant):
        return questionnaire_form(study.questionnaire(self.questionnaire_id))

    def context(self, ctx, participant):
        return {
            "questionnaire": ctx.study.questionnaire(self.questionnaire_id),
            "point": self.point,
        }

    def submit(self, visit, form):
        questionnaire = visit.study.questionnaire(self.questionnaire_id)
        rows = []
        for item in questionnaire.items:
            value = form[f"i_{item.id}"].data
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # an optional item left unanswered
            likert = item.kind == LIKERT
            rows.append(
                QuestionnaireAnswer(
                    participant_id=visit.participant.id,
                    questionnaire=questionnaire.id,
                    point=self.point,
                    item=item.id,
                    value=int(value) if likert else None,
                    text=None if likert else value.strip(),
                    answered_at=visit.now,
                )
            )
        return Outcome(visit.following, rows=rows)


def _questionnaire_pages(study: Study, point: str) -> list[Page]:
    return [
        QuestionnairePage(q.id, point, repeated=len(q.at) > 1)
        for q in study.questionnaires
        if point in q.at
    ]


# -- trial designs: forward, verification, distinction, counterfactual simulation ---------


def new_trial_order(study: Study, cell: Cell | None = None) -> str | None:
    """A new participant's trial order (the ``trial_order`` column): per phase of the
    design (per block and phase, for a participant of a within study's ``cell``), its
    scenes shuffled, drawn from a fresh seed kept with it; None in a design without trials.
    A block's scenes are its slice of the bundle's (:meth:`Within.block_plan`)."""
    design = study.trials
    if design is None:
        return None
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    order: dict[str, Any] = {"seed": seed}
    plan = study.within.block_plan(cell) if cell else (Block(0, "", 0),)
    for block in plan:
        for phase in design.phases:
            count = getattr(design, f"{phase}_trials")
            start = block.scene_slice * count
            order[order_key(phase, block.period)] = [
                start + k for k in rng.sample(range(count), count)
            ]
            if study.design == DISTINCTION:
                # the model's map on the left in half the trials of a phase, in a drawn order
                order[order_key(f"{phase}_left", block.period)] = rng.sample(
                    [k < count // 2 for k in range(count)], count
                )
    return json.dumps(order)


def order_key(phase: str, block: int) -> str:
    """The key of a phase's scene positions in the trial order: the phase, and in a
    within study's walk its block (``learning-2``)."""
    return f"{phase}-{block}" if block else phase


def in_block(name: str, block: int) -> str:
    """A page's name in block ``block`` of a within study's walk (``b2-learning-3``)."""
    return f"b{block}-{name}" if block else name


def per_scene_explanation(ctx: StudyContext, condition: str) -> AttributionCondition | None:
    """The condition whose maps are shown with each scene that shows one; None when it has
    no per-scene explanation (its page comes before the trials) or is the control."""
    if not ctx.study.explains(condition):
        return None
    explanation = ctx.manifest.conditions[condition]
    return explanation if isinstance(explanation, AttributionCondition) else None


# How many of the next trials' pictures a trial page (or a phase's intro) has the browser
# fetch ahead, so that the next scene shows at once and its response time is the
# participant's, not the network's.
PRELOAD_TRIALS = 3


def upcoming_images(
    ctx: StudyContext, participant: Participant, trial: type[TrialPage], first: int, block: int = 0
) -> list[str]:
    """The pictures of the ``trial`` pages ``first`` .. ``first + PRELOAD_TRIALS - 1`` of
    the participant's order (as many of them as the phase has) in ``block``."""
    count = getattr(ctx.study.trials, f"{trial.phase}_trials")
    last = min(first + PRELOAD_TRIALS - 1, count)
    return [rel for i in range(first, last + 1) for rel in trial(i, block).images(ctx, participant)]


@dataclasses.dataclass(frozen=True)
class BlockIntroPage(Page):
    """The start of block ``block`` of a within study's walk: a new part begins, with a
    new kind of explanation (or none), whose learning then test trials follow."""

    kind: ClassVar[str] = "block-intro"
    block: int

    @property
    def name(self) -> str:
        return f"block-{self.block}"

    def context(self, ctx, participant):
        return {
            "block": self.block,
            "blocks": len(participant.conditions),
            "explains": ctx.study.explains(self.condition(participant)),
            "design": ctx.study.design,
        }


@dataclasses.dataclass(frozen=True)
class LearningIntroPage(Page):
    """What the trials ask, and the condition's explanation: how to read its maps (shown
    with every learning scene), or its whole page when it has no per-scene explanation."""

    kind: ClassVar[str] = "learning-intro"
    keys: ClassVar[dict[str, str]] = PREDICTION_KEYS
    block: int = 0

    @property
    def name(self) -> str:
        # in every trial design, whatever its kind of page
        return in_block("learning-intro", self.block)

    def context(self, ctx, participant):
        design = ctx.study.trials
        condition = self.condition(participant)
        explains = ctx.study.explains(condition)
        per_scene = per_scene_explanation(ctx, condition) is not None
        learning = _TRIAL_KINDS[ctx.study.design][1]
        return {
            "trials": design.learning_trials,
            "feedback": design.feedback,
            "explanation": "maps" if per_scene else "page" if explains else None,
            "keys": self.keys,
            "preload": upcoming_images(ctx, participant, learning, 1, self.block),
        }


@dataclasses.dataclass(frozen=True)
class TrialPage(Page):
    """The ``index``-th trial (1-based, in the participant's order) of ``phase``: a scene
    whose model decision the participant predicts, stored as one :class:`Trial` row."""

    phase: ClassVar[str]  # learning | test | pre | post
    script: ClassVar[str | None] = "trials.js"
    keys: ClassVar[dict[str, str]] = PREDICTION_KEYS  # each answer's key (trials.js)
    verdict: ClassVar[bool] = False  # the answer: the model's decision, or right | wrong
    shows_map: ClassVar[bool] = False  # the condition's map of the scene beside it
    index: int
    block: int = 0

    @property
    def name(self) -> str:
        return in_block(f"{self.phase}-{self.index}", self.block)

    def scenes(self, ctx: StudyContext) -> tuple:
        """The bundle's scenes of this phase."""
        return getattr(ctx.manifest.simulation, self.phase)

    def scene(self, ctx: StudyContext, participant: Participant) -> tuple[int, SimulationScene]:
        """(the scene's position in the bundle's list of this phase, the scene)."""
        order = json.loads(participant.trial_order)[order_key(self.phase, self.block)]
        position = order[self.index - 1]
        return position, self.scenes(ctx)[position]

    def scored(self, scene) -> dict[str, Any]:
        """The :class:`Trial` columns the scene sets: what the prediction is scored against."""
        return {
            "scene_id": scene.test_index,
            "model_decision": scene.decision,
            "true_label": scene.label,
        }

    def asks_confidence(self, study: Study) -> bool:
        return False

    def form_class(self, study, participant):
        return prediction_form(self.asks_confidence(study), self.verdict)

    def context(self, ctx, participant):
        design = ctx.study.trials
        _, scene = self.scene(ctx, participant)
        maps = per_scene_explanation(ctx, self.condition(participant)) if self.shows_map else None
        return {
            "index": self.index,
            "total": getattr(design, f"{self.phase}_trials"),
            "scene": scene,
            "scene_map": maps.scene_map(scene.test_index) if maps else None,
            "keys": self.keys,
            "preload": upcoming_images(ctx, participant, type(self), self.index + 1, self.block),
        }

    def images(self, ctx: StudyContext, participant: Participant) -> list[str]:
        """The bundle pictures this trial shows: its scene, and its map where it has one."""
        _, scene = self.scene(ctx, participant)
        maps = per_scene_explanation(ctx, self.condition(participant)) if self.shows_map else None
        shown = maps.scene_map(scene.test_index) if maps else None
        return [scene.image] + ([shown] if shown else [])

    def scores(self, answer: str, scored: dict[str, Any]) -> bool:
        """Whether ``answer`` is correct against the columns :meth:`scored` set: the
        model's decision predicted, or (a verdict) its correctness judged against the true
        animal."""
        if self.verdict:
            return (answer == "right") == (scored["model_decision"] == scored["true_label"])
        return answer == scored["model_decision"]

    def answer(self, ctx: StudyContext, participant: Participant, form: StepForm) -> str:
        """The answer stored: the posted animal or verdict."""
        return form.prediction.data

    def submit(self, visit, form):
        from study_server import study_context

        ctx = study_context()
        prediction = self.answer(ctx, visit.participant, form)
        position, scene = self.scene(ctx, visit.participant)
        confidence = form.confidence.data if "confidence" in form else None
        scored = self.scored(scene)
        trial = Trial(
            participant_id=visit.participant.id,
            design=visit.study.design,
            condition=self.condition(visit.participant),
            period=max(self.block, 1),
            phase=self.phase,
            position=self.index - 1,
            scene_index=position,
            prediction=prediction,
            correct=self.scores(prediction, scored),
            confidence=confidence,
            **scored,
            response_ms=form.response_ms.data,
            answered_at=visit.now,
        )
        return Outcome(visit.following, rows=[trial])


@dataclasses.dataclass(frozen=True)
class LearningPage(TrialPage):
    """A learning trial: the scene with the condition's map of it (where it has one)."""

    kind: ClassVar[str] = "learning-trial"
    phase: ClassVar[str] = "learning"
    shows_map: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class FeedbackPage(Page):
    """After learning trial ``index``: what the model decided, beside the prediction."""

    kind: ClassVar[str] = "feedback"
    script: ClassVar[str | None] = "trials.js"
    trial: ClassVar[type[TrialPage]] = LearningPage  # the trial it gives feedback on
    index: int
    block: int = 0

    @property
    def name(self) -> str:
        return in_block(f"feedback-{self.index}", self.block)

    def context(self, ctx, participant):
        trial = self.trial(self.index, self.block)
        values = trial.context(ctx, participant)
        values["prediction"] = _answered(participant, trial.phase, self.index, self.block)
        return values


def _answered(participant: Participant, phase: str, index: int, block: int) -> str | None:
    """The participant's stored answer to trial ``index`` of ``phase`` in ``block``, if any."""
    return db.session.execute(
        select(Trial.prediction).where(
            Trial.participant_id == participant.id,
            Trial.period == max(block, 1),
            Trial.phase == phase,
            Trial.position == index - 1,
        )
    ).scalar_one_or_none()


@dataclasses.dataclass(frozen=True)
class TestIntroPage(Page):
    kind: ClassVar[str] = "test-intro"
    keys: ClassVar[dict[str, str]] = PREDICTION_KEYS
    block: int = 0

    @property
    def name(self) -> str:
        # in every trial design, whatever its kind of page
        return in_block("test-intro", self.block)

    def context(self, ctx, participant):
        test = _TRIAL_KINDS[ctx.study.design][4]
        return {
            "trials": ctx.study.trials.test_trials,
            "keys": self.keys,
            "preload": upcoming_images(ctx, participant, test, 1, self.block),
        }


@dataclasses.dataclass(frozen=True)
class TestPage(TrialPage):
    """A test trial: the scene alone, no explanation, no feedback."""

    kind: ClassVar[str] = "test-trial"
    phase: ClassVar[str] = "test"

    def asks_confidence(self, study):
        return study.trials.confidence


# The verification design's pages: the same walk, each scene shown with the model's
# decision (and, in both phases, the condition's map of it), answered Right or Wrong and
# scored against the true animal.


@dataclasses.dataclass(frozen=True)
class VerificationIntroPage(LearningIntroPage):
    kind: ClassVar[str] = "verification-intro"
    keys: ClassVar[dict[str, str]] = VERDICT_KEYS


@dataclasses.dataclass(frozen=True)
class VerificationLearningPage(LearningPage):
    kind: ClassVar[str] = "verification-learning-trial"
    keys: ClassVar[dict[str, str]] = VERDICT_KEYS
    verdict: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True)
class VerificationFeedbackPage(FeedbackPage):
    """After learning trial ``index``: whether the model was right, and the true animal."""

    kind: ClassVar[str] = "verification-feedback"
    trial: ClassVar[type[TrialPage]] = VerificationLearningPage


@dataclasses.dataclass(frozen=True)
class VerificationTestIntroPage(TestIntroPage):
    kind: ClassVar[str] = "verification-test-intro"
    keys: ClassVar[dict[str, str]] = VERDICT_KEYS


@dataclasses.dataclass(frozen=True)
class VerificationTestPage(TestPage):
    """A test trial: the scene, the model's decision and the condition's map; no feedback."""

    kind: ClassVar[str] = "verification-test-trial"
    keys: ClassVar[dict[str, str]] = VERDICT_KEYS
    verdict: ClassVar[bool] = True
    shows_map: ClassVar[bool] = True


# The distinction design's pages: the same walk, each scene shown with two maps of the
# condition's method, for the model's decision and for the other animal, on sides drawn
# per participant; the participant picks the model's (A or B), and the row stores the
# animal whose map was picked, scored as a prediction is.


@dataclasses.dataclass(frozen=True)
class Panel:
    """One of a distinction trial's two maps: its letter, picture and the class it explains."""

    letter: str  # A (left) | B (right)
    image: str
    explains: str  # peaky | stretchy


def distinction_panels(
    ctx: StudyContext, participant: Participant, phase: str, index: int, block: int = 0
) -> tuple[SimulationScene, tuple[Panel, Panel]]:
    """The scene of trial ``index`` of ``phase`` (in ``block``) and its two panels in the
    participant's order: the map for the model's decision on the drawn side, the other
    class's beside it."""
    order = json.loads(participant.trial_order)
    position = order[order_key(phase, block)][index - 1]
    scene = getattr(ctx.manifest.simulation, phase)[position]
    maps = ctx.manifest.conditions[participant.block_condition(block)]
    entry = next(m for m in maps.scene_maps if m.test_index == scene.test_index)
    other = "peaky" if scene.decision == "stretchy" else "stretchy"
    pair = [(entry.image, scene.decision), (entry.other_image, other)]
    if not order[order_key(f"{phase}_left", block)][index - 1]:
        pair.reverse()
    return scene, tuple(Panel(letter, *shown) for letter, shown in zip("AB", pair, strict=True))


@dataclasses.dataclass(frozen=True)
class DistinctionIntroPage(LearningIntroPage):
    """The task, how to read the condition's maps, and a preview: the first learning scene
    with its two maps, the model's marked (HIVE's preview of a right and a wrong one)."""

    kind: ClassVar[str] = "distinction-intro"
    keys: ClassVar[dict[str, str]] = PANEL_KEYS

    def context(self, ctx, participant):
        scene, panels = distinction_panels(ctx, participant, "learning", 1, self.block)
        return {**super().context(ctx, participant), "scene": scene, "panels": panels}


class _Distinguishing:
    """What a distinction trial adds to a trial page: the two panels, picked by letter."""

    keys: ClassVar[dict[str, str]] = PANEL_KEYS

    def form_class(self, study, participant):
        return panel_form(self.asks_confidence(study))

    def context(self, ctx, participant):
        scene, panels = distinction_panels(ctx, participant, self.phase, self.index, self.block)
        return {**super().context(ctx, participant), "phase": self.phase, "panels": panels}

    def answer(self, ctx, participant, form) -> str:
        _, panels = distinction_panels(ctx, participant, self.phase, self.index, self.block)
        return next(p.explains for p in panels if p.letter == form.panel.data)

    def images(self, ctx, participant):
        scene, panels = distinction_panels(ctx, participant, self.phase, self.index, self.block)
        return [scene.image, *(p.image for p in panels)]


@dataclasses.dataclass(frozen=True)
class DistinctionLearningPage(_Distinguishing, LearningPage):
    kind: ClassVar[str] = "distinction-trial"
    shows_map: ClassVar[bool] = False  # its maps are the panels


@dataclasses.dataclass(frozen=True)
class DistinctionFeedbackPage(FeedbackPage):
    """After learning trial ``index``: which map was the model's, beside the pick."""

    kind: ClassVar[str] = "distinction-feedback"
    trial: ClassVar[type[TrialPage]] = DistinctionLearningPage


@dataclasses.dataclass(frozen=True)
class DistinctionTestIntroPage(TestIntroPage):
    kind: ClassVar[str] = "distinction-test-intro"
    keys: ClassVar[dict[str, str]] = PANEL_KEYS


@dataclasses.dataclass(frozen=True)
class DistinctionTestPage(_Distinguishing, TestPage):
    kind: ClassVar[str] = "distinction-trial"


@dataclasses.dataclass(frozen=True)
class PairIntroPage(Page):
    """Before the pre-test or the post-test: what a pair trial asks."""

    kind: ClassVar[str] = "pair-intro"
    phase: str  # pre | post

    @property
    def name(self) -> str:
        return f"{self.phase}-intro"

    def context(self, ctx, participant):
        trials = getattr(ctx.study.counterfactual_simulation, f"{self.phase}_trials")
        test = PreTestPage if self.phase == "pre" else PostTestPage
        return {
            "phase": self.phase,
            "trials": trials,
            "keys": PREDICTION_KEYS,
            "preload": upcoming_images(ctx, participant, test, 1),
        }


@dataclasses.dataclass(frozen=True)
class PairPage(TrialPage):
    """A pair trial: a scene with the model's decision on it, the same scene with one
    factor changed; the participant predicts the model's decision on the changed one.
    No explanation, no feedback."""

    kind: ClassVar[str] = "pair-trial"

    def scenes(self, ctx):
        return getattr(ctx.manifest.counterfactual_simulation, self.phase)

    def images(self, ctx, participant):
        _, pair = self.scene(ctx, participant)
        return [pair.original_image, pair.changed_image]

    def scored(self, scene: CounterfactualPair) -> dict[str, Any]:
        return {
            "scene_id": scene.test_index,
            "model_decision": scene.changed_decision,
            "true_label": scene.label,
            "changed_factor": scene.factor,
            "original_decision": scene.original_decision,
        }

    def context(self, ctx, participant):
        values = super().context(ctx, participant)
        values["phase"] = self.phase
        values["changed"] = factor_name(values["scene"].factor, gettext)
        return values


@dataclasses.dataclass(frozen=True)
class PreTestPage(PairPage):
    phase: ClassVar[str] = "pre"


@dataclasses.dataclass(frozen=True)
class PostTestPage(PairPage):
    phase: ClassVar[str] = "post"


class EndPage(Page):
    """A page that ends the study: it takes no post, and reaching it sets the status."""

    status: ClassVar[Status]

    def arrival(self, visit):
        return {"status": self.status}


@dataclasses.dataclass(frozen=True)
class CompletePage(EndPage):
    kind: ClassVar[str] = "complete"
    status: ClassVar[Status] = Status.COMPLETED

    def context(self, ctx, participant):
        return _completion(ctx.study, participant.completion_code or ctx.study.completed_code)

    def arrival(self, visit):
        study = visit.study
        code = new_completion_code() if study.per_participant_codes else study.completed_code
        return {**super().arrival(visit), "completed_at": visit.now, "completion_code": code}


@dataclasses.dataclass(frozen=True)
class ScreenedOutPage(EndPage):
    kind: ClassVar[str] = "screened-out"
    status: ClassVar[Status] = Status.SCREENED_OUT

    def context(self, ctx, participant):
        return {
            **_completion(ctx.study, ctx.study.screened_out_code),
            "payment": ctx.study.screened_out_payment,
        }

    def arrival(self, visit):
        return {**super().arrival(visit), "completion_code": visit.study.screened_out_code}


@dataclasses.dataclass(frozen=True)
class DeclinedPage(EndPage):
    kind: ClassVar[str] = "declined"
    status: ClassVar[Status] = Status.RETURNED


COMPLETE, SCREENED_OUT, DECLINED = CompletePage(), ScreenedOutPage(), DeclinedPage()
END_PAGES: tuple[EndPage, ...] = (COMPLETE, SCREENED_OUT, DECLINED)
# The one map from the pages that end a study to the statuses they stand for.
END_STATUS: dict[str, Status] = {page.name: page.status for page in END_PAGES}


def _check_answer(
    visit: Visit, kind: str, question: Question, form: StepForm, attempt: int
) -> CheckAnswer:
    answer = form[f"q_{question.id}"].data
    return CheckAnswer(
        participant_id=visit.participant.id,
        kind=kind,
        question=question.id,
        attempt=attempt,
        answer=answer,
        correct=answer == question.correct,
        answered_at=visit.now,
    )


def new_completion_code() -> str:
    """A participant's own completion code: 8 characters a script cannot guess or share."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


def _completion(study: Study, code: str) -> dict[str, str]:
    return {"code": code, "link": study.completion_link(code)}


@functools.cache
def page_sequence(study: Study) -> tuple[Page, ...]:
    """The pages every participant of ``study`` walks through, in order, ending at complete."""
    at = functools.partial(_questionnaire_pages, study)
    pages: list[Page] = [ConsentPage(), IntroPage(), *at("after-intro")]
    if study.design == COUNTERFACTUAL_SIMULATION:
        pages += _pair_pages(study, "pre", PreTestPage)
        pages += [*_learning_pages(study), *at("after-learning")]
        pages += [*_pair_pages(study, "post", PostTestPage), *at("after-test")]
    elif study.within is not None:  # a block per condition, questionnaires outside them
        for block in range(1, study.within.blocks + 1):
            pages += [BlockIntroPage(block), *_learning_pages(study, block)]
            pages += _test_pages(study, block)
    elif study.trials is not None:
        pages += [*_learning_pages(study), *at("after-learning")]
        pages += [*_test_pages(study), *at("after-test")]
    else:
        pages += [TutorialPage(), ComprehensionPage(), ExplanationsPage()]
        pages += at("after-explanations")
        for index in range(1, len(study.attributes) + 1):
            pages.append(RatingPage(index))
            pages += [
                AttentionPage(c.id) for c in study.attention_checks if c.after_rating == index
            ]
        pages += at("after-ratings")
    pages += at("before-demographics")
    if study.demographics:
        pages.append(DemographicsPage())
    pages.append(COMPLETE)
    return tuple(pages)


# The page kinds of each trial design: intro, learning trial, feedback, test intro, test trial.
_TRIAL_KINDS = {
    FORWARD_SIMULATION: (LearningIntroPage, LearningPage, FeedbackPage, TestIntroPage, TestPage),
    VERIFICATION: (
        VerificationIntroPage,
        VerificationLearningPage,
        VerificationFeedbackPage,
        VerificationTestIntroPage,
        VerificationTestPage,
    ),
    DISTINCTION: (
        DistinctionIntroPage,
        DistinctionLearningPage,
        DistinctionFeedbackPage,
        DistinctionTestIntroPage,
        DistinctionTestPage,
    ),
    # the test phases are the pairs' (_pair_pages)
    COUNTERFACTUAL_SIMULATION: (LearningIntroPage, LearningPage, FeedbackPage, None, None),
}


def _learning_pages(study: Study, block: int = 0) -> list[Page]:
    """The learning block of a trial design (in ``block`` of a within study): its intro,
    then the learning trials, each with its feedback when the study gives it."""
    design = study.trials
    intro, learning, feedback, _, _ = _TRIAL_KINDS[study.design]
    pages: list[Page] = [intro(block=block)]
    for index in range(1, design.learning_trials + 1):
        pages.append(learning(index, block))
        if design.feedback:
            pages.append(feedback(index, block))
    return pages


def _test_pages(study: Study, block: int = 0) -> list[Page]:
    """The test of a learn-then-test design (in ``block`` of a within study): its intro,
    then the test trials."""
    _, _, _, intro, test = _TRIAL_KINDS[study.design]
    count = study.trials.test_trials
    return [intro(block=block), *(test(index, block) for index in range(1, count + 1))]


def _pair_pages(study: Study, phase: str, page: type[PairPage]) -> list[Page]:
    """A counterfactual-simulation test (pre or post): its intro, then its pair trials."""
    count = getattr(study.counterfactual_simulation, f"{phase}_trials")
    return [PairIntroPage(phase), *(page(index) for index in range(1, count + 1))]


@functools.cache
def _pages_by_name(study: Study) -> dict[str, Page]:
    return {page.name: page for page in (*page_sequence(study), *END_PAGES)}


def find_page(study: Study, name: str) -> Page | None:
    """The page of ``study`` called ``name`` (walk or end page), or None."""
    return _pages_by_name(study).get(name)


def page_after(study: Study, page: Page, condition: str | None = None) -> Page:
    """The next page of the walk of a participant of ``condition`` (the pages not shown to
    it skipped); an end page is followed by itself."""
    pages = page_sequence(study)
    if page not in pages[:-1]:
        return page
    following = pages[pages.index(page) + 1 :]
    return next(p for p in following if condition is None or p.shown_to(study, condition))


def progress(study: Study, page: Page) -> int | None:
    """How far into the walk ``page`` is, in percent; None for the end pages off the walk
    (screened out, declined), which did not get that far."""
    pages = page_sequence(study)
    return round(100 * pages.index(page) / (len(pages) - 1)) if page in pages else None


def is_past(study: Study, current: Page, milestone: Page) -> bool:
    """Whether a participant at ``current`` has gone past ``milestone`` in the walk."""
    pages = page_sequence(study)
    if current not in pages or milestone not in pages:
        return False  # off the walk, or a milestone of another design
    return pages.index(current) > pages.index(milestone)


def every_page(study: Study) -> tuple[Page, ...]:
    """Every page of ``study``: the walk, then the end pages off it (screened-out, declined)."""
    return tuple(_pages_by_name(study).values())

"""A participant that walks the whole study through HTTP or in-process, as a person would.

Used by ``bench/load.py``, the tests and the simulations (simulation/runs.py)::

    client = ParticipantClient(HttpTransport("http://127.0.0.1:5000"), prolific_pid="P123",
                               study_id="S1", session_id="X1")
    result = client.run(answer=lambda attribute_key, condition: (4, "the arms move"))

It reads each page's form (simulation/parse.py), fills it by the page's kind (the kinds
of study_server/pages.py), posts to the form's own action, follows the server's
redirects, and raises :class:`FlowError` when a page is not what the flow expects. Over
HTTP it survives dropped connections and server errors by reopening the entry link,
which resumes at the server's page pointer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from simulation.parse import ParsedPage, parse_page, parse_step
from simulation.transport import Reply, TransportError
from study_server.pages import (
    END_STATUS,
    AttentionPage,
    BlockIntroPage,
    ComprehensionPage,
    ConsentPage,
    DemographicsPage,
    DistinctionFeedbackPage,
    DistinctionIntroPage,
    DistinctionLearningPage,
    DistinctionTestIntroPage,
    ExplanationsPage,
    FeedbackPage,
    IntroPage,
    LearningIntroPage,
    LearningPage,
    PairIntroPage,
    PairPage,
    QuestionnairePage,
    RatingPage,
    TestIntroPage,
    TestPage,
    TutorialPage,
    VerificationFeedbackPage,
    VerificationIntroPage,
    VerificationLearningPage,
    VerificationTestIntroPage,
    VerificationTestPage,
)
from study_server.study import Study, load_study
from xaistudy.vocabulary import Status

AnswerFn = Callable[[str, str], tuple[int, str]]
# A trial: (phase, scene id, condition) -> its answer: "peaky" | "stretchy" (forward and
# counterfactual simulation, and in distinction the animal whose map the participant takes
# for the model's), "right" | "wrong" (verification); a pair trial's (pre, post) scene id
# is its original scene's.
PredictFn = Callable[[str, int, str], str]
TRIAL_PHASES = ("learning", "test", "pre", "post")
# (scene id, a map picture's URL) -> the animal it explains (what a simulation knows of
# its bundle).
ExplainsFn = Callable[[int, str], str]
# A questionnaire item: (questionnaire, point, item, condition, points; 0 for free text)
# -> the point chosen ("1".."points") or the text ("" leaves an optional item empty).
ScaleFn = Callable[[str, str, str, str, int], str]
MODES = ("pass", "fail")


class FlowError(RuntimeError):
    """The server showed a page the participant flow did not expect."""


@dataclasses.dataclass(frozen=True)
class Behavior:
    """How a simulated participant answers.

    ``answer(attribute_key, condition)`` gives a rating page's (rating, reason);
    ``comprehension``/``attention``: ``"pass"`` answers correctly, ``"fail"`` wrongly.
    ``predict(phase, scene_id, condition)`` gives a trial's answer (None: always the
    first option, Peaky or Right); ``response_ms`` the time each trial's answer reports.
    ``explains(scene_id, url)``: which animal a distinction panel's map explains, so that
    the participant picks the panel of the animal ``predict`` names.
    ``scale`` answers a questionnaire item (:data:`ScaleFn`; None: each scale's middle
    point, and free text only where it is required).
    """

    answer: AnswerFn
    consent: bool = True
    comprehension: str = "pass"
    attention: str = "pass"
    demographics: dict[str, Any] | None = None
    predict: PredictFn | None = None
    response_ms: int = 900
    explains: ExplainsFn | None = None
    scale: ScaleFn | None = None

    def __post_init__(self) -> None:
        for mode in (self.attention, self.comprehension):
            if mode not in MODES:
                raise ValueError(f"attention/comprehension must be 'pass' or 'fail', got {mode!r}")


def choose_option(
    study: Study, page: ParsedPage, name: str, mode: str, condition: str | None = None
) -> str:
    """The option a participant who read the study would pick (``mode`` pass) or a wrong one.

    The question is known by its field's name (``q_<id>``), not its wording, so a study
    shown in any language is answered alike. Comprehension answers come from the study
    (its file's questions, and the bundle's when ``study`` was made with
    :meth:`Study.with_bundle`), those of ``condition`` when it is known; the posted
    value is the option's, never its translated label.
    """
    options = page.radios[name]
    asked = study.comprehension if condition is None else study.comprehension_for(condition)
    question_id = name.removeprefix("q_")
    correct = next(
        (q.correct for q in (*asked, *study.attention_checks) if q.id == question_id), None
    )
    if correct is None or correct not in {v for v, _ in options}:
        raise FlowError(f"cannot answer the question {name!r} on page {page.name}")
    if mode == "pass":
        return correct
    return next(v for v, _ in options if v != correct)


Filler = Callable[[Study, ParsedPage, Behavior, str | None], dict[str, str]]


def _consent(study, page, behavior, condition):
    return {"consent": "yes" if behavior.consent else "no"}


def _nothing(study, page, behavior, condition):
    return {}


def _comprehension(study, page, behavior, condition):
    mode = behavior.comprehension
    return {name: choose_option(study, page, name, mode, condition) for name in page.radios}


def _attention(study, page, behavior, condition):
    mode = behavior.attention
    return {name: choose_option(study, page, name, mode, condition) for name in page.radios}


def _rating(study, page, behavior, condition):
    key = page.meta.get("xaistudy-attribute")
    if not key or "rating" not in page.radios or "reason" not in page.textareas:
        raise FlowError(f"rating page {page.name} lacks its attribute or fields")
    rating, reason = behavior.answer(key, condition)
    return {"rating": str(rating), "reason": reason}


def _trial(study, page, behavior, condition, field="prediction"):
    """A trial's answer (and a middle confidence where asked), by the scene's id."""
    phase, scene = page.meta.get("xaistudy-phase"), page.meta.get("xaistudy-scene", "")
    if phase not in TRIAL_PHASES or not scene.isdigit() or field not in page.radios:
        raise FlowError(f"trial page {page.name} lacks its phase, scene or {field} field")
    first = page.radios[field][0][0]  # (value, label) of the first option
    predict = behavior.predict or (lambda phase, scene, condition: first)
    data = {
        field: predict(phase, int(scene), condition),
        "response_ms": str(behavior.response_ms),
    }
    if "confidence" in page.radios:
        data["confidence"] = "3"
    return data


def _distinction(study, page, behavior, condition):
    """The panel whose map explains the animal the participant takes for the model's
    (without a ``predict``: the first panel)."""
    answer = _trial(study, page, behavior, condition, field="panel")
    if behavior.predict is None:
        return answer
    if set(page.panels) != {"A", "B"} or behavior.explains is None:
        raise FlowError(f"distinction page {page.name} lacks its two panels, or their meaning")
    scene = int(page.meta["xaistudy-scene"])  # _trial checked it
    by_animal = {behavior.explains(scene, url): letter for letter, url in page.panels.items()}
    if set(by_animal) != {"peaky", "stretchy"}:
        raise FlowError(f"distinction page {page.name} does not show one map per animal")
    return {**answer, "panel": by_animal[answer["panel"]]}


def _middle(questionnaire, point, item, condition, points) -> str:
    return str((points + 1) // 2) if points else ""


def _questionnaire(study, page, behavior, condition):
    """Each item by its field (``i_<item id>``): a point of its radio group, or text."""
    questionnaire, point = page.meta.get("xaistudy-questionnaire"), page.meta.get("xaistudy-point")
    if not questionnaire or not point:
        raise FlowError(f"questionnaire page {page.name} lacks its questionnaire or point")
    scale = behavior.scale or _middle
    data = {}
    for name, options in page.radios.items():
        data[name] = scale(questionnaire, point, name.removeprefix("i_"), condition, len(options))
    for name in page.textareas:
        item = study.questionnaire(questionnaire).item(name.removeprefix("i_"))
        text = scale(questionnaire, point, item.id, condition, 0)
        data[name] = text or ("no comment" if item.required else "")
    return data


def _demographics(study, page, behavior, condition):
    given = behavior.demographics or {}
    return {name: str(given.get(name, "") or "") for name in ("age", "gender", "ml_experience")}


# What a participant enters on each kind of page; a new kind of page needs its entry here.
FILLERS: dict[str, Filler] = {
    ConsentPage.kind: _consent,
    IntroPage.kind: _nothing,
    TutorialPage.kind: _nothing,
    ComprehensionPage.kind: _comprehension,
    ExplanationsPage.kind: _nothing,
    RatingPage.kind: _rating,
    AttentionPage.kind: _attention,
    DemographicsPage.kind: _demographics,
    BlockIntroPage.kind: _nothing,
    LearningIntroPage.kind: _nothing,
    LearningPage.kind: _trial,
    FeedbackPage.kind: _nothing,
    TestIntroPage.kind: _nothing,
    TestPage.kind: _trial,
    VerificationIntroPage.kind: _nothing,
    VerificationLearningPage.kind: _trial,
    VerificationFeedbackPage.kind: _nothing,
    VerificationTestIntroPage.kind: _nothing,
    VerificationTestPage.kind: _trial,
    DistinctionIntroPage.kind: _nothing,
    DistinctionLearningPage.kind: _distinction,
    DistinctionFeedbackPage.kind: _nothing,
    DistinctionTestIntroPage.kind: _nothing,
    QuestionnairePage.kind: _questionnaire,
    PairIntroPage.kind: _nothing,
    PairPage.kind: _trial,
}


def fill_form(
    study: Study, page: ParsedPage, behavior: Behavior, condition: str | None
) -> dict[str, str]:
    """The form data a participant with ``behavior`` posts on ``page``."""
    filler = FILLERS.get(page.kind)
    if filler is None:
        raise FlowError(f"unexpected page {page.name!r} (kind {page.kind!r})")
    return {**page.hidden, **filler(study, page, behavior, condition)}


@dataclasses.dataclass
class RunResult:
    condition: str | None = None
    completion_code: str | None = None
    status: Status | None = None  # started (left early) or an end page's status
    requests: int = 0
    pages: list[str] = dataclasses.field(default_factory=list)
    # attribute -> (rating, reason) for every rating post the server acknowledged
    acknowledged: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)
    retries: int = 0


def _refused(page: ParsedPage, post: Reply) -> bool:
    """Whether the server sent a post back to its own page: a refused answer, shown again
    with its errors. (A failed comprehension attempt also comes back, by design.)"""
    target = urlsplit(post.location or "").path
    return target.endswith(f"/study/{page.name}") and page.kind != ComprehensionPage.kind


class ParticipantClient:
    """One simulated participant; see the module docstring."""

    def __init__(
        self,
        transport,
        prolific_pid: str,
        study_id: str = "S1",
        session_id: str = "X1",
        study: Study | None = None,
        max_retries: int = 30,
        retry_wait_s: float = 0.2,
        language: str | None = None,
    ):
        self.transport = transport
        link = {"PROLIFIC_PID": prolific_pid, "STUDY_ID": study_id, "SESSION_ID": session_id}
        if language:
            link["lang"] = language  # the study's language unless the link asks (docs/study.md)
        self.entry_url = "/?" + urlencode(link)
        # The study as served: a transport that knows it (FlaskTransport) lends it, with
        # the bundle's comprehension questions; over HTTP pass Study.with_bundle(...).
        self.study = study or getattr(transport, "study", None) or load_study(None)
        self.max_retries = max_retries
        self.retry_wait_s = retry_wait_s

    # -- requests ------------------------------------------------------------------------
    def _send(
        self,
        result: RunResult,
        method: str,
        url: str,
        data: dict | None = None,
        referer: str | None = None,
    ) -> Reply:
        result.requests += 1
        # Like a browser, a form post names the page it came from (Flask-WTF checks the
        # Referer on HTTPS).
        reply = self.transport.request(method, url, data, referer=referer)
        if reply.status >= 500:
            raise TransportError(f"{method} {url}: server error {reply.status}")
        return reply

    def _follow(self, result: RunResult, reply: Reply) -> Reply:
        for _ in range(10):
            if reply.status not in (301, 302, 303, 307, 308):
                return reply
            reply = self._send(result, "GET", urljoin(reply.url, reply.location))
        raise FlowError(f"too many redirects at {reply.url}")

    # -- the walk ------------------------------------------------------------------------
    def run(
        self,
        answer: AnswerFn,
        attention: str = "pass",
        demographics: dict[str, Any] | None = None,
        comprehension: str = "pass",
        consent: bool = True,
        stop_after: str | None = None,
        predict: PredictFn | None = None,
        explains: ExplainsFn | None = None,
        scale: ScaleFn | None = None,
    ) -> RunResult:
        """Walk from the entry link to an end page; ``stop_after`` leaves after that page.

        The answers are those of a :class:`Behavior` with these arguments.
        """
        behavior = Behavior(
            answer, consent, comprehension, attention, demographics, predict=predict,
            explains=explains, scale=scale,
        )  # fmt: skip
        result = RunResult()
        failures = 0
        reply = None
        while True:
            try:
                if reply is None:
                    reply = self._follow(result, self._send(result, "GET", self.entry_url))
                if reply.status != 200:
                    raise FlowError(f"GET {reply.url} answered {reply.status}: {reply.text[:300]}")
                page = parse_step(reply.text)
                result.condition = page.meta.get("xaistudy-condition", result.condition)
                if not result.pages or result.pages[-1] != page.name:
                    result.pages.append(page.name)
                if page.name in END_STATUS:
                    result.status = END_STATUS[page.name]
                    result.completion_code = page.code
                    return result
                if page.action is None and not page.hidden:
                    raise FlowError(f"page {page.name!r} at {reply.url} has no form")
                data = fill_form(self.study, page, behavior, result.condition)
                post = self._send(
                    result,
                    "POST",
                    urljoin(reply.url, page.action or reply.url),
                    data,
                    referer=reply.url,
                )
                if post.status == 400:
                    alerts = "; ".join(parse_page(post.text).alerts) or post.text[:300]
                    raise FlowError(f"page {page.name!r} refused the answers: {alerts}")
                if post.status not in (302, 303):
                    raise FlowError(f"POST on page {page.name!r} answered {post.status}")
                if _refused(page, post):
                    reply = self._follow(result, post)
                    alerts = "; ".join(parse_step(reply.text).alerts)
                    raise FlowError(f"page {page.name!r} refused the answers: {alerts}")
                if page.kind == RatingPage.kind:
                    key = page.meta["xaistudy-attribute"]
                    result.acknowledged[key] = (int(data["rating"]), data["reason"])
                if stop_after is not None and page.name == stop_after:
                    result.status = Status.STARTED
                    return result
                reply = self._follow(result, post)
            except TransportError:
                failures += 1
                result.retries += 1
                if failures > self.max_retries:
                    raise
                time.sleep(self.retry_wait_s)
                reply = None  # reopen the entry link: the server knows where we were

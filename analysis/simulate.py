"""Simulated participants with known per-condition accuracies.

A participant in a condition with set accuracy p draws an ability a (Beta-distributed
with mean p and standard deviation ``ability_sd``; a = p when it is 0) and, for each
attribute, rates on the correct side with probability a (4-5 if the attribute is
relevant, 1-2 if not, under the default scoring rule) and otherwise uniformly among the
other ratings (the wrong side or 3). Some participants can fail the attention check or
finish too fast, so the exclusions are exercised. In a forward-simulation study the
same ability is the chance that a trial's prediction is the model's decision (learning
and test alike); otherwise the participant names the other animal. In a
counterfactual-simulation study the learning and post-test trials take that ability, the
pre-test trials a second one drawn around the condition's pre-test accuracy
(``pre_accuracy``), so the gain each condition should show is set. In a verification
study a participant has two chances instead, drawn the same way around the condition's
set acceptance: of a "right" verdict where the model is right, and where it is wrong
(over-reliance); the verification accuracy on balanced scenes is then
(accept_right + 1 - accept_wrong) / 2. Those draws are keyed
by the participant's rank among its condition's arrivals and by the scene, so a
simulation through a server is the same whatever condition order and trial order the
server draws. In a within-subjects study (docs/designs/within-subjects.md) a participant
draws an ability per condition, as they meet it block by block, and gains ``practice``
in each block after the first (a period effect; 0 by default). Questionnaire items
(:class:`ScaleAnswers`) are answered around a set mean per item and condition, shifted by
a set change at the last point of a pre/post block, drawn by the same key.

Here the tables in the export format (no server) and the answers of one participant;
simulation/runs.py sends such participants through a real server.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import Bundle
from analysis.scoring import SCALE, ScoringRule
from xaistudy.errors import UserError
from xaistudy.files import staged_folder
from xaistudy.vocabulary import Status

# A trial's phase in the key of its draw (learning and test: as forward simulation had them).
PHASE_CODES = {"learning": 0, "test": 1, "pre": 2, "post": 3}
MEDIAN_SECONDS = 600.0  # a typical participant's time for the whole study
FAST_SECONDS = (30.0, 90.0)  # the range a too-fast participant takes
# A short reason per rating 1..5, as a participant might write it.
REASONS = (
    "the model ignores it",
    "it hardly matters",
    "hard to tell",
    "it seems to matter",
    "it changes what the model decides",
)


def parse_accuracy(text: str, conditions: list[str]) -> dict[str, float]:
    """``"baseline=0.7,concepts=0.6"`` -> ``{"baseline": 0.7, "concepts": 0.6}``."""
    return _per_condition(text, conditions, "--accuracy", "baseline=0.7,concepts=0.6", _share)


def parse_acceptance(text: str, conditions: list[str]) -> dict[str, tuple[float, float]]:
    """``"none=0.85/0.6,baseline=0.9/0.3"`` -> per condition (P(right verdict | model
    right), P(right verdict | model wrong)): a verification study's acceptance."""

    def pair(option: str, value: str) -> tuple[float, float]:
        right, sep, wrong = value.partition("/")
        if not sep:
            raise UserError(
                f"{option}={value!r} is not RIGHT/WRONG: the chances of a right verdict when "
                "the model is right and when it is wrong (e.g. 0.85/0.6)"
            )
        return _share(option, right), _share(option, wrong)

    return _per_condition(text, conditions, "--acceptance", "none=0.85/0.6,baseline=0.9/0.3", pair)


def parse_condition_values(
    text: str, conditions: list[str], option: str, low: float, high: float
) -> dict[str, float]:
    """``"CONDITION=VALUE,..."`` given as ``option``, each value a number in [low, high]."""
    example = f"{conditions[0] if conditions else 'baseline'}={(low + high) / 2:g}"
    return _per_condition(
        text, conditions, option, example, lambda name, value: _number(name, value, low, high)
    )


def _share(option: str, value: str) -> float:
    return _number(option, value, 0.0, 1.0)


def _number(option: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{option}={value!r} is not a number") from None
    if not low <= number <= high:
        raise UserError(f"{option}={number:g} is outside [{low:g}, {high:g}]")
    return number


def _per_condition(text: str, conditions: list[str], option: str, example: str, parse) -> dict:
    """``CONDITION=VALUE,...`` -> {condition: parse(f"{option} {condition}", value)}."""
    result: dict = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise UserError(f"{option} {text!r}: {part!r} is not CONDITION=VALUE (e.g. {example})")
        if name not in conditions:
            raise UserError(
                f"{option} names unknown condition {name!r}; allowed are {', '.join(conditions)}"
            )
        if name in result:
            raise UserError(f"{option} gives condition {name!r} twice")
        result[name] = parse(f"{option} {name}", value.strip())
    if not result:
        raise UserError(f"{option} is empty; give e.g. {example}")
    return result


def _fraction(value: float, option: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{option}={value:g} is outside [0, 1]")
    return float(value)


# What a simulated participant writes in a free-text item it answers.
COMMENTS = (
    "The pictures were clear.",
    "Some of the explanations were hard to follow.",
    "I mostly looked at the arms.",
    "Interesting study, thank you.",
)


@dataclasses.dataclass(frozen=True)
class ScaleAnswers:
    """How simulated participants answer questionnaire items.

    ``means``: ``"<questionnaire>.<item>"`` -> condition -> the mean point; an item or
    condition not named answers around its scale's midpoint plus ``offset[condition]``
    (0 when absent). ``change``: condition -> what the mean moves by from the first to the
    last point of a pre/post block (0 when absent). A participant's answer is the mean
    rounded at random to a neighbouring point (so its expectation is the mean) and moved
    one point up or down with probability ``spread`` each; only a point off the scale is
    pulled back, so a mean at least one point inside the ends is met exactly.
    ``comment``: the chance an optional free-text item is answered.
    """

    means: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    offset: dict[str, float] = dataclasses.field(default_factory=dict)
    change: dict[str, float] = dataclasses.field(default_factory=dict)
    spread: float = 0.25
    comment: float = 0.3

    def __post_init__(self) -> None:
        _fraction(self.spread, "spread")
        if self.spread > 0.5:
            raise UserError(f"spread={self.spread:g}: at most 0.5 (a step each way)")
        _fraction(self.comment, "comment")

    def mean(self, key: str, condition: str, points: int, last_of_block: bool) -> float:
        """The mean answer to item ``key`` on a scale of ``points`` in ``condition``."""
        base = self.means.get(key, {}).get(condition)
        if base is None:
            base = (points + 1) / 2 + self.offset.get(condition, 0.0)
        return base + (self.change.get(condition, 0.0) if last_of_block else 0.0)

    def draw(self, rng: np.random.Generator, mean: float, points: int) -> int:
        low = int(np.floor(mean))
        point = low + int(rng.random() < mean - low)
        point += int(rng.choice([-1, 0, 1], p=[self.spread, 1 - 2 * self.spread, self.spread]))
        return int(min(max(point, 1), points))


@dataclasses.dataclass(frozen=True)
class SimulationSpec:
    """What to simulate; ``n`` participants are assigned to the conditions in turn."""

    accuracy: dict[str, float]
    n: int = 240
    seed: int = 0
    ability_sd: float = 0.1
    attention_fail: float = 0.0
    too_fast: float = 0.0
    rule: ScoringRule = dataclasses.field(default_factory=ScoringRule)
    # a verification study's participants, per condition: the chances of a "right" verdict
    # when the model is right and when it is wrong (parse_acceptance)
    acceptance: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    # a counterfactual-simulation study's pre-test accuracy per condition (None: accuracy)
    pre_accuracy: dict[str, float] | None = None
    scales: ScaleAnswers = dataclasses.field(default_factory=ScaleAnswers)
    # a within-subjects study's practice effect: the accuracy gained per block walked
    # before (0 in a participant's first block, and in every between-subjects study)
    practice: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be at least 1, got {self.n}")
        if self.ability_sd < 0:
            raise UserError(f"--ability-sd must be >= 0, got {self.ability_sd}")
        _fraction(self.attention_fail, "--attention-fail")
        _fraction(self.too_fast, "--too-fast")
        if self.attention_fail + self.too_fast > 1:
            raise UserError("--attention-fail plus --too-fast must not exceed 1")
        if not -0.5 <= self.practice <= 0.5:
            raise UserError(f"--practice={self.practice:g} is outside [-0.5, 0.5]")


def draw_abilities(rng: np.random.Generator, p: float, n: int, sd: float) -> np.ndarray:
    """(n,) per-participant accuracies with mean ``p``: Beta(p k, (1-p) k), sd ~= ``sd``."""
    if sd == 0 or p in (0.0, 1.0):
        return np.full(n, p)
    # Beta variance p(1-p)/(k+1); k is floored so the distribution stays unimodal-ish.
    concentration = max(p * (1 - p) / sd**2 - 1, 2.0)
    return rng.beta(p * concentration, (1 - p) * concentration, size=n)


def draw_ratings(
    rng: np.random.Generator, correct: np.ndarray, relevant: np.ndarray, rule: ScoringRule
) -> np.ndarray:
    """Ratings (same shape as ``correct``) on the correct side where ``correct``, else
    uniformly among the ratings that score as wrong."""
    correct = np.asarray(correct, dtype=bool)
    relevant = np.broadcast_to(np.asarray(relevant, dtype=bool), correct.shape)
    ratings = np.zeros(correct.shape, dtype=int)
    for is_relevant in (True, False):
        right = np.array(rule.relies_on if is_relevant else rule.not_relies_on)
        wrong = np.array([r for r in SCALE if r not in right])
        for choices, mask in ((right, correct), (wrong, ~correct)):
            cells = mask & (relevant == is_relevant)
            ratings[cells] = rng.choice(choices, size=int(cells.sum()))
    return ratings


def assign_conditions(rng: np.random.Generator, conditions: list[str], n: int) -> np.ndarray:
    """Balanced assignment: each block of len(conditions) participants covers every
    condition once, in a random order."""
    k = len(conditions)
    blocks = -(-n // k)
    order = np.argsort(rng.random((blocks, k)), axis=1).ravel()[:n]
    return np.asarray(conditions, dtype=object)[order]


# The relative time a participant spends on each kind of page (study_server/pages.py).
PAGE_WEIGHTS = {
    "consent": 1.0,
    "intro": 1.0,
    "tutorial": 3.0,
    "comprehension": 1.5,
    "explanations": 6.0,
    "rating": 1.5,
    "attention": 0.3,
    "questionnaire": 1.0,
    "demographics": 0.7,
}


def _iso(times: pd.Series) -> pd.Series:
    return times.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def simulate_frames(
    bundle: Bundle, spec: SimulationSpec, pages: Sequence[tuple[str, str]]
) -> dict[str, pd.DataFrame]:
    """Participants, answers and pages tables in the export format (docs/analysis.md).

    ``pages``: (name, kind) of the pages a participant answers, in order, with one page
    of kind ``rating`` per bundle attribute (simulation.runs.answered_pages).
    """
    rng = np.random.default_rng(spec.seed)
    conditions = list(spec.accuracy)
    attributes = bundle.attributes["attribute"].to_numpy()
    relevant = bundle.attributes["relevant"].to_numpy(dtype=bool)
    n, a = spec.n, len(attributes)

    condition = assign_conditions(rng, conditions, n)
    ability = np.empty(n)
    for name, p in spec.accuracy.items():
        rows = condition == name
        ability[rows] = draw_abilities(rng, p, int(rows.sum()), spec.ability_sd)
    correct = rng.random((n, a)) < ability[:, None]
    ratings = draw_ratings(rng, correct, relevant[None, :], spec.rule)

    kind = rng.random(n)
    attention_failed = kind < spec.attention_fail
    too_fast = (kind >= spec.attention_fail) & (kind < spec.attention_fail + spec.too_fast)
    duration = MEDIAN_SECONDS * np.exp(rng.normal(0.0, 0.25, n))
    duration[too_fast] = rng.uniform(*FAST_SECONDS, size=int(too_fast.sum()))

    ids = np.array([f"sim-{spec.seed}-{i:06d}" for i in range(n)], dtype=object)
    pids = np.array([f"SIMPID{spec.seed}X{i:06d}" for i in range(n)], dtype=object)
    start = pd.Timestamp("2026-01-01T09:00:00") + pd.to_timedelta(np.arange(n) * 37.0, unit="s")
    started = pd.Series(start)
    completed = started + pd.to_timedelta(duration, unit="s")

    # Each participant rates the attributes in their own random order: ``order[i, q]`` is
    # the attribute on participant i's q-th rating page, ``position[i, j]`` the page of j.
    order = np.argsort(rng.random((n, a)), axis=1)
    position = np.argsort(order, axis=1)

    # Pages as the server names them (rating-1.. by position, attention checks between);
    # the participant's time split among them (Dirichlet, explanations weighted most).
    page_names = np.array([name for name, _ in pages])
    p_count = len(page_names)
    rating_index = np.array([i for i, (_, kind) in enumerate(pages) if kind == "rating"])
    if len(rating_index) != a:
        raise UserError(
            f"the study asks {len(rating_index)} ratings, but the bundle has {a} attributes"
        )
    weights = np.array([PAGE_WEIGHTS[kind] for _, kind in pages])
    seconds = rng.dirichlet(weights * 4, size=n) * duration[:, None]
    left_offsets = np.cumsum(seconds, axis=1)
    entered_offsets = left_offsets - seconds
    page_start = np.repeat(start.to_numpy(), p_count)
    pages = pd.DataFrame(
        {
            "participant_id": np.repeat(ids, p_count),
            "condition": np.repeat(condition, p_count),
            "page": np.tile(page_names, n),
            "entered_at": _iso(
                pd.Series(page_start + pd.to_timedelta(entered_offsets.ravel(), "s"))
            ),
            "left_at": _iso(pd.Series(page_start + pd.to_timedelta(left_offsets.ravel(), "s"))),
            "seconds": seconds.ravel().round(3),
        }
    )

    answered = np.repeat(start.to_numpy(), a) + pd.to_timedelta(
        np.take_along_axis(left_offsets, rating_index[position], axis=1).ravel(), "s"
    )
    order_text = ["|".join(row) for row in attributes.astype(str)[order]]
    answers = pd.DataFrame(
        {
            "participant_id": np.repeat(ids, a),
            "prolific_pid": np.repeat(pids, a),
            "condition": np.repeat(condition, a),
            "attribute": np.tile(attributes, n),
            "position": position.ravel() + 1,
            "rating": ratings.ravel(),
            "reason": np.asarray(REASONS, dtype=object)[ratings.ravel() - 1],
            "answered_at": _iso(pd.Series(answered)),
        }
    )
    participants = pd.DataFrame(
        {
            "participant_id": ids,
            "prolific_pid": pids,
            "study_id": "SIMSTUDY",
            "session_id": [f"SIMSESSION{i:06d}" for i in range(n)],
            "condition": condition,
            "status": Status.COMPLETED.value,
            "preview": False,
            "excluded": False,
            "attention_passed": ~attention_failed,
            "comprehension_attempts": 1,
            "attribute_order": order_text,
            "started_at": _iso(started),
            "completed_at": _iso(completed),
            "duration_s": duration.round(3),
            "age": rng.integers(18, 70, n),
            "gender": rng.choice(["female", "male", "other"], n, p=[0.48, 0.48, 0.04]),
            "ml_experience": rng.choice(["none", "some", "expert"], n, p=[0.5, 0.4, 0.1]),
        }
    )
    return {"participants": participants, "answers": answers, "pages": pages}


def write_frames(frames: dict[str, pd.DataFrame], out_dir: Path, overwrite: bool = False) -> Path:
    """Write ``<name>.csv`` for each frame into ``out_dir``, atomically (temp folder, rename)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise UserError(f"output folder {out_dir} exists and is not empty; pass --overwrite")
    with staged_folder(out_dir) as tmp:
        for name, frame in frames.items():
            frame.to_csv(tmp / f"{name}.csv", index=False)
    return out_dir


class ParticipantAnswers:
    """The answers of one simulated participant, drawn once their condition is known.

    ``decisions``: the model's decision on each simulation scene, by scene id
    (analysis.load.Bundle.simulation_decisions), ``pairs`` on each counterfactual-simulation
    pair's changed scene (Bundle.pair_decisions), which :meth:`predict` matches with the
    participant's ability; ``labels``: the scenes' true animals, against which
    :meth:`verify` accepts or rejects a decision with the participant's acceptance.
    ``ranks``: arrivals per condition so far, shared by the participants of one
    simulation (run one after another). ``block_points``: each questionnaire's points,
    whose last of several is the post of a pre/post block."""

    def __init__(
        self,
        spec: SimulationSpec,
        relevant: dict[str, bool],
        index: int,
        decisions: dict[int, str] | None = None,
        ranks: dict[str, int] | None = None,
        labels: dict[int, str] | None = None,
        block_points: dict[str, tuple[str, ...]] | None = None,
        pairs: dict[int, str] | None = None,
    ):
        self.spec, self.relevant = spec, relevant
        self.decisions, self.labels = decisions or {}, labels or {}
        self.pairs = pairs or {}  # a pair's decision on the changed scene, by its scene id
        self.pre_ability: float | None = None
        # each questionnaire's points (Questionnaire.at): its last of several is "post"
        self.block_points = block_points or {}
        self.ranks = {} if ranks is None else ranks
        self.rng = np.random.default_rng([spec.seed, index])
        # the ability per condition, in the order met: a within study's blocks
        self.abilities: dict[str, float] = {}
        self.acceptance: tuple[float, float] | None = None  # a verification study's
        self.key: list[int] | None = None  # the trials' draws: seed, condition, rank

    def _ability(self, condition: str | None) -> float:
        if condition not in self.spec.accuracy:
            raise UserError(
                f"the server assigned condition {condition!r}, for which --accuracy gives no "
                f"value (it gives {', '.join(self.spec.accuracy)})"
            )
        if condition not in self.abilities:
            p = self.spec.accuracy[condition]
            drawn = float(draw_abilities(self.rng, p, 1, self.spec.ability_sd)[0])
            self.abilities[condition] = drawn
        period = list(self.abilities).index(condition)  # blocks walked before this one
        return float(np.clip(self.abilities[condition] + self.spec.practice * period, 0, 1))

    def _key(self, condition: str | None) -> list[int]:
        """The key of this participant's draws: seed, condition, rank in the condition. The
        first trial or questionnaire fixes the rank and seeds the participant's own draws
        (ability, acceptance)."""
        if self.key is None:
            rank = self.ranks.get(condition, 0)
            self.ranks[condition] = rank + 1
            self.key = [self.spec.seed, zlib.crc32(str(condition).encode()), rank]
            self.rng = np.random.default_rng(self.key)  # the ability's draw
        return self.key

    def _trial_draw(self, phase: str, scene_id: int, condition: str | None) -> float:
        """A trial's uniform draw, keyed by the participant's rank, the phase and the
        scene."""
        key = self._key(condition)
        decisions = self.pairs if phase in ("pre", "post") else self.decisions
        if scene_id not in decisions:
            raise UserError(f"the server shows scene {scene_id}, unknown to the bundle")
        return np.random.default_rng([*key, PHASE_CODES[phase], scene_id]).random()

    def _pre_test_ability(self, condition: str | None) -> float:
        """The ability before learning: drawn around the pre-test accuracy."""
        ability = self._ability(condition)  # checks the condition, draws the first
        if self.spec.pre_accuracy is None:
            return ability
        if self.pre_ability is None:
            p = self.spec.pre_accuracy.get(condition, self.spec.accuracy[condition])
            rng = np.random.default_rng([*self.key, len(PHASE_CODES)])
            self.pre_ability = float(draw_abilities(rng, p, 1, self.spec.ability_sd)[0])
        return self.pre_ability

    def predict(self, phase: str, scene_id: int, condition: str | None) -> str:
        """A simulation trial: the model's decision (on a pair's changed scene) with the
        ability's chance (before learning: the pre-test ability)."""
        draw = self._trial_draw(phase, scene_id, condition)
        decision = (self.pairs if phase in ("pre", "post") else self.decisions)[scene_id]
        ability = self._pre_test_ability(condition) if phase == "pre" else self._ability(condition)
        if draw < ability:
            return decision
        return "peaky" if decision == "stretchy" else "stretchy"

    def verify(self, phase: str, scene_id: int, condition: str | None) -> str:
        """A verification trial: "right" with the participant's acceptance of a right
        decision where the model is right, of a wrong one where it is wrong."""
        draw = self._trial_draw(phase, scene_id, condition)
        accept_right, accept_wrong = self._acceptance(condition)
        model_right = self.decisions[scene_id] == self.labels[scene_id]
        return "right" if draw < (accept_right if model_right else accept_wrong) else "wrong"

    def _acceptance(self, condition: str | None) -> tuple[float, float]:
        """The participant's own chances of a right verdict (model right, model wrong),
        drawn once around the condition's as abilities are."""
        if condition not in self.spec.acceptance:
            raise UserError(
                f"the server assigned condition {condition!r}, for which --acceptance gives "
                f"no value (it gives {', '.join(self.spec.acceptance) or 'none'})"
            )
        if self.acceptance is None:
            means = self.spec.acceptance[condition]
            right, wrong = (draw_abilities(self.rng, p, 1, self.spec.ability_sd)[0] for p in means)
            self.acceptance = (float(right), float(wrong))
        return self.acceptance

    def scale(self, questionnaire: str, point: str, item: str, condition: str, points: int) -> str:
        """A questionnaire item (simulation.client.ScaleFn): a point around the set mean,
        later in a pre/post block by the set change; free text now and then."""
        rng = np.random.default_rng(
            [*self._key(condition), zlib.crc32(f"{questionnaire}.{item}.{point}".encode())]
        )
        scales = self.spec.scales
        if not points:
            return str(rng.choice(COMMENTS)) if rng.random() < scales.comment else ""
        block = self.block_points.get(questionnaire, ())
        last = len(block) > 1 and point == block[-1]
        mean = scales.mean(f"{questionnaire}.{item}", condition, points, last)
        return str(scales.draw(rng, mean, points))

    def answer(self, attribute: str, condition: str | None) -> tuple[int, str]:
        ability = self._ability(condition)
        if attribute not in self.relevant:
            raise UserError(f"the server asks about attribute {attribute!r}, unknown to the bundle")
        relevant = self.relevant[attribute]
        correct = self.rng.random() < ability
        rating = int(
            draw_ratings(self.rng, np.array([correct]), np.array([relevant]), self.spec.rule)[0]
        )
        return rating, REASONS[rating - 1]

"""The simulation designs' scenes: which test scenes participants learn from and are tested on.

In a forward-simulation study (Hase & Bansal 2020; Colin et al. 2022) participants learn
the model's decisions from example scenes, then predict its decision on scenes they have
not seen. A participant who only guesses the true animal must not score well, so both
phases are balanced over the model's correctness: as many true positives, true negatives,
false positives and false negatives as the test split allows (positive = Stretchy, by the
logit's sign against the true label). Within each of the four, the scenes are spread over
difficulty strata of |logit| (the scenes closest to the boundary are the hardest to
predict). Learning and test scenes are disjoint, drawn with one seed.

In a counterfactual-simulation study (Hase & Bansal 2020) participants see a scene, the
model's decision on it, and the same scene with one factor redrawn (the dataset's
intervention split), and predict the model's decision on the changed scene. Each phase
(pre-test, post-test) holds as many pairs whose change flips the model's decision as pairs
whose change does not, so that neither "it stays" nor "it turns" scores above chance;
within each kind the pairs go round the factors and the |logit| strata. No scene is in
both phases, nor among the forward-simulation scenes (the design's learning scenes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from explain.manifest import (
    ANIMALS,
    CounterfactualPair,
    CounterfactualStimuli,
    SimulationScene,
    SimulationStimuli,
)
from xaistudy.errors import UserError
from xaistudy.vocabulary import FACTORS

# The model's outcome on a scene: (true label, decision), 0 = peaky, 1 = stretchy.
OUTCOMES = {"tp": (1, 1), "tn": (0, 0), "fp": (0, 1), "fn": (1, 0)}
RULE = (
    "per phase: the model's true/false positives/negatives in turn (positive = stretchy, "
    "decision = logit > 0), slot k of the phase in stratum (k // 4 + k % 4) mod strata of "
    "|logit| (equal-count quantiles of the test scenes, 0 = smallest); a slot whose group "
    "has no scene left takes the nearest stratum, then the other outcome of the same "
    "correctness, then any"
)


def strata_edges(logits: np.ndarray, strata: int) -> np.ndarray:
    """The |logit| bounds between ``strata`` equal-count difficulty strata (strata - 1,)."""
    return np.quantile(np.abs(logits), np.arange(1, strata) / strata)


def select_simulation(
    logits: np.ndarray,
    labels: np.ndarray,
    learning: int,
    test: int,
    strata: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test-split indices of the learning (learning,) and test (test,) scenes, disjoint,
    and the strata edges. ``logits`` and ``labels`` (0 peaky, 1 stretchy) are (N,)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if learning < 1 or test < 1 or strata < 1:
        raise UserError(
            f"forward simulation needs at least one learning and one test scene and one "
            f"stratum, got {learning} learning, {test} test, {strata} strata"
        )
    if learning + test > len(logits):
        raise UserError(
            f"forward simulation asks for {learning} learning + {test} test scenes, but the "
            f"test split has {len(logits)}; ask for fewer or explain more test images"
        )
    edges = strata_edges(logits, strata)
    stratum = np.searchsorted(edges, np.abs(logits), side="right")
    decision = (logits > 0).astype(int)
    rng = np.random.default_rng([seed, 11])
    pools: dict[tuple[str, int], list[int]] = {}
    for name, (label, said) in OUTCOMES.items():
        for s in range(strata):
            members = np.flatnonzero((labels == label) & (decision == said) & (stratum == s))
            pools[name, s] = list(rng.permutation(members))
    phases = [_draw(pools, n, strata) for n in (learning, test)]
    return np.array(phases[0]), np.array(phases[1]), edges


def _draw(pools: dict[tuple[str, int], list[int]], n: int, strata: int) -> list[int]:
    """``n`` scenes taken from ``pools``: outcomes in turn, strata in turn within each."""
    names = list(OUTCOMES)
    chosen = []
    for slot in range(n):
        name = names[slot % len(names)]
        # the strata turn with the slot, so each outcome and the phase as a whole span them
        wanted = (slot // len(names) + slot % len(names)) % strata
        for key in _preference(name, wanted, strata):
            if pools[key]:
                chosen.append(int(pools[key].pop()))
                break
    return chosen


def _preference(name: str, stratum: int, strata: int) -> list[tuple[str, int]]:
    """Where a slot for ``name`` in ``stratum`` looks, best first (the module's rule)."""
    by_distance = sorted(range(strata), key=lambda s: (abs(s - stratum), s))
    twin = {"tp": "tn", "tn": "tp", "fp": "fn", "fn": "fp"}[name]
    others = [o for o in OUTCOMES if o not in (name, twin)]
    return [(o, s) for o in (name, twin, *others) for s in by_distance]


def simulation_section(
    logits: np.ndarray,
    labels: np.ndarray,
    image_path: Callable[[int], str],
    learning: int,
    test: int,
    strata: int = 3,
    seed: int = 0,
) -> SimulationStimuli:
    """The manifest's ``simulation`` entry; ``image_path(i)`` stores test image i and
    returns its bundle path."""
    learning_idx, test_idx, edges = select_simulation(logits, labels, learning, test, strata, seed)
    stratum = np.searchsorted(edges, np.abs(logits), side="right")

    def scene(index: int) -> SimulationScene:
        logit = float(logits[index])
        return SimulationScene(
            image=image_path(int(index)),
            test_index=int(index),
            logit=logit,
            decision=ANIMALS[int(logit > 0)],
            label=ANIMALS[int(labels[index])],
            stratum=int(stratum[index]),
        )

    return SimulationStimuli(
        learning=tuple(scene(i) for i in learning_idx),
        test=tuple(scene(i) for i in test_idx),
        strata_edges=tuple(float(e) for e in edges),
        rule=RULE,
    )


# ------------------------------------------------------- counterfactual simulation

PAIR_RULE = (
    "per phase: slot k flips the model's decision when k is even; the k // 2-th slot of a "
    "kind takes the factors that have pairs of that kind in turn (FACTORS order) and stratum "
    "(t + t // factors) mod strata of |original logit| (t = k // 2; equal-count quantiles of "
    "the test scenes, 0 = smallest); a slot whose group is empty takes the nearest stratum, "
    "then the next factor; the flipping pairs of both phases are drawn first, pre and post in "
    "turn; no scene twice, none of the forward-simulation scenes"
)


@dataclass(frozen=True)
class PairCandidates:
    """Intervened test scenes that may become pairs, one row each (N,): the factor
    redrawn, the original scene's row of the test split, the model's logit on the
    original and on the changed scene (both as stored: 8-bit images)."""

    factor: np.ndarray
    test_index: np.ndarray
    original_logit: np.ndarray
    changed_logit: np.ndarray

    @property
    def flips(self) -> np.ndarray:
        return (self.original_logit > 0) != (self.changed_logit > 0)


def select_pairs(
    candidates: PairCandidates,
    test_logits: np.ndarray,
    pre: int,
    post: int,
    exclude: Iterable[int] = (),
    strata: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate rows of the pre-test (pre,) and post-test (post,) pairs (the module's
    rule) and the strata edges of ``test_logits``; no original scene in ``exclude``."""
    if pre < 1 or post < 1 or strata < 1:
        raise UserError(
            f"counterfactual simulation needs at least one pre-test and one post-test pair "
            f"and one stratum, got {pre} pre, {post} post, {strata} strata"
        )
    index = np.asarray(candidates.test_index).astype(int)
    factor = np.asarray(candidates.factor).astype(str)
    flips = candidates.flips
    usable = ~np.isin(index, list(exclude))
    _check_pair_supply(index, factor, flips, usable, pre, post)
    edges = strata_edges(test_logits, strata)
    stratum = np.searchsorted(edges, np.abs(candidates.original_logit), side="right")
    rng = np.random.default_rng([seed, 13])
    pools: dict[tuple[bool, str, int], list[int]] = {}
    for kind in (True, False):
        for name in FACTORS:
            for s in range(strata):
                rows = np.flatnonzero(usable & (flips == kind) & (factor == name) & (stratum == s))
                pools[kind, name, s] = list(rng.permutation(rows))
    chosen: dict[str, dict[int, int]] = {"pre": {}, "post": {}}
    used: set[int] = set()
    sizes = {"pre": pre, "post": post}
    for kind in (True, False):  # the flipping pairs first: they are the scarce kind
        kinds = [f for f in FACTORS if any(pools[kind, f, s] for s in range(strata))]
        slots = [k for k in range(max(pre, post)) if (k % 2 == 0) == kind]
        for k in slots:
            for phase in ("pre", "post"):
                if k < sizes[phase]:
                    row = _draw_pair(pools, kind, kinds, k // 2, strata, used, index)
                    if row is None:
                        _too_few(kind, index, factor, flips, usable, pre, post, len(used))
                    chosen[phase][k] = row
    pre_rows, post_rows = (np.array([chosen[p][k] for k in range(sizes[p])]) for p in sizes)
    return pre_rows, post_rows, edges


def _needed(pre: int, post: int, kind: bool) -> int:
    """Pairs of a kind the two phases need: the even slots flip."""
    if kind:
        return math.ceil(pre / 2) + math.ceil(post / 2)
    return pre // 2 + post // 2


def _check_pair_supply(index, factor, flips, usable, pre, post) -> None:
    """Refuse before drawing when fewer scenes than needed have a pair of a kind."""
    for kind in (True, False):
        held = len(set(index[usable & (flips == kind)]))
        if held < _needed(pre, post, kind):
            _too_few(kind, index, factor, flips, usable, pre, post)


def _too_few(kind, index, factor, flips, usable, pre, post, taken: int = 0):
    """The one message for too few scenes with a change of a kind; ``taken``: scenes the
    flipping pairs drawn first already hold."""
    mine = usable & (flips == kind)
    per_factor = ", ".join(
        f"{name} {len(set(index[mine & (factor == name)]))}"
        for name in FACTORS
        if (factor == name).any()
    )
    what = "flip" if kind else "keep"
    raise UserError(
        f"counterfactual simulation asks for {pre} pre-test + {post} post-test pairs, "
        f"{_needed(pre, post, kind)} of them changes that {what} the model's decision on "
        f"different scenes, but the intervention splits hold {len(set(index[mine]))} such "
        f"scenes outside the forward-simulation scenes"
        + (f", some of them among the {taken} the other pairs took" if taken else "")
        + f" (per factor: {per_factor or 'none'}); "
        "ask for fewer with --counterfactual-pairs PRE,POST, or explain with more --gt-scenes"
    )


def _draw_pair(pools, kind, kinds, turn, strata, used, index) -> int | None:
    """A row for the ``turn``-th slot of ``kind``: its factor and stratum, else the
    nearest stratum, then the next factor; a scene already used is passed over."""
    if not kinds:
        return None
    first = turn % len(kinds)
    wanted = (turn + turn // len(kinds)) % strata
    by_distance = sorted(range(strata), key=lambda s: (abs(s - wanted), s))
    for name in kinds[first:] + kinds[:first]:
        for s in by_distance:
            pool = pools[kind, name, s]
            while pool:
                row = int(pool.pop())
                if index[row] not in used:
                    used.add(int(index[row]))
                    return row
    return None


def counterfactual_section(
    candidates: PairCandidates,
    labels: np.ndarray,
    test_logits: np.ndarray,
    image_path: Callable[[int], str],
    changed_path: Callable[[int], str],
    pre: int,
    post: int,
    exclude: Iterable[int] = (),
    strata: int = 3,
    seed: int = 0,
) -> CounterfactualStimuli:
    """The manifest's ``counterfactual_simulation`` entry; ``image_path(i)`` stores test
    image i, ``changed_path(row)`` the candidate row's changed image; each returns its
    bundle path."""
    pre_rows, post_rows, edges = select_pairs(
        candidates, test_logits, pre, post, exclude, strata, seed
    )

    def pair(row: int) -> CounterfactualPair:
        index = int(candidates.test_index[row])
        before = float(candidates.original_logit[row])
        after = float(candidates.changed_logit[row])
        return CounterfactualPair(
            test_index=index,
            factor=str(candidates.factor[row]),
            original_image=image_path(index),
            changed_image=changed_path(int(row)),
            original_logit=before,
            changed_logit=after,
            original_decision=ANIMALS[int(before > 0)],
            changed_decision=ANIMALS[int(after > 0)],
            label=ANIMALS[int(labels[index])],
            stratum=int(np.searchsorted(edges, abs(before), side="right")),
        )

    return CounterfactualStimuli(
        pre=tuple(pair(r) for r in pre_rows),
        post=tuple(pair(r) for r in post_rows),
        strata_edges=tuple(float(e) for e in edges),
        rule=PAIR_RULE,
    )

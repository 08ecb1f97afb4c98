"""The forward-simulation scenes: which test scenes participants learn from and are tested on.

In a forward-simulation study (Hase & Bansal 2020; Colin et al. 2022) participants learn
the model's decisions from example scenes, then predict its decision on scenes they have
not seen. A participant who only guesses the true animal must not score well, so both
phases are balanced over the model's correctness: as many true positives, true negatives,
false positives and false negatives as the test split allows (positive = Stretchy, by the
logit's sign against the true label). Within each of the four, the scenes are spread over
difficulty strata of |logit| (the scenes closest to the boundary are the hardest to
predict). Learning and test scenes are disjoint, drawn with one seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explain.manifest import ANIMALS, SimulationScene, SimulationStimuli
from xaistudy.errors import UserError

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

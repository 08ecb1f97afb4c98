"""The comprehension question each condition's bundle answers: read one explanation.

The participant sees one row of their own condition's grid (``example_row``), labeled as
on the explanations page, and says what it shows. The right answer is read from the
bundle (where the unsure column is, which picture is the unedited one, which way a
feature pushes), so it is right for every bundle; the other options are what a
participant who misread the method would pick. No option names a study attribute, so
the question teaches nothing about what the model relies on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from study_server.study import Question

if TYPE_CHECKING:
    from explain.manifest import Manifest

EXAMPLE_ROW = 0  # the first row: the one the tutorial shows too
QUESTION_ID = "read-example"


def position_word(column: int, columns: int) -> str:
    """Where a column is, in words a participant uses: leftmost, middle, rightmost, or
    counted from the left."""
    if column == 0:
        return "the leftmost picture"
    if column == columns - 1:
        return "the rightmost picture"
    if columns % 2 == 1 and column == columns // 2:
        return "the picture in the middle"
    return f"picture {column + 1} from the left"


def _options(correct: str, *others: str) -> tuple[str, ...]:
    """The options in a fixed order that does not put the right one first."""
    seen: list[str] = []
    for option in (*others[:1], correct, *others[1:]):
        if option not in seen:
            seen.append(option)
    return tuple(seen)


def _baseline(manifest: Manifest) -> Question:
    condition = manifest.conditions.baseline
    centres = condition.layout.bins.centres
    undecided = min(range(len(centres)), key=lambda j: abs(centres[j]))
    columns = condition.layout.columns
    correct = position_word(undecided, columns)
    return Question(
        id=QUESTION_ID,
        question="In this row of the explanations, which picture was the model least sure "
        "about, unable to decide between Peaky and Stretchy?",
        options=_options(
            correct,
            position_word(0, columns),
            position_word(columns - 1, columns),
            "all pictures equally",
        ),
        correct=correct,
        conditions=("baseline",),
        example_row=EXAMPLE_ROW,
    )


def _counterfactuals(manifest: Manifest) -> Question:
    condition = manifest.conditions.counterfactuals
    columns = condition.layout.columns
    source = next(s.column for s in condition.stimuli if s.row == EXAMPLE_ROW and s.source)
    correct = position_word(source, columns)
    return Question(
        id=QUESTION_ID,
        question="In this row of the explanations, which picture is the real one, not "
        "changed at all?",
        options=_options(
            correct,
            position_word(columns - 1, columns),
            position_word(columns // 2, columns),
            "none: every picture was changed",
        ),
        correct=correct,
        conditions=("counterfactuals",),
        example_row=EXAMPLE_ROW,
    )


def _concepts(manifest: Manifest) -> Question:
    condition = manifest.conditions.concepts
    toward = condition.concepts[EXAMPLE_ROW].toward.capitalize()
    return Question(
        id=QUESTION_ID,
        question="This row of the explanations shows one feature. Toward which animal does "
        "it push the model's decision?",
        options=("Peaky", "Stretchy", "neither: it does not change the decision"),
        correct=toward,
        conditions=("concepts",),
        example_row=EXAMPLE_ROW,
    )


_BY_CONDITION = {"baseline": _baseline, "counterfactuals": _counterfactuals, "concepts": _concepts}


def example_questions(manifest: Manifest) -> tuple[Question, ...]:
    """One question per condition of ``manifest``, each answered by its ``example_row``."""
    return tuple(make(manifest) for make in _BY_CONDITION.values())

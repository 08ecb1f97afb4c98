"""The comprehension question each condition's bundle answers: read one explanation.

The participant sees one row of their own condition's grid (``example_row``), labeled as
on the explanations page, and says what it shows. The right answer is read from the
bundle (where the unsure column is, which picture is the unedited one, which way a
feature pushes), so it is right for every bundle; the other options are what a
participant who misread the method would pick. No option names a study attribute, so
the question teaches nothing about what the model relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from study_server.study import Question
from xaistudy.vocabulary import ATTRIBUTION_METHODS

if TYPE_CHECKING:
    from explain.manifest import Manifest

Gettext = Callable[[str], str]


def _english(text: str) -> str:
    return text


EXAMPLE_ROW = 0  # the first row: the one the tutorial shows too
QUESTION_ID = "read-example"


def position_word(column: int, columns: int, _: Gettext = _english) -> str:
    """Where a column is, in words a participant uses: leftmost, middle, rightmost, or
    counted from the left (translated by ``_``)."""
    if column == 0:
        return _("the leftmost picture")
    if column == columns - 1:
        return _("the rightmost picture")
    if columns % 2 == 1 and column == columns // 2:
        return _("the picture in the middle")
    return _("picture %(number)d from the left") % {"number": column + 1}


# The fixed options, marked for the catalog (their English is the stored value).
_OTHER_OPTIONS = {
    "all pictures equally": lambda _: _("all pictures equally"),
    "none: every picture was changed": lambda _: _("none: every picture was changed"),
    "neither: it does not change the decision": lambda _: _(
        "neither: it does not change the decision"
    ),
    "Peaky": lambda _: "Peaky",
    "Stretchy": lambda _: "Stretchy",
}


def _translated_question(_: Gettext, words: dict[str, str], **fields) -> Question:
    """A question whose option values are English (stored, compared with ``correct``)
    and whose labels are in the language of ``_`` (``words``: the position words)."""
    labels = tuple(words.get(o) or _OTHER_OPTIONS[o](_) for o in fields["options"])
    return Question(labels=labels, **fields)


def _options(correct: str, *others: str) -> tuple[str, ...]:
    """The options in a fixed order that does not put the right one first."""
    seen: list[str] = []
    for option in (*others[:1], correct, *others[1:]):
        if option not in seen:
            seen.append(option)
    return tuple(seen)


def _positions(columns: int, _: Gettext, *picked: int) -> dict[str, str]:
    """English position word -> its translation, for the columns ``picked``."""
    return {position_word(c, columns): position_word(c, columns, _) for c in picked}


def _baseline(manifest: Manifest, _: Gettext) -> Question:
    condition = manifest.conditions.baseline
    centres = condition.layout.bins.centres
    undecided = min(range(len(centres)), key=lambda j: abs(centres[j]))
    columns = condition.layout.columns
    correct = position_word(undecided, columns)
    words = _positions(columns, _, undecided, 0, columns - 1)
    return _translated_question(
        _,
        words,
        id=QUESTION_ID,
        question=_(
            "In this row of the explanations, which picture was the model least sure "
            "about, unable to decide between Peaky and Stretchy?"
        ),
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


def _counterfactuals(manifest: Manifest, _: Gettext) -> Question:
    condition = manifest.conditions.counterfactuals
    columns = condition.layout.columns
    source = next(s.column for s in condition.stimuli if s.row == EXAMPLE_ROW and s.source)
    correct = position_word(source, columns)
    words = _positions(columns, _, source, columns - 1, columns // 2)
    return _translated_question(
        _,
        words,
        id=QUESTION_ID,
        question=_(
            "In this row of the explanations, which picture is the real one, not changed at all?"
        ),
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


def _concepts(manifest: Manifest, _: Gettext) -> Question:
    condition = manifest.conditions.concepts
    toward = condition.concepts[EXAMPLE_ROW].toward.capitalize()
    return _translated_question(
        _,
        {},
        id=QUESTION_ID,
        question=_(
            "This row of the explanations shows one feature. Toward which animal does "
            "it push the model's decision?"
        ),
        options=("Peaky", "Stretchy", "neither: it does not change the decision"),
        correct=toward,
        conditions=("concepts",),
        example_row=EXAMPLE_ROW,
    )


# What a map's colored parts show, by whether the maps are signed (red/blue) or not.
_MAP_RIGHT = "the parts that made the model decide the way it did"
_MAP_OPTIONS = {
    _MAP_RIGHT: lambda _: _("the parts that made the model decide the way it did"),
    "the parts that are red or bright in the picture itself": lambda _: _(
        "the parts that are red or bright in the picture itself"
    ),
    "the parts the model did not look at": lambda _: _("the parts the model did not look at"),
    "the animal's head": lambda _: _("the animal's head"),
}


def _attribution(manifest: Manifest, _: Gettext, names: tuple[str, ...]) -> Question:
    """One question for every attribution condition: what a map's colored parts show."""
    signed = manifest.conditions[names[0]].signed
    question = (
        _("Under each picture of this row is its map. What do the red parts of a map show?")
        if signed
        else _("Under each picture of this row is its map. What do the bright parts of a map show?")
    )
    options = (
        "the parts that are red or bright in the picture itself",
        _MAP_RIGHT,
        "the parts the model did not look at",
        "the animal's head",
    )
    return Question(
        id=QUESTION_ID,
        question=question,
        options=options,
        labels=tuple(_MAP_OPTIONS[o](_) for o in options),
        correct=_MAP_RIGHT,
        conditions=names,
        example_row=EXAMPLE_ROW,
    )


_BY_CONDITION = {"baseline": _baseline, "counterfactuals": _counterfactuals, "concepts": _concepts}


def example_questions(manifest: Manifest, _: Gettext = _english) -> tuple[Question, ...]:
    """One question per condition of ``manifest`` (one shared by its attribution
    conditions), each answered by its ``example_row``, worded in the language of ``_`` (a
    catalog's gettext)."""
    questions = [
        make(manifest, _) for name, make in _BY_CONDITION.items() if name in manifest.conditions
    ]
    for signed in (True, False):
        names = tuple(
            name
            for name in ATTRIBUTION_METHODS
            if name in manifest.conditions and manifest.conditions[name].signed == signed
        )
        if names:
            questions.append(_attribution(manifest, _, names))
    return tuple(questions)

"""What participants read of the bundle: condition titles, how to read them, column and
row labels, captions, and the tutorial's words.

One home for these words, in every language. Each function takes ``_``, a gettext: the
builders of ``explain/`` leave it as :func:`english` and store English in the bundle
(what the researcher reads), and the study server passes the participant's catalog, so
a German participant reads the same labels composed in German (:func:`localize`). The
messages marked ``_("...")`` here are extracted into the server's catalog (babel.cfg),
whose start-up check refuses a language that lacks any of them.

Plain words only: no "logit", no numbers, "picture" (not image), "feature" (not concept),
the animals named Peaky and Stretchy (tests/explain/test_participant_text.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from explain.manifest import BundleError, Condition, Manifest, Stimulus
from xaistudy.errors import UserError
from xaistudy.vocabulary import ATTRIBUTION_METHODS

Gettext = Callable[[str], str]


def english(text: str) -> str:
    """The gettext of the language the messages are written in."""
    return text


# ------------------------------------------------------------------------ conditions


def condition_text(condition: str, _: Gettext = english, signed: bool = False) -> dict[str, str]:
    """A condition's ``title`` and ``description`` (how to read it); ``signed``: whether
    an attribution condition's maps show evidence against the decision too."""
    if condition in ATTRIBUTION_METHODS:
        return attribution_text(condition, signed, _)
    if condition == "baseline":
        return {
            "title": _("Real pictures sorted by how sure the model is"),
            "description": _(
                "Each column holds real pictures about which the model was similarly sure. "
                "The leftmost column holds the pictures the model is most sure show Peaky, "
                "the rightmost those it is most sure show Stretchy; the middle column holds "
                "pictures it could not decide on. Compare the columns: what changes from "
                "left to right is what the model pays attention to."
            ),
        }
    if condition == "counterfactuals":
        return {
            "title": _("The model's view of what would change its mind"),
            "description": _(
                'Each row starts from one real picture, shown first under "original '
                'picture". The other pictures in the row are that picture changed just '
                "enough to change how sure the model is: from left to right the model goes "
                "from clearly Peaky, through unsure, to clearly Stretchy, as written above "
                "each column. Look for what changes along a row: that is what the model "
                "uses to decide."
            ),
        }
    if condition == "concepts":
        return {
            "title": _("Features the model has learned"),
            "description": _(
                "The model's internal signals were grouped into a few features. Each row "
                "shows one feature: on the left the pictures in which the feature is "
                "strongest, on the right those in which it is weakest. In every picture, "
                "the parts where the feature is found keep their own colors and the parts "
                "it ignores are shown darker and grayer. The row label says whether the "
                "feature pushes the model toward Peaky or toward Stretchy, and how "
                "strongly; rows go from the feature that matters most to the one that "
                "matters least."
            ),
        }
    raise KeyError(condition)


def attribution_text(method: str, signed: bool, _: Gettext = english) -> dict[str, str]:
    """An attribution condition's words: the scenes by how sure the model is, each with
    its map under it, how to read the map's colors (``signed``: red and blue), and in
    one sentence how the method made it (its name would be jargon)."""
    columns = _(
        "Each column holds real pictures about which the model was similarly sure: on "
        "the left those it is most sure show Peaky, on the right those it is most sure "
        "show Stretchy, in the middle those it could not decide on."
    )
    if signed:
        how = _(
            "Under each picture is a map of the same picture: its red parts made the model "
            "decide the way it did, its blue parts spoke against that decision, and dark "
            "parts did not matter. Look for what the red parts have in common."
        )
    else:
        how = _(
            "Under each picture is a map of the same picture: the brighter a part of the "
            "map, the more it counted for the model's decision; dark parts did not matter. "
            "Look for what the bright parts have in common."
        )
    made = _method_sentence(method, _)
    return {"title": _("Where the model looks"), "description": f"{columns} {how} {made}"}


def _method_sentence(method: str, _: Gettext) -> str:
    """How a method's maps were made, in one plain sentence."""
    sentences = {
        "integrated_gradients": _(
            "The map adds up how much each part moved the model toward its decision while "
            "the picture faded in from black."
        ),
        "smoothgrad": _(
            "The map shows how strongly small changes to each part would move the model's "
            "decision, averaged over copies of the picture with a little random noise added."
        ),
        "grad_cam": _(
            "The map shows the areas the model's later steps responded to in favor of its "
            "decision; it is coarse, so it marks areas rather than single blocks."
        ),
        "occlusion": _(
            "The map was made by covering the picture with a small gray square, one place "
            "after another: a part counts for the decision when covering it made the model "
            "less sure."
        ),
        "lrp": _(
            "The map follows the model's decision back through its steps to the parts of the "
            "picture it came from."
        ),
        "contrastive_lrp": _(
            "The map follows back what made the model decide for its animal rather than for "
            "the other one."
        ),
        "iba": _(
            "The map shows how much of each part the model needed to keep its decision when "
            "the rest of the picture was replaced by noise."
        ),
    }
    return sentences[method]


def map_caption(scene_caption: str, _: Gettext = english) -> str:
    """The caption (screen-reader text) of the map under a scene."""
    return _("Map of the picture above (%(column)s)") % {"column": scene_caption}


# ------------------------------------------------------- how sure the model is (columns)


def confidence_phrases(count: int, _: Gettext = english) -> list[str]:
    """How sure the model is, in words, for ``count`` (odd) columns from most peaky to
    most stretchy.

    The middle column is "unsure"; the others name the animal the model leans to (the
    sign) and how sure it is (the rank away from the middle): for 5 columns "clearly
    Peaky", "rather Peaky", "unsure", "rather Stretchy", "clearly Stretchy". Beyond four
    columns per side the rank is counted instead of named.
    """
    if count < 1 or count % 2 == 0:
        raise UserError(f"the number of logit bins/targets must be odd and >= 1, got {count}")
    named = (  # outermost first, (Peaky, Stretchy)
        (_("clearly Peaky"), _("clearly Stretchy")),
        (_("rather Peaky"), _("rather Stretchy")),
        (_("slightly Peaky"), _("slightly Stretchy")),
        (_("barely Peaky"), _("barely Stretchy")),
    )
    m = (count - 1) // 2
    if m <= len(named):
        sides = named[:m]
    else:
        sides = tuple(
            (
                _("leaning (%(rank)d of %(of)d) Peaky") % {"rank": m - k, "of": m},
                _("leaning (%(rank)d of %(of)d) Stretchy") % {"rank": m - k, "of": m},
            )
            for k in range(m)
        )
    peaky = [p for p, _s in sides]
    stretchy = [s for _p, s in sides[::-1]]
    return [*peaky, _("unsure"), *stretchy]


def confidence_labels(count: int, _: Gettext = english) -> list[str]:
    """Column labels: "the model: clearly Peaky" ... for each of :func:`confidence_phrases`."""
    return [_("the model: %(phrase)s") % {"phrase": p} for p in confidence_phrases(count, _)]


def confidence_phrase(logit: float, centers: Sequence[float], _: Gettext = english) -> str:
    """The phrase of the column whose center is nearest to ``logit`` (edges halfway
    between neighboring centers, as the baseline's bins)."""
    centers = np.asarray(centers, dtype=np.float64)
    edges = (centers[:-1] + centers[1:]) / 2.0
    column = int(np.searchsorted(edges, float(logit), side="right"))
    return confidence_phrases(len(centers), _)[column]


# ------------------------------------------------------------------- counterfactuals


def source_label(_: Gettext = english) -> str:
    """Column 0 of the counterfactuals: the unedited picture."""
    return _("original picture")


def counterfactual_row_label(
    row: int, source_logit: float, targets: Sequence[float], _: Gettext = english
) -> str:
    """What the model made of a row's unedited picture, in words."""
    return _("Picture %(number)d. The model on the original: %(phrase)s") % {
        "number": row + 1,
        "phrase": confidence_phrase(source_logit, targets, _),
    }


# -------------------------------------------------------------------------- concepts


def concept_column_labels(strongest: int, weakest: int, _: Gettext = english) -> list[str]:
    """ "strongest", "2nd strongest", ..., then "weakest", "2nd weakest", ..."""
    return [_rank(n, True, _) for n in range(1, strongest + 1)] + [
        _rank(n, False, _) for n in range(1, weakest + 1)
    ]


def _rank(n: int, strongest: bool, _: Gettext) -> str:
    named = {
        (1, True): _("strongest"),
        (2, True): _("2nd strongest"),
        (3, True): _("3rd strongest"),
        (4, True): _("4th strongest"),
        (1, False): _("weakest"),
        (2, False): _("2nd weakest"),
        (3, False): _("3rd weakest"),
        (4, False): _("4th weakest"),
    }
    if (n, strongest) in named:
        return named[n, strongest]
    if strongest:
        return _("strongest no. %(rank)d") % {"rank": n}
    return _("weakest no. %(rank)d") % {"rank": n}


def strength_word(importance: float, strongest: float, _: Gettext = english) -> str:
    """How hard a concept pushes, relative to the strongest one: strongly (at least two
    thirds of it), moderately (at least a third) or slightly."""
    ratio = abs(importance) / strongest if strongest > 0 else 0.0
    if ratio >= 2 / 3:
        return _("strongly")
    return _("moderately") if ratio >= 1 / 3 else _("slightly")


def concept_row_label(
    row: int, rows: int, importance: float, strongest: float, _: Gettext = english
) -> str:
    """ "Feature 1 (strongest): pushes strongly toward Stretchy": the row's feature, its
    rank among ``rows`` and the way and strength it pushes (``importance`` > 0: toward
    Stretchy; ``strongest``: the largest |importance| of all rows)."""
    values = {"number": row + 1, "strength": strength_word(importance, strongest, _)}
    toward_stretchy = importance > 0
    if row == 0:
        if toward_stretchy:
            return _("Feature %(number)d (strongest): pushes %(strength)s toward Stretchy") % values
        return _("Feature %(number)d (strongest): pushes %(strength)s toward Peaky") % values
    if row == rows - 1:
        if toward_stretchy:
            return _("Feature %(number)d (weakest): pushes %(strength)s toward Stretchy") % values
        return _("Feature %(number)d (weakest): pushes %(strength)s toward Peaky") % values
    if toward_stretchy:
        return _("Feature %(number)d: pushes %(strength)s toward Stretchy") % values
    return _("Feature %(number)d: pushes %(strength)s toward Peaky") % values


def concept_caption(row: int, column_label: str, _: Gettext = english) -> str:
    """A concept picture's caption (its text for screen readers)."""
    return _("Feature %(number)d, %(rank)s example") % {"number": row + 1, "rank": column_label}


# -------------------------------------------------------------------------- tutorial


def example_caption(animal: str, number: int, _: Gettext = english) -> str:
    """The tutorial's ``number``-th (1-based) example of ``animal`` ("peaky"/"stretchy")."""
    if animal == "peaky":
        return _("Peaky, example %(number)d") % {"number": number}
    return _("Stretchy, example %(number)d") % {"number": number}


def attribute_meaning(key: str, _: Gettext = english) -> str:
    """What a study attribute's tutorial row shows, its two ends named in words (no
    numbers: the participant reads "from cubes to spheres", not "shape 0.25")."""
    meanings = {
        "arm_position": _(
            "From arms close to the body (left) to arms stretched away from it (right)."
        ),
        "obj_color": _("The color of the blocks, from blue (left) to red (right)."),
        "spherical": _("The blocks' shape, from cubes (left) to spheres (right)."),
        "bg_color": _("The color behind the animal, from blue (left) to red (right)."),
        "bending": _("From bent one way (left) through straight to bent the other way (right)."),
        "rotation": _("Turned within the picture, tilted forward or back, or rolled to one side."),
        "position": _("Where the animal is, from the left of the picture to the right."),
    }
    return meanings[key]


def factor_name(factor: str, _: Gettext = english) -> str:
    """A factor (xaistudy.vocabulary.FACTORS) as a participant reads it in "only the ...
    changed": the rotation's three axes each by what the picture shows."""
    names = {
        "arm_position": _("arm position"),
        "obj_color": _("color of the blocks"),
        "spherical": _("shape of the blocks"),
        "bg_color": _("background color"),
        "bending": _("bending"),
        "obj_rotation_yaw": _("turn within the picture"),
        "obj_rotation_pitch": _("forward or backward tilt"),
        "obj_rotation_roll": _("roll to one side"),
        "position": _("position in the picture"),
    }
    return names[factor]


def attribute_steps(key: str, _: Gettext = english) -> tuple[str, ...]:
    """The captions of a study attribute's tutorial pictures, left to right
    (explain.tutorial pairs them with the scene values)."""
    colors = (_("blue"), _("light blue"), _("gray"), _("light red"), _("red"))
    steps = {
        "arm_position": (
            _("close to the body"),
            _("a little out"),
            _("halfway out"),
            _("far out"),
            _("stretched away"),
        ),
        "obj_color": colors,
        "spherical": (
            _("cubes"),
            _("rounded cubes"),
            _("in between"),
            _("almost spheres"),
            _("spheres"),
        ),
        "bg_color": colors,
        "bending": (
            _("bent one way"),
            _("a little bent one way"),
            _("straight"),
            _("a little bent the other way"),
            _("bent the other way"),
        ),
        "rotation": (
            _("turned 90° one way"),
            _("turned 45° one way"),
            _("turned 45° the other way"),
            _("turned 90° the other way"),
            _("tilted back"),
            _("tilted forward"),
            _("rolled one way"),
            _("rolled the other way"),
        ),
        "position": (_("far left"), _("left"), _("center"), _("right"), _("far right")),
    }
    return steps[key]


# ------------------------------------------------------------------------ the bundle


def localize(manifest: Manifest, _: Gettext) -> Manifest:
    """``manifest`` with every text a participant reads composed again in the language
    of ``_``, from the bundle's own structure (the model's outputs, ranks, positions).

    ``localize(manifest, english)`` gives back the manifest as ``xaistudy explain``
    wrote it. A bundle whose tutorial words are not this version's is refused.
    """
    conditions = {
        name: localize_condition(name, condition, _)
        for name, condition in manifest.conditions.items()
    }
    return dataclasses.replace(
        manifest,
        tutorial=_localized_tutorial(manifest.tutorial, _),
        conditions=dataclasses.replace(manifest.conditions, **conditions),
    )


def localize_condition(name: str, condition: Condition, _: Gettext) -> Condition:
    """One condition of :func:`localize`."""
    compose = {
        "baseline": _localized_baseline,
        "counterfactuals": _localized_counterfactuals,
        "concepts": _localized_concepts,
    }
    if name in ATTRIBUTION_METHODS:
        return _localized_attribution(condition, _)
    return compose[name](condition, _)


def _relabeled(condition, name: str, _: Gettext, row_labels, column_labels, caption):
    """``condition`` with its words replaced; ``caption(cell)`` gives a cell's caption."""
    return dataclasses.replace(
        condition,
        **condition_text(name, _, signed=getattr(condition, "signed", False)),
        layout=dataclasses.replace(
            condition.layout, row_labels=tuple(row_labels), column_labels=tuple(column_labels)
        ),
        stimuli=tuple(dataclasses.replace(c, caption=caption(c)) for c in condition.stimuli),
    )


def _localized_baseline(condition, _: Gettext):
    labels = confidence_labels(condition.layout.columns, _)
    return _relabeled(
        condition,
        "baseline",
        _,
        condition.layout.row_labels,  # rows are draws, not groups: no words
        labels,
        lambda cell: labels[cell.column],
    )


def _localized_attribution(condition, _: Gettext):
    labels = confidence_labels(condition.layout.columns, _)
    return _relabeled(
        condition,
        condition.method,
        _,
        condition.layout.row_labels,  # rows are draws, as the baseline's
        labels,
        lambda cell: attribution_caption(labels[cell.column], cell.shows, _),
    )


def attribution_caption(column_label: str, shows: str, _: Gettext = english) -> str:
    """A scene's caption is its column's words; its map's says which scene it maps."""
    return column_label if shows == "scene" else map_caption(column_label, _)


def _localized_counterfactuals(condition, _: Gettext):
    labels = [source_label(_), *confidence_labels(len(condition.targets), _)]
    rows = [
        counterfactual_row_label(row, source.logit, condition.targets, _)
        for row, source in enumerate(condition.sources)
    ]
    return _relabeled(
        condition, "counterfactuals", _, rows, labels, lambda cell: labels[cell.column]
    )


def _localized_concepts(condition, _: Gettext):
    layout = condition.layout
    labels = concept_column_labels(
        condition.strongest_columns, layout.columns - condition.strongest_columns, _
    )
    strongest = max((abs(c.importance) for c in condition.concepts), default=0.0)
    rows = [
        concept_row_label(c.row, layout.rows, c.importance, strongest, _)
        for c in condition.concepts
    ]
    return _relabeled(
        condition,
        "concepts",
        _,
        rows,
        labels,
        lambda cell: concept_caption(cell.row, labels[cell.column], _),
    )


def _localized_tutorial(tutorial, _: Gettext):
    examples = dataclasses.replace(
        tutorial.examples,
        **{
            animal: tuple(
                dataclasses.replace(s, caption=example_caption(animal, n + 1, _))
                for n, s in enumerate(tutorial.examples[animal])
            )
            for animal in ("peaky", "stretchy")
        },
    )
    attributes = {
        key: dataclasses.replace(
            row,
            caption=attribute_meaning(key, _),
            images=tuple(_step(key, s, _) for s in row.images),
        )
        for key, row in tutorial.attributes.items()
    }
    return dataclasses.replace(tutorial, examples=examples, attributes=attributes)


def _step(key: str, stimulus: Stimulus, _: Gettext) -> Stimulus:
    """A tutorial picture with its caption in the language of ``_`` (found by its
    English words among the attribute's steps)."""
    words = attribute_steps(key)
    if stimulus.caption not in words:
        raise BundleError(
            f"bundle manifest: tutorial.attributes.{key} has a picture captioned "
            f"{stimulus.caption!r}, not one of this version's words ({', '.join(words)}); "
            "build the bundle again with `xaistudy explain`"
        )
    translated = attribute_steps(key, _)[words.index(stimulus.caption)]
    return dataclasses.replace(stimulus, caption=translated)

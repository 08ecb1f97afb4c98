"""What participants read about each condition: its title and how to read it.

One home for these words, so the builders, the test fixture and the docs say the same.
Plain words only: no "logit", no numbers, "picture" (not image), "feature" (not concept),
the animals named Peaky and Stretchy (tests/explain/test_participant_text.py).
"""

from __future__ import annotations

SOURCE_LABEL = "original picture"  # column 0 of the counterfactuals: the unedited picture

CONDITION_TEXT: dict[str, dict[str, str]] = {
    "baseline": {
        "title": "Real pictures sorted by how sure the model is",
        "description": (
            "Each column holds real pictures about which the model was similarly sure. The "
            "leftmost column holds the pictures the model is most sure show Peaky, the "
            "rightmost those it is most sure show Stretchy; the middle column holds pictures "
            "it could not decide on. Compare the columns: what changes from left to right is "
            "what the model pays attention to."
        ),
    },
    "counterfactuals": {
        "title": "The model's view of what would change its mind",
        "description": (
            'Each row starts from one real picture, shown first under "original picture". '
            "The other pictures in the row are that picture changed just enough to change "
            "how sure the model is: from left to right the model goes from clearly Peaky, "
            "through unsure, to clearly Stretchy, as written above each column. Look for "
            "what changes along a row: that is what the model uses to decide."
        ),
    },
    "concepts": {
        "title": "Features the model has learned",
        "description": (
            "The model's internal signals were grouped into a few features. Each row shows "
            "one feature: on the left the pictures in which the feature is strongest, on the "
            "right those in which it is weakest. In every picture, the parts where the "
            "feature is found keep their own colors and the parts it ignores are shown "
            "darker and grayer. The row label says whether the feature pushes the model "
            "toward Peaky or toward Stretchy, and how strongly; rows go from the feature "
            "that matters most to the one that matters least."
        ),
    },
}

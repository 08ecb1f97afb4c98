"""The too-fast rule that the analysis excludes by and the server's live view flags by."""

from __future__ import annotations

import pytest

from xaistudy.errors import UserError
from xaistudy.too_fast import TooFastRule


def test_the_threshold_is_absolute_or_a_fraction_of_the_median():
    assert TooFastRule().threshold(600.0) == pytest.approx(180.0)
    assert TooFastRule().threshold(None) is None  # nobody completed yet
    assert TooFastRule(min_seconds=90).threshold(600.0) == 90.0
    assert TooFastRule(min_seconds=90).threshold(None) == 90.0
    assert TooFastRule(min_median_fraction=None).threshold(600.0) is None


def test_the_rule_describes_itself():
    assert TooFastRule().describe().startswith("completed in under 0.3 times the median")
    assert TooFastRule(min_seconds=90).describe() == "completed in under 90 s"
    assert TooFastRule(min_median_fraction=None).describe() == "never (the rule is off)"


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"min_seconds": -1}, "--min-seconds"), ({"min_median_fraction": 1.0}, "--min-median")],
)
def test_bad_settings_are_one_clear_error(settings, message):
    with pytest.raises(UserError, match=message):
        TooFastRule(**settings)

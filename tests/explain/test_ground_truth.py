import numpy as np
import pytest

from explain.ground_truth import (
    RelevanceRule,
    attribute_entries,
    bootstrap_ci,
    factor_effect,
    ground_truth,
)
from xaistudy.errors import UserError
from xaistudy.vocabulary import FACTORS, STUDY_ATTRIBUTE_KEYS


def test_effect_flip_rate_and_variance_share_from_paired_logits():
    before = np.array([-2.0, -1.0, 1.0, 3.0])
    after = np.array([-1.0, 1.0, 1.0, -1.0])
    entry = factor_effect(before, after, logit_variance=4.0)
    assert entry["effect"] == pytest.approx((1 + 2 + 0 + 4) / 4)
    assert entry["flip_rate"] == pytest.approx(2 / 4)
    assert entry["variance_share"] == pytest.approx(np.mean([1, 4, 0, 16]) / 8)
    low, high = entry["ci"]
    assert low <= entry["effect"] <= high


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = np.abs(rng.normal(size=50))
    large = np.abs(rng.normal(size=5000))
    for values in (small, large):
        low, high = bootstrap_ci(values, seed=1)
        assert low < values.mean() < high
    assert np.ptp(bootstrap_ci(large)) < np.ptp(bootstrap_ci(small))
    assert bootstrap_ci(np.zeros(10)) == (0.0, 0.0)


def test_variance_share_recovers_the_total_effect_index_of_an_additive_model():
    # logit = a + 2 b with a, b independent N(0, 1): b explains 4/5 of the variance.
    rng = np.random.default_rng(0)
    a, b, b_new = rng.normal(size=(3, 8000))
    before, after = a + 2 * b, a + 2 * b_new
    entry = factor_effect(before, after, logit_variance=float(np.var(before)))
    assert entry["variance_share"] == pytest.approx(0.8, abs=0.05)


def test_rule_labels_and_attribute_entries():
    rng = np.random.default_rng(1)
    base = rng.normal(size=300) * 3
    pairs = {factor: (base, base.copy()) for factor in FACTORS}
    pairs["arm_position"] = (base, -base)  # every decision flips
    pairs["obj_rotation_roll"] = (base, base + rng.normal(size=300))
    truth = ground_truth(pairs, float(np.var(base)), RelevanceRule())
    assert truth["arm_position"].relevant and truth["arm_position"].rank == 1
    assert truth["obj_rotation_roll"].relevant
    assert not truth["bg_color"].relevant and truth["bg_color"].effect == 0
    entries = {e.key: e for e in attribute_entries(truth)}
    assert list(entries) == list(STUDY_ATTRIBUTE_KEYS)
    assert entries["rotation"].relevant  # through roll alone
    assert not entries["position"].relevant
    assert entries["arm_position"].name == "arm position"


def test_rule_thresholds_and_combination():
    entry = {"flip_rate": 0.1, "variance_share": 0.01, "ci": [0.2, 0.4]}
    assert RelevanceRule().is_relevant(entry)
    assert not RelevanceRule(combine="all").is_relevant(entry)
    assert not RelevanceRule(min_flip_rate=0.2).is_relevant(entry)
    assert not RelevanceRule(min_effect=0.3).is_relevant(entry)
    assert "flip_rate >= 0.05 or variance_share >= 0.05" in RelevanceRule().to_dict()["description"]


def test_rule_parsing_from_text_and_toml(tmp_path):
    rule = RelevanceRule.parse("min_flip_rate=0.1, combine=all")
    assert rule == RelevanceRule(min_flip_rate=0.1, combine="all")
    path = tmp_path / "rule.toml"
    path.write_text("[relevance]\nmin_variance_share = 0.2\nmin_effect = 0.5\n")
    assert RelevanceRule.parse(str(path)) == RelevanceRule(min_variance_share=0.2, min_effect=0.5)
    assert RelevanceRule.parse(None) == RelevanceRule()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min_flips=0.1", "unknown relevance rule key"),
        ("min_flip_rate", "not key=value"),
        ("min_flip_rate=lots", "not a number"),
        ("min_flip_rate=2", "between 0 and 1"),
        ("combine=most", "allowed are any, all"),
        ("missing.toml", "does not exist"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(text, message):
    with pytest.raises(UserError, match=message):
        RelevanceRule.parse(text)

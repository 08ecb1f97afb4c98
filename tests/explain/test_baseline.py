import numpy as np
import pytest

from explain.baseline import Binning, baseline_condition, select_grid, symmetric_centers
from explain.wording import confidence_labels, confidence_phrase, confidence_phrases
from xaistudy.errors import UserError


def test_centers_are_zero_and_symmetric_percentiles_of_abs_logit():
    logits = np.random.default_rng(0).normal(size=1000) * 3
    centers = symmetric_centers(logits, 5, max_percentile=90)
    p45, p90 = np.percentile(np.abs(logits), [45, 90])
    np.testing.assert_allclose(centers, [-p90, -p45, 0.0, p45, p90])


@pytest.mark.parametrize("columns", [0, 2, 4])
def test_even_or_zero_columns_are_refused(columns):
    with pytest.raises(UserError, match="odd"):
        symmetric_centers(np.arange(10.0), columns)


def test_every_logit_falls_in_exactly_the_bin_its_edges_say():
    logits = np.random.default_rng(1).normal(size=500) * 4
    binning = Binning.from_logits(logits, 5)
    np.testing.assert_allclose(
        binning.edges[1:-1], (binning.centers[:-1] + binning.centers[1:]) / 2
    )
    columns = binning.assign(logits)
    assert columns.min() >= 0 and columns.max() <= 4
    for logit, column in zip(logits, columns, strict=True):
        assert binning.edges[column] <= logit < binning.edges[column + 1]
    exact = binning.record().to_json()
    assert exact["edges"][0] is None and exact["edges"][-1] is None


def test_grid_draws_without_replacement_from_each_bin_sorted_by_logit():
    logits = np.random.default_rng(2).normal(size=800) * 4
    binning = Binning.from_logits(logits, 5)
    grid = select_grid(logits, binning, 20, np.random.default_rng(0))
    assert grid.shape == (20, 5)
    assert len(np.unique(grid)) == grid.size
    assert (binning.assign(logits[grid]) == np.arange(5)[None, :]).all()
    assert (np.diff(logits[grid], axis=0) >= 0).all()


def test_too_few_images_in_a_bin_is_a_clear_error():
    logits = np.random.default_rng(3).normal(size=40)
    binning = Binning.from_logits(logits, 5)
    with pytest.raises(UserError, match="rows were asked for"):
        select_grid(logits, binning, 30, np.random.default_rng(0))


def test_condition_layout_is_row_major_with_logits_and_decisions():
    logits = np.random.default_rng(4).normal(size=600) * 4
    entry = baseline_condition(logits, lambda i: f"images/{i}.png", rows=6, columns=5).to_json()
    layout = entry["layout"]
    assert (layout["rows"], layout["columns"]) == (6, 5)
    assert len(layout["column_labels"]) == 5 and len(layout["row_labels"]) == 6
    positions = [(s["row"], s["column"]) for s in entry["stimuli"]]
    assert positions == [(r, c) for r in range(6) for c in range(5)]
    edges = [-np.inf if e is None else e for e in layout["bins"]["edges"][:-1]] + [np.inf]
    for stim in entry["stimuli"]:
        assert stim["image"] == f"images/{stim['test_index']}.png"
        assert stim["logit"] == logits[stim["test_index"]]
        assert edges[stim["column"]] <= stim["logit"] < edges[stim["column"] + 1]
        assert stim["decision"] == ("stretchy" if stim["logit"] > 0 else "peaky")


@pytest.mark.parametrize("count", [1, 3, 5, 7, 9, 11])
def test_confidence_words_are_symmetric_and_name_the_animal(count):
    phrases = confidence_phrases(count)
    assert len(phrases) == count and len(set(phrases)) == count
    assert phrases[count // 2] == "unsure"
    for left, right in zip(phrases[: count // 2], phrases[::-1], strict=False):
        assert left.endswith("Peaky") and right.endswith("Stretchy")
        assert left.removesuffix("Peaky") == right.removesuffix("Stretchy")  # same degree


def test_five_columns_read_clearly_rather_unsure():
    assert confidence_labels(5) == [
        "the model: clearly Peaky",
        "the model: rather Peaky",
        "the model: unsure",
        "the model: rather Stretchy",
        "the model: clearly Stretchy",
    ]
    centers = np.array([-6.0, -2.0, 0.0, 2.0, 6.0])
    assert confidence_phrase(-3.5, centers) == "rather Peaky"
    assert confidence_phrase(-4.5, centers) == "clearly Peaky"
    assert confidence_phrase(0.4, centers) == "unsure"
    assert confidence_phrase(9.0, centers) == "clearly Stretchy"


def test_baseline_captions_are_the_column_words():
    logits = np.random.default_rng(5).normal(size=600) * 4
    entry = baseline_condition(logits, lambda i: f"images/{i}.png", rows=4, columns=5).to_json()
    assert entry["layout"]["column_labels"] == confidence_labels(5)
    for stim in entry["stimuli"]:
        assert stim["caption"] == confidence_labels(5)[stim["column"]]

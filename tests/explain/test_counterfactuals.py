import numpy as np
import torch

import explain.counterfactuals as cf
from explain.batching import to_tensor
from explain.counterfactuals import (
    CounterfactualSet,
    check_rows,
    compute_counterfactuals,
    counterfactual_condition,
    spread_sources,
)
from explain.wording import source_label

CPU = torch.device("cpu")


def test_sources_are_distinct_and_spread_over_the_logit_range():
    logits = np.random.default_rng(0).normal(size=200)
    sources = spread_sources(logits, 6)
    assert len(np.unique(sources)) == 6
    assert (np.diff(logits[sources]) > 0).all()
    ranks = np.argsort(np.argsort(logits))[sources]
    assert ranks[0] < 40 and ranks[-1] > 160


def test_model_on_a_counterfactual_gives_the_target_logit(tiny_model, test_images, test_logits):
    sources = spread_sources(test_logits, 4)
    targets = np.array([-6.0, -1.5, 0.0, 2.5, 7.0])
    result = compute_counterfactuals(tiny_model, test_images, sources, targets, CPU)
    assert result.images.shape == (4, 5, 32, 32, 3)
    np.testing.assert_allclose(result.logits, np.broadcast_to(targets, (4, 5)), atol=1e-3)
    # Re-run independently: edit, invert, classify.
    x = to_tensor(test_images[sources], CPU)
    with torch.no_grad():
        encoding = tiny_model.encode(x)
        edited = tiny_model.edit_logit(encoding, torch.full((4,), 2.5))
        x_cf = tiny_model.decode(edited)
        np.testing.assert_allclose(tiny_model.logit(x_cf).numpy(), 2.5, atol=1e-3)
        # Only the component along w moved: the orthogonal part and other latents stay.
        again = tiny_model.encode(x_cf)
    w = encoding.weight.flatten()
    unit = w / w.norm()

    def orthogonal(head):
        flat = head.flatten(1)
        return flat - (flat @ unit)[:, None] * unit[None, :]

    torch.testing.assert_close(orthogonal(again.head), orthogonal(encoding.head), atol=2e-3, rtol=0)
    for index, (z0, z1) in enumerate(zip(encoding.latents, again.latents, strict=True)):
        if index != encoding.head_index:
            torch.testing.assert_close(z1, z0, atol=2e-3, rtol=0)


def test_condition_rows_start_with_the_marked_source_then_the_targets(
    tiny_model, test_images, test_logits
):
    paths = []

    def store(image):
        paths.append(image)
        return f"images/{len(paths)}.png"

    entry = counterfactual_condition(
        tiny_model, test_images, test_logits, store, CPU, n_sources=3, n_targets=5
    ).to_json()
    assert (entry["layout"]["rows"], entry["layout"]["columns"]) == (3, 6)
    assert entry["layout"]["column_labels"][0] == source_label() == "original picture"
    assert entry["targets"][2] == 0.0 and entry["targets"][0] == -entry["targets"][4]
    assert entry["candidates"] == 12
    for stim in entry["stimuli"]:
        if stim["column"] == 0:
            assert stim["source"] is True
            assert stim["caption"] == source_label() == "original picture"
            stored = paths[int(stim["image"].split("/")[1].split(".")[0]) - 1]
            np.testing.assert_array_equal(stored, test_images[stim["test_index"]])
            assert stim["logit"] == test_logits[stim["test_index"]]
            continue
        assert stim["source"] is False
        assert stim["target"] == entry["targets"][stim["column"] - 1]
        assert abs(stim["logit"] - stim["target"]) < 1e-3
        assert stim["decision"] == ("stretchy" if stim["target"] > 0 else "peaky")
    assert entry["max_abs_logit_error"] < 1e-3
    assert len(paths) == 3 * 6
    for row, source in enumerate(entry["sources"]):
        cells = [s for s in entry["stimuli"] if s["row"] == row]
        assert [s["column"] for s in cells] == list(range(6))
        assert {s["test_index"] for s in cells} == {source["test_index"]}
        passes = all(s["passes_checks"] for s in cells)
        assert source["passes_checks"] == passes


def _fake_counterfactuals(stored_logits, clipped=None):
    """A ``compute_counterfactuals`` stand-in whose stored images score ``stored_logits``
    (one row per candidate source, in the order the condition asks for them)."""

    def compute(model, images, sources, targets, device):
        s, t = len(sources), len(targets)
        table = np.asarray(stored_logits(np.asarray(targets)), dtype=np.float64)[:s]
        return CounterfactualSet(
            sources=np.asarray(sources),
            source_logits=np.linspace(-5, 5, s),
            targets=np.asarray(targets, dtype=np.float64),
            images=np.zeros((s, t, 4, 4, 3), dtype=np.uint8),
            logits=np.broadcast_to(targets, (s, t)).astype(np.float64),
            stored_logits=table,
            clipped=np.zeros((s, t)) if clipped is None else clipped,
        )

    return compute


def _condition_of_eight_candidates(monkeypatch, logits, stored) -> dict:
    """The condition for 4 rows of 3 targets chosen from 8 candidates over ``logits``
    (40 of them), whose stored logits are ``stored(targets)`` (8, 3)."""
    monkeypatch.setattr(cf, "compute_counterfactuals", _fake_counterfactuals(stored))
    images = np.zeros((40, 4, 4, 3), dtype=np.uint8)
    return counterfactual_condition(
        None,
        images,
        logits,
        lambda im: "images/x.png",
        CPU,
        n_sources=4,
        n_targets=3,
        candidates_per_source=2,
    ).to_json()


def test_a_candidate_landing_on_the_wrong_side_is_rejected_and_recorded(monkeypatch):
    logits = np.linspace(-5, 5, 40)
    bad = 2  # the third candidate's stored images land on the wrong side of 0

    def stored(targets):
        table = np.tile(targets + 0.1, (8, 1))
        table[bad] = -0.3 * np.sign(targets) + 0.05  # also far from the target
        return table

    entry = _condition_of_eight_candidates(monkeypatch, logits, stored)
    candidates = spread_sources(logits, 8)
    chosen = [source["test_index"] for source in entry["sources"]]
    assert len(chosen) == 4 and candidates[bad] not in chosen
    assert all(source["passes_checks"] for source in entry["sources"])
    assert entry["candidates"] == 8
    assert entry["rejected"] == {"total": 1, "off_target": 1, "wrong_side": 1, "clipped": 0}
    assert entry["rows_failing_checks"] == 0
    # Still spread over the logit range: the lowest and highest quarters are both used.
    ranks = np.searchsorted(logits, logits[chosen]) / len(logits)
    assert ranks.min() < 0.25 and ranks.max() > 0.75


def test_too_few_passing_candidates_keep_the_best_and_say_they_fail(monkeypatch):
    logits = np.linspace(-5, 5, 40)

    def stored(targets):
        table = np.tile(targets, (8, 1))
        table[:6] += np.arange(1, 7)[:, None]  # six rows off target, worse and worse
        return table

    entry = _condition_of_eight_candidates(monkeypatch, logits, stored)
    candidates = spread_sources(logits, 8)
    chosen = [source["test_index"] for source in entry["sources"]]
    # The two passing rows and the two least-bad failing ones (1 and 2 off target).
    assert sorted(chosen) == sorted(candidates[[0, 1, 6, 7]].tolist())
    assert entry["rejected"]["total"] == 6 and entry["rows_failing_checks"] == 2
    failing = [s for s in entry["stimuli"] if not s["passes_checks"]]
    assert {s["test_index"] for s in failing} == set(candidates[[0, 1]].tolist())


def test_clipping_beyond_the_tolerance_fails_a_row():
    result = _fake_counterfactuals(lambda t: np.tile(t, (2, 1)), np.array([[0.0], [0.05]]))(
        None, None, np.arange(2), np.array([0.0]), CPU
    )
    checks = check_rows(result, logit_tolerance=0.5, clipped_tolerance=0.03)
    assert checks.passes.tolist() == [True, False]
    assert checks.rejected().clipped == 1

import numpy as np
import torch

from explain.batching import to_tensor
from explain.counterfactuals import (
    compute_counterfactuals,
    counterfactual_condition,
    spread_sources,
)

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


def test_condition_has_targets_as_columns_and_sources_as_rows(tiny_model, test_images, test_logits):
    paths = []

    def store(image):
        paths.append(image)
        return f"images/{len(paths)}.png"

    entry = counterfactual_condition(
        tiny_model, test_images, test_logits, store, CPU, n_sources=3, n_targets=5
    )
    assert (entry["layout"]["rows"], entry["layout"]["columns"]) == (3, 5)
    assert entry["targets"][2] == 0.0 and entry["targets"][0] == -entry["targets"][4]
    assert entry["max_abs_logit_error"] < 1e-3
    for stim in entry["stimuli"]:
        assert stim["target"] == entry["targets"][stim["column"]]
        assert abs(stim["logit"] - stim["target"]) < 1e-3
        assert stim["decision"] == ("stretchy" if stim["target"] > 0 else "peaky")
    assert len(paths) == 15

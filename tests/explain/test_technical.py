"""The technical scores tell a map that shows what the model uses from one that does not:
localization on the known parts, deletion and insertion, the randomization sanity
check, and the salience-at-scale measures."""

import numpy as np
import pytest
import torch

from explain.technical import (
    arm_mass,
    deletion_insertion,
    geometric_consistency,
    localization,
    mean_entropy,
    out_of_set_change,
    parameter_layers,
    randomization_sanity,
    rank_similarity,
)

SIZE = 32


def arm_masks(n: int = 6) -> np.ndarray:
    """Block ids: arm blocks (1, 7) in the top-left quarter, a spine block (4) beside."""
    masks = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    masks[:, 2:10, 2:10] = 1
    masks[:, 2:10, 20:28] = 7
    masks[:, 14:18, 4:28] = 4
    return masks


def test_maps_on_the_arms_win_the_pointing_game_and_the_mass():
    masks = arm_masks()
    on_arms = np.zeros(masks.shape)
    on_arms[:, 4, 4] = 3.0
    on_arms[:, 2:10, 20:28] = 1.0
    on_background = np.zeros(masks.shape)
    on_background[:, 25:30, 25:30] = 1.0
    good, bad = localization(on_arms, masks), localization(on_background, masks)
    assert good["arms"]["pointing_game"] == 1.0 and bad["arms"]["pointing_game"] == 0.0
    assert good["arms"]["relevance_mass_accuracy"] == pytest.approx(1.0)
    assert bad["animal"]["relevance_mass_accuracy"] == 0.0
    assert good["arms"]["relevance_rank_accuracy"] > bad["arms"]["relevance_rank_accuracy"]
    assert 0 < good["arms"]["region_share"] < good["animal"]["region_share"] < 1


def quadrant_logit(images: np.ndarray) -> np.ndarray:
    """A model that reads only the red of the top-left quarter."""
    return (np.asarray(images)[:, : SIZE // 2, : SIZE // 2, 0].mean((1, 2)) - 0.5) * 10


def quadrant_scenes(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(100, 140, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
    images[:, : SIZE // 2, : SIZE // 2, 0] = 250
    return images


def test_a_map_of_what_the_model_reads_deletes_faster_and_inserts_faster_than_chance():
    images = quadrant_scenes()
    right = np.zeros((len(images), SIZE, SIZE))
    right[:, : SIZE // 2, : SIZE // 2] = 1.0
    right += np.random.default_rng(1).random(right.shape) * 1e-3  # ties broken at random
    wrong = 1.0 - right
    good = deletion_insertion(quadrant_logit, images, right)
    bad = deletion_insertion(quadrant_logit, images, wrong)
    assert good.deletion < good.deletion_random < bad.deletion
    assert good.insertion > good.insertion_random > bad.insertion


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))[:, 0]


def gradient_explain(model):
    def explain(images):
        x = torch.tensor(np.asarray(images, dtype=np.float32) / 255).permute(0, 3, 1, 2)
        x.requires_grad_(True)
        model(x).sum().backward()
        return (x.grad * x).sum(1).detach().numpy()

    return explain


def edge_explain(model):
    """Ignores the model: a map of the image's own edges."""

    def explain(images):
        gray = np.asarray(images, dtype=np.float64).mean(-1)
        return np.abs(np.diff(gray, axis=2, append=gray[:, :, -1:]))

    return explain


def test_randomizing_the_model_changes_a_model_dependent_map_but_not_an_edge_detector():
    images = np.random.default_rng(2).integers(0, 255, size=(4, SIZE, SIZE, 3)).astype(np.uint8)
    model = TinyCNN()
    assert parameter_layers(model) == ["head", "conv"]  # from the output back
    gradient = randomization_sanity(gradient_explain, model, images, checkpoints=2)
    edges = randomization_sanity(edge_explain, model, images, checkpoints=2)
    assert gradient["down_to"] == ["head", "conv"] and gradient["layers_randomized"] == [1, 2]
    assert gradient["rank_similarity"][-1] < 0.5
    assert edges["rank_similarity"] == pytest.approx([1.0, 1.0])
    # the trained model is left as it was
    assert torch.equal(model.conv.weight, TinyCNN().conv.weight)


def test_entropy_is_zero_for_one_pixel_and_largest_for_a_flat_map():
    one = np.zeros((2, 8, 8))
    one[:, 3, 3] = 1.0
    assert mean_entropy(one) == 0.0
    assert mean_entropy(np.ones((2, 8, 8))) == pytest.approx(6.0)  # log2(64)
    assert mean_entropy(np.zeros((2, 8, 8))) == pytest.approx(6.0)  # nothing: flat


def test_a_map_that_follows_the_scene_passes_the_mirror_and_the_shift():
    images = np.random.default_rng(3).integers(0, 255, size=(3, SIZE, SIZE, 3)).astype(np.uint8)
    follows = geometric_consistency(lambda im: im[..., 0].astype(float), images)
    assert follows == pytest.approx({"mirror": 1.0, "shift": 1.0})
    fixed = np.random.default_rng(4).random((SIZE, SIZE))
    ignores = geometric_consistency(lambda im: np.broadcast_to(fixed, im.shape[:3]), images)
    assert ignores["mirror"] < 0.5 and ignores["shift"] < 0.5


def test_out_of_set_change_and_stability():
    masks = arm_masks(2)
    on_arms = (masks == 1).astype(float)
    spread = np.ones(masks.shape)
    change = out_of_set_change(on_arms, masks, spread, masks)
    assert change["entropy"] > 0 and change["arm_mass"] < 0
    assert arm_mass(on_arms, masks) == pytest.approx(1.0)
    assert rank_similarity(on_arms + 1e-3 * np.arange(SIZE), on_arms + 1e-3 * np.arange(SIZE)) == 1


def test_all_scores_of_a_method_make_a_manifest_record():
    """The scores a bundle stores, from one call, round-trip through the manifest's JSON;
    the headline numbers rank a right map above a wrong one."""
    from explain.manifest import TechnicalScores
    from explain.technical import OtherScenes, TechnicalSettings, technical_scores

    images = quadrant_scenes(6)
    masks = np.zeros((6, SIZE, SIZE), dtype=np.uint8)
    masks[:, : SIZE // 2, : SIZE // 2] = 1  # the model's quarter: an arm block here

    def right(im):
        maps = np.zeros(np.asarray(im).shape[:3])
        maps[:, : SIZE // 2, : SIZE // 2] = np.asarray(im)[:, : SIZE // 2, : SIZE // 2, 0]
        return maps

    def wrong(im):
        return 1.0 - right(im) / 255

    model = TinyCNN()
    scores = {
        name: technical_scores(
            explain,
            quadrant_logit,
            images,
            masks,
            explain_for=lambda m: edge_explain(m),
            model=model,
            other_model_maps=explain(images),
            out_of_set=OtherScenes("other", images[:2], masks[:2]),
            settings=TechnicalSettings(steps=8, sanity_checkpoints=2, sanity_scenes=2),
        )
        for name, explain in (("right", right), ("wrong", wrong))
    }
    good, bad = scores["right"].headline(), scores["wrong"].headline()
    assert good["pointing_game_arms"] == 1.0 and bad["pointing_game_arms"] == 0.0
    assert good["deletion_gain"] > 0 > bad["deletion_gain"]
    assert good["stability_across_models"] == 1.0
    assert good["randomization_change"] == pytest.approx(0.0)  # the edge map ignores the model
    record = scores["right"]
    assert TechnicalScores.from_json(record.to_json()) == record
    assert record.sanity.down_to == ("head", "conv") and record.out_of_set.scenes == 2


def test_the_scores_print_as_one_table(bundle_dir):
    """What ``xaistudy bundle validate`` prints after the validation table."""
    import dataclasses

    from explain.bundle_format import load_manifest
    from explain.technical import technical_table

    conditions = load_manifest(bundle_dir).conditions  # the fixture scores one method
    lines = technical_table(conditions).splitlines()
    assert lines[0].startswith("technical scores") and len(lines) == 3
    row = lines[2].split()
    assert row[0] == "integrated_gradients" and row[1:4] == ["0.60", "0.40", "0.30"]
    assert row[7] == "-"  # stability: no second model
    unscored = dataclasses.replace(
        conditions,
        integrated_gradients=dataclasses.replace(conditions.integrated_gradients, technical=None),
    )
    assert technical_table(unscored) == ""

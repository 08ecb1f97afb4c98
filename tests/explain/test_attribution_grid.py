"""An attribution condition shows the baseline's scenes, each with its map under it, in
one color scale per condition, and refuses maps it cannot draw."""

import numpy as np
import pytest

from explain.attribution_grid import MapMethod, attribution_condition, map_scale, render_map
from explain.baseline import baseline_condition
from explain.wording import english, localize_condition
from xaistudy.errors import UserError

LOGITS = np.random.default_rng(3).normal(size=400) * 4
SIZE = 16


def maps_marking(indices: np.ndarray, value: float = 1.0) -> np.ndarray:
    """A map per scene: ``value`` on its top-left quarter, -value/2 on its bottom right."""
    out = np.zeros((len(indices), SIZE, SIZE), dtype=np.float32)
    out[:, : SIZE // 2, : SIZE // 2] = value
    out[:, SIZE // 2 :, SIZE // 2 :] = -value / 2
    return out


def build(signed: bool = True, compute=maps_marking, name: str = "integrated_gradients"):
    stored: list[np.ndarray] = []

    def store(image: np.ndarray) -> str:
        stored.append(image)
        return f"images/map{len(stored) - 1}.png"

    condition = attribution_condition(
        LOGITS,
        lambda i: f"images/scene{i}.png",
        compute,
        store,
        MapMethod(name, "captum", "0.9.0", {"n_steps": 32}, signed),
        rows=4,
    )
    return condition, stored


def test_the_scenes_are_the_baselines_and_each_has_its_map_under_it():
    condition, stored = build()
    baseline = baseline_condition(LOGITS, lambda i: f"images/scene{i}.png", rows=4)
    scenes = [c for c in condition.stimuli if c.shows == "scene"]
    assert [(c.image, c.row, c.column) for c in scenes] == [
        (c.image, c.row, c.column) for c in baseline.stimuli
    ]
    for cell in condition.grid()[0]:  # each grid cell: the scene first, its map under it
        assert [s.shows for s in cell] == ["scene", "map"]
        assert cell[0].test_index == cell[1].test_index
        assert cell[1].caption == f"Map of the picture above ({cell[0].caption})"
    assert len(stored) == len(scenes)
    assert condition.method == "integrated_gradients" and condition.settings == {"n_steps": 32}


def test_signed_maps_are_red_for_the_decision_and_blue_against_it():
    _, stored = build(signed=True)
    picture = stored[0]
    assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
    assert tuple(picture[0, 0]) == (255, 0, 0)  # +1: full red
    assert tuple(picture[-1, -1]) == (0, 0, 128)  # -1/2: half blue
    assert tuple(picture[0, -1]) == (0, 0, 0)  # 0: did not matter


def test_unsigned_maps_run_from_black_to_bright():
    _, stored = build(signed=False, name="grad_cam")
    picture = stored[0].astype(int)
    assert picture[-1, -1].sum() < 20  # 0 (a negative value is drawn as 0): black
    assert picture[0, 0].sum() > 3 * 200  # full scale: bright yellow


def test_one_color_scale_for_the_whole_condition():
    """A scene whose relevance is half another's is drawn darker, not rescaled."""

    def uneven(indices):
        maps = maps_marking(indices)
        maps[1::2] *= 0.5
        return maps

    _, stored = build(compute=uneven)
    assert stored[0][0, 0, 0] == 255 and stored[1][0, 0, 0] == 128


def test_the_scale_ignores_one_extreme_pixel():
    maps = np.zeros((10, SIZE, SIZE))
    maps[:, :4, :4] = 1.0
    maps[0, 0, 0] = 1000.0
    assert map_scale(maps) == pytest.approx(1.0)
    assert render_map(maps[1], map_scale(maps), signed=True)[0, 0, 0] == 255


@pytest.mark.parametrize(
    ("compute", "message"),
    [
        (lambda idx: np.zeros((len(idx) - 1, SIZE, SIZE)), "maps of shape"),
        (lambda idx: np.zeros((len(idx), SIZE)), "maps of shape"),
        (lambda idx: np.full((len(idx), SIZE, SIZE), np.nan), "NaN or infinite"),
    ],
)
def test_maps_that_cannot_be_drawn_are_refused(compute, message):
    with pytest.raises(UserError, match=message):
        build(compute=compute)


def test_its_words_are_the_wording_modules():
    for signed, name in ((True, "integrated_gradients"), (False, "grad_cam")):
        condition, _ = build(signed=signed, name=name)
        assert localize_condition(name, condition, english) == condition
        assert ("red parts" in condition.description) == signed


def test_trial_scenes_get_both_classes_maps_on_the_conditions_scale():
    """Each trial scene's map and its other class's map (a distinction trial's two panels)
    are drawn on the grid's color scale, so neither panel looks stronger by its scale."""
    stored: list[np.ndarray] = []

    def store(image: np.ndarray) -> str:
        stored.append(image)
        return f"images/map{len(stored) - 1}.png"

    condition = attribution_condition(
        LOGITS,
        lambda i: f"images/scene{i}.png",
        maps_marking,
        store,
        MapMethod("integrated_gradients", "captum", "0.9.0", {}, True),
        rows=4,
        scenes=np.array([7, 11]),
        compute_other_maps=lambda indices: -maps_marking(indices),
    )
    first = condition.scene_maps[0]
    assert [m.test_index for m in condition.scene_maps] == [7, 11]
    drawn = {f"images/map{k}.png": image for k, image in enumerate(stored)}
    for_it, for_other = drawn[first.image], drawn[first.other_image]
    # red where the decision's evidence is, blue for the same place in the other's map
    assert for_it[0, 0, 0] == 255 and for_it[0, 0, 2] == 0
    assert for_other[0, 0, 2] == 255 and for_other[0, 0, 0] == 0
    assert first.other_image in condition.images()


def test_without_other_maps_the_trial_scenes_have_one_map_each():
    condition = attribution_condition(
        LOGITS,
        lambda i: f"images/scene{i}.png",
        maps_marking,
        lambda image: "images/map.png",
        MapMethod("integrated_gradients", "captum", "0.9.0", {}, True),
        rows=4,
        scenes=np.array([7]),
    )
    assert condition.scene_maps[0].other_image is None

"""Bias specifications: presets, the iclr2022 statistics, interventions, bad specs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from generator.attributes import ATTRIBUTES, RANGES, validate_frame
from generator.bias_report import predictiveness
from generator.biases import list_presets, load_spec
from generator.expressions import Expression
from xaistudy.errors import UserError


@pytest.fixture(scope="module")
def iclr() -> pd.DataFrame:
    return load_spec("iclr2022").sample(40_000, np.random.default_rng(1))


def test_presets_load_and_sample_valid_balanced_scenes():
    assert {"unbiased", "iclr2022", "color-bias"} <= set(list_presets())
    for name in list_presets():
        spec = load_spec(name)
        params = spec.sample(1001, np.random.default_rng(0))
        assert list(params.columns) == ["label", *ATTRIBUTES]
        validate_frame(params)
        assert abs(int(params["label"].sum()) - 500) <= 1
        assert (params["obj_name"] == np.where(params["label"] == 1, "stretchy", "peaky")).all()
        assert params["fliplr"].dtype == bool


def test_same_seed_same_scenes_other_seed_other_scenes():
    spec = load_spec("iclr2022")
    a = spec.sample(500, np.random.default_rng(7))
    b = spec.sample(500, np.random.default_rng(7))
    c = spec.sample(500, np.random.default_rng(8))
    pd.testing.assert_frame_equal(a, b)
    assert not a["arm_position"].equals(c["arm_position"])


def test_iclr2022_arm_ranges_per_class(iclr):
    peaky, stretchy = iclr[iclr.label == 0], iclr[iclr.label == 1]
    assert peaky.arm_position.between(0, 0.52).all()
    assert stretchy.arm_position.between(0.48, 1).all()
    # uniform: the mean sits in the middle of each range
    assert peaky.arm_position.mean() == pytest.approx(0.26, abs=0.01)
    assert stretchy.arm_position.mean() == pytest.approx(0.74, abs=0.01)


def test_iclr2022_color_is_correlated_with_label_most_where_arms_are_ambiguous(iclr):
    assert np.corrcoef(iclr.obj_color, iclr.label)[0, 1] > 0.25
    ambiguous = iclr[iclr.arm_position.between(0.48, 0.52)]
    # near the middle, stretchy color is 1 - U(0, ~0.25): red, peaky blue (but 15% uniform)
    stretchy_red = (ambiguous[ambiguous.label == 1].obj_color > 0.7).mean()
    peaky_blue = (ambiguous[ambiguous.label == 0].obj_color < 0.3).mean()
    assert stretchy_red > 0.8 and peaky_blue > 0.8


def test_iclr2022_shape_follows_arms_but_adds_nothing_about_the_class(iclr):
    """The study's shape bias: spherical is drawn from the arm position alone, so it is
    correlated with the label through the arms but carries no information beyond them."""
    inward, outward = iclr[iclr.arm_position < 0.45], iclr[iclr.arm_position > 0.55]
    # truncated to <= 0.5 / >= 0.5 except for the 33% redrawn freely
    assert (inward.spherical <= 0.5).mean() == pytest.approx(0.67 + 0.33 / 2, abs=0.02)
    assert (outward.spherical >= 0.5).mean() == pytest.approx(0.67 + 0.33 / 2, abs=0.02)
    table = predictiveness(iclr).set_index("attribute")
    assert table.loc["spherical", "beyond_arms"] < 0.01
    assert table.loc["obj_color", "beyond_arms"] > 0.015
    # within the ambiguous band, shape alone is at chance
    band = iclr[iclr.arm_position.between(0.48, 0.52)]
    sph_high = band.spherical > 0.5
    accuracy = max((sph_high == (band.label == 1)).mean(), (sph_high == (band.label == 0)).mean())
    assert accuracy < 0.56


def test_iclr2022_pitch_and_defaults(iclr):
    assert iclr.obj_rotation_pitch.abs().max() <= math.pi / 6 + 1e-9
    assert iclr.obj_rotation_pitch.std() < 0.5 * math.pi / 4
    assert iclr.bending.abs().max() <= math.pi / 10 + 1e-9
    assert iclr.obj_rotation_roll.abs().max() <= math.pi / 4 + 1e-9
    assert iclr.obj_rotation_yaw.min() < -3 and iclr.obj_rotation_yaw.max() > 3
    assert iclr.position_x.between(-0.8, 0.8).all() and iclr.position_x.min() < -0.75
    assert iclr.bg_color.min() < 0.01 and iclr.bg_color.max() > 0.99
    assert iclr.fliplr.mean() == pytest.approx(0.5, abs=0.02)


def test_predictiveness_ranks_arm_position_first_for_every_preset():
    for name in list_presets():
        params = load_spec(name).sample(6000, np.random.default_rng(3))
        table = predictiveness(params)
        assert table.attribute.iloc[0] == "arm_position"
        assert table.set_index("attribute").loc["bg_color", "accuracy"] < 0.55


@pytest.mark.parametrize("factor_attributes", [("obj_color",), ("spherical",), ("arm_position",)])
def test_intervened_draws_are_independent_of_the_label(factor_attributes):
    spec = load_spec("iclr2022")
    drawn = spec.sample_intervened(factor_attributes, 20_000, np.random.default_rng(5))
    labels = np.random.default_rng(6).integers(0, 2, 20_000)  # any labels: none is predicted
    name = factor_attributes[0]
    assert abs(np.corrcoef(drawn[name], labels)[0, 1]) < 0.03
    # and the marginal matches the biased sample's marginal
    biased = spec.sample(20_000, np.random.default_rng(9))[name]
    assert drawn[name].mean() == pytest.approx(biased.mean(), abs=0.01)


def test_intervened_override_is_used(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(
        """
[attributes.obj_color]
peaky = { dist = "uniform", low = 0.0, high = 0.3 }
stretchy = { dist = "uniform", low = 0.7, high = 1.0 }
intervened = { dist = "constant", value = 0.5 }
"""
    )
    spec = load_spec(path)
    drawn = spec.sample_intervened(["obj_color"], 100, np.random.default_rng(0))
    assert (drawn.obj_color == 0.5).all()
    assert spec.name == "spec"


def test_spec_round_trips_through_to_dict():
    spec = load_spec("iclr2022")
    again = load_spec(spec.to_dict())
    a = spec.sample(300, np.random.default_rng(2))
    b = again.sample(300, np.random.default_rng(2))
    pd.testing.assert_frame_equal(a, b)
    assert set(spec.to_dict()["attributes"]) == set(RANGES) | {"fliplr"}


BAD_SPECS = [
    ("color = 1", "color"),
    ("[attributes.armz]\ndist='uniform'", "attributes.armz"),
    ("[attributes.obj_name]\ndist='uniform'", "obj_name"),
    ("[attributes.bg_color]\ndist='gauss'", "attributes.bg_color.dist"),
    ("[attributes.bg_color]\ndist='uniform'\nlow=0.8\nhigh=0.2", "attributes.bg_color"),
    ("[attributes.bg_color]\ndist='uniform'\nlow=0\nhigh=2", "attributes.bg_color.high"),
    ("[attributes.bg_color]\ndist='uniform'\nhgh=1", "attributes.bg_color.hgh"),
    ("[attributes.bending]\ndist='truncnorm'\nmean=0\nstd=-1", "attributes.bending.std"),
    ("[attributes.bending]\ndist='truncnorm'\nmean=0", "std"),
    ("[attributes.spherical]\ndist='beta'\na=0.3\nb=0.3\nhigh=1.5", "attributes.spherical.high"),
    ("[attributes.bg_color]\ndist='uniform'\nmix_uniform=1.5", "attributes.bg_color.mix_uniform"),
    ("[attributes.bg_color]\npeaky={dist='uniform'}", "stretchy"),
    ("[attributes.bg_color]\ndist='uniform'\nhigh='__import__(\"os\")'", "__import__"),
    ("[attributes.bg_color]\ndist='uniform'\nhigh='arm_positon'", "arm_positon"),
    ("[attributes.bg_color]\ndist='uniform'\nhigh='1 +'", "attributes.bg_color.high"),
    (
        "[attributes.bg_color]\ndist='uniform'\nhigh='obj_color'\n"
        "[attributes.obj_color]\ndist='uniform'\nhigh='bg_color'",
        "cycle",
    ),
    ("[attributes.bg_color]\ndist='uniform'\nintervened={dist='uniform', high='label'}", "label"),
    ("[attributes.fliplr]\ndist='uniform'", "attributes.fliplr.dist"),
    ("[attributes.bg_color]\ndist='constant'\nvalue=3", "attributes.bg_color.value"),
]


@pytest.mark.parametrize(("text", "named"), BAD_SPECS)
def test_bad_specs_are_user_errors_naming_the_key(tmp_path, text, named):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match="allowed|must|lacks|cycle|need|outside|low|unknown") as e:
        load_spec(path)
    assert named in str(e.value)


def test_ranges_that_become_impossible_at_sampling_time_are_user_errors(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        "[attributes.bg_color]\ndist='uniform'\nlow='arm_position'\nhigh='arm_position - 0.1'\n"
    )
    spec = load_spec(path)  # expressions can only be checked on scenes
    with pytest.raises(UserError, match=r"attributes.bg_color.*low > high"):
        spec.sample(10, np.random.default_rng(0))
    path.write_text("[attributes.bg_color]\ndist='uniform'\nlow=0\nhigh='arm_position * 3'\n")
    with pytest.raises(UserError, match=r"attributes.bg_color.*valid range of bg_color"):
        load_spec(path).sample(200, np.random.default_rng(0))


def test_unknown_preset_and_unreadable_toml(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'iclr2023'.*iclr2022"):
        load_spec("iclr2023")
    broken = tmp_path / "broken.toml"
    broken.write_text("[attributes.bg_color\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_spec(broken)
    with pytest.raises(UserError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")


def test_expressions_are_vectorized_and_whitelisted():
    expr = Expression("clip(0.25 + 2.5*(arm_position - 0.5), 0, 1)", {"arm_position"})
    result = expr.evaluate({"arm_position": np.array([0.5, 0.9, 0.0])})
    np.testing.assert_allclose(result, [0.25, 1.0, 0.0])
    assert expr.names == {"arm_position"}
    assert Expression("where(x > 0.5, -pi, abs(x))", {"x"}).evaluate(
        {"x": np.array([0.7, -0.2])}
    ).tolist() == [-math.pi, 0.2]
    for source in ("x.__class__", "(lambda: 1)()", "x if x else 1", "[x]", "'a'", "x == 1"):
        with pytest.raises(UserError, match="allowed"):
            Expression(source, {"x"})

"""The study TOML: the shipped default loads; bad keys and values are one clear error."""

from __future__ import annotations

import re
import tomllib

import pytest

from study_server.study import default_study_path, load_study, parse_study
from xaistudy.errors import UserError

DEFAULT = tomllib.loads(default_study_path().read_text())


def _with(change) -> dict:
    data = tomllib.loads(default_study_path().read_text())
    change(data)
    return data


def test_default_study_loads_with_seven_attributes_and_three_conditions():
    study = load_study(None)
    assert study.attribute_keys == (
        "arm_position",
        "obj_color",
        "spherical",
        "bg_color",
        "bending",
        "rotation",
        "position",
    )
    assert study.condition_names == ("baseline", "counterfactuals", "concepts")
    assert len(study.scale_labels) == 5 and "{attribute}" in study.scale_statement
    assert study.completion_link("ABC").endswith("cc=ABC")
    assert all(study.comprehension_for(c) for c in study.condition_names)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(color="red"), "unknown key"),
        (lambda d: d["scale"].update(labels=["a", "b"]), "5 entries"),
        (lambda d: d["scale"].update(statement="no placeholder"), "{attribute}"),
        (lambda d: d.update(abandonment_timeout_minutes=0), "outside the allowed range"),
        (lambda d: d.update(abandonment_timeout_minutes="1h"), "must be int"),
        (
            lambda d: d["conditions"].update(saliency={"target_n": 5, "tutorial": "x"}),
            "unknown condition",
        ),
        (lambda d: d["conditions"]["baseline"].update(target_n=0), "outside the allowed range"),
        (
            lambda d: d["comprehension"]["questions"][0].update(correct="Elephant"),
            "not one of its options",
        ),
        (lambda d: d["attention_checks"][0].update(after_rating=12), "only 7 attributes"),
        (lambda d: d["completion"].update(url="ftp://x/{code}"), "http(s) URL"),
        (lambda d: d["attributes"].append({"key": "obj_color", "name": "again"}), "repeat"),
        (lambda d: d["attributes"][0].update(label="x"), "unknown key"),
        (lambda d: d.pop("consent"), "consent is missing"),
    ],
)
def test_bad_study_files_raise_one_clear_user_error(change, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_study(_with(change))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_study(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("title = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_study(bad)


def test_study_attributes_must_exist_in_the_bundle(bundle_dir, tmp_path):
    import dataclasses

    from explain.bundle_format import load_manifest

    manifest = load_manifest(bundle_dir)
    study = load_study(None)
    study.check_bundle(manifest)
    kept = tuple(a for a in manifest.attributes if a.key != "bending")
    with pytest.raises(UserError, match="bending"):
        study.check_bundle(dataclasses.replace(manifest, attributes=kept))

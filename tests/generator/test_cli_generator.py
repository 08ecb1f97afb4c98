"""The generator's commands as a user runs them: generate, render, preview, merge, biases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator.dataset import DatasetFolder
from xaistudy.cli import cli

TINY = ["--n-train", "4", "--n-val", "2", "--n-test", "3", "--size", "16", "--device", "cpu"]
SCENE = {
    "obj_name": "peaky",
    "spherical": 0.1,
    "bending": 0.05,
    "obj_rotation_roll": 0.0,
    "obj_rotation_pitch": 0.1,
    "obj_rotation_yaw": 0.5,
    "fliplr": False,
    "position_x": 0.2,
    "position_y": -0.2,
    "arm_position": 0.3,
    "obj_color": 0.2,
    "bg_color": 0.7,
}


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def assert_nothing_complete(parent: Path) -> None:
    """No dataset folder (one with meta.json) and no leftover partial folder."""
    assert not list(parent.glob("**/meta.json"))
    assert not list(parent.glob("*.partial-*"))


def test_generate_writes_a_complete_folder_and_preview_draws_it(tmp_path):
    out = tmp_path / "ds"
    result = run("generate", "--preset", "iclr2022", "--out", out, "--seed", "5", *TINY)
    assert result.exit_code == 0, result.output
    folder = DatasetFolder(out)
    assert folder.meta["splits"] == {"train": 4, "val": 2, "test": 3}
    assert folder.meta["preset"] == "iclr2022" and folder.meta["seed"] == 5

    sheet = tmp_path / "sheet.png"
    result = run("preview", out, "--split", "train", "--out", sheet, "--n", "4")
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes().startswith(b"\x89PNG")
    assert_one_error(run("preview", out, "--split", "holdout"), "no split 'holdout'", "train")
    assert_one_error(run("preview", tmp_path / "missing"), "does not exist")


def test_generate_refuses_a_non_empty_output_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_one_error(run("generate", "--out", out, *TINY), "not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    result = run("generate", "--out", out, "--overwrite", *TINY)
    assert result.exit_code == 0, result.output
    assert (out / "meta.json").exists() and not (out / "notes.txt").exists()


def test_generate_free_training_pairs_redraw_every_factor_free_of_the_class(tmp_path):
    result = run("generate", "--out", tmp_path / "ds", *TINY, "--train-pairs", "free")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["train_pairs"] == [
        "bg_color", "bending", "obj_rotation_yaw", "obj_rotation_pitch", "obj_rotation_roll",
        "position",
    ]  # fmt: skip
    assert meta["splits"]["train_pairs"] == meta["splits"]["train"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--preset", "iclr2023"], ["unknown preset 'iclr2023'", "iclr2022"]),
        (["--bias", "missing.toml"], ["cannot read"]),
        (["--preset", "unbiased", "--bias", "x.toml"], ["either --preset or --bias"]),
        (["--shard", "3/2"], ["--shard"]),
        (["--n-train", "-1"], ["--n-train"]),
        (["--train-pairs", "obj_color"], ["obj_color depends on the class", "bg_color"]),
        (["--train-pairs", "bg_color,legs"], ["unknown factor legs", "position"]),
    ],
)
def test_generate_bad_input_is_one_error_line(tmp_path, args, fragments):
    result = run("generate", "--out", tmp_path / "ds", *TINY, *args)
    assert_one_error(result, *fragments)
    assert_nothing_complete(tmp_path)


def test_generate_with_bad_toml_names_the_key(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text("[attributes.bg_color]\ndist = 'uniform'\nlow = 0.9\nhigh = 0.1\n")
    assert_one_error(run("generate", "--bias", spec, "--out", tmp_path / "ds", *TINY),
                     "attributes.bg_color", "low")  # fmt: skip
    spec.write_text("[attributes.bg_color]\ndist = 'uniform'\nspread = 1\n")
    assert_one_error(run("generate", "--preset", spec, "--out", tmp_path / "ds", *TINY),
                     "attributes.bg_color.spread")  # fmt: skip
    assert_nothing_complete(tmp_path)


def test_sharded_generate_and_merge(tmp_path):
    for i in (1, 2):
        result = run("generate", "--out", tmp_path / f"s{i}", "--shard", f"{i}/2", *TINY)
        assert result.exit_code == 0, result.output
    result = run("merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "all")
    assert result.exit_code == 0, result.output
    assert DatasetFolder(tmp_path / "all").meta["splits"] == {"train": 4, "val": 2, "test": 3}
    assert_one_error(run("merge", tmp_path / "s1", "--out", tmp_path / "m"), "exactly once")
    assert not (tmp_path / "m").exists()


def test_render_two4two_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({**SCENE, "id": "a", "extra": 1}) + "\n")
    result = run("render", "--params", good, "--out", tmp_path / "ds", "--size", "16")
    assert result.exit_code == 0, result.output
    params = DatasetFolder(tmp_path / "ds").split("test").params
    assert list(params["id"]) == ["a"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SCENE) + "\n" + json.dumps({**SCENE, "bg_color": 2.0}) + "\n")
    result = run("render", "--params", bad, "--out", tmp_path / "bad", "--size", "16")
    assert_one_error(result, "line 2", "bg_color")
    assert not (tmp_path / "bad").exists()


def test_biases_show_prints_the_spec_and_arm_position_most_predictive():
    result = run("biases", "show", "iclr2022", "--n", "4000")
    assert result.exit_code == 0, result.output
    assert "with probability 0.15 replaced by a uniform draw" in result.output
    table = result.output.split("beyond arms")[-1].strip().splitlines()
    assert table[0].split()[0] == "arm_position"
    assert float(table[0].split()[1]) > 0.9
    listed = run("biases", "list")
    assert listed.exit_code == 0
    assert {"unbiased", "iclr2022", "color-bias"} <= {
        line.split()[0] for line in listed.output.splitlines()
    }
    assert_one_error(run("biases", "show", "nonsense"), "unknown preset 'nonsense'")

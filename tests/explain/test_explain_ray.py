"""``xaistudy explain --executor ray``: conditions and scene renderings as Ray tasks.

One local 2-CPU Ray instance serves the module. The dataset has no intervention splits,
so the ground truth's intervened scenes are rendered as Ray tasks too.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from make_bundle import fixture_model_card

from explain.build import ExplainSettings, build_bundle
from explain.bundle_format import verify_bundle
from explain.probe import ProbeSettings
from explain.technical import TechnicalSettings
from generator.biases import load_spec
from generator.dataset import DatasetFolder
from generator.generate import generate_dataset
from xaistudy.cli import cli
from xaistudy.executors import RayExecutor
from xaistudy.vocabulary import FACTORS

# one xdist worker runs the whole module, so its one Ray instance serves every test
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

CPU = torch.device("cpu")
SETTINGS = ExplainSettings(
    conditions=("baseline", "counterfactuals", "concepts", "grad_cam"),
    baseline_rows=3,
    counterfactual_sources=3,
    concepts=4,
    concept_highest=2,
    concept_lowest=1,
    concept_overlay_size=64,
    ground_truth_scenes=24,
    tutorial_examples=2,
    attribution_rows=3,
    technical=TechnicalSettings(steps=4, sanity_checkpoints=2, sanity_scenes=2),
    out_of_set_scenes=4,
    probe=ProbeSettings(train_images=32, test_images=16, epochs=1),
    counterfactual_pre=4,  # 24 intervened scenes per factor hold too few for 8 and 8
    counterfactual_post=4,
)


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.close()


def _without_run_details(manifest: dict) -> dict:
    """The manifest minus when it was made and how long the probe took to train."""
    manifest = {k: v for k, v in manifest.items() if k != "created"}
    manifest["validation"]["probe"].pop("seconds")
    return manifest


def test_a_bundle_built_on_ray_equals_the_local_one_byte_for_byte(
    tiny_model, ray_executor, tmp_path
):
    data = DatasetFolder(
        generate_dataset(
            load_spec("iclr2022"),
            tmp_path / "data",
            n_train=32,
            n_val=0,
            n_test=48,
            size=32,
            seed=5,
            progress=False,
        )  # fmt: skip
    )
    card = fixture_model_card()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every Ray task: torch may round differently with more
    try:
        local, _ = build_bundle(
            tiny_model, card, data, tmp_path / "local", CPU, SETTINGS, progress=False,
            allow_invalid=True,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    remote, timings = build_bundle(
        tiny_model, card, data, tmp_path / "ray", CPU, SETTINGS, progress=False,
        allow_invalid=True, executor=ray_executor,
    )  # fmt: skip
    one, other = verify_bundle(local), verify_bundle(remote)
    assert list(other.conditions) == list(SETTINGS.conditions)
    assert set(SETTINGS.conditions) <= set(timings)
    assert other.ground_truth_rule.made_on_the_fly == tuple(FACTORS)  # rendered as tasks
    assert one.files == other.files and len(one.files) > 20
    for rel in one.files:
        assert (local / rel).read_bytes() == (remote / rel).read_bytes()
    manifests = [json.loads((b / "manifest.json").read_text()) for b in (local, remote)]
    assert manifests[0]["conditions"] == manifests[1]["conditions"]
    assert _without_run_details(manifests[0]) == _without_run_details(manifests[1])
    assert dataclasses.asdict(one.validation.concepts) == dataclasses.asdict(
        other.validation.concepts
    )  # the concept analysis came back from its task


def test_explain_command_runs_on_ray(tiny_run, tiny_data, ray_executor, tmp_path):
    """The command joins the Ray instance this process holds and leaves it running."""
    out = tmp_path / "bundle"
    args = [
        "explain", "--model", str(tiny_run), "--data", str(tiny_data.root), "--out", str(out),
        "--device", "cpu", "--conditions", "baseline,concepts", "--baseline-rows", "2",
        "--baseline-columns", "3", "--concepts", "3", "--concept-highest", "2",
        "--concept-lowest", "1", "--gt-scenes", "8", "--counterfactual-pairs", "0,0",
        "--allow-invalid", "--executor", "ray",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert list(verify_bundle(out).conditions) == ["baseline", "concepts"]
    assert ray_executor.map(abs, [-1]) == [1]  # still running


def test_explain_names_an_unreachable_cluster(tmp_path):
    args = ["explain", "--model", str(tmp_path), "--data", str(tmp_path)]
    args += ["--out", str(tmp_path / "b"), "--executor", "ray", "--address", "127.0.0.1:9"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "no Ray cluster answers at 127.0.0.1:9" in result.output
    assert "ray start --head" in result.output

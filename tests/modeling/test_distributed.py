"""``xaistudy train`` under ``torchrun``: two processes (gloo, CPU) train one model
together, their replicas stay equal, the flow's ActNorm starts from process 0's images
only, a stopped run resumes exactly, and a run resumes only on as many processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from modeling_helpers import TINY_RESNET_TOML, TINY_TOML, run_cli, tiny_config

from generator.dataset import DatasetFolder
from modeling.architectures import architecture_of
from modeling.distributed import Processes
from modeling.training import TrainOptions, _plan_run, augment, build_training, process_share
from xaistudy.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CPU = torch.device("cpu")


def torchrun(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 ARGS`` with this checkout first on the
    path, one thread per process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_processes_shares_make_up_each_batch_of_one_process():
    order = torch.randperm(13, generator=torch.Generator().manual_seed(0))
    shares = [process_share(order, Processes(rank, 3)) for rank in range(3)]
    assert [len(share) for share in shares] == [5, 5, 5]  # 13 padded to 15
    assert torch.equal(process_share(order, Processes()), order)
    batch, share = 6, 2  # over all processes, per process
    for start in range(0, 15, batch):
        step = torch.cat([s[start // 3 : start // 3 + share] for s in shares])
        padded = torch.cat([order, order[:2]])
        assert sorted(step.tolist()) == sorted(padded[start : start + batch].tolist())


def test_each_process_augments_its_rows_of_the_batch_as_one_process_would():
    config = tiny_config(augment_rot90=True, augment_shift=2)
    images = torch.rand(8, 3, 16, 16)
    whole = augment(images.clone(), config, torch.Generator().manual_seed(5), 8, slice(None))
    for rank in (0, 1):
        generator = torch.Generator().manual_seed(5)
        part = augment(images[rank::2].clone(), config, generator, 8, slice(rank, None, 2))
        assert torch.equal(part, whole[rank::2])


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tiny_dataset, tmp_path):
    options = TrainOptions(
        data=tiny_dataset, out=tmp_path / "run", device=CPU, config=tiny_config(), batch_size=15
    )
    with pytest.raises(
        UserError, match="batch size 15 cannot be split over 2 processes.*--batch-size 16"
    ):
        _plan_run(options, DatasetFolder(tiny_dataset), world_size=2)


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory) -> Path:
    """Two launches of two processes: the checks of ``distributed_checks.py``, which end
    with an uninterrupted run and one stopped after its first epoch (its checkpoint is
    all a killed run leaves to go on from), then the resumption of the stopped one."""
    work = tmp_path_factory.mktemp("ddp")
    (work / "tiny.toml").write_text(TINY_TOML)
    (work / "tiny-resnet.toml").write_text(TINY_RESNET_TOML)
    checks = torchrun(
        HERE / "distributed_checks.py",
        "tiny.toml",
        "tiny-resnet.toml",
        tiny_dataset,
        work,
        cwd=work,
    )
    assert checks.returncode == 0, checks.stdout + checks.stderr
    stopped = work / "stopped"
    assert pd.read_csv(stopped / "metrics.csv")["epoch"].tolist() == [1]
    (stopped / "model_card.json").unlink()  # as a killed run leaves it
    resumed = torchrun(
        "-m",
        "xaistudy.cli",
        "train",
        "--data",
        tiny_dataset,
        "--out",
        stopped,
        "--resume",
        "--quiet",
        cwd=work,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # one line, from process 0
    assert resumed.stdout.count("wrote ") == 1 and "2 epochs" in resumed.stdout
    return work


@pytest.mark.slow
def test_replicas_start_from_the_flow_initialized_on_process_0s_images_only(runs):
    from distributed_checks import own_images

    seen = [torch.load(runs / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    assert seen[0]["digest"] == seen[1]["digest"]  # bit for bit the same replica
    config = tiny_config()
    for rank, expect_equal in ((0, True), (1, False)):
        model, _ = build_training(config, 0, CPU)
        architecture_of(config).initialize(model, own_images(rank, config.input_size))
        initialized = model.state_dict()
        actnorms = [key for key in initialized if key.endswith("actnorm.bias")]
        assert actnorms and bool(seen[1]["state"][actnorms[0].replace("bias", "initialized")])
        close = [
            torch.allclose(seen[1]["state"][key], initialized[key], atol=1e-5) for key in actnorms
        ]
        # process 0's init in every layer; process 1's images differ in brightness, which
        # the first ActNorm already normalizes away
        assert all(close) if expect_equal else not close[0], rank


@pytest.mark.slow
def test_the_replica_check_catches_one_process_that_drifted(runs):
    for rank in (0, 1):
        message = torch.load(runs / f"rank{rank}.pt", weights_only=False)["check"]
        assert message == (
            "after epoch 3 the model replicas of processes [1] differ from process 0's; "
            "the run cannot go on"
        )


@pytest.mark.slow
def test_two_processes_train_a_run_folder_written_once(runs, tiny_dataset):
    # every epoch ended with the replicas checked equal: else the command had failed
    for run in ("straight", "resnet"):
        card = json.loads((runs / run / "model_card.json").read_text())
        assert card["epochs"] == 2 and card["batch_size"] == 16
        assert json.loads((runs / run / "config.json").read_text())["world_size"] == 2
        metrics = pd.read_csv(runs / run / "metrics.csv")
        assert metrics["epoch"].tolist() == [1, 2]
        # 96 images split 48 / 48: the accuracy counts over both processes
        assert (metrics["train_accuracy"] * 96).round(6).mod(1).eq(0).all()
    state = torch.load(runs / "straight" / "checkpoint.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["noise_generators"]) == 2
    assert not torch.equal(*state["noise_generators"])  # each process its own noise
    flow = json.loads((runs / "straight" / "model_card.json").read_text())
    assert flow["accuracy"]["test"] >= 0.6


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_same_weights_as_an_uninterrupted_one(runs):
    straight = torch.load(runs / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(runs / "stopped" / "checkpoint.pt", weights_only=False)
    assert resumed["epoch"] == straight["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    a = pd.read_csv(runs / "straight" / "metrics.csv").drop(columns="seconds")
    b = pd.read_csv(runs / "stopped" / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_a_run_resumes_only_on_as_many_processes(runs, tiny_dataset, tmp_path):
    result = run_cli("--data", tiny_dataset, "--out", runs / "straight", "--resume")
    assert result.exit_code == 2
    assert "was trained on 2 processes, not one process; resume it on as many: " in result.output
    assert "torchrun --nproc-per-node 2" in result.output
    single = tmp_path / "single"
    shutil.copytree(runs / "straight", single)
    saved = json.loads((single / "config.json").read_text())
    del saved["world_size"]  # as a run folder from before torchrun was supported
    (single / "config.json").write_text(json.dumps(saved))
    options = TrainOptions(data=tiny_dataset, out=single, device=CPU, resume=True)
    with pytest.raises(UserError, match="trained in one process, not 2 processes; resume it in"):
        _plan_run(options, DatasetFolder(tiny_dataset), world_size=2)

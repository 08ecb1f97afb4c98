"""``xaistudy generate --executor ray``: shards as Ray tasks on a local 2-CPU instance.

One Ray instance serves the whole module (starting one costs seconds).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from generator.biases import load_spec
from generator.dataset import DatasetFolder
from generator.generate import generate_dataset
from generator.sharded import ShardJob, generate_sharded, render_shard
from xaistudy.cli import cli
from xaistudy.errors import UserError
from xaistudy.executors import RayExecutor

# one xdist worker runs the whole module, so its one Ray instance serves every test
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

SPEC = load_spec("iclr2022")
# val has fewer scenes than there are shards: some shards hold none of them
OPTIONS = {
    "n_train": 6, "n_val": 2, "n_test": 4, "size": 16, "seed": 11, "interventions": True,
    "train_pairs": ("bg_color", "position"), "batch_size": 4,
}  # fmt: skip


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def runs(ray_executor, tmp_path_factory):
    """The same dataset written by one local process and by Ray in 3 shards (kept)."""
    root = tmp_path_factory.mktemp("executors")
    local = generate_dataset(SPEC, root / "local", progress=False, **OPTIONS)
    run = generate_sharded(
        SPEC, root / "ray", ray_executor, shards=3, keep_shards=True, progress=False, **OPTIONS
    )
    return DatasetFolder(local), run


def assert_same_dataset(a: DatasetFolder, b: DatasetFolder) -> None:
    assert {k: v for k, v in a.meta.items() if k != "created"} == {
        k: v for k, v in b.meta.items() if k != "created"
    }
    for name in a.splits:
        one, other = a.split(name), b.split(name)
        assert one.params.equals(other.params), name
        np.testing.assert_array_equal(one.images, other.images)
        np.testing.assert_array_equal(one.masks, other.masks)


def test_ray_shards_merge_into_the_folder_a_local_run_writes(runs):
    local, run = runs
    assert (run.shards, run.rendered) == (3, 3)
    assert_same_dataset(local, DatasetFolder(run.path))
    assert "shard" not in DatasetFolder(run.path).meta


def test_a_rerun_renders_only_missing_or_unfinished_shards(runs, ray_executor):
    local, run = runs
    work = run.path.with_name(run.path.name + ".shards")
    shutil.rmtree(work / "shard-2-of-3")  # lost
    shutil.rmtree(work / "shard-3-of-3" / "train")  # half-written: no meta.json
    (work / "shard-3-of-3" / "meta.json").unlink()
    first = (work / "shard-1-of-3" / "meta.json").stat().st_mtime_ns
    again = generate_sharded(
        SPEC, run.path, ray_executor, shards=3, overwrite=True, keep_shards=True,
        progress=False, **OPTIONS,
    )  # fmt: skip
    assert (again.shards, again.rendered) == (3, 2)
    assert (work / "shard-1-of-3" / "meta.json").stat().st_mtime_ns == first  # kept as it was
    assert_same_dataset(local, DatasetFolder(again.path))


def test_a_task_that_fails_is_retried_and_a_user_error_is_not(ray_executor, tmp_path):
    """Item 1 raises on its first attempt, item 2's worker dies on its first attempt (as
    when the OS kills it); both are run again. A UserError is not."""
    refusals = tmp_path / "refusals"

    def flaky(item, folder):
        marker = folder / f"failed-{item}"
        if item and not marker.exists():
            marker.touch()
            if item == 1:
                raise OSError("the disk went away for a moment")
            os._exit(1)
        return item * 10

    assert ray_executor.map(flaky, [0, 1, 2], tmp_path) == [0, 10, 20]
    assert (tmp_path / "failed-1").exists() and (tmp_path / "failed-2").exists()

    def refuse(item, log):
        with open(log, "a") as handle:
            handle.write("x")
        raise UserError(f"item {item} is not allowed")

    with pytest.raises(UserError, match="item 7 is not allowed"):
        ray_executor.map(refuse, [7], refusals)
    assert refusals.read_text() == "x"  # one attempt: a bad input stays bad


def test_generate_command_runs_on_ray_and_refuses_mixed_options(ray_executor, tmp_path):
    runner = CliRunner()
    out = tmp_path / "data"
    args = ["generate", "--out", str(out), "--n-train", "4", "--n-val", "0", "--n-test", "2"]
    args += ["--size", "16", "--executor", "ray"]
    result = runner.invoke(cli, [*args, "--shards", "2"])
    assert result.exit_code == 0, result.output
    assert "rendered 2 of 2 shards" in result.output
    assert DatasetFolder(out).meta["splits"] == {"train": 4, "val": 0, "test": 2}
    assert not (tmp_path / "data.shards").exists()
    result = runner.invoke(cli, [*args, "--shard", "1/2", "--overwrite"])
    assert result.exit_code != 0 and "give one of them" in result.output
    result = runner.invoke(cli, [*args[:-2], "--shards", "2"])
    assert result.exit_code != 0 and "go with --executor ray" in result.output


def test_an_unreachable_cluster_is_named_with_how_to_start_one(tmp_path):
    args = ["generate", "--out", str(tmp_path / "d"), "--executor", "ray", "--address"]
    result = CliRunner().invoke(cli, [*args, "127.0.0.1:9"])
    assert result.exit_code != 0
    assert "no Ray cluster answers at 127.0.0.1:9" in result.output
    assert "ray start --head --port 6379" in result.output
    result = CliRunner().invoke(cli, [*args, "somewhere"])
    assert "must look like HOST:PORT" in result.output


def test_a_shard_task_that_cannot_see_the_work_folder_says_so(tmp_path):
    job = ShardJob(SPEC, tmp_path / "elsewhere", 1, 2, 4, 0, 0, 16, 0, False, False, True, 4)
    with pytest.raises(UserError, match="cannot see the work folder .*shared|mounts"):
        render_shard(job)

"""``xaistudy generate --executor ray``: a dataset rendered as shards, in parallel.

The driver cuts the dataset into N shards (:func:`generator.generate.shard_rows`); each is
one task, :func:`render_shard`, that renders its shard folder under the work folder
``<out>.shards/`` and publishes it atomically (:class:`generator.dataset.DatasetWriter`).
The driver then merges them into ``out`` (:func:`generator.generate.merge_shards`): the
folder an unsharded run writes, pixel for pixel. Then the work folder goes.

Tasks send back only whether they rendered, never arrays: on a cluster every host must
see the work folder at the same path (a shared filesystem). A shard folder that is
already complete is kept, so a re-run after a crash renders only the missing shards, and
a retried task never finds half a shard (the writer publishes whole folders only).
"""

from __future__ import annotations

import math
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from generator.biases import BiasSpec
from generator.dataset import DatasetFolder
from generator.generate import (
    DEFAULT_BATCH_SIZE,
    check_pair_factors,
    generate_dataset,
    merge_shards,
    split_counts,
)
from xaistudy.errors import UserError
from xaistudy.executors import Executor
from xaistudy.vocabulary import FACTORS

# A task costs a second or two before it renders (a fresh worker imports torch); at about
# 270 images per CPU-second (docs/renderer.md) 2000 scenes keep that under a tenth.
MIN_SCENES_PER_SHARD = 2000
# More shards than cores balance uneven hosts and make a crash cost less; this many per core.
SHARDS_PER_CPU = 4


@dataclass(frozen=True)
class ShardJob:
    """One shard of a dataset: what :func:`generate_dataset` needs to render it."""

    spec: BiasSpec
    work: Path  # the shard work folder every host sees
    index: int  # 1-based
    count: int
    n_train: int
    n_val: int
    n_test: int
    size: int
    seed: int
    interventions: bool
    png: bool
    antialias: bool
    batch_size: int
    train_pairs: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return self.work / f"shard-{self.index}-of-{self.count}"


@dataclass(frozen=True)
class ShardedRun:
    """What :func:`generate_sharded` did: the merged folder, its shard count and how many
    shards this run rendered (the others were complete from an earlier run)."""

    path: Path
    shards: int
    rendered: int


def default_shard_count(scenes: int, cpus: int) -> int:
    """Enough shards to keep every core busy, none smaller than ``MIN_SCENES_PER_SHARD``."""
    return max(1, min(math.ceil(scenes / MIN_SCENES_PER_SHARD), SHARDS_PER_CPU * cpus))


def shard_is_complete(job: ShardJob) -> bool:
    """Whether ``job.folder`` is a published shard of exactly this job."""
    try:
        meta = DatasetFolder(job.folder).meta
    except UserError:  # missing, or never published
        return False
    counts = meta.get("counts", {})
    made = (
        meta.get("shard") == [job.index, job.count]
        and meta.get("spec") == job.spec.to_dict()
        and meta.get("seed") == job.seed
        and meta.get("size") == job.size
        and meta.get("antialias") == job.antialias
        and meta.get("interventions") == (list(FACTORS) if job.interventions else [])
        and meta.get("train_pairs", []) == list(job.train_pairs)
        and [counts.get(s) for s in ("train", "val", "test")]
        == [job.n_train, job.n_val, job.n_test]
    )
    if made and job.png:
        written = meta.get("splits", {})
        return all((job.folder / name / "png").is_dir() for name, n in written.items() if n)
    return made


def render_shard(job: ShardJob) -> bool:
    """Render one shard folder unless it is complete already; True when it rendered.

    Runs as a task anywhere in the cluster: on the CPU, one renderer process (a task
    holds one core), writing only into its own shard folder.
    """
    if not job.work.is_dir():
        raise UserError(
            f"shard {job.index}/{job.count} runs on host {socket.gethostname()}, which cannot "
            f"see the work folder {job.work}: on a cluster --out must lie on a filesystem "
            "every host mounts at the same path (NFS or a cluster filesystem)"
        )
    if shard_is_complete(job):
        return False
    generate_dataset(
        job.spec,
        job.folder,
        n_train=job.n_train,
        n_val=job.n_val,
        n_test=job.n_test,
        size=job.size,
        seed=job.seed,
        interventions=job.interventions,
        train_pairs=job.train_pairs,
        device=torch.device("cpu"),
        png=job.png,
        shard=(job.index, job.count),
        overwrite=True,  # a stale shard of other settings
        antialias=job.antialias,
        batch_size=job.batch_size,
        progress=False,
        workers=1,
    )
    return True


def generate_sharded(
    spec: BiasSpec,
    out: Path,
    executor: Executor,
    *,
    shards: int | None = None,
    n_train: int = 10_000,
    n_val: int = 1_000,
    n_test: int = 1_000,
    size: int = 128,
    seed: int = 0,
    interventions: bool = False,
    train_pairs: Sequence[str] = (),
    png: bool = False,
    overwrite: bool = False,
    antialias: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_shards: bool = False,
    progress: bool = True,
) -> ShardedRun:
    """Render the dataset :func:`generate_dataset` writes as ``shards`` tasks on
    ``executor`` (None: :func:`default_shard_count`) and merge them into ``out``.

    The shards live in ``<out>.shards/`` until merged (``keep_shards``: kept after);
    ``progress`` shows a bar over the finished shards.
    """
    counts = split_counts(n_train, n_val, n_test, size)
    out = Path(out).resolve()  # tasks may run in another working folder, or host
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UserError(
            f"output folder {out} exists and is not empty; pass --overwrite to replace it"
        )
    train_pairs = check_pair_factors(spec, train_pairs)
    scenes = sum(counts.values()) + (len(FACTORS) * n_test if interventions else 0)
    scenes += n_train if train_pairs else 0
    if shards is None:
        shards = default_shard_count(scenes, executor.cpus)
    if shards < 1:
        raise UserError(f"--shards must be at least 1, got {shards}")
    work = out.with_name(out.name + ".shards")
    work.mkdir(parents=True, exist_ok=True)
    jobs = [
        ShardJob(
            spec,
            work,
            index,
            shards,
            n_train,
            n_val,
            n_test,
            size,
            seed,
            interventions,
            png,
            antialias,
            batch_size,
            train_pairs,
        )  # fmt: skip
        for index in range(1, shards + 1)
    ]
    rendered = executor.map(render_shard, jobs, progress="shards" if progress else None)
    path = merge_shards([job.folder for job in jobs], out, overwrite=overwrite)
    if not keep_shards:
        shutil.rmtree(work)
    return ShardedRun(path, shards, sum(rendered))

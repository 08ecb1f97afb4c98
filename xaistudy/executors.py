"""Where independent pieces of work run: inline in this process, or as Ray tasks.

``xaistudy generate`` (its shards) and ``xaistudy explain`` (its renderings and its
conditions) hand their work to an :class:`Executor` through one call,
``executor.map(fn, items, *shared)``: ``fn(item, *shared)`` for every item, results in
item order. ``fn`` must be a module-level function (Ray sends it by reference) and pure:
a task may run twice (Ray retries one whose worker died or that raised), so it writes
only whole files it publishes atomically, or nothing.

Ray is imported only when chosen (``--executor ray``). Without ``--address`` a local Ray
instance is started on this machine's cores; with one, this process joins that cluster
(``ray start --head`` on one host, docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from xaistudy.errors import UserError

EXECUTORS = ("local", "ray")
# Retries of a Ray task whose worker died or that raised anything but a UserError.
RAY_RETRIES = 2
# The local instance's shared memory for task arguments and results (allocated lazily):
# tasks write their own files, so only explain's inputs and images pass through it.
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
# How long joining a cluster may take to answer before we say it is not there.
CONNECT_TIMEOUT_S = 5.0


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Executor(Protocol):
    """Runs ``fn(item, *shared)`` for every item; results in item order."""

    name: str
    remote: bool  # whether tasks may run on other hosts (file outputs: shared filesystem)

    @property
    def cpus(self) -> int: ...

    def map(self, fn: Callable, items: Sequence, *shared: Any, progress: str | None = None) -> list:
        """``[fn(item, *shared) for item in items]``; ``progress``: a bar's label, or
        None for no bar."""

    def close(self) -> None: ...


class LocalExecutor:
    """Everything inline, in this process, in order: today's behaviour."""

    name = "local"
    remote = False

    @property
    def cpus(self) -> int:
        return usable_cores()

    def map(self, fn: Callable, items: Sequence, *shared: Any, progress: str | None = None) -> list:
        from tqdm import tqdm

        bar = tqdm(items, desc=progress, unit="task", disable=progress is None)
        return [fn(item, *shared) for item in bar]

    def close(self) -> None:
        """Nothing to release: no processes or cluster were started."""


@dataclass(frozen=True)
class _Refused:
    """A task's UserError, sent back as a value so that Ray does not retry it."""

    message: str


def _run_task(fn: Callable, item: Any, *shared: Any) -> Any:
    """A Ray task's body: ``fn(item, *shared)`` with one torch thread (one task per core;
    torch's own threads would fight the other tasks for it)."""
    import torch

    torch.set_num_threads(1)
    try:
        return fn(item, *shared)
    except UserError as exc:
        return _Refused(str(exc))


def parse_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``, or a UserError saying what is allowed."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r} must look like HOST:PORT, e.g. 10.0.0.5:6379")
    return host, int(port)


def _check_reachable(address: str) -> None:
    """Fail in seconds with a clear message, not after Ray's long reconnect loop."""
    host, port = parse_address(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise _unreachable(address, exc) from None


def _unreachable(address: str, reason: object) -> UserError:
    return UserError(
        f"no Ray cluster answers at {address} ({reason}). Start one on that host with "
        "'ray start --head --port 6379' (and 'ray start --address HOST:6379' on the "
        "others), or leave out --address to run on this machine alone"
    )


class RayExecutor:
    """Ray tasks, one CPU each, on a local instance or on the cluster at ``address``.

    Arguments given as ``shared`` go into Ray's object store once per :meth:`map` and reach
    every task from there (a model, the test images), not once per task.
    """

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home
        try:
            import ray
        except ImportError:
            raise UserError(
                "--executor ray needs the ray package: pip install 'ray>=2.60,<3'"
            ) from None
        self._ray = ray
        self.address = address
        if address is not None:
            _check_reachable(address)
        self._owner = not ray.is_initialized()
        if not self._owner:  # this process already joined (tests; a notebook): reuse it
            return
        if address is None:
            ray.init(
                address="local",
                num_cpus=num_cpus or usable_cores(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
            return
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError) as exc:
            raise _unreachable(address, exc) from None

    @property
    def cpus(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable, items: Sequence, *shared: Any, progress: str | None = None) -> list:
        from tqdm import tqdm

        ray = self._ray
        task = ray.remote(_run_task).options(
            num_cpus=1, max_retries=RAY_RETRIES, retry_exceptions=True
        )
        shared_refs = [ray.put(value) for value in shared]
        refs = [task.remote(fn, item, *shared_refs) for item in items]
        pending = list(refs)
        with tqdm(total=len(refs), desc=progress, unit="task", disable=progress is None) as bar:
            while pending:  # finished, failed for good or refused: each counts once
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        results = ray.get(refs)
        for result in results:
            if isinstance(result, _Refused):
                raise UserError(result.message)
        return results

    def close(self) -> None:
        if self._owner and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(name: str, address: str | None = None) -> Executor:
    """The executor called ``name`` (``EXECUTORS``); ``address`` only for ``ray``."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}: allowed are {', '.join(EXECUTORS)}")
    if name == "local":
        if address is not None:
            raise UserError("--address names a Ray cluster; it goes with --executor ray")
        return LocalExecutor()
    return RayExecutor(address)


@contextmanager
def executor(name: str = "local", address: str | None = None) -> Iterator[Executor]:
    """:func:`make_executor`, closed (a local Ray instance stopped) when the block ends."""
    chosen = make_executor(name, address)
    try:
        yield chosen
    finally:
        chosen.close()

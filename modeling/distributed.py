"""Training on several processes, on one machine or several, as ``torchrun`` starts them.

``torchrun`` starts one process per device and tells each its place through the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). :func:`launched_processes` reads
it; :func:`process_group` joins the processes (gloo on the CPU, NCCL on CUDA, each process
on ``cuda:LOCAL_RANK``) for the length of a run. Without ``torchrun`` there is one
process and nothing here does anything: a plain ``xaistudy train`` runs as it always did.

Each process holds a replica of the model; :class:`DistributedModel` (torch's
``DistributedDataParallel``) averages the gradients of every step over them, so the
replicas stay equal, which :func:`check_replicas_agree` verifies after every epoch.
Process 0 (the *main* process) reads and writes the run folder and broadcasts what it
read (:func:`from_main`), so only its machine needs the run folder; every machine needs
the dataset.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from xaistudy.errors import UserError

T = TypeVar("T")

# How long a process waits for the others, e.g. while process 0 evaluates the model and
# computes the ceiling at the end of a run.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a run: ``rank`` in
    ``0..world_size - 1``, ``local_rank`` among those on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process reads and writes the run folder and reports."""
        return self.rank == 0


def launched_processes() -> Processes:
    """The processes ``torchrun`` started, from its environment; one process otherwise."""
    if not dist.is_torchelastic_launched():
        return Processes()
    return Processes(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )


@contextmanager
def process_group(processes: Processes, device: torch.device) -> Iterator[torch.device]:
    """Join the other processes for the block; yields this process's device.

    On CUDA each process takes ``cuda:LOCAL_RANK``. A group that already exists (a
    caller set one up) is used and left as it is.
    """
    if device.type == "cuda" and processes.distributed:
        if processes.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"torchrun started process {processes.local_rank + 1} on this machine but "
                f"it has {torch.cuda.device_count()} CUDA devices; start at most one process "
                "per device (--nproc-per-node)"
            )
        device = torch.device("cuda", processes.local_rank)
        torch.cuda.set_device(device)
    if not processes.distributed or dist.is_initialized():
        yield device
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        yield device
    finally:
        dist.destroy_process_group()


class DistributedModel(DistributedDataParallel):
    """``DistributedDataParallel`` that answers for the wrapped model's other attributes
    (``config``, ``bits_per_dim``, ...), so the architectures' ``batch_loss`` runs on it
    unchanged.

    Only a call of the model itself goes through DDP's forward, which prepares the
    averaging of the gradients in the backward pass; that is the one call ``batch_loss``
    makes for the network's output. Parameters a method uses besides (the flow's
    classifier weight in ``bits_per_dim``) are averaged all the same: DDP hooks each
    parameter's gradient, wherever it came from.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(model: nn.Module, processes: Processes, device: torch.device) -> nn.Module:
    """``model`` as its architecture's loss should call it: wrapped in DDP when there are
    several processes, else as it is."""
    if not processes.distributed:
        return model
    with torch.no_grad():
        for parameter in model.parameters():
            # A channels-last (1, C, 1, 1) parameter (ActNorm's) gets its gradient with
            # the ordinary strides; DDP would copy it into its bucket every step, warning
            # each time. Its values stay as they are.
            if parameter.dim() == 4 and parameter.shape[0] == 1 and parameter.shape[2:] == (1, 1):
                parameter.data = parameter.data.clone(memory_format=torch.contiguous_format)
    return DistributedModel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def from_main(processes: Processes, compute: Callable[[], T]) -> T:
    """``compute()`` run by process 0, its result on every process.

    A :class:`UserError` it raises is raised on every process, so that none waits for
    the others in vain.
    """
    if not processes.distributed:
        return compute()
    box: list[Any] = [None]
    if processes.is_main:
        try:
            box = [(True, compute())]
        except UserError as exc:
            box = [(False, exc)]
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def gather(processes: Processes, value: T) -> list[T]:
    """Every process's ``value``, in rank order (``[value]`` for one process)."""
    if not processes.distributed:
        return [value]
    values: list[Any] = [None] * processes.world_size
    dist.all_gather_object(values, value)
    return values


def sum_over_processes(processes: Processes, values: dict[str, float]) -> dict[str, float]:
    """Each of ``values`` summed over the processes (float64, exact for counts)."""
    if not processes.distributed:
        return values
    total = torch.tensor(list(values.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return dict(zip(values, total.tolist(), strict=True))


def all_true(processes: Processes, flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every process."""
    if not processes.distributed:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def broadcast_state(processes: Processes, model: nn.Module) -> None:
    """Every parameter and buffer of ``model`` set to process 0's, in place."""
    if not processes.distributed:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def broadcast_buffers(processes: Processes, model: nn.Module) -> None:
    """Every buffer (BatchNorm's running statistics) set to process 0's, in place.

    DDP does so before each forward pass; after an epoch's last step each replica holds
    the statistics of its own last batch until this is called.
    """
    if not processes.distributed:
        return
    with torch.no_grad():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def state_digest(model: nn.Module) -> str:
    """A hash of the exact bits of every parameter and buffer of ``model``."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
        digest.update(flat.cpu().numpy().tobytes())
    return digest.hexdigest()


def check_replicas_agree(processes: Processes, model: nn.Module, epoch: int) -> None:
    """Raise if the processes' replicas of ``model`` differ in any bit.

    Averaged gradients keep them equal; replicas that drifted apart (one initialized on
    its own data, a step one process skipped) would go on training different models.
    """
    digests = gather(processes, state_digest(model))
    if len(set(digests)) > 1:
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        raise RuntimeError(
            f"after epoch {epoch} the model replicas of processes {differing} differ from "
            "process 0's; the run cannot go on"
        )

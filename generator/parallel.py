"""Rendering on several CPU cores: forked worker processes with one torch thread each.

Torch's own threads scale poorly on a few cores; processes do not wait on each other. The
workers are forked, so they start in a fraction of a second and inherit the renderer, the
scenes and the output arrays. Those lie in shared memory (the dataset's memory-mapped
files, or anonymous shared memory), so each worker writes its rows in place and nothing
is copied back through a pipe. Workers also keep
glibc from returning freed memory to the OS between batches (see
:func:`_keep_freed_memory`).
"""

from __future__ import annotations

import ctypes
import math
import mmap
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING

import numpy as np
import torch

from xaistudy.errors import UserError
from xaistudy.executors import usable_cores

if TYPE_CHECKING:
    from generator.render import Renderer

# a worker process pays for itself only with this many scenes to render
MIN_SCENES_PER_WORKER = 128
# On the CPU larger batches only cost memory: 64 scenes keep every buffer under glibc's
# largest heap-served allocation (see _keep_freed_memory) and render fastest.
CPU_BATCH = 64


def _can_fork() -> bool:
    """Whether this process may fork renderer workers (daemonic processes may not)."""
    forkable = "fork" in multiprocessing.get_all_start_methods()
    return forkable and not multiprocessing.current_process().daemon


def worker_count(workers: int | None, device: torch.device, scenes: int) -> int:
    """How many processes render ``scenes`` scenes: ``workers`` if given, else one per
    usable core on the CPU when every worker gets ``MIN_SCENES_PER_WORKER`` scenes (torch's
    threads scale poorly on a few cores, processes with one thread each do not), else 1."""
    if workers is not None:
        if int(workers) != workers or workers < 1:
            raise UserError(f"workers must be a positive integer, got {workers}")
        if workers > 1 and device.type != "cpu":
            raise UserError(f"workers > 1 renders on the CPU only, not on {device}")
        if workers > 1 and not _can_fork():
            raise UserError("workers > 1 needs to fork processes, which this OS or process cannot")
        return int(workers)
    if device.type != "cpu" or not _can_fork():
        return 1
    return max(1, min(usable_cores(), scenes // MIN_SCENES_PER_WORKER))


# The renderer and scene batch of a worker process, inherited from its parent by fork.
_WORKER_STATE: dict = {}


def _keep_freed_memory() -> None:
    """Let glibc serve allocations up to 32 MiB from its heap and keep what is freed.

    The renderer allocates and frees the same large buffers every batch; by default glibc
    maps each one fresh from the OS and returns it on free, and touching fresh pages costs
    a page fault each: 15-25 % of the CPU time. Only worker processes, which the renderer
    owns, are changed; elsewhere (no glibc) this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's largest allowed value
    mallopt(m_trim_threshold, 2**30)


def shared_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zeroed numpy array in anonymous shared memory: what forked workers write into it,
    their parent sees."""
    count = math.prod(shape)
    buffer = mmap.mmap(-1, max(1, count * np.dtype(dtype).itemsize))  # MAP_SHARED
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


def is_shared(array: np.ndarray) -> bool:
    """Whether writes to ``array`` in a forked child reach its parent: a memory map opened
    for writing (``np.memmap`` modes r+ and w+) or an array over a shared ``mmap``."""
    if isinstance(array, np.memmap):
        return array.mode in ("r+", "w+")
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer's view of the buffer
        base = base.obj
    return isinstance(base, mmap.mmap)


def _start_worker(renderer: Renderer, batch: dict[str, torch.Tensor], outputs, threads: int):
    torch.set_num_threads(threads)
    _keep_freed_memory()
    _WORKER_STATE.update(renderer=renderer, batch=batch, outputs=outputs)


def _render_rows(start: int, stop: int) -> int:
    """Render rows ``start:stop`` of the inherited batch in a worker, straight into the
    shared output arrays; returns how many rows it rendered."""
    part = {k: v[start:stop] for k, v in _WORKER_STATE["batch"].items()}
    image_t, mask_t = _WORKER_STATE["renderer"].render(part)
    images, masks = _WORKER_STATE["outputs"]
    images[start:stop] = image_t.numpy()
    masks[start:stop] = mask_t.numpy()
    return stop - start


def render_in_workers(
    renderer: Renderer,
    batch: dict[str, torch.Tensor],
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    workers: int,
    on_rendered: Callable[[int], None],
) -> None:
    """Fill ``images`` (N, H, W, 3) and ``masks`` (N, H, W), both shared (:func:`is_shared`),
    from ``workers`` forked processes with ``torch.get_num_threads() // workers`` threads
    each (at least one). ``on_rendered(count)`` follows the progress.

    Work goes out in slices of at most ``batch_size`` rows, small enough that every worker
    gets some; pixels do not depend on how scenes are batched, so the result equals the
    single-process one.
    """
    if not (is_shared(images) and is_shared(masks)):
        raise ValueError("worker processes need output arrays in shared memory")
    n = images.shape[0]
    step = max(1, min(batch_size, math.ceil(n / (2 * workers))))
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("fork")
    state = (renderer, batch, (images, masks), threads)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=state
    ) as pool:
        futures = [pool.submit(_render_rows, s, min(s + step, n)) for s in range(0, n, step)]
        try:
            for future in as_completed(futures):
                on_rendered(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise

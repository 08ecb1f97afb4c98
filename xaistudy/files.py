"""Files that appear whole or not at all, secrets kept in files, and a stopwatch.

Every stage publishes its output the same way: write to a temporary name beside the
target, then rename over it. A crash, a full disk or Ctrl-C leaves the old file (or no
file), never half a new one that looks complete.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name to write ``path``'s new content to, for writers that want a path
    (``torch.save``, ``savefig``): renamed over ``path`` when the block ends, removed if
    it raises."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_text(data: Any) -> str:
    """The project's JSON layout: indented, keys sorted, one trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json_text(data))


def publish_folder(staging: Path, out: Path) -> Path:
    """Move a complete ``staging`` folder to ``out``, replacing what was there."""
    staging, out = Path(staging), Path(out)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(staging, out)
    return out


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``out``, published to ``out`` when the block ends.

    On any exception (Ctrl-C included) the temporary folder is removed and ``out`` is
    left as it was.
    """
    out = Path(out)
    staging = temporary_name(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def kept_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_hex(32)) -> str:
    """The secret kept in ``path``; the first call makes it with ``make()`` and keeps it.

    The file is readable by its owner only. It is written under a temporary name and
    linked to ``path``, which fails if ``path`` exists: of several processes starting at
    once, one secret wins, whole, and every caller reads that one.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(path)
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(make() + "\n")
            with suppress(FileExistsError):  # another process kept one first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


class Stopwatch:
    """Wall-clock seconds per named phase; a phase timed twice adds up.

    >>> watch = Stopwatch()
    >>> with watch("load"):
    ...     pass
    >>> sorted(watch.seconds)
    ['load']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

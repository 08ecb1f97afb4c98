"""Files that appear whole or not at all, and a stopwatch for a stage's phases.

Every stage publishes its output the same way: write to a temporary name beside the
target, then rename over it. A crash, a full disk or Ctrl-C leaves the old file (or no
file), never half a new one that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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

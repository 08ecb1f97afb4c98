"""What the benchmark scripts read off the machine beside their own figures: the load
(a busy machine makes every speed figure low), CPU time and peak memory. Imported by the
scripts run as ``python bench/<name>.py``, whose folder is then on the path."""

from __future__ import annotations

import os
import resource


def load() -> str:
    """The 1-minute load average, or '?' where the OS does not tell."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def cpu_seconds() -> float:
    """User and system CPU time of this process and its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Max resident set size in MiB of this process (RUSAGE_SELF) or of the largest
    finished child (RUSAGE_CHILDREN); Linux reports KiB."""
    return resource.getrusage(who).ru_maxrss / 1024

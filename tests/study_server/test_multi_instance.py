"""Several server instances on one PostgreSQL database, as hosts behind a load balancer:
bench/load.py's multi-instance run (docs/deploy.md, "Several instances on one database")
at a scale that fits CI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from server_helpers import PG_ADMIN

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _bench_load():
    """bench/load.py as a module (the bench is a script, not a package)."""
    if "bench_load" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # where its dataclasses look up their module
        spec.loader.exec_module(module)
    return sys.modules["bench_load"]


def test_participants_of_a_killed_instance_finish_on_another(bundle_dir):
    load = _bench_load()
    n = 24
    args = load.parse_args(
        ["--start-server", "--db", PG_ADMIN, "--bundle", str(bundle_dir)]
        + ["--instances", "2", "--workers", "1", "--participants", str(n)]
        # A short reading pause: at the kill most participants are between requests, and
        # their next one, refused, goes to the survivor with their cookie.
        + ["--think-time", "0.5", "--ramp", "1", "--kill-instance"]
    )
    # Both instances migrate the fresh database at the same moment, as hosts started
    # together do; a migration that fails stops the bench (SystemExit) before any request.
    report = load.benchmark(args)

    # Instance 0 served its share of the arrivals, then died; the survivor took over.
    assert report.killed == 0 and report.served[0] > 0
    assert report.served_after_kill[1] > 0
    # Its participants moved to the survivor with their session cookies: a page opened
    # there with the cookie the dead instance signed was shown (one SECRET_KEY; an
    # unknown session gets a 403), and every participant finished, each page once, in order.
    assert report.moved > 0 and report.carried > 0
    assert not report.errors
    assert report.completed == n and report.in_order == n
    # No answer that got a success response was lost, and none was stored twice.
    assert report.lost == 0 and report.answers_stored == report.answers_expected
    # The assignment lock held across instances: 24 arrivals, three conditions, 8 each.
    assert sorted(report.conditions.values()) == [8, 8, 8]
    assert report.ok

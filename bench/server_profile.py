"""Where the study server spends its CPU on a participant's request.

    python bench/server_profile.py [--participants 30] [--bundle DIR] [--db URL] [--top 25]

Simulated participants walk the whole study in-process (``app.test_client()``: no HTTP,
no gunicorn, one thread), on SQLite in a temporary folder unless ``--db`` names another
database, with the fixture bundle unless ``--bundle`` names one. Prints the server's time
per request (the time inside the app, the simulated client's HTML parsing excluded), the
share of it in each part of a request (templates, database, forms and CSRF, sessions,
languages), and the functions with the most time of their own, from cProfile.
``bench/load.py`` measures the same cost under gunicorn over HTTP; this one says where
it goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

# Parts of a request, by where their functions live (file path fragments).
PARTS = {
    "templates (jinja2)": ("jinja2/",),
    "database (sqlalchemy, sqlite3, psycopg)": ("sqlalchemy/", "sqlite3", "psycopg"),
    "forms and CSRF (wtforms, flask_wtf)": ("wtforms/", "flask_wtf/"),
    "sessions and cookies (itsdangerous)": ("itsdangerous/", "flask/sessions.py"),
    "languages (babel, flask_babel)": ("babel/", "flask_babel/"),
    "rate limits (limits, flask_limiter)": ("limits/", "flask_limiter/"),
    "werkzeug (routing, requests, responses)": ("werkzeug/",),
    "the study server's own code": ("study_server/",),
}


def build_app(bundle: Path | None, db_url: str | None, folder: Path):
    from make_bundle import make_fixture_bundle

    from study_server import create_app

    if bundle is None:
        bundle = make_fixture_bundle(folder / "bundle")
    os.environ.setdefault("XAISTUDY_SECRET_KEY", "bench-" + "x" * 40)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url or f"sqlite:///{folder / 'bench.sqlite'}",
            "XAISTUDY_BUNDLE": str(bundle),
            "XAISTUDY_ARRIVAL_LIMITS": "off",
            "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": True,
        }
    )
    import flask_migrate

    with app.app_context():
        flask_migrate.upgrade()
    return app


def _answer(key: str, condition: str) -> tuple[int, str]:
    return (5 if key == "arm_position" else 2, f"because of {key}")


def walk(app, n: int, first: int = 0) -> list[float]:
    """``n`` participants through the study; the time of each request inside the app."""
    from simulation.client import ParticipantClient
    from simulation.transport import FlaskTransport

    latencies: list[float] = []
    for i in range(first, first + n):
        transport = FlaskTransport(app)
        ParticipantClient(transport, prolific_pid=f"PROFILE{i:06d}").run(_answer)
        latencies += transport.latencies
    return latencies


def part_shares(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per part of a request (PARTS), from the profile."""
    seconds = dict.fromkeys(PARTS, 0.0)
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        for part, fragments in PARTS.items():
            if any(fragment in filename for fragment in fragments):
                seconds[part] += tottime
                break
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite, temporary)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(args.bundle, args.db, Path(tmp))
        walk(app, 3, first=10**5)  # warm up: templates compiled, catalogs and bundle read
        plain = walk(app, args.participants, first=10**6)  # the same walk, unprofiled
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        latencies = walk(app, args.participants)
        profiler.disable()
        wall = time.perf_counter() - start

    print(
        f"{args.participants} participants, {len(plain)} requests: the server takes "
        f"{1000 * sum(plain) / len(plain):.2f} ms per request (median "
        f"{1000 * statistics.median(plain):.2f} ms); under the profiler "
        f"{1000 * sum(latencies) / len(latencies):.2f} ms ({wall:.1f} s with the client)"
    )
    stats = pstats.Stats(profiler)
    shares = part_shares(stats)
    total = sum(t for t in (v[2] for v in stats.stats.values()))
    print("\nown time by part (all of the run, the client's parsing included in 'other'):")
    for part, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {part:44s} {1000 * seconds / len(latencies):6.2f} ms/request")
    print(f"  {'other':44s} {1000 * (total - sum(shares.values())) / len(latencies):6.2f} ms")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
    print("\n" + out.getvalue().strip())


if __name__ == "__main__":
    main()

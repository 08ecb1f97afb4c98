"""Whether the researcher's pages slow the participants down, with a large study.

    python bench/admin.py [--participants 11000] [--seconds 20] [--workers 2]
    python bench/admin.py --db postgresql://postgres@127.0.0.1:5432/postgres

Fills a fresh database (SQLite in a temporary folder unless ``--db`` names a PostgreSQL
server, where a database is created and dropped afterwards) with ``--participants``
participants, each with the pages, answers and checks of a whole run, and serves it with
gunicorn (``gthread``, as ``xaistudy serve``). Then, twice for ``--seconds`` each:
participants walk the study one after another (every page one POST and one GET), first
alone, then while a researcher's script fetches, as fast as it can, the dashboard, its
live figures (``/admin/live.json``), a page of the filtered participant table and the
full ``pages.csv`` export. Prints a participant's page latency (p50/p95/max) in both
phases and how long each researcher's page took.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import (  # noqa: E402
    _drop_postgres,
    _fresh_postgres,
    percentile,
    start_server,
    study_that_fits,
)

from simulation.client import ParticipantClient  # noqa: E402
from simulation.transport import HttpTransport  # noqa: E402
from study_server.study import load_study  # noqa: E402

ADMIN_PASSWORD = "bench-admin"
ADMIN_PAGES = (
    "/admin/",
    "/admin/live.json",
    "/admin/participants?status=completed&sort=duration&page=40",
    "/admin/export/pages.csv",
)


def fill(database_url: str, study_path: Path, n: int) -> None:
    """``n`` participants with a whole run's pages, answers and checks, in bulk (the
    server has created the study's row)."""
    from sqlalchemy import create_engine, insert

    from study_server.config import normalize_database_url
    from study_server.models import Answer, CheckAnswer, PageVisit, Participant, utcnow
    from study_server.pages import page_sequence

    study = load_study(study_path)
    pages = [page.name for page in page_sequence(study)]
    now = utcnow()
    statuses = ("completed", "completed", "completed", "screened_out", "returned", "started")
    engine = create_engine(normalize_database_url(database_url))
    with engine.begin() as connection:
        for start in range(0, n, 1000):
            numbers = range(start, min(n, start + 1000))
            began = [now - timedelta(hours=3, seconds=k) for k in numbers]
            rows = connection.execute(
                insert(Participant).returning(Participant.id, sort_by_parameter_order=True),
                [
                    {
                        "study": study.slug,
                        "prolific_pid": f"FILL{k:06d}",
                        "condition": study.condition_names[k % len(study.conditions)],
                        "status": statuses[k % len(statuses)],
                        "page": "complete",
                        "attribute_order": "|".join(study.attribute_keys),
                        "attention_passed": k % 9 != 0,
                        "comprehension_attempts": 1,
                        "started_at": at,
                        "last_seen_at": at + timedelta(minutes=20),
                        "completed_at": at + timedelta(minutes=15 + k % 10),
                    }
                    for k, at in zip(numbers, began, strict=True)
                ],
            ).all()
            people = [(row.id, at) for row, at in zip(rows, began, strict=True)]
            connection.execute(
                insert(PageVisit),
                [
                    {
                        "participant_id": pid,
                        "page": page,
                        "entered_at": at + timedelta(seconds=40 * k),
                        "left_at": at + timedelta(seconds=40 * k + 10 + (pid + k) % 30),
                    }
                    for pid, at in people
                    for k, page in enumerate(pages)
                ],
            )
            connection.execute(
                insert(Answer),
                [
                    {
                        "participant_id": pid,
                        "attribute": key,
                        "position": k,
                        "rating": 1 + (pid + k) % 5,
                        "reason": "the pictures change with it",
                        "answered_at": at,
                    }
                    for pid, at in people
                    for k, key in enumerate(study.attribute_keys)
                ],
            )
            connection.execute(
                insert(CheckAnswer),
                [
                    {
                        "participant_id": pid,
                        "kind": "attention",
                        "question": check.id,
                        "attempt": 1,
                        "answer": check.correct,
                        "correct": True,
                        "answered_at": at,
                    }
                    for pid, at in people
                    for check in study.attention_checks
                ],
            )
    engine.dispose()


def participants_walk(base: str, study, seconds: float, tag: str) -> list[float]:
    """Participants one after another for ``seconds``; every request's latency."""
    transport_latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        transport = HttpTransport(base, timeout=120)
        ParticipantClient(transport, prolific_pid=f"{tag}{i:05d}", study=study).run(
            answer=lambda key, condition: (4, "a reason")
        )
        transport_latencies += transport.latencies
        i += 1
    return transport_latencies


def researcher(base: str, stop: threading.Event, timings: dict[str, list[float]]) -> None:
    import requests

    session = requests.Session()
    login = session.get(f"{base}/admin/login", timeout=60).text
    token = login.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    session.post(f"{base}/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD})
    while not stop.is_set():
        for path in ADMIN_PAGES:
            start = time.perf_counter()
            response = session.get(base + path, timeout=300)
            response.raise_for_status()
            timings.setdefault(path, []).append(time.perf_counter() - start)
            if stop.is_set():
                return


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (
        f"p50 {1000 * percentile(ordered, 0.5):.0f} ms, p95 {1000 * percentile(ordered, 0.95):.0f}"
        f" ms, max {1000 * ordered[-1]:.0f} ms ({len(ordered)} requests)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=11000)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--db", help="a PostgreSQL server to create the database on")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="xaistudy-bench-admin-") as tmp:
        workdir = Path(tmp)
        study_path = study_that_fits(args.participants + 10000, workdir)
        fresh = None
        database_url = f"sqlite:///{workdir / 'bench.sqlite'}"
        if args.db:
            database_url, fresh = _fresh_postgres(args.db)
        server = None
        try:
            options = SimpleNamespace(
                bundle=None, study=study_path, workers=args.workers, worker_class="gthread",
                threads=4,
            )  # fmt: skip
            os.environ["XAISTUDY_ADMIN_PASSWORD"] = ADMIN_PASSWORD  # gunicorn's environment
            started = time.perf_counter()
            server, base = start_server(options, workdir, database_url)
            import requests

            # The first arrival creates the study's row that the filled participants need.
            requests.get(f"{base}/?PROLIFIC_PID=FIRST&STUDY_ID=S&SESSION_ID=X", timeout=60)
            fill(database_url, study_path, args.participants)
            print(
                f"{args.participants} participants filled and served in "
                f"{time.perf_counter() - started:.0f} s ({database_url.split(':')[0]}, "
                f"{args.workers} gthread workers x 4 threads)"
            )
            study = load_study(study_path)
            run_id = uuid.uuid4().hex[:6]
            quiet = participants_walk(base, study, args.seconds, f"QUIET{run_id}")
            print(f"participant alone:                {summary(quiet)}")
            stop, timings = threading.Event(), {}
            thread = threading.Thread(target=researcher, args=(base, stop, timings))
            thread.start()
            busy = participants_walk(base, study, args.seconds, f"BUSY{run_id}")
            stop.set()
            thread.join()
            print(f"participant with the researcher:  {summary(busy)}")
            for path, values in timings.items():
                print(
                    f"  {path:60s} median {statistics.median(values):6.2f} s "
                    f"(max {max(values):.2f} s, {len(values)} times)"
                )
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            if fresh:
                _drop_postgres(args.db, fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

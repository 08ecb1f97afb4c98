"""Load and fault benchmark of the study server: N simulated participants at once.

    python bench/load.py --start-server [--workers 4] [--participants 300] [--kill-workers]
    python bench/load.py --start-server --think-time 0          # stress test, closed loop
    python bench/load.py --url http://HOST:PORT --db DATABASE_URL --bundle BUNDLE_DIR \
        [--kill-workers --gunicorn-pid PID]

Each participant is a ``ParticipantClient`` over HTTP in its own thread and walks the
whole study: every page is one POST (the answer) and one GET (the redirect to the next
page). Prints the offered and achieved requests/s, latency p50/p95/p99/max, completed
participants, answers stored vs expected and the condition counts. ``--kill-workers``
SIGKILLs gunicorn workers during the run (the master restarts them); afterwards every
answer that got a success response must be in the database and every participant must
have resumed and finished. ``--start-server`` starts gunicorn itself on a free port
(SQLite in a temporary folder unless ``--db`` names another database, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``, in which case a fresh database is
created next to it and dropped afterwards; the fixture bundle unless ``--bundle``).
Exit status 1 when an answer is lost or a participant did not finish.

What is measured, and why think time. A participant reads each page before answering.
With zero think time, N participants each sending the next request the instant the last
returns form a closed loop with N requests always in flight; by Little's law the mean
latency is then N / throughput whatever the server does (300 in flight at 300 requests/s
is 1 s each), so "p99 under 250 ms at 300 participants" cannot be met by any server in
that mode: it measures capacity (the saturated requests/s), not the latency a study sees.
The default mode therefore pauses before every answer for a random reading time,
exponentially distributed with mean ``--think-time`` (default 1.8 s, far shorter than a
real participant's several seconds per page, so it is a harsh load): N participants then
offer about N x 2 / think-time requests/s (300 participants: ~330 requests/s, the
target), and the latency printed is what a participant waits for each page. Arrivals are
spread uniformly over ``--ramp`` seconds (Prolific releases a study to many people at
once; default 10 s). The achieved rate is reported over the whole run and over the
steady window (from the last arrival to the first participant finishing), where every
participant is active and the offered rate is the full N x 2 / think-time.
``--think-time 0`` is the stress test: all participants start together and the printed
requests/s is the server's saturated throughput on this machine.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.bundle_format import load_manifest  # noqa: E402
from simulation.client import ParticipantClient  # noqa: E402
from simulation.transport import Reply, TransportError  # noqa: E402
from study_server.export import export_frames  # noqa: E402
from study_server.pages import page_sequence  # noqa: E402
from study_server.study import load_study  # noqa: E402
from xaistudy.vocabulary import Status  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (gunicorn's workers), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (utime, stime from /proc/PID/stat)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class ThinkingTransport:
    """HTTP for one participant with a reading pause before every form post.

    The pause is exponential with mean ``think_s``. Requests go through ``http.client``,
    one connection each (gunicorn's sync workers close them anyway), with the session
    cookie kept as a browser would: the load generator shares the machine's cores with
    the server, so it stays lean. Records each request's latency and finishing time.
    """

    def __init__(self, base_url: str, think_s: float, rng: random.Random, timeout: float):
        self.base_url = base_url.rstrip("/") + "/"
        self.think_s = think_s
        self.rng = rng
        self.timeout = timeout
        self.thought_s = 0.0
        self.cookies: dict[str, str] = {}
        self.latencies: list[float] = []
        self.finished_at: list[float] = []

    def request(
        self, method: str, url: str, data: dict | None = None, referer: str | None = None
    ) -> Reply:
        if method == "POST" and self.think_s > 0:
            pause = self.rng.expovariate(1.0 / self.think_s)
            self.thought_s += pause
            time.sleep(pause)
        full = urljoin(self.base_url, url)
        parts = urlsplit(full)
        headers = {"Connection": "close"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if referer:
            headers["Referer"] = referer
        body = None
        if data is not None:
            body = urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        try:
            connection.request(
                method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers
            )
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"{method} {full}: {exc!r}") from exc
        finally:
            connection.close()
        now = time.perf_counter()
        self.latencies.append(now - start)
        self.finished_at.append(now)
        for header in response.headers.get_all("Set-Cookie") or ():
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.coded_value
        return Reply(response.status, full, text, response.getheader("Location"))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values`` (nearest rank)."""
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def _fresh_postgres(admin_url: str) -> tuple[str, str]:
    """Create a database next to ``admin_url``; return (its URL, its name)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"xaistudy_bench_{uuid.uuid4().hex[:8]}"
    url = make_url(admin_url.replace("postgresql+psycopg://", "postgresql://", 1))
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres(admin_url: str, name: str) -> None:
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def study_that_fits(participants: int, workdir: Path) -> Path:
    """The default study with targets that admit every simulated participant (a study
    whose targets are met turns arrivals away)."""
    import re

    from study_server.study import default_study_path

    text = default_study_path().read_text(encoding="utf-8")
    per_condition = -(-participants // len(load_study(None).conditions))
    path = workdir / "study.toml"
    path.write_text(re.sub(r"target_n = \d+", f"target_n = {per_condition}", text), "utf-8")
    return path


def start_server(args, workdir: Path, database_url: str) -> tuple[subprocess.Popen, str]:
    """Migrate the database and start gunicorn; return (process, base URL)."""
    import flask_migrate

    from study_server import create_app
    from study_server.extensions import db

    bundle = args.bundle
    if bundle is None:
        sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
        from make_bundle import make_fixture_bundle

        bundle = make_fixture_bundle(workdir / "bundle")
        args.bundle = bundle  # the simulated participants read its comprehension answers
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": uuid.uuid4().hex,
        "XAISTUDY_BUNDLE": str(bundle),
        # Every simulated participant comes from this machine, and more of them than the
        # study's targets may run: no arrival limit, no study-full page.
        "XAISTUDY_ARRIVAL_LIMITS": "off",
        "XAISTUDY_STUDY_CAP": "0",
        # Simulated participants: the default study's consent details may be unfilled.
        "XAISTUDY_ALLOW_INCOMPLETE_CONSENT": "1",
    }
    if args.study:
        env["XAISTUDY_STUDY"] = str(args.study)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "migrate",
            "XAISTUDY_BUNDLE": str(bundle),
            "XAISTUDY_STUDY": args.study,
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        args.worker_class,
        "--threads",
        str(args.threads if args.worker_class == "gthread" else 1),  # sync: one at a time
        "--keep-alive",
        "30",  # participants pause between pages; a reverse proxy keeps them alive too
        "--log-level",
        "warning",
        "study_server:create_app()",
    ]
    server = subprocess.Popen(command, env=env, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            requests.get(base + "/", timeout=10)
            return server, base
        except requests.RequestException:
            if server.poll() is not None:
                sys.exit("gunicorn exited during start-up")
            time.sleep(0.2)
    server.kill()
    sys.exit("gunicorn did not start within 60 s")


def killer(master: int, stop: threading.Event, interval: float, kills: int, log: list) -> None:
    """SIGKILL one running worker every ``interval`` seconds, ``kills`` times at most."""
    rng = random.Random(0)
    while len(log) < kills and not stop.wait(interval):
        workers = _children(master)
        if workers:
            victim = rng.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
                log.append(victim)
            except ProcessLookupError:
                pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="base URL of a running server")
    parser.add_argument(
        "--db",
        help="its database URL (to count stored answers); with --start-server a PostgreSQL "
        "URL names the server where a fresh database is created (default: SQLite)",
    )
    parser.add_argument("--participants", type=int, default=300)
    parser.add_argument(
        "--think-time",
        type=float,
        default=1.8,
        help="mean reading time per page in seconds (exponential; 0: stress test)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        help="arrivals spread over this many seconds (default 10, 0 with --think-time 0)",
    )
    parser.add_argument("--kill-workers", action="store_true")
    parser.add_argument("--gunicorn-pid", type=int, help="gunicorn master pid (with --url)")
    parser.add_argument("--kills", type=int, default=3, help="workers to kill (default 3)")
    parser.add_argument(
        "--kill-interval",
        type=float,
        default=None,
        help="seconds between kills (default: spread over the run)",
    )
    parser.add_argument("--start-server", action="store_true", help="start gunicorn here")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (--start-server)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread)")
    parser.add_argument(
        "--worker-class",
        default="sync",
        choices=("sync", "gthread", "gevent"),
        help="gunicorn worker class (default sync: the cheapest per request; gevent is what "
        "'xaistudy serve' runs)",
    )
    parser.add_argument(
        "--bundle", type=Path, help="the served bundle (--start-server: default the fixture's)"
    )
    parser.add_argument(
        "--study",
        type=Path,
        help="study TOML of the server (--start-server: the default study, with targets "
        "that admit every participant)",
    )
    args = parser.parse_args(argv)
    if bool(args.url) == args.start_server:
        parser.error("give exactly one of --url or --start-server")
    if args.url and not (args.db and args.bundle):
        parser.error(
            "--url needs --db DATABASE_URL to check the stored answers and --bundle BUNDLE_DIR "
            "(the served one) for the comprehension answers"
        )
    if args.kill_workers and args.url and not args.gunicorn_pid:
        parser.error("--kill-workers with --url needs --gunicorn-pid")
    if args.think_time < 0 or (args.ramp is not None and args.ramp < 0):
        parser.error("--think-time and --ramp must be >= 0")
    if args.ramp is None:
        args.ramp = 10.0 if args.think_time > 0 else 0.0
    if args.kill_interval is None:
        args.kill_interval = 4.0 if args.think_time > 0 else 1.5

    with tempfile.TemporaryDirectory(prefix="xaistudy-bench-") as tmp:
        server, fresh = None, None
        if args.start_server:
            if args.study is None:
                args.study = study_that_fits(args.participants, Path(tmp))
            database_url = args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
            if database_url.startswith(("postgres", "postgresql")):
                database_url, fresh = _fresh_postgres(database_url)
            try:
                server, base = start_server(args, Path(tmp), database_url)
            except BaseException:
                if fresh:
                    _drop_postgres(args.db, fresh)
                raise
            master = server.pid
        else:
            base, database_url, master = args.url, args.db, args.gunicorn_pid
        try:
            return run(args, base, database_url, master)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            if fresh:
                _drop_postgres(args.db, fresh)


def run(args, base: str, database_url: str, master: int | None) -> int:
    study = load_study(args.study).with_bundle(load_manifest(args.bundle))
    run_id = uuid.uuid4().hex[:8]
    n = args.participants
    transports: dict[int, ThinkingTransport] = {}
    results, errors, spans = {}, {}, {}
    barrier = threading.Barrier(n)

    def participant(i: int) -> None:
        rng = random.Random(i)
        transport = ThinkingTransport(base, args.think_time, rng, timeout=60)
        transports[i] = transport
        client = ParticipantClient(
            transport, prolific_pid=f"BENCH-{run_id}-{i:04d}", study=study, max_retries=50
        )
        barrier.wait(timeout=120)
        time.sleep(args.ramp * i / n)  # arrivals evenly spread over the ramp
        began = time.perf_counter()
        try:
            results[i] = client.run(
                answer=lambda key, condition: (rng.randint(1, 5), f"{key} {rng.random():.6f}")
            )
        except Exception as exc:  # reported below, never hidden
            errors[i] = repr(exc)
        spans[i] = (began, time.perf_counter())

    stop, killed = threading.Event(), []
    kill_thread = None
    if args.kill_workers:
        kill_thread = threading.Thread(
            target=killer, args=(master, stop, args.kill_interval, args.kills, killed)
        )
    load_before = os.getloadavg()
    mode = (
        f"think time {args.think_time:g} s (exponential mean), arrivals over {args.ramp:g} s"
        if args.think_time > 0
        else "stress test: zero think time, closed loop"
    )
    print(
        f"{n} participants against {base}; {mode}; {os.cpu_count()} CPU cores shared with "
        f"the client threads; load average {load_before[0]:.2f} {load_before[1]:.2f}",
        file=sys.stderr,
    )
    workers = _children(master) if master else []
    cpu_before = _cpu_seconds(workers)
    client_before = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        if kill_thread:
            kill_thread.start()
        list(pool.map(participant, range(n)))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client_before
    cpu_used = _cpu_seconds(workers) - cpu_before
    load_after = os.getloadavg()
    stop.set()
    if kill_thread:
        kill_thread.join()

    latencies = sorted(x for t in transports.values() for x in t.latencies)
    requests_made = sum(r.requests for r in results.values())
    print(f"wall time          {wall:.1f} s")
    print(
        f"load average       {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"(1-minute; {os.cpu_count()} cores)"
    )
    if args.think_time > 0:
        thought = [transports[i].thought_s for i in results]
        offered = n * requests_made / max(sum(thought), 1e-9)  # N x requests / reading time
        print(
            f"offered            {offered:.0f} requests/s with every participant active "
            f"({n} x requests / reading time)"
        )
    else:
        print("offered            unbounded (closed loop: the next request as soon as one returns)")
    print(
        f"achieved           {requests_made / wall:.0f} requests/s over the run ({requests_made})"
    )
    if spans and args.think_time > 0:
        window = (max(b for b, _ in spans.values()), min(e for _, e in spans.values()))
        if window[1] - window[0] >= 2:
            inside = sum(
                window[0] <= t <= window[1] for tr in transports.values() for t in tr.finished_at
            )
            print(
                f"achieved steady    {inside / (window[1] - window[0]):.0f} requests/s "
                f"(all participants active, {window[1] - window[0]:.1f} s)"
            )
    if latencies:
        ms = [1000 * x for x in latencies]
        print(
            f"latency            p50 {percentile(ms, 0.5):.0f} ms, p95 {percentile(ms, 0.95):.0f}"
            f" ms, p99 {percentile(ms, 0.99):.0f} ms, max {ms[-1]:.0f} ms"
        )
    if workers and not args.kill_workers and requests_made:
        per_request = 1000 * cpu_used / requests_made
        print(
            f"server CPU         {per_request:.1f} ms per request "
            f"(at most {2000 / per_request:.0f} requests/s on 2 dedicated cores)"
        )
    if requests_made:
        print(f"client CPU         {1000 * client_cpu / requests_made:.1f} ms per request")
    frames = export_frames(database_url)
    mine = frames["participants"][
        frames["participants"]["prolific_pid"].str.startswith(f"BENCH-{run_id}-")
    ]
    answers = frames["answers"][
        frames["answers"]["prolific_pid"].str.startswith(f"BENCH-{run_id}-")
    ]
    stored = {(r.prolific_pid, r.attribute): (r.rating, r.reason) for r in answers.itertuples()}
    acknowledged = {
        (f"BENCH-{run_id}-{i:04d}", key): value
        for i, result in results.items()
        for key, value in result.acknowledged.items()
    }
    lost = [k for k, v in acknowledged.items() if stored.get(k) != v]
    completed = int((mine["status"] == Status.COMPLETED).sum())
    expected = n * len(study.attributes)
    counts = mine["condition"].value_counts().to_dict()

    print(f"completed          {completed} / {n}")
    print(f"answers stored     {len(answers)} / expected {expected}")
    print(f"acknowledged lost  {len(lost)}")
    print(f"conditions         {dict(sorted(counts.items()))}")
    retries = sum(r.retries for r in results.values())
    print(f"client retries     {retries} (connection lost or 5xx, resumed from the entry link)")
    # Resumed in place: every participant saw the study's pages once each, in order (a
    # retry after a killed worker shows the same page again, never an earlier one).
    sequence = [page.name for page in page_sequence(study)]
    in_order = sum(r.pages == sequence for r in results.values())
    print(f"pages in order     {in_order} / {n} participants saw every page once, in order")
    if args.kill_workers:
        print(f"workers killed     {len(killed)}")
    for i, error in sorted(errors.items())[:5]:
        print(f"participant {i} failed: {error}")
    ok = not lost and not errors and completed == n and len(answers) == expected
    ok = ok and in_order == n
    print("result             " + ("OK: no answer lost" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

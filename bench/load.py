"""Load and fault benchmark of the study server: N simulated participants at once.

    python bench/load.py --start-server [--workers 4] [--participants 300] [--kill-workers]
    python bench/load.py --start-server --think-time 0          # stress test, closed loop
    python bench/load.py --start-server --db postgresql://postgres@127.0.0.1:5432/postgres \
        --instances 3 --kill-instance                           # hosts behind a balancer
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
Exit status 1 when an answer is lost, a participant did not finish or the condition
counts are more than 1 apart.

Several hosts. ``--instances K`` starts K gunicorn instances on K ports, on one database
with one SECRET_KEY, each migrating it as a host that starts does (all K at once, as
hosts started together would). Arrivals go to the instances round robin, as a load
balancer sends them. ``--kill-instance`` SIGKILLs the first instance's master and workers
once ``--kill-at`` of the run's requests were answered (a host dying); a participant
whose connection is refused or lost moves on to the next instance, as a load balancer
would send it, with the session cookie the dead instance signed: a page's GET, or a
request that never reached the dead instance, is sent there at once; a post lost on the
way is not (it may have been stored), and the client resumes from its entry link.
Prints requests/s and latency per instance.

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
import contextlib
import dataclasses
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
from collections.abc import Callable
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
    the server, so it stays lean. Records each request's latency, finishing time and the
    instance that answered it.

    ``bases`` are the server instances behind one address, and ``first`` the one a load
    balancer sent this participant to. A connection refused or lost moves the participant
    to the next instance, as a load balancer whose health check failed would, and the
    request goes there at once, with the cookie the first instance set, where nginx's
    ``proxy_next_upstream`` would send it on: a page's GET, and any request whose
    connection was refused (it never reached the server). A form post lost on the way
    fails (TransportError: it may have been stored) and the client resumes from its entry
    link. ``carried`` counts the page requests answered after such a move: each shows that
    a session cookie (and CSRF token) signed by one instance is valid on another; an
    unknown session gets a 403 or 400.
    """

    def __init__(
        self,
        bases: list[str],
        think_s: float,
        rng: random.Random,
        timeout: float,
        first: int = 0,
    ):
        self.bases = [base.rstrip("/") for base in bases]
        self.instance = first
        self.think_s = think_s
        self.rng = rng
        self.timeout = timeout
        self.thought_s = 0.0
        self.cookies: dict[str, str] = {}
        self.latencies: list[float] = []
        self.finished_at: list[float] = []
        self.served_by: list[int] = []  # the instance of each latency
        self.carried = 0

    def request(
        self, method: str, url: str, data: dict | None = None, referer: str | None = None
    ) -> Reply:
        if method == "POST" and self.think_s > 0:
            pause = self.rng.expovariate(1.0 / self.think_s)
            self.thought_s += pause
            time.sleep(pause)
        # The client follows the URLs it was given; they go to this participant's instance.
        parts = urlsplit(urljoin(self.bases[self.instance] + "/", url))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            return self._send(method, path, data, referer)
        except TransportError as failed:
            refused = isinstance(failed.__cause__, ConnectionRefusedError)
            if len(self.bases) == 1 or not (refused or method == "GET"):
                raise
        reply = self._send(method, path, data, referer)  # on the next instance
        self.carried += parts.path.startswith("/study/") and reply.status < 400
        return reply

    def _send(self, method: str, path: str, data: dict | None, referer: str | None) -> Reply:
        """One request to this participant's instance; on a failure, move to the next."""
        instance = self.instance
        full = self.bases[instance] + path
        headers = {"Connection": "close"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if referer:
            # The browser knows one address, the load balancer's, which every instance
            # sees as its Host: the page a post came from names the instance it goes to.
            page = urlsplit(referer)
            headers["Referer"] = (
                self.bases[instance] + page.path + (f"?{page.query}" if page.query else "")
            )
        body = None
        if data is not None:
            body = urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        start = time.perf_counter()
        target = urlsplit(full)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=self.timeout)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            self.instance = (instance + 1) % len(self.bases)  # fail over
            raise TransportError(f"{method} {full}: {exc!r}") from exc
        finally:
            connection.close()
        now = time.perf_counter()
        self.latencies.append(now - start)
        self.finished_at.append(now)
        self.served_by.append(instance)
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


def study_that_fits(participants: int, workdir: Path, source: Path | None = None) -> Path:
    """The study ``source`` (default: the default study) with targets that admit every
    simulated participant (a study whose targets are met turns arrivals away)."""
    import re

    from study_server.study import default_study_path

    source = default_study_path() if source is None else Path(source).resolve()
    text = source.read_text(encoding="utf-8")
    per_condition = -(-participants // len(load_study(source).conditions))
    path = workdir / "study.toml"
    path.write_text(re.sub(r"target_n = \d+", f"target_n = {per_condition}", text), "utf-8")
    return path


@dataclasses.dataclass
class Instance:
    """One gunicorn master serving the study on its own port (a host behind a load balancer)."""

    process: subprocess.Popen
    base: str
    killed_at: float | None = None  # time.perf_counter() of its SIGKILL
    cpu_at_kill: float = 0.0  # its workers' CPU seconds just before


def server_environment(args, workdir: Path, database_url: str) -> dict[str, str]:
    """The settings every instance shares: one database and one SECRET_KEY, so that a
    session cookie signed by one instance is valid on every other."""
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
    return env


def migrate_at_once(env: dict[str, str], workdir: Path, count: int) -> None:
    """``flask db upgrade`` in ``count`` processes started together, as hosts that start
    at the same time on a fresh database each run it (migrations/env.py serializes them)."""
    command = [str(Path(sys.executable).parent / "flask"), "--app", "study_server", "db", "upgrade"]
    runs = [
        subprocess.Popen(
            command,
            env=env,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    failed = [err for run in runs if (err := run.communicate()[1]) and run.returncode != 0]
    if failed:
        sys.exit(f"{len(failed)} of {count} concurrent migrations failed:\n{failed[0][-2000:]}")


def start_instance(args, workdir: Path, env: dict[str, str]) -> Instance:
    """Start gunicorn on a free port; return once it answers."""
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
            return Instance(server, base)
        except requests.RequestException:
            if server.poll() is not None:
                sys.exit("gunicorn exited during start-up")
            time.sleep(0.2)
    server.kill()
    sys.exit("gunicorn did not start within 60 s")


def start_servers(args, workdir: Path, database_url: str) -> list[Instance]:
    """Migrate the database (once per instance, all at once) and start ``args.instances``
    gunicorn instances on it."""
    env = server_environment(args, workdir, database_url)
    migrate_at_once(env, workdir, args.instances)
    instances: list[Instance] = []
    try:
        with ThreadPoolExecutor(max_workers=args.instances) as pool:
            for instance in pool.map(
                lambda _: start_instance(args, workdir, env), range(args.instances)
            ):
                instances.append(instance)
    except BaseException:
        stop_servers(instances)
        raise
    return instances


def stop_servers(instances: list[Instance]) -> None:
    for instance in instances:
        if instance.process.poll() is None:
            instance.process.terminate()
        instance.process.wait(timeout=30)


def kill_instance(instance: Instance) -> None:
    """SIGKILL an instance's gunicorn master and its workers at once: a host dying."""
    workers = _children(instance.process.pid)
    instance.cpu_at_kill = _cpu_seconds(workers)  # gone with them
    for pid in [instance.process.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):  # a worker that just exited
            os.kill(pid, signal.SIGKILL)
    instance.killed_at = time.perf_counter()
    instance.process.wait(timeout=30)


def instance_killer(
    instance: Instance, done: Callable[[], int], at: int, stop: threading.Event
) -> None:
    """Kill ``instance`` once ``done()`` requests were answered, ``at`` or more."""
    while not stop.wait(0.05):
        if done() >= at:
            kill_instance(instance)
            return


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


def parse_args(argv=None) -> argparse.Namespace:
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
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="gunicorn instances on one database, each on its own port (--start-server; "
        "participants spread round robin by arrival)",
    )
    parser.add_argument(
        "--kill-instance",
        action="store_true",
        help="SIGKILL the first instance (master and workers) mid-run (--instances >= 2); "
        "its participants fail over to the next",
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.4,
        help="--kill-instance: once this share of the run's requests were answered (0.4)",
    )
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
        help="study TOML of the server (--start-server: this or the default study, its "
        "targets raised to admit every participant)",
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
    if args.instances < 1 or (args.url and args.instances != 1):
        parser.error("--instances must be >= 1, and more than 1 only with --start-server")
    if args.kill_instance and args.instances < 2:
        parser.error("--kill-instance needs --instances 2 or more (a survivor to fail over to)")
    if not 0 < args.kill_at < 1:
        parser.error("--kill-at must be between 0 and 1")
    if args.think_time < 0 or (args.ramp is not None and args.ramp < 0):
        parser.error("--think-time and --ramp must be >= 0")
    if args.ramp is None:
        args.ramp = 10.0 if args.think_time > 0 else 0.0
    if args.kill_interval is None:
        args.kill_interval = 4.0 if args.think_time > 0 else 1.5
    return args


def main(argv=None) -> int:
    return 0 if benchmark(parse_args(argv)).ok else 1


def benchmark(args: argparse.Namespace) -> LoadReport:
    """Start the servers if asked, run the participants, check and print; clean up."""
    with tempfile.TemporaryDirectory(prefix="xaistudy-bench-") as tmp:
        instances, fresh = [], None
        if args.start_server:
            args.study = study_that_fits(args.participants, Path(tmp), args.study)
            database_url = args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
            if database_url.startswith(("postgres", "postgresql")):
                database_url, fresh = _fresh_postgres(database_url)
            try:
                instances = start_servers(args, Path(tmp), database_url)
            except BaseException:
                if fresh:
                    _drop_postgres(args.db, fresh)
                raise
            bases = [instance.base for instance in instances]
            masters = [instance.process.pid for instance in instances]
        else:
            bases, database_url = [args.url], args.db
            masters = [args.gunicorn_pid] if args.gunicorn_pid else []
        try:
            return run(args, bases, database_url, masters, instances)
        finally:
            stop_servers(instances)
            if fresh:
                _drop_postgres(args.db, fresh)


@dataclasses.dataclass
class LoadReport:
    """What a run showed: the checks a deployment relies on, and where requests went."""

    participants: int
    completed: int
    answers_stored: int
    answers_expected: int
    lost: int  # answers acknowledged with a success response but not stored as posted
    conditions: dict[str, int]
    in_order: int  # participants who saw every page once, in order
    errors: dict[int, str]
    moved: int  # participants answered by more than one instance
    carried: int  # page requests answered after a move, with the cookie of another instance
    served: list[int]  # requests answered per instance
    served_after_kill: list[int]  # ... after an instance was killed
    killed: int | None  # the killed instance
    trials_stored: int = 0  # a trial design's rows, one per trial answered
    trials_expected: int = 0
    questionnaire_stored: int = 0  # questionnaire item answers (optional ones may be empty)

    @property
    def balanced(self) -> bool:
        """The condition counts within 1 of each other."""
        return max(self.conditions.values()) - min(self.conditions.values()) <= 1

    @property
    def ok(self) -> bool:
        n = self.participants
        return (
            not self.lost
            and not self.errors
            and self.completed == n
            and self.answers_stored == self.answers_expected
            and self.trials_stored == self.trials_expected
            and self.in_order == n
            and self.balanced
        )


def run(
    args,
    bases: list[str],
    database_url: str,
    masters: list[int],
    instances: list[Instance],
) -> LoadReport:
    study = load_study(args.study).with_bundle(load_manifest(args.bundle))
    run_id = uuid.uuid4().hex[:8]
    n = args.participants
    transports: dict[int, ThinkingTransport] = {}
    results, errors, spans = {}, {}, {}
    barrier = threading.Barrier(n)

    def participant(i: int) -> None:
        rng = random.Random(i)
        # A load balancer sends arrivals round robin.
        transport = ThinkingTransport(bases, args.think_time, rng, timeout=60, first=i % len(bases))
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

    sequence = [page.name for page in page_sequence(study)]
    stop, killed = threading.Event(), []
    side = None
    if args.kill_workers:
        side = threading.Thread(
            target=killer, args=(masters[0], stop, args.kill_interval, args.kills, killed)
        )
    elif args.kill_instance:
        answered = lambda: sum(len(t.latencies) for t in list(transports.values()))  # noqa: E731
        # each page is a POST and a GET, and the entry link a GET and its redirect
        expected = n * 2 * (len(sequence) + 1)
        side = threading.Thread(
            target=instance_killer,
            args=(instances[0], answered, int(args.kill_at * expected), stop),
        )
    load_before = os.getloadavg()
    mode = (
        f"think time {args.think_time:g} s (exponential mean), arrivals over {args.ramp:g} s"
        if args.think_time > 0
        else "stress test: zero think time, closed loop"
    )
    print(
        f"{n} participants against {', '.join(bases)}; {mode}; {os.cpu_count()} CPU cores "
        f"shared with the client threads; load average {load_before[0]:.2f} "
        f"{load_before[1]:.2f}",
        file=sys.stderr,
    )
    workers = [pid for master in masters for pid in _children(master)]
    cpu_before = _cpu_seconds(workers)
    client_before = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        if side:
            side.start()
        list(pool.map(participant, range(n)))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client_before
    # the killed instance's workers count up to their end
    cpu_used = _cpu_seconds(workers) + sum(i.cpu_at_kill for i in instances) - cpu_before
    load_after = os.getloadavg()
    stop.set()
    if side:
        side.join()

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
        print(f"latency            {_latency_line(latencies)}")
    served, after = _print_instances(bases, instances, transports, start, wall)
    if workers and not args.kill_workers and requests_made:  # restarted workers: unknown
        per_request = 1000 * cpu_used / requests_made
        print(
            f"server CPU         {per_request:.1f} ms per request, {1000 / per_request:.0f} "
            f"requests per CPU-second (at most {2000 / per_request:.0f} requests/s on 2 "
            "dedicated cores)"
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
    ours = mine["participant_id"]
    trials = frames["trials"][frames["trials"]["participant_id"].isin(ours)]
    questionnaire = frames["questionnaire"][frames["questionnaire"]["participant_id"].isin(ours)]
    design = study.trials
    per_participant = sum(getattr(design, f"{p}_trials") for p in design.phases) if design else 0
    acknowledged = {
        (f"BENCH-{run_id}-{i:04d}", key): value
        for i, result in results.items()
        for key, value in result.acknowledged.items()
    }
    lost = [k for k, v in acknowledged.items() if stored.get(k) != v]
    counts = {name: 0 for name in study.condition_names}
    counts.update(mine["condition"].value_counts().to_dict())
    # Resumed in place: every participant saw the study's pages once each, in order (a
    # retry after a killed worker or instance shows the same page again, never an earlier one).
    report = LoadReport(
        participants=n,
        completed=int((mine["status"] == Status.COMPLETED).sum()),
        answers_stored=len(answers),
        answers_expected=n * len(study.attributes),
        lost=len(lost),
        conditions=dict(sorted(counts.items())),
        in_order=sum(r.pages == sequence for r in results.values()),
        errors=errors,
        moved=sum(len(set(t.served_by)) > 1 for t in transports.values()),
        carried=sum(t.carried for t in transports.values()),
        served=served,
        served_after_kill=after,
        killed=0 if args.kill_instance else None,
        trials_stored=len(trials),
        trials_expected=n * per_participant,
        questionnaire_stored=len(questionnaire),
    )
    print(f"completed          {report.completed} / {n}")
    print(f"answers stored     {report.answers_stored} / expected {report.answers_expected}")
    print(f"trials stored      {report.trials_stored} / expected {report.trials_expected}")
    print(f"questionnaire      {report.questionnaire_stored} item answers stored")
    print(f"acknowledged lost  {report.lost}")
    print(
        f"conditions         {report.conditions} "
        + ("(balanced: within 1)" if report.balanced else "(UNBALANCED: more than 1 apart)")
    )
    retries = sum(r.retries for r in results.values())
    print(f"client retries     {retries} (connection lost or 5xx, resumed from the entry link)")
    print(f"pages in order     {report.in_order} / {n} participants saw every page once, in order")
    if args.kill_workers:
        print(f"workers killed     {len(killed)}")
    if len(bases) > 1:
        print(f"moved              {report.moved} participants answered by more than one instance")
        print(
            f"cookie carried     {report.carried} page requests answered by the next instance "
            "with the session cookie another instance signed"
        )
    for i, error in sorted(errors.items())[:5]:
        print(f"participant {i} failed: {error}")
    print("result             " + ("OK: no answer lost" if report.ok else "FAILED"))
    return report


def _latency_line(latencies: list[float]) -> str:
    ms = sorted(1000 * x for x in latencies)
    return (
        f"p50 {percentile(ms, 0.5):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms, "
        f"p99 {percentile(ms, 0.99):.0f} ms, max {ms[-1]:.0f} ms"
    )


def _print_instances(
    bases: list[str],
    instances: list[Instance],
    transports: dict[int, ThinkingTransport],
    start: float,
    wall: float,
) -> tuple[list[int], list[int]]:
    """Print requests/s and latency per instance; return the requests each answered, in
    all and after an instance was killed."""
    killed_at = next((i.killed_at for i in instances if i.killed_at is not None), None)
    served, after = [], []
    for index, base in enumerate(bases):
        times = [
            (latency, done)
            for t in transports.values()
            for latency, done, by in zip(t.latencies, t.finished_at, t.served_by, strict=True)
            if by == index
        ]
        served.append(len(times))
        after.append(sum(killed_at is not None and done > killed_at for _, done in times))
        if len(bases) == 1 or not times:
            continue
        note = ""
        if instances and instances[index].killed_at is not None:
            note = f", killed {instances[index].killed_at - start:.1f} s into the run"
        print(
            f"instance {index}         {base}: {len(times) / wall:.0f} requests/s "
            f"({len(times)}{'' if killed_at is None else f', {after[-1]} after the kill'}), "
            f"latency {_latency_line([latency for latency, _ in times])}{note}"
        )
    return served, after


if __name__ == "__main__":
    sys.exit(main())

"""``sharq-fast bench-http``: requests/s and jobs/s of HTTP queue servers under 64
concurrent clients: ``sharq-fast serve`` (single-job and batch routes) and Plivo's
sharq-server (gunicorn + gevent, in its own virtualenv, see _peer_server.py).

Workload per server: ``n`` jobs over ``queues`` queues (interval 0, a small dict
payload). Phase "enqueue": the clients share the jobs, one POST each (batch: one POST
/batch/enqueue/ per ``batch`` jobs). Phase "dequeue+finish": every client loops "dequeue
one, finish it" until the server answers 404 (batch: dequeue ``batch``, finish them in
one request, until an empty answer). Every job must come out exactly once; a run that
loses or repeats one fails. Each server gets a fresh Redis key prefix, is started for its
runs and stopped (SIGTERM) afterwards; its requeuer runs, as in production.

Measured per phase: requests/s and jobs/s (wall clock), CPU seconds of the server's
processes (all workers, /proc) and of Redis (INFO cpu) per 1,000 requests, and the load
generator's own CPU share (it runs in this process; see _loadgen.py).
"""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import msgspec

from .._redis_server import free_port, server_cpu
from ._loadgen import HTTPConnection, json_of

QUEUE_TYPE = "bench"
PAYLOAD = {"to": "+14155550100", "from": "+14155550199", "text": "hello from sharq-fast bench-http"}
#: Dequeued jobs stay active this long (no requeue happens during a run).
JOB_EXPIRE_MS = 600_000
SHARQ_FAST = "sharq-fast serve"
SHARQ_SERVER = "sharq-server 0.2.0"
_encode = msgspec.json.Encoder().encode


class HTTPResult(msgspec.Struct, kw_only=True):
    """One timed phase against one server."""

    server: str
    workers: int
    mode: str  # "single" or "batch"
    phase: str  # "enqueue" or "dequeue+finish"
    clients: int
    jobs: int
    requests: int
    seconds: float
    server_cpu: Optional[float]
    redis_cpu: float
    loadgen_cpu: float
    rep: int = 0
    #: The machine's 1-minute load average at the end of the phase (other work on it
    #: takes CPU from the servers: it explains runs that differ).
    load_average: Optional[float] = None

    @property
    def requests_per_s(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds

    @property
    def jobs_per_s(self) -> float:
        """Jobs through the phase per second."""
        return self.jobs / self.seconds

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready, with the rates."""
        return {**msgspec.structs.asdict(self), "requests_per_s": self.requests_per_s, "jobs_per_s": self.jobs_per_s}


def process_tree_cpu(pid: int) -> Optional[float]:
    """CPU seconds (user + system) used so far by `pid` and its living descendants, from
    /proc (None where there is no /proc)."""
    if not os.path.isdir("/proc"):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    parents: Dict[int, int] = {}
    cpu: Dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for proc, used in cpu.items():
        node = proc
        while node not in (0, 1) and node != pid:
            node = parents.get(node, 0)
        if node == pid:
            total += used
    return total


class _Snapshot:
    """Wall clock, server CPU, Redis CPU, this process's CPU and the load average at one
    instant."""

    def __init__(self, server_pid: int, redis_conn: Any) -> None:
        self.wall = time.perf_counter()
        self.server = process_tree_cpu(server_pid)
        self.redis = server_cpu(redis_conn)
        self.cpu = time.process_time()
        self.load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


Mark = Callable[[], None]


async def _single(port: int, n: int, queues: int, clients: int, headers: Dict[str, str], mark: Mark) -> List[Dict[str, Any]]:
    """The two phases with one job per request (`mark` is called before, between and
    after them); returns their counts."""
    conns = [HTTPConnection("127.0.0.1", port, headers) for _ in range(clients)]
    phases: List[Dict[str, Any]] = []
    try:
        async def produce(c: int, conn: HTTPConnection) -> None:
            for i in range(c, n, clients):
                body = _encode({"job_id": f"j{i}", "payload": dict(PAYLOAD, n=i), "interval": 0})
                status, data = await conn.request("POST", f"/enqueue/{QUEUE_TYPE}/q{i % queues}/", body)
                if status != 201:
                    raise RuntimeError(f"enqueue answered {status}: {data[:200]!r}")

        mark()
        await asyncio.gather(*(produce(c, conn) for c, conn in enumerate(conns)))
        mark()
        phases.append({"phase": "enqueue", "jobs": n, "requests": n})
        taken: List[str] = []
        requests = [0]

        async def consume(conn: HTTPConnection) -> None:
            while True:
                status, data = await conn.request("GET", f"/dequeue/{QUEUE_TYPE}/")
                requests[0] += 1
                if status == 404:
                    return
                if status != 200:
                    raise RuntimeError(f"dequeue answered {status}: {data[:200]!r}")
                job: Any = json_of(data)
                status, data = await conn.request("POST", f"/finish/{QUEUE_TYPE}/{job['queue_id']}/{job['job_id']}/")
                requests[0] += 1
                if status != 200:
                    raise RuntimeError(f"finish answered {status}: {data[:200]!r}")
                taken.append(job["job_id"])

        await asyncio.gather(*(consume(conn) for conn in conns))
        mark()
        phases.append({"phase": "dequeue+finish", "jobs": len(taken), "requests": requests[0], "taken": taken})
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    return phases


async def _batch(
    port: int, n: int, queues: int, clients: int, batch: int, headers: Dict[str, str], mark: Mark
) -> List[Dict[str, Any]]:
    """The two phases through the batch routes (`mark`: as in _single)."""
    conns = [HTTPConnection("127.0.0.1", port, headers) for _ in range(clients)]
    phases: List[Dict[str, Any]] = []
    try:
        chunks = [range(start, min(start + batch, n)) for start in range(0, n, batch)]
        requests = [0]

        async def produce(c: int, conn: HTTPConnection) -> None:
            for chunk in chunks[c::clients]:
                jobs = [{"queue_type": QUEUE_TYPE, "queue_id": f"q{i % queues}", "job_id": f"j{i}",
                         "payload": dict(PAYLOAD, n=i), "interval": 0} for i in chunk]
                status, data = await conn.request("POST", "/batch/enqueue/", _encode({"jobs": jobs}))
                requests[0] += 1
                if status != 200 or json_of(data)["enqueued"] != len(jobs):  # type: ignore[index]
                    raise RuntimeError(f"batch enqueue answered {status}: {data[:200]!r}")

        mark()
        await asyncio.gather(*(produce(c, conn) for c, conn in enumerate(conns)))
        mark()
        phases.append({"phase": "enqueue", "jobs": n, "requests": requests[0]})
        taken: List[str] = []
        requests[0] = 0

        async def consume(conn: HTTPConnection) -> None:
            while True:
                status, data = await conn.request("GET", f"/batch/dequeue/{QUEUE_TYPE}/?count={batch}")
                requests[0] += 1
                jobs: Any = json_of(data)["jobs"] if status == 200 else None  # type: ignore[index]
                if jobs is None:
                    raise RuntimeError(f"batch dequeue answered {status}: {data[:200]!r}")
                if not jobs:
                    return
                done = [{"queue_type": QUEUE_TYPE, "queue_id": j["queue_id"], "job_id": j["job_id"]} for j in jobs]
                status, data = await conn.request("POST", "/batch/finish/", _encode({"jobs": done}))
                requests[0] += 1
                if status != 200 or json_of(data)["finished"] != len(done):  # type: ignore[index]
                    raise RuntimeError(f"batch finish answered {status}: {data[:200]!r}")
                taken.extend(j["job_id"] for j in jobs)

        await asyncio.gather(*(consume(conn) for conn in conns))
        mark()
        phases.append({"phase": "dequeue+finish", "jobs": len(taken), "requests": requests[0], "taken": taken})
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    return phases


def _run_loop(coroutine: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def run_workload(
    server: str, workers: int, port: int, server_pid: int, redis_conn: Any, *, mode: str, n: int, queues: int,
    clients: int, batch: int, rep: int = 0, headers: Optional[Dict[str, str]] = None,
) -> List[HTTPResult]:
    """Both phases against the server on `port`; checks that every job came out once."""
    marks: List[_Snapshot] = []

    def mark() -> None:
        marks.append(_Snapshot(server_pid, redis_conn))

    if mode == "single":
        raw = _run_loop(_single(port, n, queues, clients, headers or {}, mark))
    else:
        raw = _run_loop(_batch(port, n, queues, clients, batch, headers or {}, mark))
    taken = raw[1].pop("taken")
    if len(taken) != n or len(set(taken)) != n:
        raise RuntimeError(f"{server}: {n} jobs enqueued, {len(taken)} dequeued ({len(set(taken))} distinct)")
    results = []
    for phase, before, after in zip(raw, marks, marks[1:]):
        seconds = after.wall - before.wall
        results.append(HTTPResult(
            server=server, workers=workers, mode=mode, phase=phase["phase"], clients=clients, jobs=phase["jobs"],
            requests=phase["requests"], seconds=seconds,
            server_cpu=None if after.server is None or before.server is None else after.server - before.server,
            redis_cpu=after.redis - before.redis, loadgen_cpu=(after.cpu - before.cpu) / seconds, rep=rep,
            load_average=after.load,
        ))
    return results


class ServerUnderTest:
    """A server process listening on `port`, stopped by pid with SIGTERM."""

    def __init__(self, name: str, workers: int, command: Sequence[str], port: int, log_path: str) -> None:
        self.name, self.workers, self.port = name, workers, port
        self._log = open(log_path, "wb")
        self.log_path = log_path
        self.process = subprocess.Popen(list(command), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        async def probe() -> bool:
            conn = HTTPConnection("127.0.0.1", self.port)
            try:
                await conn.request("GET", "/")
                return True
            except OSError:
                return False
            finally:
                await conn.close()

        deadline = time.monotonic() + timeout
        while not asyncio.run(probe()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path, errors="replace") as handle:
                    tail = handle.read().strip().splitlines()[-3:]
                raise RuntimeError(f"{self.name} did not start on port {self.port}: {' | '.join(tail)}")
            time.sleep(0.1)
        time.sleep(0.5)  # let every worker finish booting

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL the group after 30 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def start_sharq_fast(redis_url: str, prefix: str, workers: int, folder: str) -> ServerUnderTest:
    """``sharq-fast serve`` on a free port (its requeuer on, no access log)."""
    port = free_port()
    command = [sys.executable, "-m", "sharq_fast", "serve", "--url", redis_url, "--key-prefix", prefix,
               "--port", str(port), "--workers", str(workers), "--job-expire-interval", str(JOB_EXPIRE_MS),
               "--log-level", "warning"]
    return ServerUnderTest(SHARQ_FAST, workers, command, port, os.path.join(folder, f"serve-{port}.log"))


def start_sharq_server(venv: Any, redis_host: str, redis_port: int, db: int, prefix: str, workers: int, folder: str) -> ServerUnderTest:
    """Plivo's sharq-server as its README runs it: ``sharq-server --config FILE``."""
    from . import _peer_server as peer

    port = free_port()
    config = peer.write_server_config(
        os.path.join(folder, f"sharq-{port}.conf"), redis_host=redis_host, redis_port=redis_port, port=port,
        key_prefix=prefix, workers=workers, db=db, job_expire_interval=JOB_EXPIRE_MS,
    )
    python = os.path.join(str(venv), "bin", "python")
    command = [python, "-c", peer._RUNNER, "--config", config]
    return ServerUnderTest(SHARQ_SERVER, workers, command, port, os.path.join(folder, f"sharq-server-{port}.log"))


def new_folder() -> str:
    """A scratch folder for configs and server logs."""
    return tempfile.mkdtemp(prefix="sharq-fast-bench-http-")


def paired_ratios(results: Sequence[HTTPResult]) -> Dict[Any, float]:
    """jobs/s of each sharq-fast serve run over sharq-server's in the same repetition (same
    workers and phase), median over repetitions, by (workers, mode, phase). Paired by
    repetition, so that a machine whose load drifts between repetitions (other work on it)
    moves both sides of a ratio alike."""
    import statistics

    reference = {(r.rep, r.workers, r.phase): r.jobs_per_s for r in results if r.server == SHARQ_SERVER}
    ratios: Dict[Any, List[float]] = {}
    for r in results:
        ref = reference.get((r.rep, r.workers, r.phase))
        if r.server != SHARQ_SERVER and ref:
            ratios.setdefault((r.workers, r.mode, r.phase), []).append(r.jobs_per_s / ref)
    return {key: statistics.median(values) for key, values in ratios.items()}


def summary_rows(results: Sequence[HTTPResult]) -> List[Dict[str, Any]]:
    """Medians over repetitions, one row per (server, workers, mode, phase); sharq-fast
    serve's rows also get ``vs_sharq_server`` (paired_ratios)."""
    import statistics

    groups: Dict[Any, List[HTTPResult]] = {}
    for result in results:
        groups.setdefault((result.server, result.workers, result.mode, result.phase), []).append(result)
    ratios = paired_ratios(results)
    rows = []
    for (server, workers, mode, phase), group in groups.items():
        def median(f: Callable[[HTTPResult], float]) -> float:
            return statistics.median(f(r) for r in group)

        rows.append({
            "server": server, "workers": workers, "mode": mode, "phase": phase, "runs": len(group),
            "vs_sharq_server": None if server == SHARQ_SERVER else ratios.get((workers, mode, phase)),
            "requests_per_s": median(lambda r: r.requests_per_s), "jobs_per_s": median(lambda r: r.jobs_per_s),
            "server_cpu_us_per_request": None if group[0].server_cpu is None
            else median(lambda r: 1e6 * (r.server_cpu or 0.0) / r.requests),
            "redis_cpu_us_per_request": median(lambda r: 1e6 * r.redis_cpu / r.requests),
            "loadgen_cpu_share": median(lambda r: r.loadgen_cpu),
        })
    return rows


def cpu_per_job(row: Dict[str, Any]) -> Optional[float]:
    """Server + Redis CPU (us) per job of a summary row (None without /proc)."""
    if row["server_cpu_us_per_request"] is None:
        return None
    requests_per_job = row["requests_per_s"] / row["jobs_per_s"]
    return (row["server_cpu_us_per_request"] + row["redis_cpu_us_per_request"]) * requests_per_job


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table of summary_rows. For sharq-fast serve's rows: jobs/s over
    sharq-server's (paired by repetition, see paired_ratios), and how many times less
    CPU (server + Redis) a job cost than on sharq-server with the same workers and phase:
    the throughput ratio of a machine given to the servers alone."""
    reference = {(r["workers"], r["phase"]): r for r in rows if r["server"] == SHARQ_SERVER}
    lines = [f"{'server':<18} {'workers':>7} {'mode':<6} {'phase':<15} {'requests/s':>11} {'jobs/s':>9} "
             f"{'vs sharq-server':>15} {'CPU/job':>8} {'server CPU':>10} {'Redis CPU':>9}",
             f"{'':<18} {'':>7} {'':<6} {'':<15} {'':>11} {'':>9} {'(jobs/s)':>15} {'less':>8} {'us/req':>10} {'us/req':>9}"]
    for r in rows:
        ref = reference.get((r["workers"], r["phase"]))
        ratio = f"{r['vs_sharq_server']:.1f}x" if r.get("vs_sharq_server") else ""
        ours, theirs = cpu_per_job(r), cpu_per_job(ref) if ref else None
        less = f"{theirs / ours:.1f}x" if ours and theirs and r["server"] != SHARQ_SERVER else ""
        cpu = f"{r['server_cpu_us_per_request']:,.0f}" if r["server_cpu_us_per_request"] is not None else "-"
        lines.append(
            f"{r['server']:<18} {r['workers']:>7} {r['mode']:<6} {r['phase']:<15} {r['requests_per_s']:>11,.0f} "
            f"{r['jobs_per_s']:>9,.0f} {ratio:>15} {less:>8} {cpu:>10} {r['redis_cpu_us_per_request']:>9,.0f}"
        )
    return "\n".join(lines)


def run_bench(
    redis_url: str, *, servers: Sequence[str], workers: Sequence[int], n: int, queues: int, clients: int, batch: int,
    repeat: int = 1, venv: Any = None, log: Callable[[str], None] = print,
) -> List[HTTPResult]:
    """Every server x worker count x repetition, interleaved; each server started on a
    fresh key prefix and stopped after its runs. `servers`: SHARQ_FAST (single and batch
    routes) and/or SHARQ_SERVER (single routes; `venv` from _peer_server)."""
    import shutil

    import redis

    from .._bench import cleanup, new_prefix

    conn = redis.Redis.from_url(redis_url)
    where = conn.connection_pool.connection_kwargs
    folder = new_folder()
    results: List[HTTPResult] = []
    try:
        for rep in range(repeat):
            for count in workers:
                for name in servers:
                    prefix = new_prefix("sharq_fast_bench_http")
                    if name == SHARQ_FAST:
                        server = start_sharq_fast(redis_url, prefix, count, folder)
                        modes = ["single", "batch"]
                    else:
                        if "path" in where:
                            raise RuntimeError("sharq-server is started with a TCP Redis only (not a unix socket)")
                        server = start_sharq_server(venv, where.get("host", "127.0.0.1"), where.get("port", 6379),
                                                    where.get("db", 0), prefix, count, folder)
                        modes = ["single"]
                    try:
                        for mode in modes:
                            log(f"{name}, {count} worker(s), {mode} routes, {clients} clients, {n:,} jobs (run {rep + 1})")
                            runs = run_workload(name, count, server.port, server.process.pid, conn, mode=mode, n=n,
                                                queues=queues, clients=clients, batch=batch, rep=rep)
                            for result in runs:
                                log(f"  {result.phase:<15} {result.requests_per_s:>9,.0f} requests/s {result.jobs_per_s:>9,.0f} jobs/s")
                            results += runs
                    finally:
                        server.stop()
                        cleanup(conn, prefix)
    finally:
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)
    return results


def report(results: Sequence[HTTPResult], settings: Dict[str, Any], redis_info: Dict[str, Any], out: Optional[str]) -> str:
    """The text report of a run; with `out`, also writes OUT/bench-http.json."""
    import datetime
    import json

    from .._bench import environment

    rows = summary_rows(results)
    lines = [
        f"sharq-fast bench-http: {settings['n']:,} jobs over {settings['queues']} queues, {settings['clients']} "
        f"concurrent HTTP clients, batch {settings['batch']}; Redis {redis_info['version']} ({redis_info['where']})",
        format_table(rows),
    ]
    if settings.get("repeat", 1) > 1:
        lines.append(f"(medians of {settings['repeat']} repetitions)")
    loads = [r.load_average for r in results if r.load_average is not None]
    if loads:
        lines.append(f"machine load average during the runs: {min(loads):.1f} to {max(loads):.1f} "
                     f"({os.cpu_count()} CPUs; above that, other work took CPU from the servers)")
    if out:
        os.makedirs(out, exist_ok=True)
        document = {
            "command": "bench-http", "argv": sys.argv[1:],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment(), "redis": redis_info, "settings": settings,
            "summary": rows, "results": [r.to_dict() for r in results],
        }
        path = os.path.join(out, "bench-http.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
        lines.append(f"wrote {path}")
    return "\n".join(lines)

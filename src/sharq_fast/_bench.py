"""The standard benchmark workload of ``sharq-fast bench`` and ``sharq-fast compare``.

Workload: ``n`` jobs over ``queues`` queues (job i goes to queue ``q{i % queues}``, interval
0 so every queue is always ready), a small dict payload; three timed phases: enqueue all,
dequeue all, finish all. "single" makes one call per job (enqueue/dequeue/finish); "batch"
uses enqueue_many/dequeue_many/finish_many with ``batch`` jobs per call.

Per phase: jobs/s (wall clock), client CPU per job (time.process_time of this process, or
of the peer's process) and Redis server CPU per job (INFO cpu, used_cpu_sys+used_cpu_user
deltas: on a shared Redis this includes other clients' load).

Scaling case: single-dequeue throughput with 100, 10,000 and 100,000 ready queues (filled
with enqueue_many, interval 0), over a fixed number of dequeues.

The redis-py baseline is the round-trip floor, not a queue: enqueue = one RPUSH of the
msgpack payload to the job's list, dequeue = one LPOP, finish = one INCR of a counter;
"single" sends one command per call, "batch" sends ``batch`` commands per pipeline
(transaction=False). It has no scaling case (an LPOP does not look for a ready queue).
"""

import contextlib
import json
import math
import os
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import msgspec
import redis
import redis.cluster

from . import _core_py
from . import _core
from ._redis_server import server_cpu as _node_cpu
from .client import Client

try:
    from . import _core_c
except ImportError:  # not built
    _core_c = None

QUEUE_TYPE = "bench"
SCALING_QUEUE_TYPE = "scale"
PAYLOAD: Dict[str, Any] = {"to": "+14155550100", "from": "+14155550199", "text": "hello from sharq-fast bench"}
OPS = ("enqueue", "dequeue", "finish")
#: Dequeued jobs stay active this long (no requeue happens during a benchmark).
BENCH_JOB_EXPIRE_MS = 600_000

SHARQ_FAST = "sharq_fast"
PEER = "sharq 1.3.0"
BASELINE = "redis-py baseline"


class Result(msgspec.Struct, kw_only=True):
    """One timed phase."""

    impl: str
    core: str
    mode: str
    op: str
    jobs: int
    seconds: float
    client_cpu: float
    server_cpu: float
    case: str = "workload"
    ready_queues: int = 0
    rep: int = 0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")

    @property
    def client_us(self) -> float:
        return 1e6 * self.client_cpu / self.jobs if self.jobs else 0.0

    @property
    def server_us(self) -> float:
        return 1e6 * self.server_cpu / self.jobs if self.jobs else 0.0

    def key(self) -> tuple:
        return (self.case, self.ready_queues, self.impl, self.core, self.mode, self.op)

    def to_dict(self) -> Dict[str, Any]:
        data = msgspec.to_builtins(self)
        data.update(jobs_per_s=self.jobs_per_s, client_us_per_job=self.client_us, server_us_per_job=self.server_us)
        return data


# -- progress bar -----------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr (a line per phase when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, max(total, 1), enabled
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        if not (self.enabled and self.tty):
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        filled = 30 * min(done, self.total) // self.total
        sys.stderr.write(
            f"\r  {self.label[:34]:<34} [{'#' * filled}{'.' * (30 - filled)}] {100 * min(done, self.total) // self.total:3d}%"
        )
        sys.stderr.flush()

    def close(self, note: str = "") -> None:
        if not self.enabled:
            return
        if self.tty:
            self.update(self.total, force=True)
            sys.stderr.write(f" {note}\n")
        else:
            sys.stderr.write(f"  {self.label}: {note or 'done'}\n")
        sys.stderr.flush()


# -- plumbing -----------------------------------------------------------------------------


def available_cores() -> Dict[str, Any]:
    """Core name -> module; the compiled core only when it is built."""
    cores: Dict[str, Any] = {}
    if _core_c is not None:
        cores["c"] = _core_c
    cores["py"] = _core_py
    return cores


@contextlib.contextmanager
def use_core(module: Any) -> Iterator[None]:
    """Make sharq_fast use `module` as its core for a while."""
    saved = _core.core
    _core.core = module
    try:
        yield
    finally:
        _core.core = saved


BENCH_PREFIX_BASE = "sharq_fast_bench"


def new_prefix(base: str = BENCH_PREFIX_BASE) -> str:
    """A key prefix of its own, so a benchmark never touches anyone's keys."""
    return f"{base}_{os.getpid()}_{secrets.token_hex(3)}"


def server_cpu(conn: Any) -> float:
    """CPU seconds the Redis server used (on a cluster: summed over its masters)."""
    if isinstance(conn, redis.cluster.RedisCluster):
        from ._bench_cluster import server_cpu as cluster_cpu

        return cluster_cpu(conn)
    return _node_cpu(conn)


def cleanup(conn: redis.Redis, prefix: str) -> int:
    """Delete every key of `prefix` (SCAN + UNLINK; never FLUSHDB). Returns how many."""
    if isinstance(conn, redis.cluster.RedisCluster):
        from ._bench_cluster import cleanup as cluster_cleanup

        return cluster_cleanup(conn, prefix)
    deleted, batch = 0, []
    for key in conn.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += conn.unlink(*batch)
            batch = []
    batch += [f"sharq:deep_status:{prefix}", f"sharq:requeue_lock:{prefix}"]
    deleted += conn.unlink(*batch)
    return deleted


def measure(
    conn: redis.Redis, label: str, total: int, work: Callable[[Progress], int], progress: bool, **fields: Any
) -> Result:
    """Time `work` (which returns how many jobs it handled) and read the CPU it cost."""
    bar = Progress(label, total, progress)
    server0 = server_cpu(conn)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    jobs = work(bar)
    seconds, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result = Result(jobs=jobs, seconds=seconds, client_cpu=cpu, server_cpu=server_cpu(conn) - server0, **fields)
    bar.close(f"{result.jobs_per_s:,.0f} jobs/s")
    return result


def _job(i: int, queues: int) -> Dict[str, Any]:
    return {
        "queue_type": QUEUE_TYPE,
        "queue_id": f"q{i % queues}",
        "job_id": f"j{i}",
        "payload": dict(PAYLOAD, n=i),
        "interval": 0,
    }


# -- sharq_fast ---------------------------------------------------------------------------


def run_sharq_fast(
    make_redis: Callable[[], redis.Redis],
    core_name: str,
    *,
    n: int,
    queues: int,
    batch: int,
    modes: Sequence[str] = ("single", "batch"),
    progress: bool = True,
    rep: int = 0,
    prefix_base: str = BENCH_PREFIX_BASE,
) -> List[Result]:
    """The workload through sharq_fast with one core, each mode on a fresh key prefix."""
    results: List[Result] = []
    with use_core(available_cores()[core_name]):
        for mode in modes:
            prefix = new_prefix(prefix_base)
            conn = make_redis()
            client = Client(conn, key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS)
            try:
                client.load_scripts()
                results += _fast_phases(client, conn, core_name, mode, n, queues, batch, progress, rep)
            finally:
                cleanup(conn, prefix)
                client.close()
                conn.close()
    return results


def _fast_phases(
    client: Client, conn: redis.Redis, core_name: str, mode: str, n: int, queues: int, batch: int, progress: bool, rep: int
) -> List[Result]:
    taken: List[Any] = []
    label = f"{SHARQ_FAST} {core_name} {mode}"
    fields = dict(impl=SHARQ_FAST, core=core_name, mode=mode, rep=rep)

    def enqueue(bar: Progress) -> int:
        if mode == "single":
            for i in range(n):
                client.enqueue(
                    queue_type=QUEUE_TYPE, queue_id=f"q{i % queues}", job_id=f"j{i}", payload=dict(PAYLOAD, n=i), interval=0
                )
                if not i & 511:
                    bar.update(i)
        else:
            for start in range(0, n, batch):
                client.enqueue_many([_job(i, queues) for i in range(start, min(n, start + batch))])
                bar.update(start)
        return n

    def dequeue(bar: Progress) -> int:
        if mode == "single":
            for i in range(n):
                job = client.dequeue(QUEUE_TYPE)
                if job is None:
                    raise RuntimeError(f"dequeue found no ready queue after {i} of {n} jobs")
                taken.append(job)
                if not i & 511:
                    bar.update(i)
        else:
            while len(taken) < n:
                jobs = client.dequeue_many(QUEUE_TYPE, min(batch, n - len(taken)))
                if not jobs:
                    raise RuntimeError(f"dequeue_many found no ready queue after {len(taken)} of {n} jobs")
                taken.extend(jobs)
                bar.update(len(taken))
        return len(taken)

    def finish(bar: Progress) -> int:
        if mode == "single":
            for i, job in enumerate(taken):
                if not client.finish(job.queue_type, job.queue_id, job.job_id):
                    raise RuntimeError(f"finish failed for job {job.job_id}")
                if not i & 511:
                    bar.update(i)
        else:
            for start in range(0, len(taken), batch):
                if not all(client.finish_many(taken[start : start + batch])):
                    raise RuntimeError("finish_many failed for some jobs")
                bar.update(start)
        return len(taken)

    work = {"enqueue": enqueue, "dequeue": dequeue, "finish": finish}
    return [measure(conn, f"{label} {op}", n, work[op], progress, op=op, **fields) for op in OPS]


# -- redis-py baseline ----------------------------------------------------------------------


def run_baseline(
    make_redis: Callable[[], redis.Redis],
    *,
    n: int,
    queues: int,
    batch: int,
    modes: Sequence[str] = ("single", "batch"),
    progress: bool = True,
    rep: int = 0,
    prefix_base: str = BENCH_PREFIX_BASE,
) -> List[Result]:
    """The round-trip floor with plain redis-py: RPUSH / LPOP / INCR (see the module doc)."""
    encode = msgspec.msgpack.encode
    results: List[Result] = []
    for mode in modes:
        prefix = new_prefix(prefix_base)
        conn = make_redis()
        try:
            lists = [f"{prefix}:{QUEUE_TYPE}:q{q}" for q in range(queues)]
            counter = f"{prefix}:finished"

            def run(bar: Progress, command: Callable[[Any, int], Any]) -> int:
                if mode == "single":
                    for i in range(n):
                        command(conn, i)
                        if not i & 511:
                            bar.update(i)
                else:
                    for start in range(0, n, batch):
                        pipe = conn.pipeline(transaction=False)
                        for i in range(start, min(n, start + batch)):
                            command(pipe, i)
                        pipe.execute()
                        bar.update(start)
                return n

            work = {
                "enqueue": lambda bar: run(bar, lambda c, i: c.rpush(lists[i % queues], encode(dict(PAYLOAD, n=i)))),
                "dequeue": lambda bar: run(bar, lambda c, i: c.lpop(lists[i % queues])),
                "finish": lambda bar: run(bar, lambda c, i: c.incr(counter)),
            }
            for op in OPS:
                results.append(
                    measure(conn, f"redis-py {mode} {op}", n, work[op], progress, impl=BASELINE, core="-", mode=mode, op=op, rep=rep)
                )
        finally:
            cleanup(conn, prefix)
            conn.close()
    return results


# -- scaling ----------------------------------------------------------------------------------


def fill_ready_queues(client: Client, size: int, jobs_per_queue: int, progress: bool = True) -> None:
    """`size` ready queues of SCALING_QUEUE_TYPE with `jobs_per_queue` jobs each (interval 0)."""
    total = size * jobs_per_queue
    bar = Progress(f"filling {size:,} ready queues", total, progress)
    jobs = (
        {"queue_type": SCALING_QUEUE_TYPE, "queue_id": f"s{q}", "job_id": f"k{k}", "payload": PAYLOAD, "interval": 0}
        for k in range(jobs_per_queue)
        for q in range(size)
    )
    done, chunk = 0, 5000
    while done < total:
        client.enqueue_many([next(jobs) for _ in range(min(chunk, total - done))])
        done += min(chunk, total - done)
        bar.update(done)
    bar.close(f"{total:,} jobs")


def scaling_dequeues(
    client: Client, conn: redis.Redis, core_name: str, size: int, count: int, progress: bool = True, rep: int = 0
) -> Result:
    """Time `count` single dequeues with `size` ready queues."""
    with use_core(available_cores()[core_name]):
        client = Client(client.redis, key_prefix=client.key_prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS)

        def work(bar: Progress) -> int:
            for i in range(count):
                if client.dequeue(SCALING_QUEUE_TYPE) is None:
                    raise RuntimeError(f"no ready queue after {i} dequeues")
                if not i & 63:
                    bar.update(i)
            return count

        return measure(
            conn, f"{SHARQ_FAST} {core_name} {size:,} ready queues", count, work, progress,
            impl=SHARQ_FAST, core=core_name, mode="single", op="dequeue", case="scaling", ready_queues=size, rep=rep,
        )


def jobs_per_queue_for(size: int, total_dequeues: int) -> int:
    """Jobs per queue so that `size` queues stay ready through `total_dequeues` dequeues."""
    return max(1, math.ceil(total_dequeues / size)) + 1


# -- reporting ----------------------------------------------------------------------------------


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def summarize(results: Sequence[Result], reference_impl: Optional[str] = PEER) -> List[Dict[str, Any]]:
    """One row per (case, ready queues, impl, core, mode, op): medians over repetitions,
    spread = (max - min) / median of jobs/s, and the ratio to the reference (the peer's
    single call of the same op and case) when it ran."""
    groups: Dict[tuple, List[Result]] = {}
    for result in results:
        groups.setdefault(result.key(), []).append(result)
    rows = []
    for key, items in groups.items():
        rates = [r.jobs_per_s for r in items]
        median = statistics.median(rates)
        rows.append(
            {
                "case": key[0], "ready_queues": key[1], "impl": key[2], "core": key[3], "mode": key[4], "op": key[5],
                "reps": len(items),
                "jobs": int(statistics.median(r.jobs for r in items)),
                "jobs_per_s": median,
                "jobs_per_s_min": min(rates),
                "jobs_per_s_max": max(rates),
                "spread": (max(rates) - min(rates)) / median if median else 0.0,
                "client_us_per_job": statistics.median(r.client_us for r in items),
                "server_us_per_job": statistics.median(r.server_us for r in items),
            }
        )
    if reference_impl:
        refs = {(row["case"], row["ready_queues"], row["op"]): row["jobs_per_s"] for row in rows if row["impl"] == reference_impl and row["mode"] == "single"}
        for row in rows:
            ref = refs.get((row["case"], row["ready_queues"], row["op"]))
            row["vs_reference"] = row["jobs_per_s"] / ref if ref else None
    return rows


def format_table(rows: Sequence[Dict[str, Any]], *, with_spread: bool = False, reference: Optional[str] = None) -> str:
    """The rows as a plain-text table."""
    headers = ["case", "impl", "core", "mode", "op", "jobs", "jobs/s", "client us/job", "server us/job"]
    if with_spread:
        headers[7:7] = ["spread"]
    if reference:
        headers.append(f"x {reference}")
    lines = []
    for row in rows:
        case = "workload" if row["case"] == "workload" else f"{row['ready_queues']:,} ready"
        cells = [case, row["impl"], row["core"], row["mode"], row["op"], f"{row['jobs']:,}", _fmt_rate(row["jobs_per_s"])]
        if with_spread:
            cells.append(f"{100 * row['spread']:.1f}%")
        cells += [f"{row['client_us_per_job']:.1f}", f"{row['server_us_per_job']:.1f}"]
        if reference:
            ratio = row.get("vs_reference")
            cells.append(f"{ratio:.1f}x" if ratio else "-")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(headers)]
    numeric = {"jobs", "jobs/s", "spread", "client us/job", "server us/job", f"x {reference}"}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(cells, widths, headers)).rstrip()

    out = [fmt(headers), fmt(["-" * w for w in widths])]
    out += [fmt(cells) for cells in lines]
    return "\n".join(out)


def environment() -> Dict[str, Any]:
    from . import __version__
    from ._core import USE_EXTENSIONS

    return {
        "sharq_fast": __version__,
        "compiled_core_built": _core_c is not None,
        "default_core": "c" if USE_EXTENSIONS else "py",
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def write_outputs(out_dir: str, name: str, document: Dict[str, Any], rows: Sequence[Dict[str, Any]], title: str) -> List[str]:
    """Write DIR/NAME.json and, with matplotlib, DIR/NAME.png. Returns notes for the user."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    json_path = path / f"{name}.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    notes = [f"wrote {json_path}"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notes.append("matplotlib is not installed (pip install 'sharq-fast[bench]'): no PNG chart, JSON only")
        return notes
    png_path = path / f"{name}.png"
    _chart(plt, rows, title, png_path)
    notes.append(f"wrote {png_path}")
    return notes


_COLORS = {
    (SHARQ_FAST, "c"): "#1f77b4",
    (SHARQ_FAST, "py"): "#6baed6",
    (PEER, "-"): "#d62728",
    (BASELINE, "-"): "#7f7f7f",
}


def _plain_log_axis(axis: Any) -> None:
    """Major ticks as plain numbers, no labels on minor ticks (they overlap)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    axis.set_minor_formatter(NullFormatter())


def _chart(plt: Any, rows: Sequence[Dict[str, Any]], title: str, png_path: Path) -> None:
    workload = [r for r in rows if r["case"] == "workload"]
    scaling = [r for r in rows if r["case"] == "scaling"]
    columns = 2 if scaling else 1
    fig, axes = plt.subplots(1, columns, figsize=(15 if scaling else 10, max(4.5, 0.32 * len(workload) + 1.5)), squeeze=False)
    ax = axes[0][0]
    order = sorted(workload, key=lambda r: (OPS.index(r["op"]) if r["op"] in OPS else 9, r["mode"], r["impl"], r["core"]))
    labels = [f"{r['op']} {r['mode']}: {r['impl']}{'' if r['core'] == '-' else ' (' + r['core'] + ')'}" for r in order]
    values = [r["jobs_per_s"] for r in order]
    errors = [[r["jobs_per_s"] - r["jobs_per_s_min"] for r in order], [r["jobs_per_s_max"] - r["jobs_per_s"] for r in order]]
    colors = [_COLORS.get((r["impl"], r["core"]), "#2ca02c") for r in order]
    y = list(range(len(order)))
    ax.barh(y, values, xerr=errors if any(r["reps"] > 1 for r in order) else None, color=colors, capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("jobs/s (log scale, higher is better)")
    ax.set_title("enqueue / dequeue / finish throughput")
    for yi, row in zip(y, order):
        ax.text(max(row["jobs_per_s"], row["jobs_per_s_max"]) * 1.04, yi, f"{row['jobs_per_s']:,.0f}", va="center", fontsize=7)
    ax.grid(axis="x", which="both", alpha=0.3)
    _plain_log_axis(ax.xaxis)
    if values:
        ax.set_xlim(min(values) / 1.5, max(r["jobs_per_s_max"] for r in order) * 3)
    if scaling:
        ax2 = axes[0][1]
        series: Dict[tuple, List[Dict[str, Any]]] = {}
        for r in scaling:
            series.setdefault((r["impl"], r["core"]), []).append(r)
        for (impl, core_name), items in sorted(series.items()):
            items.sort(key=lambda r: r["ready_queues"])
            label = impl if core_name == "-" else f"{impl} ({core_name})"
            xs = [r["ready_queues"] for r in items]
            ys = [r["jobs_per_s"] for r in items]
            ax2.plot(xs, ys, marker="o", label=label, color=_COLORS.get((impl, core_name)))
            for x, v in zip(xs, ys):
                ax2.annotate(f"{v:,.0f}", (x, v), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("ready queues")
        ax2.set_ylabel("single dequeues/s (log scale)")
        ax2.set_title("single dequeue vs. number of ready queues")
        ax2.axhline(4000, color="#2ca02c", linestyle="--", linewidth=1, label="target: 4,000/s at 100k")
        ax2.grid(which="both", alpha=0.3)
        rates = [r["jobs_per_s"] for r in scaling] + [4000]
        ax2.set_ylim(min(rates) / 2, max(rates) * 2)
        _plain_log_axis(ax2.yaxis)
        ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)

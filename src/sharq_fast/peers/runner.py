"""Runs the workloads through every peer's driver against ONE private redis-server.

The server is started once per comparison with the same settings for everyone (no RDB,
no AOF: ``_redis_server.RedisServer``) and flushed (FLUSHALL) before every run, so no run
sees another's keys. Repetitions are interleaved: repetition 1 of every (peer, workload),
then repetition 2, ..., with the peers' order rotated each time, so a slow phase of the
shared machine does not land on one peer only. A driver runs as a subprocess of its
peer's environment: ``<interpreter> drivers/<driver> '<spec JSON>'``, answering one JSON
line on stdout (see drivers/_drvlib.py).
"""

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._peer import PeerUnavailable
from . import stats
from .envs import PeerEnv, ensure_env
from .registry import WORKLOADS, Peer

DRIVERS = Path(__file__).with_name("drivers")


@dataclass
class Settings:
    """Sizes of the workloads (the CLI's --size, --repeat, ...)."""

    jobs: int = 100_000
    repeat: int = 3
    #: the latency workload: jobs sent one at a time at `rate` per second, after a warm-up
    #: (200/s: below every peer's drain rate here, so latency measures the path of one job,
    #: not a backlog)
    rate: float = 200.0
    latency_jobs: int = 2_000
    latency_warmup: int = 100
    #: the SharQ case: `tenants` tenants, the first `hot_tenants` with `hot_jobs` jobs, the
    #: others with `cold_jobs`; each limited to one job per `interval_ms`
    tenants: int = 10_000
    hot_tenants: int = 100
    hot_jobs: int = 20
    cold_jobs: int = 2
    interval_ms: int = 100
    #: the I/O handler's wait
    sleep_ms: float = 1.0
    #: seconds a drain or the rate case may take (from the worker's start): a slower peer
    #: is measured over the jobs it handled by then, and the report says so
    budget: float = 90.0
    #: seconds a worker gets to answer at all
    timeout: float = 900.0


Log = Callable[[str], None]


def plan(workloads: Sequence[str]) -> List[Tuple[str, Tuple[str, ...]]]:
    """(driver workload, reported workloads) runs: one drain run also times the bulk
    enqueue that fills its queue, so enqueue and drain share a run when both are asked."""
    wanted = [w for w in WORKLOADS if w in workloads]
    runs: List[Tuple[str, Tuple[str, ...]]] = []
    for w in wanted:
        if w == "enqueue" and "drain" in wanted:
            continue
        if w == "drain" and "enqueue" in wanted:
            runs.append(("drain", ("enqueue", "drain")))
        else:
            runs.append((w, (w,)))
    return runs


def run_driver(peer: Peer, env: PeerEnv, spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Run one driver; its answer, or {"error": ...} (never raises for a failing run)."""
    argv = [*env.argv, str(DRIVERS / peer.driver), json.dumps(spec)]
    full_env = dict(os.environ)
    full_env.update(env.env)
    full_env.pop("PYTHONPATH", None)  # the peer's environment, not ours
    stderr_path = Path(spec["workdir"]) / "driver.log"
    try:
        with open(stderr_path, "wb") as err:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, env=full_env, cwd=spec["workdir"],
                                  timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"the driver took more than {timeout:.0f} s"}
    except OSError as exc:
        return {"error": f"cannot run {argv[0]}: {exc}"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
        return {"error": f"the driver answered no JSON (exit {done.returncode}): {' | '.join(tail)[-400:]}"}
    return answer if isinstance(answer, dict) else {"error": f"unexpected answer {answer!r}"[:300]}


def driver_spec(peer: Peer, workload: str, settings: Settings, url: str, workdir: str) -> Dict[str, Any]:
    """The JSON spec a driver gets."""
    return {
        "workload": workload, "url": url, "workdir": workdir, "jobs": settings.jobs,
        "concurrency": peer.concurrency.get(workload, 1), "sleep_ms": settings.sleep_ms, "rate": settings.rate,
        "latency_jobs": settings.latency_jobs, "latency_warmup": settings.latency_warmup,
        "tenants": settings.tenants, "hot_tenants": min(settings.hot_tenants, settings.tenants),
        "hot_jobs": settings.hot_jobs, "cold_jobs": settings.cold_jobs, "interval_ms": settings.interval_ms,
        "timeout": settings.timeout, "budget": settings.budget if workload in ("drain", "drain_io", "rate") else 0,
    }


def _describe(metrics: Dict[str, Any], workload: str) -> str:
    if workload == "latency":
        return f"p50 {metrics['p50_ms']:.1f} ms, p99 {metrics['p99_ms']:.1f} ms"
    text = f"{metrics['jobs_per_s']:,.0f} jobs/s"
    if workload == "rate":
        text += f", {metrics['violation_pct']:.1f}% gaps under the limit, hot gap p50 {metrics['hot_gap_p50_ms']:.0f} ms"
    return text


def compare_peers(peers: Sequence[Peer], workloads: Sequence[str], settings: Settings, log: Log) -> Dict[str, Any]:
    """Build (or reuse) every peer's environment, run everything, and return the document
    (settings, machine, versions, per-run records and the summary rows)."""
    from .._redis_server import RedisServer

    envs: Dict[str, PeerEnv] = {}
    runs: List[Dict[str, Any]] = []
    for peer in peers:
        try:
            envs[peer.name] = ensure_env(peer, log)
        except PeerUnavailable as exc:
            log(f"{peer.name}: cannot be set up: {exc}")
            runs += [{"peer": peer.name, "workload": w, "status": "unavailable", "error": str(exc)} for w in workloads]
    for peer in peers:
        for w in workloads:
            if peer.name in envs and w in peer.unsupported:
                runs.append({"peer": peer.name, "workload": w, "status": "not supported", "error": peer.unsupported[w]})
    versions: Dict[str, Dict[str, str]] = {}
    server = RedisServer()
    workroot = tempfile.mkdtemp(prefix="sharq-fast-peers-")
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        import redis

        conn = redis.Redis.from_url(server.url)
        redis_version = conn.info("server")["redis_version"]
        order = [p for p in peers if p.name in envs]
        for rep in range(settings.repeat):
            shift = rep % max(1, len(order))
            for driver_workload, reported in plan(workloads):
                for peer in order[shift:] + order[:shift]:
                    todo = [w for w in reported if w not in peer.unsupported]
                    if not todo:
                        continue
                    conn.flushall()
                    workdir = tempfile.mkdtemp(prefix=f"{peer.name}-{driver_workload}-", dir=workroot)
                    spec = driver_spec(peer, driver_workload, settings, server.url, workdir)
                    answer = run_driver(peer, envs[peer.name], spec, settings.timeout + 300)
                    versions.setdefault(peer.name, answer.get("versions") or {})
                    for w in todo:
                        record: Dict[str, Any] = {"peer": peer.name, "workload": w, "rep": rep}
                        if "error" in answer:
                            record.update(status="error", error=answer["error"])
                            log(f"[{rep + 1}/{settings.repeat}] {peer.name} {w}: ERROR {answer['error']}")
                        else:
                            try:
                                record.update(status="ok", metrics=stats.metrics_for(w, answer, spec))
                                log(f"[{rep + 1}/{settings.repeat}] {peer.name} {w}: {_describe(record['metrics'], w)}")
                            except Exception as exc:  # one bad answer must not lose the whole comparison
                                record.update(status="error", error=f"bad answer: {type(exc).__name__}: {exc}")
                                log(f"[{rep + 1}/{settings.repeat}] {peer.name} {w}: ERROR {record['error']}")
                        runs.append(record)
                    shutil.rmtree(workdir, ignore_errors=True)
        conn.close()
    finally:
        server.stop()
        shutil.rmtree(workroot, ignore_errors=True)
    return {
        "command": "compare --peers",
        "date": started.isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "workloads": list(workloads),
        "machine": machine_info(redis_version),
        "peers": {p.name: {"requirements": list(p.requirements), "driver": p.driver, "concurrency": p.concurrency,
                           "versions": versions.get(p.name, {}), "environment": envs[p.name].where if p.name in envs else None}
                  for p in peers},
        "runs": runs,
        "summary": stats.summarize(runs),
    }


def _command_version(argv: List[str]) -> Optional[str]:
    if not shutil.which(argv[0]):
        return None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info(redis_version: str) -> Dict[str, Any]:
    """CPU, cores, kernel and the versions of what ran."""
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "os": platform.platform(),
        "memory_gib": _memory_gib(), "python": platform.python_version(), "node": _command_version(["node", "--version"]),
        "redis_server": redis_version, "redis_persistence": "none (save '', appendonly no)",
        "python_executable": sys.executable,
    }


def _memory_gib() -> Optional[float]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None

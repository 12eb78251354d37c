"""``sharq-fast compare --peers``: the stats and the report (fast), and every peer's driver
with tiny sizes against a private redis-server (slow: the first run builds each peer's
environment in ~/.cache/sharq-fast/peers; later runs reuse them). A peer whose
environment cannot be built here is skipped with the reason; a driver that breaks with a
peer's API change fails its test."""

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from sharq_fast._peer import PeerUnavailable
from sharq_fast._redis_server import RedisServer
from sharq_fast.cli import main
from sharq_fast.peers import command, registry, report, runner, stats
from sharq_fast.peers.envs import ensure_env, env_dir


@pytest.fixture
def core() -> None:
    """Overrides the suite's both-cores fixture: the peers run once, in their own processes."""
    return None


# -- stats -----------------------------------------------------------------------------------


def _records(starts, *, warm=None, sent=None, tenants=None, last_end=None) -> Dict[str, Any]:
    return {
        "starts": starts, "warm": warm or [0] * len(starts), "sent": sent or [None] * len(starts),
        "tenants": tenants or [None] * len(starts), "last_end": last_end if last_end is not None else max(starts),
        "handled": len(starts),
    }


def test_percentile() -> None:
    assert stats.percentile([3, 1, 2], 50) == 2
    assert stats.percentile([0, 10], 99) == pytest.approx(9.9)
    assert stats.percentile([5], 1) == 5
    assert math.isnan(stats.percentile([], 50))


def test_drain_metrics_exclude_warmup() -> None:
    # 2 warm-up jobs (their slow start is not counted), then 4 jobs from t=10 to the last end at t=12.
    records = _records([0.0, 5.0, 10.0, 10.5, 11.0, 11.5], warm=[1, 1, 0, 0, 0, 0], last_end=12.0)
    metrics = stats.drain_metrics(records)
    assert metrics["jobs"] == 4 and metrics["seconds"] == pytest.approx(2.0) and metrics["jobs_per_s"] == pytest.approx(2.0)


def test_latency_metrics() -> None:
    records = _records([1.001, 2.002, 3.010], sent=[1.0, 2.0, 3.0], warm=[1, 0, 0])
    metrics = stats.latency_metrics(records)
    assert metrics["jobs"] == 2
    assert metrics["p50_ms"] == pytest.approx(6.0) and metrics["max_ms"] == pytest.approx(10.0)


def test_rate_metrics() -> None:
    spec = {"interval_ms": 100, "hot_tenants": 1, "hot_jobs": 3}
    # t0 (hot): 100 ms and 150 ms apart: fine; t1: 50 ms apart: one violation; t2: 99.5 ms (tolerated).
    records = _records(
        [0.0, 0.1, 0.25, 0.0, 0.05, 0.0, 0.0995],
        tenants=["t0", "t0", "t0", "t1", "t1", "t2", "t2"],
        last_end=0.3,
    )
    m = stats.rate_metrics(records, spec)
    assert m["gaps"] == 4 and m["violations"] == 1 and m["violation_pct"] == pytest.approx(25.0)
    assert m["min_gap_ms"] == pytest.approx(50.0)
    assert m["hot_gap_p50_ms"] == pytest.approx(125.0)
    assert m["ideal_s"] == pytest.approx(0.2) and m["jobs_per_s"] == pytest.approx(7 / 0.3)


def test_summarize_medians_spread_and_errors() -> None:
    runs = [
        {"peer": "a", "workload": "drain", "rep": 0, "status": "ok", "metrics": {"jobs_per_s": 100.0}},
        {"peer": "a", "workload": "drain", "rep": 1, "status": "ok", "metrics": {"jobs_per_s": 300.0}},
        {"peer": "a", "workload": "drain", "rep": 2, "status": "ok", "metrics": {"jobs_per_s": 200.0}},
        {"peer": "b", "workload": "drain", "rep": 0, "status": "error", "error": "boom"},
        {"peer": "c", "workload": "rate", "status": "not supported", "error": "no limiter"},
    ]
    rows = {(r["peer"], r["workload"]): r for r in stats.summarize(runs)}
    a = rows[("a", "drain")]
    assert a["jobs_per_s"] == 200.0 and a["spread"] == pytest.approx(1.0) and a["reps"] == 3
    assert rows[("b", "drain")]["status"] == "error" and rows[("b", "drain")]["errors"] == ["boom"]
    assert rows[("c", "rate")]["status"] == "not supported"


def _drvlib(monkeypatch, tmp_path: Path, **env: str) -> Any:
    """A fresh copy of the drivers' shared module with the worker environment `env`."""
    import importlib.util

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("_drvlib_test", runner.DRIVERS / "_drvlib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recorder_writes_when_every_job_is_done(monkeypatch, tmp_path: Path) -> None:
    result = tmp_path / "r.json"
    lib = _drvlib(monkeypatch, tmp_path, SFB_RESULT=str(result), SFB_EXPECT="3")
    rec = lib.Recorder()
    for i in range(3):
        assert not result.exists()
        rec.handle(lib.payload(i, w=1 if i == 0 else 0, t=1.0, k="t1"))
    data = json.loads(result.read_text())
    assert data["handled"] == data["expected"] == 3 and data["warm"] == [1, 0, 0] and data["tenants"] == ["t1"] * 3
    assert (tmp_path / "r.json.ready").exists() and data["last_end"] >= max(data["starts"])


def test_recorder_stops_at_the_budget(monkeypatch, tmp_path: Path) -> None:
    result = tmp_path / "r.json"
    lib = _drvlib(monkeypatch, tmp_path, SFB_RESULT=str(result), SFB_EXPECT="100", SFB_DEADLINE="1")  # long past
    rec = lib.Recorder()
    rec.handle(lib.payload(0))
    data = json.loads(result.read_text())
    assert data["handled"] == 1 and data["expected"] == 100
    assert stats.drain_metrics(data)["partial"] is True


def test_rate_plan_is_tenant_by_tenant() -> None:
    lib_path = runner.DRIVERS / "_drvlib.py"
    namespace: Dict[str, Any] = {"__name__": "_drvlib_plan"}
    exec(compile(lib_path.read_text(), str(lib_path), "exec"), namespace)
    plan = namespace["rate_plan"]({"tenants": 3, "hot_tenants": 1, "hot_jobs": 3, "cold_jobs": 2})
    assert [p["k"] for p in plan] == ["t0", "t0", "t0", "t1", "t1", "t2", "t2"]
    assert [p["n"] for p in plan] == list(range(7))


# -- runner, registry, command ------------------------------------------------------------------


def test_plan_shares_the_enqueue_of_a_drain_run() -> None:
    assert runner.plan(["enqueue", "drain", "latency"]) == [("drain", ("enqueue", "drain")), ("latency", ("latency",))]
    assert runner.plan(["enqueue"]) == [("enqueue", ("enqueue",))]
    assert runner.plan(["rate", "drain_io"]) == [("drain_io", ("drain_io",)), ("rate", ("rate",))]


def test_registry() -> None:
    assert registry.ALL_PEERS[0] == "sharq_fast"
    assert {"sharq", "bullmq", "rq", "arq", "saq", "dramatiq", "celery", "huey", "taskiq"} <= set(registry.ALL_PEERS)
    assert [p.name for p in registry.select(["rq"])] == ["sharq_fast", "rq"]
    assert registry.PEERS["rq"].version_spec == "3.0.0" and registry.PEERS["bullmq"].version_spec == "6.7.0"
    for peer in registry.PEERS.values():
        assert (runner.DRIVERS / peer.driver).exists(), peer.driver
        # A workload is run or says why not: never silently dropped.
        assert all(reason for reason in peer.unsupported.values())
    assert env_dir(registry.PEERS["rq"]).name.startswith("rq-3.0.0-")


def test_parse_names() -> None:
    assert command.parse_names(None, ["a", "b"], "peer") == ["a", "b"]
    assert command.parse_names("b,a", ["a", "b"], "peer") == ["a", "b"]
    with pytest.raises(command.PeersUsageError, match="unknown peer x"):
        command.parse_names("x", ["a"], "peer")


def test_settings_for_small_sizes() -> None:
    s = command.settings_for(200, 1, tenants=100)
    assert (s.jobs, s.latency_jobs, s.tenants, s.hot_tenants) == (200, 50, 100, 1)
    assert command.settings_for(100_000, 3).latency_jobs == 2000


def test_drivers_reach_only_the_runners_redis() -> None:
    """No driver falls back to a default Redis (the shared one on 6379): the URL comes from the spec."""
    for path in runner.DRIVERS.iterdir():
        if path.suffix in (".py", ".cjs"):
            text = path.read_text()
            assert "6379/" not in text and "localhost" not in text, path.name
            if path.suffix == ".py" and path.name != "peer_sharq_fast.py":
                imports = [line for line in text.splitlines() if re.match(r"\s*(import|from)\s", line)]
                assert not [line for line in imports if "sharq_fast" in line], path.name


def test_compare_peers_refuses_a_shared_redis(capsys) -> None:
    assert main(["compare", "--peers", "rq", "--url", "redis://127.0.0.1:1/0"]) == 1
    assert "private redis-server only" in capsys.readouterr().err


def test_unknown_peer_is_one_line(capsys) -> None:
    assert main(["compare", "--peers", "kafka"]) == 1
    assert "unknown peer kafka" in capsys.readouterr().err


def _document() -> Dict[str, Any]:
    runs = [
        {"peer": "sharq_fast", "workload": "drain", "rep": 0, "status": "ok", "metrics": {"jobs_per_s": 1000.0}},
        {"peer": "sharq_fast", "workload": "latency", "rep": 0, "status": "ok",
         "metrics": {"p50_ms": 1.5, "p99_ms": 4.0, "max_ms": 9.0}},
        {"peer": "rq", "workload": "drain", "status": "unavailable", "error": "pip install failed"},
        {"peer": "rq", "workload": "latency", "status": "unavailable", "error": "pip install failed"},
    ]
    return {
        "settings": {"jobs": 100, "repeat": 1, "latency_jobs": 50, "rate": 500.0, "tenants": 10, "hot_tenants": 1,
                     "hot_jobs": 3, "cold_jobs": 2, "interval_ms": 100},
        "workloads": ["drain", "latency"],
        "machine": {"cpu": "x", "cores": 2, "kernel": "k", "python": "3", "node": "v20", "redis_server": "7"},
        "peers": {"sharq_fast": {"versions": {"sharq_fast": "0.1.0"}}, "rq": {"versions": {}}},
        "runs": runs,
        "summary": stats.summarize(runs),
    }


def test_report_table_notes_and_outputs(tmp_path: Path, capsys) -> None:
    document = _document()
    table = report.format_table(document)
    assert "drain jobs/s" in table and "1,000" in table and "unavailable" in table
    assert report.markdown_table(document).startswith("| peer |")
    assert report.notes(document) == ["rq: unavailable: pip install failed"]
    report.print_report(document)
    assert "note: rq: unavailable: pip install failed" in capsys.readouterr().out
    written = report.write_outputs(str(tmp_path), document)
    assert json.loads((tmp_path / "peers.json").read_text())["summary"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no PNG" in written[-1]
    else:
        assert (tmp_path / "peers.png").stat().st_size > 0


# -- every driver, tiny sizes (slow) ---------------------------------------------------------------

TINY = runner.Settings(jobs=200, repeat=1, rate=200.0, latency_jobs=40, latency_warmup=10, tenants=100, hot_tenants=1,
                       hot_jobs=5, cold_jobs=2, interval_ms=100, timeout=120.0)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[str]:
    server = RedisServer()
    yield server.url
    server.stop()


_ENVS: Dict[str, Any] = {}


def _env_or_skip(name: str) -> Any:
    if name not in _ENVS:
        try:
            _ENVS[name] = ensure_env(registry.PEERS[name])
        except PeerUnavailable as exc:
            _ENVS[name] = exc
    env = _ENVS[name]
    if isinstance(env, PeerUnavailable):
        pytest.skip(f"{name} cannot be set up here: {env}")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.ALL_PEERS)
def test_driver(name: str, private_redis: str, tmp_path: Path) -> None:
    import redis

    peer = registry.PEERS[name]
    env = _env_or_skip(name)
    conn = redis.Redis.from_url(private_redis)
    try:
        for driver_workload, reported in runner.plan(registry.WORKLOADS):
            todo = [w for w in reported if w not in peer.unsupported]
            if not todo:
                continue
            conn.flushall()
            workdir = tmp_path / driver_workload
            workdir.mkdir()
            spec = runner.driver_spec(peer, driver_workload, TINY, private_redis, str(workdir))
            answer = runner.run_driver(peer, env, spec, timeout=300)
            assert "error" not in answer, f"{name} {driver_workload}: {answer.get('error')}"
            assert answer["versions"], answer
            for w in todo:
                m = stats.metrics_for(w, answer, spec)
                if w in ("enqueue", "drain", "drain_io"):
                    assert m["jobs"] == TINY.jobs and 0 < m["jobs_per_s"] < math.inf, (w, m)
                elif w == "latency":
                    assert m["jobs"] == TINY.latency_jobs and 0 <= m["p50_ms"] <= m["p99_ms"], m
                else:
                    assert m["jobs"] == 1 * 5 + 99 * 2 and m["gaps"] == 4 + 99, m
                    if name in ("sharq_fast", "sharq"):
                        # The busy tenant's jobs are spaced by the queue's interval.
                        assert m["hot_gap_p50_ms"] >= 99, m
    finally:
        conn.flushall()
        conn.close()


@pytest.mark.slow
def test_compare_peers_command(tmp_path: Path, capsys) -> None:
    """The command end to end: sharq_fast and sharq 1.3.0, two workloads, JSON and chart."""
    _env_or_skip("sharq")
    code = main(["compare", "--peers", "sharq", "--workloads", "enqueue,drain", "--size", "200", "--repeat", "2",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "enqueue jobs/s" in out and "sharq_fast" in out
    document = json.loads((tmp_path / "peers.json").read_text())
    rows = {(r["peer"], r["workload"]): r for r in document["summary"]}
    assert rows[("sharq", "drain")]["reps"] == 2 and rows[("sharq_fast", "enqueue")]["jobs_per_s"] > 0
    assert document["peers"]["sharq"]["versions"]["sharq"] == "1.3.0"
    assert document["machine"]["cores"] and document["machine"]["redis_server"]

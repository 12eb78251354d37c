"""The ``sharq-fast`` command line: bench, compare, stats, requeue and its errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import pytest
import redis

import sharq_fast
from sharq_fast import _peer
from sharq_fast._bench import available_cores
from sharq_fast.cli import main

from redis_server import free_port


def _core_name(core: Any) -> str:
    return core.__name__.rsplit("_", 1)[-1]  # sharq_fast._core_c -> "c"


def _env(core: Any) -> dict:
    env = dict(os.environ)
    env.pop("SHARQ_FAST_DEBUG", None)
    if _core_name(core) == "py":
        env["SHARQ_FAST_NO_EXTENSIONS"] = "1"
    return env


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- bench ----------------------------------------------------------------------------


def test_bench_writes_json_and_chart(r: redis.Redis, redis_server_url: str, core: Any, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "bench", "--url", redis_server_url, "--n", "200", "--queues", "10", "--batch", "50",
            "--cores", _core_name(core), "--scaling-sizes", "100,1000", "--scaling-dequeues", "50",
            "--wake-samples", "10", "--idle-consumers", "2", "--idle-seconds", "0.5",
            "--consumer-n", "300", "--consumer-queues", "10",
            "--out", str(out), "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "Consumer, no-op" in printed and "AsyncConsumer x256, 1 ms I/O" in printed
    assert "idle Consumer:" in printed and "Redis commands/s" in printed
    assert "jobs/s" in printed and "client us/job" in printed and "server us/job" in printed
    document = json.loads((out / "bench.json").read_text())
    workload = [row for row in document["results"] if row["case"] == "workload"]
    modes = ("single", "batch", "async single", "async single x100", "async batch")
    assert {(row["mode"], row["op"]) for row in workload} == {
        (mode, op) for mode in modes for op in ("enqueue", "dequeue", "finish")
    }
    # The AsyncClient cases: wake-up latency and idle consumers of both transports, the checks.
    cases = document["async"]
    assert [(c["transport"], c["samples"]) for c in cases["latency"]] == [("sync", 10), ("async", 10)]
    assert all(0 < c["p50_ms"] <= c["p99_ms"] <= c["max_ms"] for c in cases["latency"])
    assert [(c["transport"], c["consumers"]) for c in cases["idle"]] == [("sync", 2), ("async", 2)]
    assert all(c["commands_per_s_each"] >= 0 and c["cpu_pct_each"] >= 0 for c in cases["idle"])
    assert len(cases["checks"]) == 8 and printed.count("async check:") == 8
    assert all(row["jobs"] == 200 and row["jobs_per_s"] > 0 and row["core"] == _core_name(core) for row in workload)
    scaling = [row for row in document["results"] if row["case"] == "scaling"]
    assert sorted(row["ready_queues"] for row in scaling) == [100, 1000]
    assert all(row["server_us_per_job"] >= 0 and row["client_us_per_job"] > 0 for row in document["results"])
    assert (out / "bench.png").exists() == _has_matplotlib()
    # Its private key prefix is gone; nothing else was touched.
    assert r.keys("sharq_fast_bench*") == []


def test_bench_private_server_and_core_switch(core: Any, tmp_path: Path) -> None:
    """Without --url, bench runs its own redis-server (the compiled core, when built, and the pure one)."""
    done = subprocess.run(
        [sys.executable, "-m", "sharq_fast", "bench", "--n", "100", "--queues", "5", "--no-scaling", "--no-progress",
         "--modes", "batch", "--no-async", "--no-consumer", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=_env(core),
    )
    assert done.returncode == 0, done.stderr
    assert "private redis-server" in done.stdout
    cores = {row["core"] for row in json.loads((tmp_path / "bench.json").read_text())["results"]}
    assert cores == set(available_cores())


# -- compare ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def peer_python() -> str:
    """The sharq 1.3.0 virtualenv (built once, then cached), or skip when it cannot be built."""
    try:
        return _peer.ensure_peer_python()
    except _peer.PeerUnavailable as exc:
        pytest.skip(f"sharq 1.3.0 virtualenv unavailable: {exc}")


@pytest.mark.slow
def test_compare(r: redis.Redis, redis_server_url: str, core: Any, peer_python: str, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "compare", "--url", redis_server_url, "--n", "100", "--queues", "10", "--repeat", "2",
            "--cores", _core_name(core), "--scaling-sizes", "100", "--scaling-dequeues", "20",
            "--no-async", "--out", str(tmp_path), "--no-progress",
            "--consumer-n", "200", "--consumer-queues", "10", "--idle-seconds", "0.3",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "sharq 1.3.0 loop, no-op" in printed and "vs sharq loop" in printed and "redis-py baseline" in printed and "x sharq 1.3.0" in printed
    document = json.loads((tmp_path / "compare.json").read_text())
    assert document["peer"]["versions"]["sharq"] == "1.3.0"
    impls = {row["impl"] for row in document["results"]}
    assert impls == {"sharq_fast", "sharq 1.3.0", "redis-py baseline"}
    peer_rows = [row for row in document["summary"] if row["impl"] == "sharq 1.3.0"]
    assert {row["op"] for row in peer_rows} == {"enqueue", "dequeue", "finish"}
    assert all(row["reps"] == 2 and row["vs_reference"] == pytest.approx(1.0) for row in peer_rows)
    assert (tmp_path / "compare.png").exists() == _has_matplotlib()
    assert r.keys("sharq_fast_bench*") == []
    consumer = document["consumer"]
    loops = {row["case"]: row for row in consumer["summary"]}
    assert loops["sharq 1.3.0 loop, 1 ms I/O"]["vs_sharq_loop"] == pytest.approx(1.0)
    assert loops["Consumer, no-op"]["jobs"] == 200 and loops["Consumer, no-op"]["vs_sharq_loop"] > 0
    assert [row["case"] for row in consumer["idle"]] == ["idle Consumer", "idle AsyncConsumer"]


def test_peer_runner_imports_no_sharq_fast() -> None:
    source = _peer.RUNNER.read_text()
    imports = [line for line in source.splitlines() if re.match(r"\s*(import|from)\s", line)]
    assert imports and not [line for line in imports if "sharq_fast" in line or re.match(r"\s*from\s+\.", line)]


def test_peer_config_is_clean(tmp_path: Path) -> None:
    path = _peer.write_peer_config(tmp_path / "sharq.conf", {"host": "127.0.0.1", "port": 6390, "db": 2}, "pfx")
    text = Path(path).read_text()
    assert ";" not in text and "#" not in text
    for line in ("conn_type = tcp_sock", "port = 6390", "db = 2", "key_prefix = pfx", "clustered = false",
                 "job_expire_interval = 1000", "default_job_requeue_limit = -1", "password = "):
        assert line in text


# -- stats ----------------------------------------------------------------------------------


@pytest.fixture
def real_client(r: redis.Redis, redis_server_url: str):
    """A client on the real clock (the CLI uses real time)."""
    with sharq_fast.Client(redis_server_url, job_expire_interval=100) as c:
        yield c


def test_stats(real_client: sharq_fast.Client, redis_server_url: str, capsys) -> None:
    for i in range(3):
        real_client.enqueue(queue_type="sms", queue_id="q1", job_id=f"j{i}", payload={"i": i}, interval=0)
    real_client.enqueue(queue_type="sms", queue_id="q2", job_id="x", payload=1, interval=0)
    assert real_client.dequeue("sms") is not None

    assert main(["stats", "--url", redis_server_url]) == 0
    table = capsys.readouterr().out
    assert "queue types: sms" in table and "enqueued" in table and "dequeued" in table
    assert main(["stats", "--url", redis_server_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queue_types"] == ["sms"]
    assert sum(data["enqueue_counts"].values()) == 4 and sum(data["dequeue_counts"].values()) == 1
    assert len(data["enqueue_counts"]) == 10

    assert main(["stats", "sms", "--url", redis_server_url]) == 0
    table = capsys.readouterr().out
    assert "2 queues" in table and "q1" in table and "q2" in table
    assert main(["stats", "sms", "--url", redis_server_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queue_ids"] == ["q1", "q2"] and data["queue_lengths"] == {"q1": 2, "q2": 1}

    assert main(["stats", "sms", "q1", "--url", redis_server_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["queue_length"] == 2
    assert sum(data["enqueue_counts"].values()) == 3 and sum(data["dequeue_counts"].values()) == 1
    assert main(["stats", "sms", "q1", "--url", redis_server_url]) == 0
    assert "queue length 2" in capsys.readouterr().out


def test_stats_key_prefix_and_config(r: redis.Redis, redis_server_url: str, tmp_path: Path, capsys) -> None:
    port = r.connection_pool.connection_kwargs["port"]
    with sharq_fast.Client(redis_server_url, key_prefix="other") as c:
        c.enqueue(queue_type="mail", queue_id="a", job_id="j", payload=None, interval=0)
    conf = tmp_path / "sharq.conf"
    conf.write_text(f"[sharq]\njob_expire_interval = 1000\n[redis]\nhost = 127.0.0.1\nport = {port}\nkey_prefix = other ; comment\n")
    assert main(["stats", "--config", str(conf), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queue_types"] == ["mail"]
    assert main(["stats", "--url", redis_server_url, "--key-prefix", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queue_types"] == ["mail"]
    assert main(["stats", "--url", redis_server_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queue_types"] == []


# -- requeue -------------------------------------------------------------------------------------


def _expire_one(client: sharq_fast.Client, queue_id: str = "q1") -> None:
    client.enqueue(queue_type="sms", queue_id=queue_id, job_id="j1", payload="hello", interval=0)
    assert client.dequeue("sms") is not None
    assert client.queue_length("sms", queue_id) == 0
    time.sleep(0.15)  # job_expire_interval is 100 ms


def test_requeue_once(real_client: sharq_fast.Client, redis_server_url: str, capsys) -> None:
    _expire_one(real_client)
    assert main(["requeue", "--url", redis_server_url]) == 0
    assert "requeued 1 jobs, discarded 0" in capsys.readouterr().out
    assert real_client.queue_length("sms", "q1") == 1
    job = real_client.dequeue("sms")
    assert job is not None and job.job_id == "j1" and job.payload == "hello"


def test_requeue_once_reports_discarded(real_client: sharq_fast.Client, redis_server_url: str, capsys) -> None:
    real_client.enqueue(queue_type="sms", queue_id="q1", job_id="once", payload=1, interval=0, requeue_limit=0)
    assert real_client.dequeue("sms") is not None
    time.sleep(0.15)
    assert main(["requeue", "--url", redis_server_url]) == 0
    printed = capsys.readouterr().out
    assert "discarded 1" in printed and "discarded sms/q1/once" in printed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_requeue_daemon(real_client: sharq_fast.Client, redis_server_url: str, core: Any) -> None:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sharq_fast", "requeue", "--loop", "--url", redis_server_url, "--interval", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(core),
    )
    try:
        _expire_one(real_client)
        deadline = time.monotonic() + 15
        while real_client.queue_length("sms", "q1") == 0:
            assert daemon.poll() is None, daemon.communicate()
            assert time.monotonic() < deadline, "the daemon did not requeue the expired job"
            time.sleep(0.05)
        job = real_client.dequeue("sms")
        assert job is not None and job.job_id == "j1"
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=15)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, err
    assert "requeue daemon started" in err
    assert "requeued 1 jobs" in err
    assert "got SIGTERM" in err and "requeue daemon stopped" in err
    assert "Traceback" not in err
    # It released the prefix's requeue lock.
    assert real_client.redis.get("sharq:requeue_lock:sharq_server") is None


# -- errors ---------------------------------------------------------------------------------------


def test_no_redis_is_one_line(capsys) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["stats", "--url", url]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("sharq-fast: error: cannot reach Redis at redis://127.0.0.1:")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["stats", "--config", "/nonexistent/sharq.conf"], "cannot read SharQ config"),
        (["stats", "--url", "http://example.com"], "bad --url"),
        (["stats", "--url", "redis://x", "--config", "y"], "give --url or --config, not both"),
        (["stats", "bad type!", "--url", "redis://127.0.0.1:1/0"], "cannot reach"),
    ],
)
def test_bad_input_is_one_line(argv: List[str], expected: str, capsys) -> None:
    assert main(argv) == 1
    assert expected in _one_error_line(capsys.readouterr().err)


def test_bad_config_value(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "sharq.conf"
    conf.write_text("[redis]\nport = sixty\n")
    assert main(["stats", "--config", str(conf)]) == 1
    assert "port must be an integer" in _one_error_line(capsys.readouterr().err)


def test_config_that_is_not_ini(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "sharq.conf"
    conf.write_text("not: ini\nat all\n")
    assert main(["requeue", "--config", str(conf)]) == 1
    assert "is not valid INI" in _one_error_line(capsys.readouterr().err)


def test_bad_queue_type_is_one_line(r: redis.Redis, redis_server_url: str, capsys) -> None:
    assert main(["stats", "bad type!", "--url", redis_server_url]) == 1
    assert "queue_type" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv",
    [["bench", "--n", "0"], ["bench", "--modes", "fast"], ["bogus"], [], ["stats", "a", "b", "c"]],
)
def test_bad_arguments_exit_2(argv: List[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in _one_error_line(capsys.readouterr().err)


def test_console_script_and_module(core: Any) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run([sys.executable, "-m", "sharq_fast", "stats", "--url", url], capture_output=True, text=True,
                          timeout=60, env=_env(core))
    assert done.returncode == 1
    assert _one_error_line(done.stderr).startswith("sharq-fast: error: cannot reach Redis")
    script = Path(sys.executable).with_name("sharq-fast")
    if script.exists():
        done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith("sharq-fast ")

"""`sharq-fast worker` end to end: the command runs in a subprocess against the suite's
private redis-server with handlers from tests/worker_handlers.py, which log each job they
start and finish to a file. Real processes, real signals (SIGTERM drains, SIGKILL loses
nothing after the lease)."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest
import redis

from sharq_fast import Client

pytestmark = [pytest.mark.compiled_core_only, pytest.mark.single_node]

TESTS = Path(__file__).parent
QUEUE_TYPE = "wt"


class Worker:
    """A `python -m sharq_fast worker ...` subprocess and its handler log."""

    def __init__(self, url: str, prefix: str, log: Path, *extra: str, handler: str = "worker_handlers:handle",
                 expire_ms: int = 5000, sleep: float = 0.0, queue_types: List[str] = (QUEUE_TYPE,),
                 config: Optional[Path] = None) -> None:
        env = dict(os.environ, WORKER_TEST_LOG=str(log), WORKER_TEST_SLEEP=str(sleep),
                   PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        where = ["--config", str(config)] if config else ["--url", url, "--key-prefix", prefix,
                                                           "--job-expire-interval", str(expire_ms)]
        argv = [sys.executable, "-m", "sharq_fast", "worker", handler, *where, "--no-status", "--log-every", "0.5"]
        for queue_type in queue_types:
            argv += ["--queue-type", queue_type]
        self.err_path = log.with_name(f"worker-{uuid.uuid4().hex[:6]}.err")
        with open(self.err_path, "wb") as err:  # a file: readable while the worker runs
            self.proc = subprocess.Popen(argv + list(extra), env=env, stdout=subprocess.DEVNULL, stderr=err)

    @property
    def err(self) -> bytes:
        return self.err_path.read_bytes()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the worker did not exit in {timeout} s:\n{self.err.decode()[-3000:]}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_log(log: Path) -> Dict[str, List[str]]:
    """{"start": [job ids...], "done": [...]} in file order (and "pids")."""
    seen: Dict[str, List[str]] = {"start": [], "done": [], "pids": []}
    if log.exists():
        for line in log.read_text().splitlines():
            what, job_id, pid = line.split()
            seen[what].append(job_id)
            seen["pids"].append(pid)
    return seen


def wait_for(predicate, what: str, timeout: float = 30.0, worker: Optional[Worker] = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if worker is not None and worker.proc.poll() is not None:
            worker.wait()
            raise AssertionError(f"the worker exited ({worker.proc.returncode}) before {what}:\n{worker.err.decode()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def prefix(r: redis.Redis) -> str:
    return f"wt{uuid.uuid4().hex[:8]}"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "handled.log"


@pytest.fixture
def workers():
    started: List[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def enqueue(url: str, prefix: str, n: int, queues: int = 10, queue_type: str = QUEUE_TYPE) -> Set[str]:
    with Client(url, key_prefix=prefix) as client:
        jobs = [{"queue_type": queue_type, "queue_id": f"q{i % queues}", "job_id": f"j{i}", "payload": {"i": i},
                 "interval": 0} for i in range(n)]
        assert client.enqueue_many(jobs).enqueued == n
    return {f"j{i}" for i in range(n)}


def left_in_redis(r: redis.Redis, prefix: str, queue_type: str = QUEUE_TYPE) -> Dict[str, int]:
    return {"payloads": r.hlen(f"{prefix}:payload"), "active": r.zcard(f"{prefix}:{queue_type}:active"),
            "ready": r.zcard(f"{prefix}:{queue_type}")}


NOTHING_LEFT = {"payloads": 0, "active": 0, "ready": 0}


@pytest.mark.parametrize("handler", ["worker_handlers:handle", "worker_handlers:handle_async"])
def test_worker_handles_every_job_and_stops_on_sigterm(redis_server_url, r, prefix, log, workers, handler):
    ids = enqueue(redis_server_url, prefix, 300)
    worker = Worker(redis_server_url, prefix, log, "--concurrency", "4", handler=handler)
    workers.append(worker)
    wait_for(lambda: set(read_log(log)["done"]) == ids and left_in_redis(r, prefix) == NOTHING_LEFT,
             "every job handled and finished", worker=worker)
    assert worker.stop() == 0, worker.err.decode()
    seen = read_log(log)
    assert sorted(seen["done"]) == sorted(ids)  # each once: no job ran twice
    err = worker.err.decode()
    assert ("AsyncConsumer" in err) == handler.endswith("_async")
    assert "processed 300" in err  # the final status line


def test_sigterm_drains_running_jobs_and_releases_fetched_ones(redis_server_url, r, prefix, log, workers):
    ids = enqueue(redis_server_url, prefix, 40, queues=40)
    worker = Worker(redis_server_url, prefix, log, "--concurrency", "4", "--grace-period", "20", sleep=0.6,
                    expire_ms=5000)
    workers.append(worker)
    wait_for(lambda: len(read_log(log)["start"]) >= 4, "jobs started", worker=worker)
    assert worker.stop() == 0, worker.err.decode()
    seen = read_log(log)
    assert seen["start"] and sorted(seen["start"]) == sorted(seen["done"])  # every started job ran to the end
    done = set(seen["done"])
    assert len(done) < len(ids)
    left = left_in_redis(r, prefix)
    assert left["active"] == 0  # finished, or released: nothing waits for its lease to expire
    assert left["payloads"] == len(ids - done)  # the rest are queued again, at once
    with Client(redis_server_url, key_prefix=prefix) as client:
        rest = client.dequeue_many(QUEUE_TYPE, 100)
    assert {job.job_id for job in rest} == ids - done


def test_second_signal_stops_at_once(redis_server_url, r, prefix, log, workers):
    enqueue(redis_server_url, prefix, 8, queues=8)
    worker = Worker(redis_server_url, prefix, log, "--concurrency", "2", "--grace-period", "60", sleep=30)
    workers.append(worker)
    wait_for(lambda: len(read_log(log)["start"]) >= 2, "jobs started", worker=worker)
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    began = time.monotonic()
    worker.stop(signal.SIGTERM, timeout=15)
    assert time.monotonic() - began < 10  # not the 60 s grace period, nor the 30 s jobs
    assert not read_log(log)["done"]


def test_sigkill_loses_nothing_a_new_worker_finishes_after_the_lease(redis_server_url, r, prefix, log, workers):
    ids = enqueue(redis_server_url, prefix, 60, queues=20)
    first = Worker(redis_server_url, prefix, log, "--concurrency", "4", sleep=0.2, expire_ms=1000)
    workers.append(first)
    wait_for(lambda: len(read_log(log)["done"]) >= 8, "some jobs done", worker=first)
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    before = read_log(log)
    in_flight = set(before["start"]) - set(before["done"])
    # Held by the dead process: what it was running, and jobs done whose finish was not sent yet.
    held = {member.decode().split(":", 1)[1] for member in r.zrange(f"{prefix}:{QUEUE_TYPE}:active", 0, -1)}
    assert in_flight and in_flight <= held
    second = Worker(redis_server_url, prefix, log, "--concurrency", "4", expire_ms=1000)
    workers.append(second)
    wait_for(lambda: set(read_log(log)["done"]) == ids and left_in_redis(r, prefix) == NOTHING_LEFT,
             "every job finished by the second worker", worker=second)
    assert second.stop() == 0, second.err.decode()
    after = read_log(log)
    twice = {job for job in ids if after["start"].count(job) > 1}
    assert twice <= held  # only the jobs the killed worker held were redone
    assert time.monotonic() - killed_at >= 0.5  # (their leases had to expire first)


def test_processes_share_the_work(redis_server_url, r, prefix, log, workers):
    ids = enqueue(redis_server_url, prefix, 400, queues=50)
    worker = Worker(redis_server_url, prefix, log, "--processes", "2", "--concurrency", "2", sleep=0.01)
    workers.append(worker)
    wait_for(lambda: set(read_log(log)["done"]) == ids and left_in_redis(r, prefix) == NOTHING_LEFT,
             "every job handled", timeout=60, worker=worker)
    assert worker.stop() == 0, worker.err.decode()
    seen = read_log(log)
    assert sorted(seen["done"]) == sorted(ids)
    assert len(set(seen["pids"])) == 2  # both processes worked
    assert "started 2 worker processes" in worker.err.decode()


def test_a_failed_child_makes_the_exit_status_nonzero(redis_server_url, r, prefix, log, workers):
    worker = Worker(redis_server_url, prefix, log, "--processes", "2")
    workers.append(worker)
    started = re.compile(r"started 2 worker processes: (\d+), (\d+)")
    wait_for(lambda: started.search(worker.err.decode()), "children started", worker=worker)
    first, _second = started.search(worker.err.decode()).groups()
    os.kill(int(first), signal.SIGKILL)
    wait_for(lambda: "killed by SIGKILL" in worker.err.decode(), "the parent noticed", worker=worker)
    assert worker.stop() == 1  # the other child drained; the parent reports the failure


@pytest.mark.parametrize("handler, extra, message", [
    ("no_such_module_xyz:handle", [], "no module named 'no_such_module_xyz'"),
    ("worker_handlers", [], "expected MODULE:FUNCTION"),
    ("worker_handlers:nope", [], "has no attribute 'nope'"),
    ("worker_handlers:NOT_CALLABLE", [], "is not callable"),
    ("worker_handlers:handle", ["--async"], "--async needs a coroutine function"),
])
def test_bad_handler_is_a_one_line_error(redis_server_url, prefix, log, handler, extra, message):
    worker = Worker(redis_server_url, prefix, log, *extra, handler=handler)
    assert worker.wait() == 1
    err = worker.err.decode()
    assert message in err and "Traceback" not in err, err


def test_unreachable_redis_is_a_one_line_error(prefix, log):
    worker = Worker("redis://127.0.0.1:1/0", prefix, log)
    assert worker.wait() == 1
    err = worker.err.decode()
    assert "cannot reach" in err and "Traceback" not in err, err


def test_failing_jobs_go_to_the_dead_letter_type_and_redrive_brings_them_back(redis_server_url, r, prefix, log, workers):
    with Client(redis_server_url, key_prefix=prefix) as client:
        client.enqueue_many([{"queue_type": QUEUE_TYPE, "queue_id": f"q{i % 3}", "job_id": f"j{i}", "payload": {"i": i},
                              "interval": 0, "requeue_limit": 1} for i in range(6)])
    worker = Worker(redis_server_url, prefix, log, "--dead-letter", "wt_dead", handler="worker_handlers:fail")
    workers.append(worker)
    # (the payload hash is shared by the queue types: its 6 entries are the dead letters)
    wait_for(lambda: left_in_redis(r, prefix) == {"payloads": 6, "active": 0, "ready": 0}
             and r.zcard(f"{prefix}:wt_dead") == 3, "every job dead-lettered", worker=worker)
    assert worker.stop() == 0, worker.err.decode()
    assert sorted(read_log(log)["start"]) == sorted([f"j{i}" for i in range(6)] * 2)  # tried, retried once
    assert "failed 12 (retried 6, discarded 6)" in worker.err.decode()
    run = subprocess.run([sys.executable, "-m", "sharq_fast", "redrive", "wt_dead", "--to", QUEUE_TYPE, "--interval", "0",
                          "--url", redis_server_url, "--key-prefix", prefix], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.returncode == 0, run.stderr.decode()
    assert "moved 6 jobs" in run.stdout.decode()
    assert left_in_redis(r, prefix, "wt_dead") == {"payloads": 6, "active": 0, "ready": 0}
    assert sorted(r.hkeys(f"{prefix}:payload")) == sorted(f"{QUEUE_TYPE}:q{i % 3}:j{i}".encode() for i in range(6))
    with Client(redis_server_url, key_prefix=prefix) as client:
        back = client.dequeue_many(QUEUE_TYPE, 100)
    assert sorted((job.queue_id, job.job_id, job.payload["i"]) for job in back) == \
        sorted((f"q{i % 3}", f"j{i}", i) for i in range(6))


def test_a_sharq_conf_gives_the_redis_and_the_settings(redis_server_url, r, prefix, log, workers, tmp_path):
    ids = enqueue(redis_server_url, prefix, 20)
    host, port = redis_server_url.split("//")[1].split("/")[0].split(":")
    config = tmp_path / "sharq.conf"
    config.write_text(f"[sharq]\njob_expire_interval : 4000\njob_requeue_interval : 1000\n"
                      f"default_job_requeue_limit : -1\n\n[redis]\ndb : 0\nkey_prefix : {prefix}\n"
                      f"conn_type : tcp_sock\nhost : {host}\nport : {port}\n")
    worker = Worker(redis_server_url, prefix, log, "--concurrency", "2", sleep=0.3, config=config)
    workers.append(worker)
    wait_for(lambda: read_log(log)["start"], "a job started", worker=worker)
    scores = [score for _, score in r.zrange(f"{prefix}:{QUEUE_TYPE}:active", 0, -1, withscores=True)]
    assert scores and max(scores) - time.time() * 1000 > 2500  # the config's 4 s lease, not the default 1 s
    wait_for(lambda: set(read_log(log)["done"]) == ids and left_in_redis(r, prefix) == NOTHING_LEFT,
             "every job handled", worker=worker)
    assert worker.stop() == 0, worker.err.decode()

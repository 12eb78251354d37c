"""Consumer and AsyncConsumer against real Redis (one node and the cluster): each test runs
Consumer on the sync transports and AsyncConsumer on the async ones, with the real clock
(leases, delays and timeouts are the consumer's business here). Process tests run
tests/consumer_process.py: SIGTERM drains, SIGKILL loses nothing, 8 processes finish
every job exactly once."""

import asyncio
import collections
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import msgspec
import pytest

from sharq_fast import AsyncClient, AsyncConsumer, Client, Consumer, ConsumerStats, _ops
from sharq_fast._redis_server import RedisServer
from sharq_fast.exceptions import BadArgumentException

HERE = Path(__file__).parent
QT = "work"

# The consumer is the same code over both cores (which the core's own tests compare):
# compiled core only, when built.
pytestmark = pytest.mark.compiled_core_only


def until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy (its value) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Running:
    """A Consumer (kind "thread") or an AsyncConsumer (kind "async", in an event loop of
    its own thread) running in this process. `handler(job)` is a plain function for both:
    it may raise, and may return seconds to work (time.sleep / asyncio.sleep) or a
    threading.Event to wait for (without blocking the event loop)."""

    def __init__(self, kind: str, url: str, handler: Callable[[Any], Any], queue_type: Any = QT,
                 settings: Optional[Dict[str, Any]] = None, **options: Any) -> None:
        self.kind = kind
        settings = dict(settings or {})
        options.setdefault("handle_signals", False)
        options.setdefault("wait_timeout", 0.25)  # a stop waits out the waiting dequeue
        if kind == "thread":
            def handle(job: Any) -> None:
                pause = handler(job)
                if isinstance(pause, threading.Event):
                    pause.wait(10)
                elif pause:
                    time.sleep(pause)

            self.client: Any = Client(url, **settings)
            self.consumer: Any = Consumer(self.client, queue_type, handle, **options)
            self.consumer.start()
            self.thread = self.consumer._thread
        else:
            async def ahandle(job: Any) -> None:
                pause = handler(job)
                if isinstance(pause, threading.Event):
                    deadline = time.monotonic() + 10
                    while not pause.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                elif pause:
                    await asyncio.sleep(pause)

            made = threading.Event()

            async def main() -> None:
                self.client = AsyncClient(url, **settings)
                try:
                    self.consumer = AsyncConsumer(self.client, queue_type, ahandle, **options)
                    made.set()
                    await self.consumer.run()
                finally:
                    made.set()
                    await self.client.close()

            self.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
            self.thread.start()
            assert made.wait(10)

    def stats(self) -> ConsumerStats:
        return self.consumer.stats()

    def stop(self, now: bool = False, timeout: float = 30.0) -> ConsumerStats:
        self.consumer.stop(now)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the consumer did not stop"
        if self.kind == "thread":
            self.client.close()
        return self.stats()


@pytest.fixture
def kind(transport: str) -> str:
    """Consumer on the sync transports, AsyncConsumer on the async ones."""
    return "async" if transport.endswith("async") else "thread"


@pytest.fixture
def url(request: pytest.FixtureRequest, transport: str, make_client: Any) -> str:
    """The URL of the clean Redis (one node or cluster) the test runs on."""
    if transport.startswith("cluster"):
        return request.getfixturevalue("redis_cluster").url
    return request.getfixturevalue("redis_server_url")


@pytest.fixture
def producer(make_client: Any) -> Any:
    """A client (real clock) to enqueue and look with."""
    return make_client(clock=None)


def fill(client: Any, n: int, queues: int = 10, queue_type: str = QT, interval: int = 0, **extra: Any) -> List[str]:
    ids = [f"j{i}" for i in range(n)]
    result = client.enqueue_many(
        {"queue_type": queue_type, "queue_id": f"q{i % queues}", "job_id": job_id, "payload": i,
         "interval": interval, **extra}
        for i, job_id in enumerate(ids)
    )
    assert result.enqueued == n
    return ids


def nothing_left(client: Any, queue_type: str = QT) -> bool:
    """No queued and no active job of the queue type."""
    return client.metrics(queue_type).queue_ids == []


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    {"concurrency": 0}, {"finish_delay": -1}, {"finish_batch": 0}, {"wait_timeout": 0},
    {"job_timeout": 0}, {"retry_backoff": "1"}, {"dead_letter": ""}, {"on_discard": 3},
    {"grace_period": float("nan")}, {"finish_delay": float("inf")}, {"dead_letter": "a b"},
    {"dead_letter": QT}, {"dead_letter": "payload"},
])
@pytest.mark.single_node
def test_bad_options_are_refused(bad, client):
    with pytest.raises(BadArgumentException):
        Consumer(client, QT, lambda job: None, **bad)


@pytest.mark.single_node
def test_bad_queue_types_are_refused(client):
    for queue_type in ([], {"a": 0}, {"a": 1.5}, [""], 3, "a b", ["ok", "x" * 101], "payload"):
        with pytest.raises(BadArgumentException):
            Consumer(client, queue_type, lambda job: None)


# -- handling and finishing ---------------------------------------------------------------


def test_every_job_is_handled_and_finished_exactly_once_by_two_consumers(kind, url, producer):
    ids = fill(producer, 2000, queues=50)
    seen: List[str] = []
    runs = [Running(kind, url, lambda job: seen.append(job.job_id), concurrency=4) for _ in range(2)]
    until(lambda: nothing_left(producer) and sum(run.stats().processed for run in runs) == len(ids),
          what="all jobs finished")
    for run in runs:
        run.consumer.stop()
    stats = [run.stop() for run in runs]
    assert sorted(seen) == sorted(ids)
    assert sum(s.processed for s in stats) == len(ids)
    assert all(s.failed == 0 and s.lease_losses == 0 and s.in_flight == 0 for s in stats)


def test_completions_are_flushed_when_the_consumer_stops(kind, url, producer):
    ids = fill(producer, 300)
    handled: List[str] = []
    # Completions would wait an hour: only the stop sends them.
    run = Running(kind, url, lambda job: handled.append(job.job_id), finish_delay=3600, finish_batch=10000)
    until(lambda: len(handled) == len(ids), what="all jobs handled")
    assert not nothing_left(producer)  # handled, not yet finished
    stats = run.stop()
    assert stats.processed == len(ids)
    assert nothing_left(producer)


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_queue_types_are_served_by_weight(kind, url, producer):
    fill(producer, 400, queue_type="heavy")
    fill(producer, 400, queue_type="light")
    order: List[str] = []
    run = Running(kind, url, lambda job: order.append(job.queue_type), queue_type={"heavy": 3, "light": 1},
                  wait_timeout=0.2)
    until(lambda: len(order) == 800, what="all jobs handled")
    run.stop()
    first = order[:400]
    assert first.count("heavy") > first.count("light") > 0  # both served, heavy more


# -- failures -----------------------------------------------------------------------------


def test_a_failing_job_is_retried_then_dead_lettered(kind, url, producer, caplog):
    producer.enqueue(queue_type=QT, queue_id="q", job_id="bad", payload="x", interval=0, requeue_limit=2)
    producer.enqueue(queue_type=QT, queue_id="q", job_id="good", payload="y", interval=0, requeue_limit=2)
    attempts: Dict[str, int] = collections.Counter()
    discarded: List[Any] = []

    def handler(job: Any) -> None:
        attempts[job.job_id] += 1
        if job.job_id == "bad":
            raise ValueError("cannot do it")

    with caplog.at_level(logging.ERROR, logger="sharq_fast.consumer"):
        run = Running(kind, url, handler, dead_letter="dead", on_discard=discarded.append)
        until(lambda: len(discarded) == 1 and nothing_left(producer), what="the job dead-lettered")
        stats = run.stop()
    assert attempts == {"bad": 3, "good": 1}
    assert (stats.processed, stats.failed, stats.retried, stats.discarded) == (1, 3, 2, 1)
    assert discarded[0].job_id == "bad"
    assert "work/q/bad failed: ValueError: cannot do it" in caplog.text
    (dead,) = producer.dequeue_many("dead", 10)
    assert (dead.queue_id, dead.job_id, dead.payload) == ("q", "bad", "x")


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_a_retry_waits_its_backoff(kind, url, producer):
    producer.enqueue(queue_type=QT, queue_id="q", job_id="j", payload=1, interval=0)
    times: List[float] = []

    def handler(job: Any) -> None:
        times.append(time.monotonic())
        if len(times) == 1:
            raise RuntimeError("first try fails")

    run = Running(kind, url, handler, retry_backoff=lambda job: 0.4, settings={"job_requeue_interval": 100})
    until(lambda: len(times) == 2 and nothing_left(producer), what="the retry")
    stats = run.stop()
    assert times[1] - times[0] >= 0.35
    assert (stats.failed, stats.retried, stats.processed) == (1, 1, 1)


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_a_payload_that_does_not_fit_payload_type_is_a_failure(kind, url, producer, caplog):
    class Order(msgspec.Struct):
        sku: str
        count: int

    producer.enqueue(queue_type=QT, queue_id="q", job_id="ok", payload={"sku": "a", "count": 2}, interval=0)
    producer.enqueue(queue_type=QT, queue_id="q", job_id="bad", payload={"sku": "a", "count": "many"},
                     interval=0, requeue_limit=0)
    got: List[Any] = []
    with caplog.at_level(logging.ERROR, logger="sharq_fast.consumer"):
        run = Running(kind, url, lambda job: got.append(job.payload), payload_type=Order)
        until(lambda: nothing_left(producer), what="both jobs done")
        stats = run.stop()
    assert got == [Order("a", 2)]
    assert (stats.processed, stats.failed, stats.discarded) == (1, 1, 1)
    assert "work/q/bad does not fit payload_type 'Order'" in caplog.text
    assert "Expected `int`, got `str`" in caplog.text


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_a_job_running_longer_than_job_timeout_fails(kind, url, producer):
    producer.enqueue(queue_type=QT, queue_id="q", job_id="slow", payload=1, interval=0)
    attempts: List[float] = []

    def handler(job: Any) -> float:
        attempts.append(time.monotonic())
        return 1.5 if len(attempts) == 1 else 0.0  # the first try hangs

    run = Running(kind, url, handler, job_timeout=0.2, concurrency=2)
    until(lambda: len(attempts) == 2 and nothing_left(producer), what="the retry after the timeout")
    stats = run.stop()
    assert attempts[1] - attempts[0] < 1.2  # failed at its timeout, not at its end
    assert (stats.failed, stats.retried, stats.processed) == (1, 1, 1)


# -- leases -------------------------------------------------------------------------------


def test_lease_extension_keeps_a_long_job_from_being_redelivered(kind, url, producer):
    # The job runs 3x job_expire_interval; the consumer's own requeuer runs every 100 ms.
    producer.enqueue(queue_type=QT, queue_id="q", job_id="long", payload=1, interval=0)
    runs: List[str] = []
    settings = {"job_expire_interval": 300, "job_requeue_interval": 100}
    run = Running(kind, url, lambda job: (runs.append(job.job_id), 0.9)[1], concurrency=2, settings=settings)
    until(lambda: nothing_left(producer) and run.stats().processed == 1, what="the long job finished")
    stats = run.stop()
    assert runs == ["long"]
    assert stats.lease_losses == 0


def test_a_lost_lease_is_counted_and_the_job_not_finished_over_the_new_delivery(kind, url, producer, caplog):
    # No lease keeper can help a job whose lease another process requeued: simulate with
    # a requeue forced while the handler runs (its lease had expired).
    producer.enqueue(queue_type=QT, queue_id="q", job_id="j", payload=1, interval=0)
    started = threading.Event()
    runs: List[int] = []

    def handler(job: Any) -> float:
        runs.append(1)
        started.set()
        return 0.6 if len(runs) == 1 else 0.0

    settings = {"job_expire_interval": 200}
    with caplog.at_level(logging.WARNING, logger="sharq_fast.consumer"):
        run = Running(kind, url, handler, requeuer=False, concurrency=2, settings=settings)
        assert started.wait(10)
        # Past its lease as a requeuer with a late clock sees it: requeued, delivered again.
        producer.clock = lambda: int(time.time() * 1000) + 1000
        producer.requeue()
        until(lambda: len(runs) == 2, what="the redelivery")
        until(lambda: run.stats().lease_losses == 1 and run.stats().processed == 1, what="the loss counted")
        stats = run.stop()
    assert nothing_left(producer)
    assert "lease lost" in caplog.text and "work/q/j" in caplog.text
    assert stats.processed == 1


# -- shutdown -----------------------------------------------------------------------------


def test_stop_releases_the_fetched_jobs_that_did_not_start(kind, url, producer):
    ids = fill(producer, 50, queues=1)
    gate = threading.Event()
    handled: List[str] = []

    def handler(job: Any) -> threading.Event:
        handled.append(job.job_id)
        return gate

    run = Running(kind, url, handler, concurrency=2)
    until(lambda: len(handled) == 2, what="two jobs running")
    until(lambda: run.stats().in_flight > 2, what="jobs fetched ahead")
    run.consumer.stop()
    time.sleep(0.1)
    gate.set()
    stats = run.stop()
    assert stats.processed == 2 and stats.released >= 1
    assert stats.in_flight == 0
    assert producer.queue_length(QT, "q0") == len(ids) - 2  # released: back in the queue
    jobs = producer.dequeue_many(QT, 100)
    assert [job.job_id for job in jobs] == [i for i in ids if i not in handled]  # order kept


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_stop_now_leaves_the_jobs_to_their_leases(kind, url, producer):
    fill(producer, 20, queues=1)
    gate = threading.Event()
    run = Running(kind, url, lambda job: gate, concurrency=2, requeuer=False)
    until(lambda: run.stats().in_flight >= 2, what="jobs running")
    t0 = time.monotonic()
    stats = run.stop(now=True, timeout=5)
    assert time.monotonic() - t0 < 3  # did not wait for the handlers
    gate.set()
    assert stats.processed == 0 and stats.released == 0
    assert producer.queue_length(QT, "q0") < 20  # still held: they come back after their lease


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_a_handler_still_running_after_the_grace_period_is_left_to_its_lease(kind, url, producer):
    producer.enqueue(queue_type=QT, queue_id="q", job_id="stuck", payload=1, interval=0)
    gate = threading.Event()
    run = Running(kind, url, lambda job: gate, grace_period=0.3, requeuer=False)
    until(lambda: run.stats().in_flight == 1, what="the job running")
    t0 = time.monotonic()
    stats = run.stop()
    assert time.monotonic() - t0 < 5
    gate.set()
    assert stats.processed == 0


# -- Redis trouble ------------------------------------------------------------------------


@pytest.mark.compiled_core_only
@pytest.mark.single_node
def test_a_redis_restart_under_a_running_consumer_loses_no_job(kind, caplog):
    with RedisServer(appendonly=True) as server:
        producer = Client(server.url, job_expire_interval=2000)
        fill(producer, 300)
        handled: List[str] = []

        def handler(job: Any) -> float:
            handled.append(job.job_id)
            return 0.002

        with caplog.at_level(logging.WARNING):
            run = Running(kind, server.url, handler, concurrency=4,
                          settings={"job_expire_interval": 2000, "job_requeue_interval": 200, "retry_for": 1.0})
            until(lambda: len(handled) > 50, what="jobs handled")
            server.restart(kill=True)
            time.sleep(1.5)  # the consumer meets a dead Redis, then it comes back
            ids2 = [f"after{i}" for i in range(100)]
            producer.enqueue_many({"queue_type": QT, "queue_id": "q", "job_id": job_id, "payload": 0, "interval": 0}
                                  for job_id in ids2)
            until(lambda: nothing_left(producer), timeout=40, what="every job finished after the restart")
            stats = run.stop()
        producer.close()
    assert set(handled) >= {f"j{i}" for i in range(300)} | set(ids2)
    assert stats.processed + stats.lease_losses >= 400
    assert run.stats().last_turn > time.time() - 5


@pytest.mark.compiled_core_only
@pytest.mark.single_node
def test_the_rate_limit_holds_with_8_consumers(kind, url, producer, monkeypatch):
    # Every dequeue round's `now` and the jobs it took: Redis's evidence of the intervals.
    taken: Dict[str, List[int]] = collections.defaultdict(list)
    lock = threading.Lock()
    original = _ops._dequeue_round

    def recorded(s: Any, queue_type: str, count: int, now: int, with_length: bool) -> Any:
        jobs, next_ready, length = yield from original(s, queue_type, count, now, with_length)
        with lock:
            for job in jobs:
                taken[job.queue_id].append(now)
        return jobs, next_ready, length

    monkeypatch.setattr(_ops, "_dequeue_round", recorded)
    interval = 50
    fill(producer, 80, queues=4, interval=interval)
    runs = [Running(kind, url, lambda job: None, concurrency=2) for _ in range(8)]
    until(lambda: nothing_left(producer), timeout=30, what="all jobs done")
    for run in runs:
        run.consumer.stop()  # all at once: each may wait out its waiting dequeue
    for run in runs:
        run.stop()
    assert sum(len(times) for times in taken.values()) == 80
    for queue_id, times in taken.items():
        times.sort()
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= interval, (queue_id, gaps)


# -- processes ----------------------------------------------------------------------------


_PROCESSES: List["Process"] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Any:
    """Kill the consumer processes a failed test left running (they would take the next
    tests' jobs)."""
    yield
    while _PROCESSES:
        proc = _PROCESSES.pop().proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Process:
    """tests/consumer_process.py in a process of its own (its stderr in a file: a pipe
    nobody reads would block its logging once full)."""

    def __init__(self, url: str, kind: str, out: Path, concurrency: int = 8, work_ms: int = 0,
                 expire_ms: int = 2000) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "consumer_process.py"), url, kind, QT, str(concurrency), str(work_ms),
                 str(expire_ms), str(out)],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )
        _PROCESSES.append(self)
        assert self.proc.stdout.readline().strip() == "ready", self.stderr()

    def stderr(self) -> str:
        return self.log.read_text()[-3000:]

    def handled(self) -> List[str]:
        if not self.out.exists():
            return []
        return [line for line in self.out.read_text().splitlines() if line and not line.startswith("#")]

    def stats(self) -> Dict[str, Any]:
        for line in self.out.read_text().splitlines():
            if line.startswith("#stats "):
                return msgspec.json.decode(line[7:])
        raise AssertionError(f"no stats: {self.stderr()}")

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.mark.compiled_core_only
@pytest.mark.single_node
@pytest.mark.parametrize("proc_kind", ["thread", "async"])
def test_sigterm_drains_and_releases(redis_server_url, r, tmp_path, proc_kind):
    producer = Client(redis_server_url)
    ids = fill(producer, 400, queues=1)
    proc = Process(redis_server_url, proc_kind, tmp_path / "out", concurrency=4, work_ms=20)
    until(lambda: len(proc.handled()) >= 20, what="jobs handled")
    assert proc.terminate() == 0, proc.stderr()
    stats = proc.stats()
    handled = proc.handled()
    assert stats["processed"] == len(handled) and stats["in_flight"] == 0
    assert stats["released"] >= 1
    # Every job is either finished (handled) or back in its queue; none is active.
    left = producer.queue_length(QT, "q0")
    assert left + len(handled) == len(ids)
    assert producer.metrics(QT).queue_ids == ["q0"]
    assert r.zcard(f"sharq_server:{QT}:active") == 0
    producer.close()


def _run_processes(url: str, tmp_path: Path, n_jobs: int, kinds: List[str], kill: int = 0, work_ms: int = 0) -> None:
    producer = Client(url)
    ids = fill(producer, n_jobs, queues=100)
    # Leases long enough for a loaded machine (a process starved of CPU for longer than a
    # lease loses it: a legitimate second run); short enough that the killed ones' jobs
    # come back soon.
    expire_ms = 3000 if kill else 10_000
    procs = [Process(url, kind, tmp_path / f"out{i}", concurrency=16 if kind == "async" else 4, expire_ms=expire_ms,
                     work_ms=work_ms) for i, kind in enumerate(kinds)]
    killed = procs[:kill]
    if kill:
        until(lambda: all(len(p.handled()) > 20 for p in killed), what="the killed ones at work")
        for p in killed:
            p.proc.kill()
            p.proc.wait()
    until(lambda: nothing_left(producer), timeout=120, what="every job finished")
    for p in procs[kill:]:
        assert p.terminate() == 0, p.stderr()
    counts = collections.Counter(job_id for p in procs for job_id in p.handled())
    assert set(counts) == set(ids)  # none lost
    by_killed = {job_id for p in killed for job_id in p.handled()}
    twice = {job_id for job_id, n in counts.items() if n > 1}
    # A second run only for a job the killed processes handled but could not finish (its
    # lease expired, the requeuer brought it back).
    assert twice <= by_killed, sorted(twice - by_killed)[:10]
    survivors = [p.stats() for p in procs[kill:]]
    if not kill:
        assert not twice and sum(s["processed"] for s in survivors) == n_jobs
    assert all(s["in_flight"] == 0 for s in survivors)
    producer.close()


@pytest.mark.compiled_core_only
@pytest.mark.single_node
def test_8_consumer_processes_finish_every_job_exactly_once(redis_server_url, r, tmp_path):
    _run_processes(redis_server_url, tmp_path, 20_000, ["thread"] * 4 + ["async"] * 4)


@pytest.mark.slow
@pytest.mark.compiled_core_only
@pytest.mark.single_node
def test_8_consumer_processes_finish_100000_jobs_exactly_once(redis_server_url, r, tmp_path):
    _run_processes(redis_server_url, tmp_path, 100_000, ["thread"] * 4 + ["async"] * 4)


@pytest.mark.compiled_core_only
@pytest.mark.single_node
def test_sigkill_of_consumers_mid_batch_loses_no_job(redis_server_url, r, tmp_path):
    _run_processes(redis_server_url, tmp_path, 5_000, ["thread", "async"] * 3, kill=2, work_ms=1)


@pytest.mark.single_node  # consumer logic only: the cluster runs the others
def test_a_handler_that_raises_base_exceptions_does_not_kill_its_worker(kind, url, producer):
    fill(producer, 6, queues=1)
    seen: List[str] = []

    def handler(job: Any) -> None:
        seen.append(job.job_id)
        if len(seen) <= 2:
            raise asyncio.CancelledError() if kind == "async" else SystemExit(3)

    run = Running(kind, url, handler, concurrency=1)
    until(lambda: nothing_left(producer), what="all jobs done")
    stats = run.stop()
    assert (stats.processed, stats.failed, stats.retried) == (6, 2, 2)


@pytest.mark.single_node
@pytest.mark.parametrize("proc_kind", ["thread", "async"])
def test_a_second_signal_stops_at_once(redis_server_url, r, tmp_path, proc_kind):
    producer = Client(redis_server_url)
    fill(producer, 20, queues=1)
    proc = Process(redis_server_url, proc_kind, tmp_path / "out", concurrency=2, work_ms=20_000, expire_ms=1000)
    until(lambda: r.zcard(f"sharq_server:{QT}:active") >= 2, what="jobs running")
    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert proc.terminate(timeout=10) == 0, proc.stderr()  # the second SIGTERM
    assert time.monotonic() - t0 < 5  # not the 10 s grace period, nor the 20 s handlers
    assert proc.handled() == []
    producer.close()


@pytest.mark.single_node
def test_run_in_the_main_thread_handles_signals_and_puts_the_handlers_back(kind, url, producer):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seen: List[Any] = []

    def check_installed() -> None:
        time.sleep(0.3)
        seen.append(signal.getsignal(signal.SIGTERM))
        consumer.stop()

    if kind == "thread":
        client: Any = Client(url)
        consumer: Any = Consumer(client, QT, lambda job: None, wait_timeout=0.1)
        threading.Thread(target=check_installed).start()
        consumer.run()
        client.close()
    else:
        async def main() -> None:
            nonlocal consumer
            aclient = AsyncClient(url)
            consumer = AsyncConsumer(aclient, QT, lambda job: None, wait_timeout=0.1)
            threading.Thread(target=check_installed).start()
            await consumer.run()
            await aclient.close()

        consumer = None
        asyncio.run(main())
    assert seen and seen[0] not in before  # the consumer's own while it ran
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.single_node
def test_stop_while_redis_is_down_returns_and_says_what_is_left(kind, caplog, monkeypatch):
    from sharq_fast.consumer import engine

    monkeypatch.setattr(engine, "FINAL_FLUSH_FOR", 1.0)  # how long the last flush keeps trying
    with RedisServer() as server:
        producer = Client(server.url)
        fill(producer, 50, queues=1)
        handled: List[str] = []
        with caplog.at_level(logging.WARNING):
            run = Running(kind, server.url, lambda job: handled.append(job.job_id), finish_delay=3600,
                          finish_batch=10000, requeuer=False, settings={"retry_for": 0.5})
            until(lambda: len(handled) == 50, what="all handled (none finished yet)")
            server.kill()
            t0 = time.monotonic()
            stats = run.stop(timeout=30)
        producer.close()
    assert time.monotonic() - t0 < 20
    assert stats.processed == 0 and stats.in_flight == 50
    assert "could not flush at shutdown" in caplog.text

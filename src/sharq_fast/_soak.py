"""``sharq-fast soak`` (also ``python bench/soak.py``): the crash and restart soak.

A private redis-server (AOF, ``appendfsync always``, its own folder and port), producer
processes sending ``enqueue_many`` at a steady pace over ``--duration`` seconds (queues
with an interval and queues without), ``--consumers`` consumer processes (Consumer with
threads, and AsyncConsumer, alternately; each runs the requeuer, one holds its lock) of
which one is SIGKILLed and replaced every ``--kill-every`` seconds, and Redis restarted
(SIGTERM, then started again on the same port and folder) every ``--restart-every``
seconds. When every job is done the consumers are stopped with SIGTERM and the records
(_soak_check.py) are checked: every job finished exactly once as far as finish is
concerned, none lost, nothing left in Redis, redeliveries only for jobs whose previous
delivery was in a killed process or outlived its lease, and no two dequeues of a queue
closer than its interval (on the ``now`` each dequeue used: lease - job_expire_interval).
Exit status 1 when a check fails.
"""

import argparse
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

QUEUE_TYPE = "soak"
PREFIX = "soak"
log = logging.getLogger("sharq_fast.soak")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The soak's options (``sharq-fast soak`` and bench/soak.py)."""
    p.add_argument("--jobs", type=int, default=100_000, help="jobs to enqueue (default 100000)")
    p.add_argument("--duration", type=float, default=60.0, metavar="S",
                   help="seconds the producers spread the jobs over (default 60); then the consumers drain")
    p.add_argument("--consumers", type=int, default=8, help="consumer processes (default 8)")
    p.add_argument("--producers", type=int, default=2, help="producer processes (default 2)")
    p.add_argument("--kill-every", type=float, default=5.0, metavar="S", help="SIGKILL a consumer every S s (default 5)")
    p.add_argument("--restart-every", type=float, default=60.0, metavar="S", help="restart Redis every S s (default 60)")
    p.add_argument("--queues", type=int, default=1000, help="queues without an interval (default 1000)")
    p.add_argument("--interval-queues", type=int, default=50, help="queues with an interval (default 50)")
    p.add_argument("--interval", type=int, default=20, metavar="MS", help="their interval (default 20 ms)")
    p.add_argument("--interval-share", type=float, default=0.05,
                   help="share of the jobs sent to the interval queues (default 0.05)")
    p.add_argument("--expire-ms", type=int, default=3000, help="job_expire_interval, the lease (default 3000 ms)")
    p.add_argument("--work-ms", type=float, default=1.0, metavar="MS",
                   help="each handler call sleeps this long (jobs are in flight when a consumer is killed; default 1)")
    p.add_argument("--slow-every", type=int, default=5000, metavar="N",
                   help="every Nth job's handler runs 1.5 leases (the lease keeper must extend it; default 5000; 0: none)")
    p.add_argument("--drain-timeout", type=float, default=300.0, metavar="S",
                   help="give up when the jobs are not all done S s after the producers (default 300)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the kills (default: random)")
    p.add_argument("--keep", action="store_true", help="keep the records and Redis folder (printed)")
    p.add_argument("--json", metavar="FILE", help="also write the figures and problems there as JSON")


def queue_plan(args: Any) -> Dict[str, int]:
    """Queue ids and their intervals: ``z<k>`` without one, ``i<k>`` with ``--interval``."""
    plan = {f"z{k}": 0 for k in range(args.queues)}
    plan.update({f"i{k}": args.interval for k in range(args.interval_queues)})
    return plan


def _queue_of(n: int, args: Any) -> str:
    # Deterministic and spread: every 1/share-th job goes to an interval queue.
    if args.interval_queues and args.interval_share > 0 and n % max(1, round(1 / args.interval_share)) == 0:
        return f"i{(n // max(1, round(1 / args.interval_share))) % args.interval_queues}"
    return f"z{n % args.queues}"


# -- child processes ------------------------------------------------------------------------------


def _producer(url: str, args: Any, index: int, records: str) -> None:
    from ._soak_check import RecordFile
    from .client import Client
    from .exceptions import OutcomeUnknownError

    record = RecordFile(os.path.join(records, f"producer-{index}.log"))
    client = Client(url, key_prefix=PREFIX, job_expire_interval=args.expire_ms, retry_for=60.0)
    mine = range(index, args.jobs, args.producers)
    chunk = 1000
    start = time.monotonic()
    per_s = len(mine) / args.duration if args.duration > 0 else float("inf")
    for at in range(0, len(mine), chunk):
        ns = mine[at:at + chunk]
        due = start + at / per_s
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        jobs = [{"queue_type": QUEUE_TYPE, "queue_id": _queue_of(n, args), "job_id": f"j{n}", "payload": {"n": n},
                 "interval": args.interval if _queue_of(n, args).startswith("i") else 0, "requeue_limit": -1}
                for n in ns]
        try:
            result = client.enqueue_many(jobs, chunk_size=chunk, pipeline_depth=1)
            duplicates = set(result.duplicates)
            record.write(f"E {job['job_id']} {job['queue_id']}" for i, job in enumerate(jobs) if i not in duplicates)
        except (OutcomeUnknownError, Exception) as exc:  # noqa: B014  # the outcome of this call is unknown
            log.warning("producer %d: enqueue_many failed (%s: %s); its %d jobs are recorded as unknown",
                        index, type(exc).__name__, exc, len(jobs))
            record.write(f"U {job['job_id']} {job['queue_id']}" for job in jobs)
    client.close()
    record.close()


def _handle_sync(job: Any) -> None:
    time.sleep(_SLOW_S if _SLOW and job.payload["n"] % _SLOW == 1 else _WORK_S)


async def _handle_async(job: Any) -> None:
    import asyncio

    await asyncio.sleep(_SLOW_S if _SLOW and job.payload["n"] % _SLOW == 1 else _WORK_S)


_SLOW = 0
_SLOW_S = _WORK_S = 0.0


def _consumer(url: str, args: Any, use_async: bool, records: str) -> None:
    global _SLOW, _SLOW_S, _WORK_S
    from ._soak_check import RecordFile, recording_client
    from .aio import AsyncClient
    from .client import Client

    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s consumer[{os.getpid()}] %(name)s: %(message)s")
    # Redis restarts make every connection of every process log a reconnect: not shown.
    logging.getLogger("sharq_fast.waker").setLevel(logging.ERROR)
    _SLOW, _SLOW_S, _WORK_S = args.slow_every, 1.5 * args.expire_ms / 1000, args.work_ms / 1000
    record = RecordFile(os.path.join(records, f"consumer-{os.getpid()}.log"))
    settings = {"key_prefix": PREFIX, "job_expire_interval": args.expire_ms, "job_requeue_interval": 500, "retry_for": 60.0}
    if use_async:
        import asyncio

        from .consumer import AsyncConsumer

        async def main() -> None:
            client = recording_client(AsyncClient, record)(url, **settings)
            consumer = AsyncConsumer(client, QUEUE_TYPE, _handle_async, concurrency=64, grace_period=10.0)
            await consumer.run()
            await client.close()

        asyncio.run(main())
    else:
        from .consumer import Consumer

        client = recording_client(Client, record)(url, **settings)
        Consumer(client, QUEUE_TYPE, _handle_sync, concurrency=8, grace_period=10.0).run()
        client.close()
    record.close()


# -- the orchestrator ----------------------------------------------------------------------------


class Soak:
    """Runs one soak (see the module docstring) and returns its figures."""

    def __init__(self, args: Any, out: Any = None) -> None:
        self.args = args
        self.out = out or sys.stdout
        self.ctx = multiprocessing.get_context("spawn")
        self.rng = random.Random(args.seed)
        self.records = tempfile.mkdtemp(prefix="sharq-fast-soak-")
        self.consumers: List[Any] = []
        self.started = 0
        self.kills = 0
        self.restarts: List[float] = []
        self.server: Any = None

    def say(self, message: str) -> None:
        self.out.write(f"[soak {time.strftime('%H:%M:%S')}] {message}\n")
        self.out.flush()

    def _start_consumer(self, slot: int) -> Any:
        proc = self.ctx.Process(target=_consumer, args=(self.server.url, self.args, slot % 2 == 1, self.records),
                                name=f"soak-consumer-{slot}")
        proc.start()
        self.started += 1
        return proc

    def _kill_one(self) -> None:
        slot = self.rng.randrange(len(self.consumers))
        victim = self.consumers[slot]
        if victim.exitcode is None:
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            with open(os.path.join(self.records, "killed"), "a") as f:
                f.write(f"{victim.pid}\n")
            self.kills += 1
        self.consumers[slot] = self._start_consumer(slot)

    def _never_consumed(self, proc: Any) -> bool:
        """A consumer just replaced can get the final SIGTERM while it still starts (before
        its Consumer handles signals): ended by it, with nothing dequeued, it held nothing."""
        if proc.exitcode != -signal.SIGTERM:
            return False
        try:
            with open(os.path.join(self.records, f"consumer-{proc.pid}.log")) as f:
                return not any(line.startswith("D ") for line in f)
        except FileNotFoundError:
            return True

    def _restart_redis(self) -> None:
        began = time.monotonic()
        self.server.restart()
        self.restarts.append(time.monotonic() - began)

    def _remaining(self) -> Optional[int]:
        """Jobs queued or active (None while Redis does not answer)."""
        try:
            conn = self.server.client(socket_timeout=5)
            try:
                pipe = conn.pipeline(transaction=False)
                pipe.hlen(f"{PREFIX}:payload")
                pipe.zcard(f"{PREFIX}:{QUEUE_TYPE}:active")
                payloads, active = pipe.execute()
                return int(payloads) + int(active)
            finally:
                conn.close()
        except Exception:
            return None

    def leftovers(self) -> Dict[str, int]:
        conn = self.server.client()
        try:
            lists = sum(1 for key in conn.scan_iter(f"{PREFIX}:{QUEUE_TYPE}:*", count=10_000)
                        if conn.type(key) == b"list" and conn.llen(key))
            counts = sum(1 for key in conn.scan_iter(f"{PREFIX}:{QUEUE_TYPE}:*:requeues_remaining", count=10_000)
                         if conn.hlen(key))
            return {
                "payloads": int(conn.hlen(f"{PREFIX}:payload")),
                "active jobs": int(conn.zcard(f"{PREFIX}:{QUEUE_TYPE}:active")),
                "ready queues": int(conn.zcard(f"{PREFIX}:{QUEUE_TYPE}")),
                "non-empty job lists": lists,
                "requeue counts": counts,
            }
        finally:
            conn.close()

    def run(self) -> Dict[str, Any]:
        from ._redis_server import RedisServer
        from ._soak_check import check

        args = self.args
        self.server = RedisServer(appendonly=True)
        self.say(f"redis-server {self.server.binary} on port {self.server.port}, AOF appendfsync always in "
                 f"{self.server.dir}; records in {self.records}")
        began = time.monotonic()
        try:
            producers = [self.ctx.Process(target=_producer, args=(self.server.url, args, i, self.records),
                                          name=f"soak-producer-{i}") for i in range(args.producers)]
            self.consumers = [self._start_consumer(slot) for slot in range(args.consumers)]
            for proc in producers:
                proc.start()
            next_kill = began + args.kill_every
            next_restart = began + args.restart_every
            next_note = began + 10
            produced_at: Optional[float] = None
            while True:
                time.sleep(0.05)
                now = time.monotonic()
                if produced_at is None and all(p.exitcode is not None for p in producers):
                    produced_at = now
                    self.say(f"producers done after {now - began:.1f} s")
                if args.kill_every > 0 and now >= next_kill:
                    self._kill_one()
                    next_kill = now + args.kill_every
                if args.restart_every > 0 and now >= next_restart:
                    self._restart_redis()
                    self.say(f"restarted Redis ({self.restarts[-1]:.2f} s)")
                    next_restart = time.monotonic() + args.restart_every
                remaining = self._remaining() if produced_at is not None or now >= next_note else None
                if now >= next_note:
                    next_note = now + 10
                    self.say(f"{now - began:.0f} s: {remaining if remaining is not None else '?'} jobs queued or active, "
                             f"{self.kills} consumers killed, {len(self.restarts)} Redis restarts")
                if produced_at is not None and remaining == 0:
                    break
                if produced_at is not None and now - produced_at > args.drain_timeout:
                    self.say(f"giving up: jobs still queued or active {args.drain_timeout:.0f} s after the producers")
                    break
            elapsed = time.monotonic() - began
            for proc in self.consumers:  # drain and stop: a graceful SIGTERM
                if proc.exitcode is None:
                    os.kill(proc.pid, signal.SIGTERM)
            for proc in self.consumers:
                proc.join(30)
                if proc.exitcode is None:
                    proc.kill()
                    proc.join()
            unclean = [p.exitcode for p in self.consumers if p.exitcode != 0 and not self._never_consumed(p)]
            leftovers = self.leftovers()
            result = check(self.records, args.expire_ms, queue_plan(args), leftovers)
            if any(p.exitcode != 0 for p in producers):
                result["problems"].append(f"a producer failed: exit codes {[p.exitcode for p in producers]}")
            if unclean:
                result["problems"].append(f"consumers did not stop cleanly on SIGTERM: exit codes {unclean}")
            result["figures"].update(
                jobs=args.jobs, seconds=round(elapsed, 1), jobs_per_s=round(args.jobs / elapsed),
                consumer_processes=args.consumers, consumers_started=self.started,
                redis_restarts=len(self.restarts), longest_restart_s=round(max(self.restarts, default=0.0), 2),
                lease_ms=args.expire_ms, interval_queues=args.interval_queues, interval_ms=args.interval,
            )
            return result
        finally:
            for proc in self.consumers:
                if proc.exitcode is None:
                    proc.kill()
                    proc.join()
            if args.keep:
                self.say(f"kept: records {self.records}, Redis folder {self.server.dir}")
                self.server.kill()
            else:
                self.server.stop()
                shutil.rmtree(self.records, ignore_errors=True)


def format_result(result: Dict[str, Any]) -> str:
    """The figures and the verdict, one per line."""
    f = result["figures"]
    lines = [
        f"soak: {f['jobs']:,} jobs in {f['seconds']} s ({f['jobs_per_s']:,} jobs/s) with {f['consumer_processes']} "
        f"consumer processes; {f['consumers_killed']} SIGKILLed and replaced, {f['redis_restarts']} Redis restarts "
        f"(longest {f['longest_restart_s']} s), lease {f['lease_ms']} ms",
        f"  enqueued (acknowledged): {f['enqueued']:,}; outcome unknown: {f['enqueue_outcome_unknown']:,}",
        f"  finished exactly once: {f['finished_exactly_once']:,}; finish answer lost with a killed process or "
        f"an error (gone from Redis, finished by no one else): {f['finished_outcome_unrecorded']:,}",
        f"  finished twice or more: {f['double_finishes']}; lost: {f['lost']}; left in Redis (payloads, active, "
        f"ready, job lists, requeue counts): {f['left_in_redis']}",
        f"  deliveries: {f['deliveries']:,}; redelivered jobs: {f['redelivered_jobs']:,} ({f['redeliveries']:,} "
        f"redeliveries, each after a SIGKILL or an expired lease)",
        f"  interval: {f['interval_dequeues_checked']:,} dequeues of {f['interval_queues']} queues with interval "
        f"{f['interval_ms']} ms checked, {f['interval_violations']} violations (smallest gap / interval: "
        f"{f['min_gap_ratio']}, redeliveries included); of those violations, involving a redelivered job: "
        f"{f['interval_gaps_after_requeue']}",
    ]
    lines += [f"  PROBLEM: {p}" for p in result["problems"][:50]]
    lines.append("soak: OK" if not result["problems"] else f"soak: FAILED ({len(result['problems'])} problems)")
    return "\n".join(lines)


def main_from_args(args: Any) -> int:
    """Run the soak of parsed arguments; print the figures. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    result = Soak(args).run()
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if not result["problems"] else 1


def main(argv: Optional[List[str]] = None) -> int:
    """``python bench/soak.py``: the same as ``sharq-fast soak``."""
    parser = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))

"""Failover and replication measurements (a script, not part of the test run):

    .venv/bin/python bench/failover.py [--kills 5] [--failovers 5] [--reps 15] [--out docs/ha.json]

1. Master killed (SIGKILL): a sync Client and an AsyncClient, both through the
   ``redis+sentinel://`` URL, enqueue one job after another; the time from the kill to
   the first enqueue that succeeds (on the new master: the old one is dead), next to the
   time the sentinels took to name the new master. Private sentinel set: a master, two
   replicas, three sentinels, down-after-milliseconds 1000, failover-timeout 3000.
2. SENTINEL FAILOVER (graceful; a master, one replica, three sentinels): the longest
   enqueue and the errors while it runs.
3. The cost of ``replicas=1``: enqueue_many (chunk 100, 20 chunks a round) and single
   enqueues, with and without, interleaved in the same run, on a master with one replica.
"""

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from sharq_fast import AsyncClient, Client
from sharq_fast._processes import wait_until
from sharq_fast._redis_sentinel import RedisSentinelSet

Log = List[Tuple[float, float, Optional[str]]]  # (start, end, error) of each call


def job(n: int, queues: int = 100) -> Dict[str, Any]:
    return {"queue_type": "bench", "queue_id": f"q{n % queues}", "job_id": f"j{n}", "payload": {"n": n}, "interval": 0}


# -- probes -------------------------------------------------------------------------------


class SyncProbe(threading.Thread):
    """Enqueues one job after another on a sync Client until stopped."""

    def __init__(self, url: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(url, retry_for=60)
        self.tag = tag
        self.log: Log = []
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            start = time.monotonic()
            try:
                self.client.enqueue(queue_type="probe", queue_id=self.tag, job_id=f"{self.tag}{n}", payload=n, interval=0)
                self.log.append((start, time.monotonic(), None))
            except Exception as exc:  # noqa: BLE001 - measured, not handled
                self.log.append((start, time.monotonic(), f"{type(exc).__name__}: {exc}"))
        self.client.close()


class AsyncProbe(threading.Thread):
    """The same on an AsyncClient, in an event loop of its own thread."""

    def __init__(self, url: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.tag = tag
        self.log: Log = []
        self.stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        client = AsyncClient(self.url, retry_for=60)
        n = 0
        while not self.stopping.is_set():
            n += 1
            start = time.monotonic()
            try:
                await client.enqueue(queue_type="probe", queue_id=self.tag, job_id=f"{self.tag}{n}", payload=n,
                                     interval=0)
                self.log.append((start, time.monotonic(), None))
            except Exception as exc:  # noqa: BLE001
                self.log.append((start, time.monotonic(), f"{type(exc).__name__}: {exc}"))
        await client.close()


def first_success_after(log: Log, killed: float, switched: float) -> float:
    """Seconds from the kill to the end of the first call the new master answered: one
    that started after the old master was dead, or ended after the sentinels named the new
    one (a reply read just after the kill may have come from the old master's last
    moments, out of the socket's buffer)."""
    ends = [end for start, end, error in log if error is None and (start > killed or end > switched)]
    return min(ends) - killed


def start_probes(url: str) -> List[Any]:
    probes = [SyncProbe(url, "s"), AsyncProbe(url, "a")]
    for probe in probes:
        probe.start()
    wait_until(lambda: all(len(probe.log) > 20 for probe in probes), "the probes to run", 30, 0.05)
    return probes


def stop_probes(probes: List[Any]) -> None:
    for probe in probes:
        probe.stopping.set()
    for probe in probes:
        probe.join(60)


# -- 1 and 2: failures ----------------------------------------------------------------------


def kills(count: int) -> List[Dict[str, Any]]:
    runs = []
    with RedisSentinelSet(replicas=2, sentinels=3) as sentinel_set:
        for i in range(count):
            _host, port = sentinel_set.wait_settled()
            probes = start_probes(sentinel_set.url)
            time.sleep(0.5)
            sentinel_set.server(port).kill()  # SIGKILL, and reaped
            killed = time.monotonic()
            wait_until(lambda: sentinel_set.master_address()[1] != port, "a new master", 60, 0.005)
            switched = time.monotonic()
            time.sleep(1)
            wait_until(lambda: all(any(e is None and end > switched for _s, end, e in p.log) for p in probes),
                       "a call to succeed", 60, 0.01)
            stop_probes(probes)
            run = {
                "sentinels_named_new_master_s": round(switched - killed, 3),
                "sync_first_success_s": round(first_success_after(probes[0].log, killed, switched), 3),
                "async_first_success_s": round(first_success_after(probes[1].log, killed, switched), 3),
                "errors": sum(1 for p in probes for _s, _e, error in p.log if error),
            }
            print(f"kill {i + 1}: {run}", file=sys.stderr)
            runs.append(run)
            sentinel_set.revive()
    return runs


def graceful(count: int) -> List[Dict[str, Any]]:
    runs = []
    with RedisSentinelSet(replicas=1, sentinels=3) as sentinel_set:
        for i in range(count):
            sentinel_set.wait_settled()
            probes = start_probes(sentinel_set.url)
            started = time.monotonic()
            sentinel_set.failover()
            took = time.monotonic() - started
            time.sleep(0.5)
            stop_probes(probes)
            during = [(p, [(s, e, err) for s, e, err in p.log if e > started]) for p in probes]
            run = {
                "failover_s": round(took, 3),
                "sync_longest_call_s": round(max(e - s for s, e, _ in during[0][1]), 3),
                "async_longest_call_s": round(max(e - s for s, e, _ in during[1][1]), 3),
                "errors": sum(1 for _p, log in during for _s, _e, error in log if error),
            }
            print(f"failover {i + 1}: {run}", file=sys.stderr)
            runs.append(run)
    return runs


# -- 3: the cost of replicas=1 ----------------------------------------------------------


def replicas_cost(n: int, singles: int, reps: int) -> Dict[str, Any]:
    """Pairs of runs without and with replicas=1, back to back (the order alternating),
    so that each pair sees the same load; the ratio of each pair, and their median."""
    rates: Dict[str, List[float]] = {f"{what}_replicas{r}": [] for what in ("enqueue_many", "enqueue") for r in (0, 1)}
    with RedisSentinelSet(replicas=1, sentinels=3) as sentinel_set:
        clients = {replicas: Client(sentinel_set.url, replicas=replicas) for replicas in (0, 1)}
        master = sentinel_set.server(sentinel_set.master_address()[1]).client()
        clients[0].load_scripts()
        for rep in range(reps):
            for replicas in ((0, 1) if rep % 2 == 0 else (1, 0)):
                client = clients[replicas]
                master.flushall()
                master.execute_command("WAIT", 1, 5000)
                started = time.perf_counter()
                result = client.enqueue_many(job(i) for i in range(n))
                rates[f"enqueue_many_replicas{replicas}"].append(n / (time.perf_counter() - started))
                assert result.enqueued == n
                started = time.perf_counter()
                for i in range(singles):
                    client.enqueue(**job(n + i))
                rates[f"enqueue_replicas{replicas}"].append(singles / (time.perf_counter() - started))
        master.close()
        for client in clients.values():
            client.close()
    summary: Dict[str, Any] = {key: round(statistics.median(values)) for key, values in rates.items()}
    for what in ("enqueue_many", "enqueue"):
        ratios = [a / b for a, b in zip(rates[f"{what}_replicas1"], rates[f"{what}_replicas0"])]
        summary[f"{what}_ratio_median_of_pairs"] = round(statistics.median(ratios), 3)
        summary[f"{what}_ratio_pairs"] = [round(r, 3) for r in ratios]
    summary["runs"] = {key: [round(v) for v in values] for key, values in rates.items()}
    print(f"replicas cost: {summary}", file=sys.stderr)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--n", type=int, default=4000, help="jobs per enqueue_many run")
    parser.add_argument("--singles", type=int, default=200, help="single enqueues per run")
    parser.add_argument("--reps", type=int, default=40, help="pairs of runs without and with replicas=1")
    parser.add_argument("--out", help="write the results here (JSON)")
    args = parser.parse_args()
    results: Dict[str, Any] = {
        "kill": kills(args.kills),
        "failover": graceful(args.failovers),
        "replicas_cost": replicas_cost(args.n, args.singles, args.reps),
    }
    for key in ("sentinels_named_new_master_s", "sync_first_success_s", "async_first_success_s"):
        results[f"kill_median_{key}"] = statistics.median(run[key] for run in results["kill"])
    for key in ("sync_longest_call_s", "async_longest_call_s"):
        results[f"failover_median_{key}"] = statistics.median(run[key] for run in results["failover"])
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()

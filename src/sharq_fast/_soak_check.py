"""The soak's records and the checks made on them (``sharq-fast soak``, see _soak.py).

Every process appends lines to a file of its own (``os.write`` on an ``O_APPEND`` file,
unbuffered: a SIGKILL loses at most the line of the call it interrupted), independent of
Redis:

    E job queue          producer: enqueue_many acknowledged the job
    U job queue          producer: enqueue_many failed with an unknown outcome for the job
    D job queue lease    consumer: dequeue_many delivered the job; dequeue now = lease - job_expire_interval
    X job lease          consumer: extend_many moved the lease (new lease)
    f job lease          consumer: finish_many is about to be sent for this delivery
    F job lease ok       consumer: finish_many answered (ok 1: finished, 0: refused, ?: it raised)
    R job lease ok       consumer: release_many / fail_many answered for this delivery (ok 1: put back)

The orchestrator writes ``killed`` (pids it SIGKILLed). ``check()`` reads everything back.
"""

import collections
import glob
import os
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple


class RecordFile:
    """An append-only record file of one process (unbuffered)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, lines: Iterable[str]) -> None:
        data = "".join(line + "\n" for line in lines)
        if data:
            os.write(self.fd, data.encode())

    def close(self) -> None:
        os.close(self.fd)


def recording_client(base: Any, record: RecordFile) -> Any:
    """A subclass of Client or AsyncClient (`base`) that records what its consumer's
    dequeue_many, extend_many, finish_many, release_many and fail_many calls did."""

    def leases(jobs: List[Any]) -> List[Tuple[str, int]]:
        return [(job.job_id, job.expires_at) for job in jobs]

    is_async = getattr(base, "_ASYNCIO", False)

    if is_async:
        class AsyncRecording(base):  # type: ignore[misc, valid-type]
            async def dequeue_many(self, *args: Any, **kwargs: Any) -> Any:
                jobs = await super().dequeue_many(*args, **kwargs)
                record.write(f"D {j.job_id} {j.queue_id} {j.expires_at}" for j in jobs)
                return jobs

            async def extend_many(self, jobs: Any, ms: int, **kwargs: Any) -> Any:
                jobs = list(jobs)
                results = await super().extend_many(jobs, ms, **kwargs)
                record.write(f"X {j.job_id} {j.expires_at}" for j, ok in zip(jobs, results) if ok)
                return results

            async def finish_many(self, jobs: Any, **kwargs: Any) -> Any:
                jobs = list(jobs)
                before = leases(jobs)
                record.write(f"f {job} {lease}" for job, lease in before)
                try:
                    results = await super().finish_many(jobs, **kwargs)
                except BaseException:
                    record.write(f"F {job} {lease} ?" for job, lease in before)
                    raise
                record.write(f"F {job} {lease} {int(bool(ok))}" for (job, lease), ok in zip(before, results))
                return results

            async def release_many(self, jobs: Any, **kwargs: Any) -> Any:
                jobs = list(jobs)
                before = leases(jobs)
                results = await super().release_many(jobs, **kwargs)
                record.write(f"R {job} {lease} {int(bool(ok))}" for (job, lease), ok in zip(before, results))
                return results

            async def fail_many(self, jobs: Any, **kwargs: Any) -> Any:
                jobs = list(jobs)
                before = leases(jobs)
                results = await super().fail_many(jobs, **kwargs)
                record.write(f"R {job} {lease} {int(str(getattr(ok, 'value', ok)) != 'lost')}"
                             for (job, lease), ok in zip(before, results))
                return results

        return AsyncRecording

    class Recording(base):  # type: ignore[misc, valid-type]
        def dequeue_many(self, *args: Any, **kwargs: Any) -> Any:
            jobs = super().dequeue_many(*args, **kwargs)
            record.write(f"D {j.job_id} {j.queue_id} {j.expires_at}" for j in jobs)
            return jobs

        def extend_many(self, jobs: Any, ms: int, **kwargs: Any) -> Any:
            jobs = list(jobs)
            results = super().extend_many(jobs, ms, **kwargs)
            record.write(f"X {j.job_id} {j.expires_at}" for j, ok in zip(jobs, results) if ok)
            return results

        def finish_many(self, jobs: Any, **kwargs: Any) -> Any:
            jobs = list(jobs)
            before = leases(jobs)
            record.write(f"f {job} {lease}" for job, lease in before)
            try:
                results = super().finish_many(jobs, **kwargs)
            except BaseException:
                record.write(f"F {job} {lease} ?" for job, lease in before)
                raise
            record.write(f"F {job} {lease} {int(bool(ok))}" for (job, lease), ok in zip(before, results))
            return results

        def release_many(self, jobs: Any, **kwargs: Any) -> Any:
            jobs = list(jobs)
            before = leases(jobs)
            results = super().release_many(jobs, **kwargs)
            record.write(f"R {job} {lease} {int(bool(ok))}" for (job, lease), ok in zip(before, results))
            return results

        def fail_many(self, jobs: Any, **kwargs: Any) -> Any:
            jobs = list(jobs)
            before = leases(jobs)
            results = super().fail_many(jobs, **kwargs)
            record.write(f"R {job} {lease} {int(str(getattr(ok, 'value', ok)) != 'lost')}"
                         for (job, lease), ok in zip(before, results))
            return results

    return Recording


class Delivery:
    """One dequeue of a job, as the records tell it."""

    __slots__ = ("pid", "queue", "lease0", "lease", "finish", "attempted", "put_back", "unknown")

    def __init__(self, pid: int, queue: str, lease: int) -> None:
        self.pid = pid
        self.queue = queue
        self.lease0 = lease  # lease given by the dequeue
        self.lease = lease  # latest lease known (extensions)
        self.finish: Optional[bool] = None  # finish_many's answer, None: none recorded
        self.attempted = False  # finish_many was sent (its answer may be lost with the process)
        self.put_back = False  # released or failed: a redelivery is expected
        self.unknown = False  # a finish_many for it raised: its outcome is not known


def check(records_dir: str, expire_ms: int, intervals: Dict[str, int], leftovers: Dict[str, int]) -> Dict[str, Any]:
    """Read the records of a soak and check them; returns figures and a list of problems
    (empty: every check passed). `intervals` maps queue ids to their interval (ms);
    `leftovers` counts what was left in Redis at the end (all must be 0)."""
    killed: Set[int] = set()
    killed_path = os.path.join(records_dir, "killed")
    if os.path.exists(killed_path):
        with open(killed_path) as f:
            killed = {int(line) for line in f if line.strip()}
    enqueued: Dict[str, str] = {}
    unknown: Dict[str, str] = {}
    deliveries: Dict[str, List[Delivery]] = collections.defaultdict(list)
    by_lease: Dict[Tuple[str, int], Delivery] = {}
    problems: List[str] = []
    for path in sorted(glob.glob(os.path.join(records_dir, "producer-*.log"))):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3:
                    continue  # a line cut by a crash
                (enqueued if parts[0] == "E" else unknown)[parts[1]] = parts[2]
    for path in sorted(glob.glob(os.path.join(records_dir, "consumer-*.log"))):
        pid = int(os.path.basename(path)[len("consumer-"):-len(".log")])
        with open(path) as f:
            for line in f:
                parts = line.split()
                kind = parts[0] if parts else ""
                try:
                    if kind == "D" and len(parts) == 4:
                        d = Delivery(pid, parts[2], int(parts[3]))
                        deliveries[parts[1]].append(d)
                        by_lease[(parts[1], d.lease0)] = d
                    elif kind == "X" and len(parts) == 3:
                        d = _find(by_lease, deliveries, parts[1], pid)
                        if d is not None:
                            d.lease = max(d.lease, int(parts[2]))
                            by_lease[(parts[1], int(parts[2]))] = d
                    elif kind in ("f", "F", "R") and len(parts) >= 3:
                        d = by_lease.get((parts[1], int(parts[2])))
                        if d is None:
                            continue  # its D line was lost to a SIGKILL
                        if kind == "f":
                            d.attempted = True
                        elif kind == "F" and len(parts) == 4 and parts[3] == "?":
                            d.unknown = True
                        elif kind == "F" and len(parts) == 4:
                            d.finish = parts[3] == "1" or bool(d.finish)
                        elif kind == "R" and len(parts) == 4 and parts[3] == "1":
                            d.put_back = True
                except ValueError:
                    continue  # a line cut by a crash
    figures: Dict[str, Any] = {
        "enqueued": len(enqueued), "enqueue_outcome_unknown": len(unknown), "consumers_killed": len(killed),
        "deliveries": sum(len(v) for v in deliveries.values()),
    }
    finished_once = finished_unrecorded = redelivered = redeliveries = 0
    for job, queue in enqueued.items():
        ds = deliveries.get(job, [])
        wins = [d for d in ds if d.finish]
        if len(wins) > 1:
            problems.append(f"job {job} finished {len(wins)} times (pids {[d.pid for d in wins]})")
        elif len(wins) == 1:
            finished_once += 1
        else:
            # No finish answer recorded: only acceptable when the process was killed with
            # finish_many in flight, or the call raised (Redis may have finished it; the end
            # state says none is left).
            if any(d.unknown or (d.attempted and d.finish is None and d.pid in killed) for d in ds):
                finished_unrecorded += 1
            else:
                problems.append(f"job {job} (queue {queue}) lost: {len(ds)} deliveries, no successful finish")
        if len(ds) > 1:
            redelivered += 1
            redeliveries += len(ds) - 1
            ordered = sorted(ds, key=lambda d: d.lease0)
            for prev, nxt in zip(ordered, ordered[1:]):
                now = nxt.lease0 - expire_ms
                if prev.pid in killed or prev.put_back or prev.lease <= now:
                    continue
                problems.append(f"job {job} redelivered at {now} while pid {prev.pid}'s lease ran to {prev.lease} "
                                f"(not killed, not released)")
    stray = [job for job in deliveries if job not in enqueued and job not in unknown]
    if stray:
        problems.append(f"{len(stray)} delivered jobs were never acknowledged by enqueue_many, e.g. {stray[:3]}")
    violations, after_requeue, checked = _interval_gaps(deliveries, intervals, expire_ms)
    for queue, gap, interval, again in violations[:10]:
        problems.append(f"queue {queue}: two dequeues {gap} ms apart, interval {interval} ms"
                        + (" (one of them a redelivery)" if again else ""))
    if len(violations) > 10:
        problems.append(f"... {len(violations) - 10} more interval violations")
    for what, count in leftovers.items():
        if count:
            problems.append(f"left in Redis at the end: {count} {what}")
    figures.update(
        finished_exactly_once=finished_once, finished_outcome_unrecorded=finished_unrecorded,
        lost=len(enqueued) - finished_once - finished_unrecorded, redelivered_jobs=redelivered,
        redeliveries=redeliveries, interval_dequeues_checked=checked, interval_violations=len(violations),
        interval_gaps_after_requeue=len(after_requeue),
        min_gap_ratio=_min_gap_ratio(deliveries, intervals, expire_ms),
    )
    figures["left_in_redis"] = sum(leftovers.values())
    figures["double_finishes"] = sum(1 for p in problems if "finished" in p and "times" in p)
    return {"figures": figures, "problems": problems}


def _find(by_lease: Dict[Tuple[str, int], Delivery], deliveries: Dict[str, List[Delivery]], job: str,
          pid: int) -> Optional[Delivery]:
    for d in reversed(deliveries.get(job, [])):
        if d.pid == pid:
            return d
    return None


def _dequeue_times(deliveries: Dict[str, List[Delivery]], intervals: Dict[str, int],
                   expire_ms: int) -> Dict[str, List[Tuple[int, bool]]]:
    """Per queue with an interval: (dequeue now, whether it was a redelivery), sorted."""
    per_queue: Dict[str, List[Tuple[int, bool]]] = collections.defaultdict(list)
    for ds in deliveries.values():
        first = min(d.lease0 for d in ds)
        for d in ds:
            if intervals.get(d.queue, 0) > 0:
                per_queue[d.queue].append((d.lease0 - expire_ms, d.lease0 != first))
    for times in per_queue.values():
        times.sort()
    return per_queue


def _interval_gaps(deliveries: Dict[str, List[Delivery]], intervals: Dict[str, int],
                   expire_ms: int) -> Tuple[List[Tuple[str, int, int, bool]], List[Tuple[str, int, int, bool]], int]:
    """Consecutive dequeues of a queue closer than its interval, redeliveries included:
    (all of them as (queue, gap, interval, a redelivery involved), those involving a
    redelivered job, dequeues checked). (SharQ 1.3.0's finish forgets the interval of a
    queue with no queued job even while other jobs of it are held, so their redeliveries
    could go out together; sharq_fast keeps it until none can be held: README.)"""
    violations: List[Tuple[str, int, int, bool]] = []
    checked = 0
    for queue, times in _dequeue_times(deliveries, intervals, expire_ms).items():
        checked += len(times)
        interval = intervals[queue]
        for (a, again_a), (b, again_b) in zip(times, times[1:]):
            if b - a < interval:
                violations.append((queue, b - a, interval, again_a or again_b))
    return violations, [v for v in violations if v[3]], checked


def _min_gap_ratio(deliveries: Dict[str, List[Delivery]], intervals: Dict[str, int], expire_ms: int) -> Optional[float]:
    """The smallest gap / interval between two dequeues of a queue (redeliveries included)."""
    ratios = []
    for queue, times in _dequeue_times(deliveries, intervals, expire_ms).items():
        gaps = [b - a for (a, _), (b, _) in zip(times, times[1:])]
        if gaps:
            ratios.append(min(gaps) / intervals[queue])
    return round(min(ratios), 3) if ratios else None

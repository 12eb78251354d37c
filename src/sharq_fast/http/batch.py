"""Batch routes (beyond sharq-server): many jobs per request, an answer per job.

    POST /batch/enqueue/            {"jobs": [{queue_type, queue_id, job_id, payload,
                                     interval[, requeue_limit]}, ...]}  (or the bare array)
    GET|POST /batch/dequeue/<qt>/   ?count=N[&wait=SECONDS]  (each job with its lease,
                                     ``expires_at``)
    POST /batch/finish/             {"jobs": [{queue_type, queue_id, job_id[, expires_at]}, ...]}
    POST /batch/extend/             {"ms": N, "jobs": [{queue_type, queue_id, job_id, expires_at}, ...]}
    POST /batch/release/            {"jobs": [{queue_type, queue_id, job_id, expires_at}, ...]}
    POST /batch/fail/               {"jobs": [{queue_type, queue_id, job_id, expires_at}, ...]
                                     [, "backoff_ms": N][, "dead_letter": queue_type]}

A job's ``expires_at`` is its lease (ms epoch, from the dequeue): with it, finish,
extend, release and fail act on the job only while that lease holds, never on a later
delivery of the same job to another consumer (the client's finish_many, extend_many,
release_many, fail_many on Jobs). finish without it goes by ids, as the single route does.

Each job is checked on its own: a bad one gets a 400 entry and the others go ahead. The
per-job entries carry the status code the single-job route would have answered.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

from .._core import core
from .._ops import fail_args
from .._settings import positive_ms
from ..client import BatchError
from ..exceptions import BadArgumentException
from ..types import FailOutcome, Job
from . import _wire as w
from .routes import DUPLICATE

if TYPE_CHECKING:
    from .server import SharqHTTP

Answer = Tuple[int, bytes]
QUEUED: Dict[str, Any] = {"status": "queued"}
FINISHED: Dict[str, Any] = {"status": "success"}
NOT_ACTIVE: Dict[str, Any] = {"code": 404, "status": "failure"}
LEASE_LOST: Dict[str, Any] = {"code": 404, "message": "the job is not active under this lease", "status": "failure"}
REF_FIELDS = ("queue_type", "queue_id", "job_id", "expires_at")
DUPLICATE_ENTRY: Dict[str, Any] = {"code": 409, "message": DUPLICATE, "status": "failure"}


def _bad(message: str) -> Dict[str, Any]:
    return {"code": 400, "message": message, "status": "failure"}


class BatchRoutes:
    """The handlers of the batch routes; each returns (status, JSON body)."""

    def __init__(self, app: "SharqHTTP") -> None:
        self.app = app

    def _jobs(self, body: bytes, data: Any = None) -> List[Any]:
        if data is None:
            data = w.decode_json(body)
        jobs = data.get("jobs") if isinstance(data, dict) else data
        if not isinstance(jobs, list):
            raise w.bad_request('the request body must be {"jobs": [...]} or a JSON array of jobs')
        if len(jobs) > self.app.settings.max_batch:
            raise w.bad_request(f"{len(jobs)} jobs in one request; at most {self.app.settings.max_batch}")
        return jobs

    async def enqueue(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /batch/enqueue/: 200 with one entry per job ({"status": "queued"}, or a
        failure with code 400 or 409) and the number enqueued."""
        jobs = self._jobs(body)
        client = self.app.client
        default_limit = getattr(client, "default_job_requeue_limit", -1)
        results: List[Dict[str, Any]] = [QUEUED] * len(jobs)
        valid: List[Any] = []
        positions: List[int] = []
        for i, job in enumerate(jobs):
            if not isinstance(job, dict):
                results[i] = _bad("a job must be a JSON object")
                continue
            try:
                core.job_fields(job, -1, default_limit)  # the checks enqueue_many makes
            except BadArgumentException as exc:
                results[i] = _bad(str(exc))
                continue
            valid.append(job)
            positions.append(i)
        enqueued = 0
        if valid:
            try:
                result = await client.enqueue_many(valid)
            except BatchError as exc:
                raise w.HTTPError(
                    503, f"Redis refused part of the batch: {exc}", enqueued=exc.enqueued,
                    refused=[positions[i] for i in exc.refused],
                ) from None
            for position in result.duplicates:
                results[positions[position]] = DUPLICATE_ENTRY
            enqueued = result.enqueued
        self.app.stats.jobs["enqueued"] += enqueued
        self.app.stats.jobs["duplicate"] += len(valid) - enqueued
        return 200, w.dumps({"enqueued": enqueued, "results": results, "status": "success"})

    async def dequeue(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """GET or POST /batch/dequeue/<queue_type>/?count=N[&wait=SECONDS]: 200 with up to
        N jobs (an empty list when none is ready; with `wait`, after at most that long)."""
        queue_type = params[0]
        args = w.query_params(query)
        count = int(w.number_param(args, "count", low=1, high=self.app.settings.max_batch, integer=True) or 100)
        wait = self.app.wait_param(query, args)
        try:
            jobs = await self.app.dequeue_many_waiting(queue_type, count, wait)
            message = None
        except BatchError as exc:  # the jobs taken must still be delivered
            jobs, message = exc.jobs, f"Redis refused part of the dequeue: {exc}"
        self.app.stats.jobs["dequeued"] += len(jobs)
        answer: Dict[str, Any] = {
            "jobs": [
                {
                    "expires_at": job.expires_at, "job_id": job.job_id, "payload": job.payload,
                    "queue_id": job.queue_id, "queue_type": job.queue_type,
                    "requeues_remaining": job.requeues_remaining,
                }
                for job in jobs
            ],
        }
        if message:
            answer["message"] = message
        answer["status"] = "success"
        return 200, w.dumps(answer)

    def _refs(self, jobs: List[Any], need_lease: bool, results: List[Dict[str, Any]]) -> Tuple[List[Any], List[int]]:
        """The valid job references of `jobs` as (queue_type, queue_id, job_id[, lease])
        tuples, and their positions; a bad one gets its 400 entry in `results`."""
        valid: List[Any] = []
        positions: List[int] = []
        for i, job in enumerate(jobs):
            if not isinstance(job, dict):
                results[i] = _bad("a job must be a JSON object")
                continue
            unknown = [key for key in job if key not in REF_FIELDS]
            if unknown:
                results[i] = _bad(f"`{unknown[0]}` is not a field of a job reference.")
                continue
            if need_lease and "expires_at" not in job:
                results[i] = _bad("`expires_at` (the lease the job's dequeue gave) is a mandatory parameter.")
                continue
            ref: Tuple[Any, ...] = (job.get("queue_type", "default"), job.get("queue_id"), job.get("job_id"))
            if "expires_at" in job or need_lease:
                ref += (job.get("expires_at", 0),)
            try:
                core.job_ref(ref, -1, need_lease)
            except BadArgumentException as exc:
                results[i] = _bad(str(exc))
                continue
            valid.append(ref)
            positions.append(i)
        return valid, positions

    async def _by_refs(self, method: Any, refs: List[Any], positions: List[int], *args: Any) -> List[Any]:
        """`method(refs, *args)` (finish_many, extend_many, release_many, fail_many); 503 when Redis
        refused part of it, with the positions refused."""
        try:
            return await method(refs, *args)
        except BatchError as exc:
            raise w.HTTPError(
                503, f"Redis refused part of the batch: {exc}", refused=[positions[i] for i in exc.refused]
            ) from None

    async def finish(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /batch/finish/: 200 with one entry per job ({"status": "success"}, or a
        failure with code 404 (not active; with expires_at: not under that lease) or 400)
        and the number finished."""
        jobs = self._jobs(body)
        results: List[Dict[str, Any]] = [FINISHED] * len(jobs)
        valid, positions = self._refs(jobs, False, results)
        finished = 0
        if valid:
            flags = await self._by_refs(self.app.client.finish_many, valid, positions)
            for position, ref, done in zip(positions, valid, flags):
                if done:
                    finished += 1
                else:
                    results[position] = LEASE_LOST if len(ref) == 4 and ref[3] else NOT_ACTIVE
        self.app.stats.jobs["finished"] += finished
        return 200, w.dumps({"finished": finished, "results": results, "status": "success"})

    async def extend(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /batch/extend/ with {"ms": N, "jobs": [...]}: move each job's lease to now +
        N ms. 200 with one entry per job ({"expires_at": new lease, "status": "success"}, or
        a failure with code 404 (the lease was lost: stop working on the job) or 400)."""
        data = w.json_object(body)
        if "ms" not in data:
            raise w.bad_request("`ms` is a mandatory parameter.")
        ms = positive_ms(data["ms"], "ms")  # the client's rule (400 otherwise)
        jobs = self._jobs(body, data)
        results: List[Dict[str, Any]] = [FINISHED] * len(jobs)
        valid, positions = self._refs(jobs, True, results)
        leases = [Job(ref[0], ref[1], ref[2], None, -1, ref[3]) for ref in valid]
        extended = 0
        if leases:
            flags = await self._by_refs(self.app.client.extend_many, leases, positions, ms)
            for position, job, done in zip(positions, leases, flags):
                if done:
                    extended += 1
                    results[position] = {"expires_at": job.expires_at, "status": "success"}
                else:
                    results[position] = LEASE_LOST
        self.app.stats.jobs["extended"] += extended
        return 200, w.dumps({"extended": extended, "results": results, "status": "success"})

    async def release(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /batch/release/: put each job back at the front of its queue, now, without
        counting a requeue. 200 with one entry per job ({"status": "success"}, or a failure
        with code 404 (the lease was lost) or 400) and the number released."""
        jobs = self._jobs(body)
        results: List[Dict[str, Any]] = [FINISHED] * len(jobs)
        valid, positions = self._refs(jobs, True, results)
        released = 0
        if valid:
            flags = await self._by_refs(self.app.client.release_many, valid, positions)
            for position, done in zip(positions, flags):
                if done:
                    released += 1
                else:
                    results[position] = LEASE_LOST
        self.app.stats.jobs["released"] += released
        return 200, w.dumps({"released": released, "results": results, "status": "success"})

    async def fail(self, params: Sequence[str], query: bytes, body: bytes) -> Answer:
        """POST /batch/fail/ with {"jobs": [...][, "backoff_ms": N][, "dead_letter": T]}:
        the worker could not do these jobs (the client's fail_many). 200 with one entry per
        job ({"outcome": "retried" / "discarded" / "dead_lettered", "status": "success"},
        or a failure with code 404 (the lease was lost: nothing changed) or 400) and the
        number failed; 400 for a bad backoff_ms or dead_letter."""
        data = w.json_object(body) if body.lstrip()[:1] == b"{" else {}
        backoff_ms = data.get("backoff_ms", 0)
        dead_letter = data.get("dead_letter")
        fail_args((), backoff_ms, dead_letter)  # the client's rules (400 otherwise)
        jobs = self._jobs(body, data or None)
        results: List[Dict[str, Any]] = [FINISHED] * len(jobs)
        refs, ref_positions = self._refs(jobs, True, results)
        valid: List[Any] = []
        positions: List[int] = []
        for position, ref in zip(ref_positions, refs):
            try:
                fail_args((ref,), backoff_ms, dead_letter)  # e.g. dead_letter is the job's own type
            except BadArgumentException as exc:
                results[position] = _bad(str(exc).replace("job 0: ", ""))
                continue
            valid.append(ref)
            positions.append(position)
        failed = 0
        if valid:
            client = self.app.client
            outcomes = await self._by_refs(
                lambda refs: client.fail_many(refs, backoff_ms=backoff_ms, dead_letter=dead_letter), valid, positions
            )
            for position, outcome in zip(positions, outcomes):
                if outcome == FailOutcome.LOST:
                    results[position] = LEASE_LOST
                else:
                    failed += 1
                    results[position] = {"outcome": outcome.value, "status": "success"}
        self.app.stats.jobs["failed"] += failed
        return 200, w.dumps({"failed": failed, "results": results, "status": "success"})

"""``ProxyClient`` and ``AsyncProxyClient``: the Client methods over HTTP (httpx).

They talk to ``sharq-fast serve`` or to Plivo's sharq-server (its routes only: enqueue,
dequeue, finish, interval, metrics; and clear_queue/deep_status on the GitHub version).
Arguments are checked here, as Client checks them, so bad input raises
BadArgumentException before a request is sent (sharq-server would answer it with a 500).
Connections are kept alive and reused; every call has a timeout.

    with ProxyClient("http://127.0.0.1:8080") as q:
        q.enqueue(queue_type="sms", queue_id="q1", job_id="j1", payload={"a": 1}, interval=1000)
        job = q.dequeue("sms", timeout=5)      # a Job or None; long-polls on sharq-fast serve
        q.finish(job.queue_type, job.queue_id, job.job_id)
"""

import asyncio
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import msgspec

from .._core import core
from .._ops import fail_args
from .._settings import positive_ms, seconds
from ..exceptions import BadArgumentException
from ..types import EnqueueResult, FailOutcome, GlobalMetrics, Job, QueueMetrics, QueueTypeMetrics
from .proxy_errors import (
    ProxyConnectionError,
    QueueFull,
    UnsupportedByServer,
    error_for,
)

try:
    import httpx
except ImportError:  # pragma: no cover - the `server` extra brings it
    httpx = None  # type: ignore[assignment]

Auth = Union[str, Tuple[str, str], None]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
#: Idle keep-alive connections are dropped after this many seconds: below gunicorn's
#: keepalive (2 s, sharq-server's default), so a request never goes out on a connection
#: the server is closing at that moment.
KEEPALIVE_EXPIRY = 1.5
#: Pauses between polls when a dequeue with a timeout runs against a server without
#: long-poll (Plivo's sharq-server).
POLL_FIRST, POLL_MAX = 0.02, 0.5
SERVER_HEADER = "x-sharq-fast"


class _Call(msgspec.Struct):
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[int, Any, Any], Any]
    body: Optional[bytes] = None
    params: Optional[Dict[str, Any]] = None
    timeout: Optional[float] = None


_NOT_GIVEN: Any = object()


def _check_ids(queue_type: Any, queue_id: Any = _NOT_GIVEN, job_id: Any = _NOT_GIVEN) -> None:
    # (None is a bad id, not a missing one: it would go into the path as "None".)
    if job_id is not _NOT_GIVEN:
        core.check_identifier(job_id, "job_id")
    if queue_id is not _NOT_GIVEN:
        core.check_identifier(queue_id, "queue_id")
    core.check_identifier(queue_type, "queue_type")


def _raise(status: int, data: Any, response: Any) -> None:
    raise error_for(status, data, response.request.method, response.request.url.path)


def _is_failure(data: Any) -> bool:
    """A sharq-server "failure" answer (not, say, a 404 page of a missing route)."""
    return isinstance(data, dict) and data.get("status") == "failure" and "message" not in data


def _job(queue_type: str, data: Dict[str, Any]) -> Job:
    # expires_at: the lease, given by the batch route (sharq-server's dequeue has none: 0).
    return Job(data.get("queue_type", queue_type), data["queue_id"], data["job_id"], data.get("payload"),
               int(data.get("requeues_remaining", -1)), int(data.get("expires_at", 0)))


def _ref(queue_type: str, queue_id: str, job_id: str, lease: int) -> Dict[str, Any]:
    """A job reference of the batch routes; with its lease when it has one."""
    ref: Dict[str, Any] = {"queue_type": queue_type, "queue_id": queue_id, "job_id": job_id}
    if lease:
        ref["expires_at"] = lease
    return ref


def _by_ids(job: Any) -> Any:
    """A Job whose lease the server did not tell (expires_at 0) as its ids; else `job`."""
    if isinstance(job, Job) and not job.expires_at:
        return (job.queue_type, job.queue_id, job.job_id)
    return job


def _counts(raw: Dict[str, Any]) -> Dict[int, int]:
    return {int(minute): int(raw[minute]) for minute in sorted(raw, key=int, reverse=True)}


class _Calls:
    """The requests of each method and the parsing of their answers (no I/O)."""

    base_url: str

    def _enqueue(self, queue_type: str, queue_id: str, job_id: str, payload: Any, interval: int,
                 requeue_limit: Optional[int]) -> _Call:
        core.check_interval(interval)
        _check_ids(queue_type, queue_id, job_id)
        if requeue_limit is not None:
            core.check_requeue_limit(requeue_limit)
        core.encode_payload(payload)  # refused as Client refuses it (JSON would take a set, a date...)
        body: Dict[str, Any] = {"job_id": job_id, "payload": payload, "interval": interval}
        if requeue_limit is not None:
            body["requeue_limit"] = requeue_limit
        try:
            content = _encode(body)
        except (TypeError, msgspec.EncodeError) as exc:
            raise BadArgumentException(f"`payload` can not be sent as JSON: {exc}", field="payload") from None

        def parse(status: int, data: Any, response: Any) -> bool:
            if status == 201:
                return True
            if status == 409:
                return False
            if status == 429:
                raise QueueFull(data, response.request.method, response.request.url.path)
            _raise(status, data, response)
            return False

        return _Call("POST", f"/enqueue/{queue_type}/{queue_id}/", parse, content)

    def _dequeue(self, queue_type: str, wait: Optional[float]) -> _Call:
        core.check_identifier(queue_type, "queue_type")

        def parse(status: int, data: Any, response: Any) -> Optional[Job]:
            if status == 200:
                return _job(queue_type, data)
            if status == 404 and _is_failure(data):
                return None
            _raise(status, data, response)
            return None

        path = "/dequeue/" if queue_type == "default" else f"/dequeue/{queue_type}/"
        return _Call("GET", path, parse, params={"wait": wait} if wait else None, timeout=wait)

    def _finish(self, queue_type: str, queue_id: str, job_id: str) -> _Call:
        _check_ids(queue_type, queue_id, job_id)
        return _Call("POST", f"/finish/{queue_type}/{queue_id}/{job_id}/", _flag)

    def _interval(self, queue_type: str, queue_id: str, interval: int) -> _Call:
        core.check_interval(interval)
        _check_ids(queue_type, queue_id)
        return _Call("POST", f"/interval/{queue_type}/{queue_id}/", _flag, _encode({"interval": interval}))

    def _metrics(self, queue_type: Optional[str], queue_id: Optional[str]) -> _Call:
        if queue_id is not None:
            core.check_identifier(queue_id, "queue_id")
            if queue_type is None:
                raise BadArgumentException("`queue_id` should be accompanied by `queue_type`.", field="queue_id")
        if queue_type is not None:
            core.check_identifier(queue_type, "queue_type")

        def parse(status: int, data: Any, response: Any) -> Any:
            if status != 200:
                _raise(status, data, response)
            if queue_type is None:
                return GlobalMetrics(sorted(data["queue_types"]), _counts(data["enqueue_counts"]), _counts(data["dequeue_counts"]))
            if queue_id is None:
                return QueueTypeMetrics(sorted(data["queue_ids"]))
            return QueueMetrics(_counts(data["enqueue_counts"]), _counts(data["dequeue_counts"]), int(data["queue_length"]))

        path = "/metrics/" + "".join(f"{part}/" for part in (queue_type, queue_id) if part is not None)
        return _Call("GET", path, parse)

    def _clear_queue(self, queue_type: str, queue_id: str, purge_all: bool) -> _Call:
        _check_ids(queue_type, queue_id)

        def parse(status: int, data: Any, response: Any) -> bool:
            if status == 200 and isinstance(data, dict) and data.get("status") in ("Success", "Failure"):
                return data["status"] == "Success"
            _raise(status, data, response)
            return False

        body = _encode({"purge_all": bool(purge_all)})
        return _Call("DELETE", f"/deletequeue/{queue_type}/{queue_id}/", parse, body)

    def _deep_status(self) -> _Call:
        def parse(status: int, data: Any, response: Any) -> bool:
            if status == 200:
                return True
            _raise(status, data, response)
            return False

        return _Call("GET", "/deepstatus/", parse)

    def _enqueue_many(self, jobs: Iterable[Any]) -> _Call:
        items = []
        for i, job in enumerate(jobs):
            if isinstance(job, msgspec.Struct):
                job = msgspec.structs.asdict(job)
            core.job_fields(job, i, -1)  # the checks of Client.enqueue_many, with positions
            items.append({key: value for key, value in job.items() if value is not None or key != "requeue_limit"})

        def parse(status: int, data: Any, response: Any) -> EnqueueResult:
            if status != 200:
                _raise_batch(status, data, response)
            duplicates = [i for i, entry in enumerate(data["results"]) if entry.get("code") == 409]
            return EnqueueResult(enqueued=int(data["enqueued"]), duplicates=duplicates)

        return _Call("POST", "/batch/enqueue/", parse, _encode({"jobs": items}))

    def _dequeue_many(self, queue_type: str, count: int, wait: Optional[float]) -> _Call:
        core.check_identifier(queue_type, "queue_type")
        seconds(wait, "timeout", allow_none=True)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadArgumentException("`count` must be an int >= 1.", field="count")

        def parse(status: int, data: Any, response: Any) -> List[Job]:
            if status != 200:
                _raise_batch(status, data, response)
            return [_job(queue_type, entry) for entry in data["jobs"]]

        params: Dict[str, Any] = {"count": count}
        if wait:
            params["wait"] = wait
        return _Call("GET", f"/batch/dequeue/{queue_type}/", parse, params=params, timeout=wait)

    def _finish_many(self, jobs: Iterable[Any]) -> _Call:
        # A Job with a lease (from dequeue_many) is finished only under that lease; one from
        # sharq-server's dequeue route, whose answer tells no lease, by its ids.
        items = [_ref(*core.job_ref(_by_ids(job), i, False)) for i, job in enumerate(jobs)]
        return _Call("POST", "/batch/finish/", _successes, _encode({"jobs": items}))

    def _extend_many(self, jobs: Iterable[Job], ms: int) -> _Call:
        items = list(jobs)
        for i, job in enumerate(items):
            if not isinstance(job, Job):
                raise BadArgumentException(
                    f"job {i}: extend takes the Job objects that dequeue_many gave (their lease is "
                    f"updated), not {type(job).__name__}", index=i,
                )
        refs = [_ref(*core.job_ref(job, i, True)) for i, job in enumerate(items)]
        positive_ms(ms, "ms")

        def parse(status: int, data: Any, response: Any) -> List[bool]:
            flags = _successes(status, data, response)
            for job, entry, done in zip(items, data["results"], flags):
                if done:
                    job.expires_at = int(entry["expires_at"])
            return flags

        return _Call("POST", "/batch/extend/", parse, _encode({"ms": ms, "jobs": refs}))

    def _release_many(self, jobs: Iterable[Any]) -> _Call:
        refs = [_ref(*core.job_ref(job, i, True)) for i, job in enumerate(jobs)]
        return _Call("POST", "/batch/release/", _successes, _encode({"jobs": refs}))

    def _fail_many(self, jobs: Iterable[Any], backoff_ms: int, dead_letter: Optional[str]) -> _Call:
        items = list(jobs)
        fail_args(items, backoff_ms, dead_letter)
        refs = [_ref(*core.job_ref(job, i, True)) for i, job in enumerate(items)]

        def parse(status: int, data: Any, response: Any) -> List[FailOutcome]:
            flags = _successes(status, data, response)
            return [FailOutcome(entry["outcome"]) if done else FailOutcome.LOST
                    for entry, done in zip(data["results"], flags)]

        body = {"jobs": refs, "backoff_ms": backoff_ms, "dead_letter": dead_letter}
        return _Call("POST", "/batch/fail/", parse, _encode(body))


def _flag(status: int, data: Any, response: Any) -> bool:
    """200 -> True; sharq-server's 404 {"status": "failure"} -> False."""
    if status == 200:
        return True
    if status == 404 and _is_failure(data):
        return False
    _raise(status, data, response)
    return False


def _successes(status: int, data: Any, response: Any) -> List[bool]:
    """A batch answer's per-job success flags."""
    if status != 200:
        _raise_batch(status, data, response)
    return [entry.get("status") == "success" for entry in data["results"]]


def _raise_batch(status: int, data: Any, response: Any) -> None:
    if status in (404, 405):
        raise UnsupportedByServer(
            f"{response.request.url.path} answered {status}: the server has no batch routes "
            "(Plivo's sharq-server has none; run `sharq-fast serve`)"
        )
    _raise(status, data, response)


def _headers(auth: Auth) -> Tuple[Dict[str, str], Any]:
    if isinstance(auth, str):
        return {"authorization": f"Bearer {auth}"}, None
    if isinstance(auth, tuple):
        return {}, httpx.BasicAuth(*auth)
    return {}, None


def _limits(connections: int) -> Any:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_EXPIRY)


def _need_httpx() -> None:
    if httpx is None:
        raise ImportError("the proxy clients need httpx: pip install 'sharq-fast[server]'")


class ProxyClient(_Calls):
    """The Client methods over HTTP. `auth`: a bearer token (str) or (user, password);
    `timeout`: seconds per request (long polls get their wait on top); `connections`:
    the most connections kept to the server (one per thread using this client)."""

    def __init__(self, base_url: str, *, auth: Auth = None, timeout: float = 10.0, connections: int = 10,
                 headers: Optional[Dict[str, str]] = None, transport: Any = None) -> None:
        _need_httpx()
        extra, basic = _headers(auth)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._server_waits: Optional[bool] = None
        self._http = httpx.Client(base_url=self.base_url, headers={**(headers or {}), **extra}, auth=basic,
                                  timeout=timeout, limits=_limits(connections), transport=transport)

    def _do(self, call: _Call) -> Any:
        try:
            response = self._http.request(
                call.method, call.path, content=call.body, params=call.params,
                headers={"content-type": "application/json"} if call.body is not None else None,
                timeout=self.timeout + call.timeout if call.timeout else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise ProxyConnectionError.from_httpx(exc, call.method, self.base_url + call.path) from None
        return call.parse(response.status_code, _body(response), response)

    def server_waits(self) -> bool:
        """Whether the server long-polls (``sharq-fast serve``); asked once."""
        if self._server_waits is None:
            try:
                response = self._http.get("/")
            except httpx.TransportError as exc:
                raise ProxyConnectionError.from_httpx(exc, "GET", self.base_url + "/") from None
            self._server_waits = SERVER_HEADER in response.headers
        return self._server_waits

    def enqueue(self, *, queue_id: str, job_id: str, payload: Any, interval: int, queue_type: str = "default",
                requeue_limit: Optional[int] = None) -> bool:
        """Enqueue one job: True, or False when the server refused its job_id as a
        duplicate (sharq-fast serve; sharq-server overwrites). QueueFull on 429."""
        return self._do(self._enqueue(queue_type, queue_id, job_id, payload, interval, requeue_limit))

    def dequeue(self, queue_type: str = "default", timeout: Optional[float] = None) -> Optional[Job]:
        """A Job, or None when no queue is ready (after up to `timeout` seconds)."""
        seconds(timeout, "timeout", allow_none=True)
        if not timeout:
            return self._do(self._dequeue(queue_type, None))
        if self.server_waits():
            return self._do(self._dequeue(queue_type, timeout))
        deadline, pause = time.monotonic() + timeout, POLL_FIRST
        while True:
            job = self._do(self._dequeue(queue_type, None))
            left = deadline - time.monotonic()
            if job is not None or left <= 0:
                return job
            time.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    def finish(self, queue_type: str, queue_id: str, job_id: str) -> bool:
        """Finish a job: False when it is not active."""
        return self._do(self._finish(queue_type, queue_id, job_id))

    def interval(self, queue_type: str, queue_id: str, interval: int) -> bool:
        """Change a queue's interval: False for a queue without one."""
        return self._do(self._interval(queue_type, queue_id, interval))

    def metrics(self, queue_type: Optional[str] = None, queue_id: Optional[str] = None) -> Any:
        """GlobalMetrics, QueueTypeMetrics or QueueMetrics, as Client.metrics."""
        return self._do(self._metrics(queue_type, queue_id))

    def queue_length(self, queue_type: str, queue_id: str) -> int:
        """How many jobs wait in a queue (from its metrics)."""
        _check_ids(queue_type, queue_id)
        return self.metrics(queue_type, queue_id).queue_length

    def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> bool:
        """Clear a queue: True when it had queued jobs."""
        return self._do(self._clear_queue(queue_type, queue_id, purge_all))

    def deep_status(self) -> bool:
        """True when the server's Redis takes writes; raises otherwise."""
        return self._do(self._deep_status())

    def enqueue_many(self, jobs: Iterable[Any]) -> EnqueueResult:
        """Enqueue jobs (dicts or JobRequests) in one request (sharq-fast serve only)."""
        return self._do(self._enqueue_many(jobs))

    def dequeue_many(self, queue_type: str = "default", count: int = 100, timeout: Optional[float] = None) -> List[Job]:
        """Up to `count` jobs in one request, waiting up to `timeout` s for the first."""
        return self._do(self._dequeue_many(queue_type, count, timeout))

    def finish_many(self, jobs: Iterable[Any]) -> List[bool]:
        """Finish jobs (Jobs or (queue_type, queue_id, job_id) tuples); a bool each. A Job
        from dequeue_many is finished only while its lease holds, as Client.finish_many."""
        return self._do(self._finish_many(jobs))

    def extend_many(self, jobs: Iterable[Job], ms: int) -> List[bool]:
        """Move the leases of Jobs from dequeue_many to now + `ms` (their expires_at is
        updated); False for a job whose lease was lost (sharq-fast serve only)."""
        return self._do(self._extend_many(jobs, ms))

    def release_many(self, jobs: Iterable[Any]) -> List[bool]:
        """Put Jobs from dequeue_many (or (queue_type, queue_id, job_id, lease) tuples) back
        at the front of their queues, uncounted; False where the lease was lost."""
        return self._do(self._release_many(jobs))

    def fail_many(
        self, jobs: Iterable[Any], *, backoff_ms: int = 0, dead_letter: Optional[str] = None
    ) -> List[FailOutcome]:
        """Report Jobs from dequeue_many (or lease tuples) as failed, as Client.fail_many;
        a FailOutcome each (sharq-fast serve only)."""
        return self._do(self._fail_many(jobs, backoff_ms, dead_letter))

    def fail(self, job: Job, *, backoff_ms: int = 0, dead_letter: Optional[str] = None) -> FailOutcome:
        """fail_many for one Job."""
        return self.fail_many([job], backoff_ms=backoff_ms, dead_letter=dead_letter)[0]

    def extend(self, job: Job, ms: int) -> bool:
        """extend_many for one Job."""
        return self.extend_many([job], ms)[0]

    def release(self, job: Job) -> bool:
        """release_many for one Job."""
        return self.release_many([job])[0]

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> "ProxyClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncProxyClient(_Calls):
    """ProxyClient's methods as coroutines, on one httpx.AsyncClient."""

    def __init__(self, base_url: str, *, auth: Auth = None, timeout: float = 10.0, connections: int = 100,
                 headers: Optional[Dict[str, str]] = None, transport: Any = None) -> None:
        _need_httpx()
        extra, basic = _headers(auth)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._server_waits: Optional[bool] = None
        self._http = httpx.AsyncClient(base_url=self.base_url, headers={**(headers or {}), **extra}, auth=basic,
                                       timeout=timeout, limits=_limits(connections), transport=transport)

    async def _do(self, call: _Call) -> Any:
        try:
            response = await self._http.request(
                call.method, call.path, content=call.body, params=call.params,
                headers={"content-type": "application/json"} if call.body is not None else None,
                timeout=self.timeout + call.timeout if call.timeout else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise ProxyConnectionError.from_httpx(exc, call.method, self.base_url + call.path) from None
        return call.parse(response.status_code, _body(response), response)

    async def server_waits(self) -> bool:
        """Whether the server long-polls (``sharq-fast serve``); asked once."""
        if self._server_waits is None:
            try:
                response = await self._http.get("/")
            except httpx.TransportError as exc:
                raise ProxyConnectionError.from_httpx(exc, "GET", self.base_url + "/") from None
            self._server_waits = SERVER_HEADER in response.headers
        return self._server_waits

    async def enqueue(self, *, queue_id: str, job_id: str, payload: Any, interval: int, queue_type: str = "default",
                      requeue_limit: Optional[int] = None) -> bool:
        """See ProxyClient.enqueue."""
        return await self._do(self._enqueue(queue_type, queue_id, job_id, payload, interval, requeue_limit))

    async def dequeue(self, queue_type: str = "default", timeout: Optional[float] = None) -> Optional[Job]:
        """See ProxyClient.dequeue."""
        seconds(timeout, "timeout", allow_none=True)
        if not timeout:
            return await self._do(self._dequeue(queue_type, None))
        if await self.server_waits():
            return await self._do(self._dequeue(queue_type, timeout))
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + timeout, POLL_FIRST
        while True:
            job = await self._do(self._dequeue(queue_type, None))
            left = deadline - loop.time()
            if job is not None or left <= 0:
                return job
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    async def finish(self, queue_type: str, queue_id: str, job_id: str) -> bool:
        """See ProxyClient.finish."""
        return await self._do(self._finish(queue_type, queue_id, job_id))

    async def interval(self, queue_type: str, queue_id: str, interval: int) -> bool:
        """See ProxyClient.interval."""
        return await self._do(self._interval(queue_type, queue_id, interval))

    async def metrics(self, queue_type: Optional[str] = None, queue_id: Optional[str] = None) -> Any:
        """See ProxyClient.metrics."""
        return await self._do(self._metrics(queue_type, queue_id))

    async def queue_length(self, queue_type: str, queue_id: str) -> int:
        """See ProxyClient.queue_length."""
        _check_ids(queue_type, queue_id)
        return (await self.metrics(queue_type, queue_id)).queue_length

    async def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> bool:
        """See ProxyClient.clear_queue."""
        return await self._do(self._clear_queue(queue_type, queue_id, purge_all))

    async def deep_status(self) -> bool:
        """See ProxyClient.deep_status."""
        return await self._do(self._deep_status())

    async def enqueue_many(self, jobs: Iterable[Any]) -> EnqueueResult:
        """See ProxyClient.enqueue_many."""
        return await self._do(self._enqueue_many(jobs))

    async def dequeue_many(self, queue_type: str = "default", count: int = 100, timeout: Optional[float] = None) -> List[Job]:
        """See ProxyClient.dequeue_many."""
        return await self._do(self._dequeue_many(queue_type, count, timeout))

    async def finish_many(self, jobs: Iterable[Any]) -> List[bool]:
        """See ProxyClient.finish_many."""
        return await self._do(self._finish_many(jobs))

    async def extend_many(self, jobs: Iterable[Job], ms: int) -> List[bool]:
        """See ProxyClient.extend_many."""
        return await self._do(self._extend_many(jobs, ms))

    async def release_many(self, jobs: Iterable[Any]) -> List[bool]:
        """See ProxyClient.release_many."""
        return await self._do(self._release_many(jobs))

    async def fail_many(
        self, jobs: Iterable[Any], *, backoff_ms: int = 0, dead_letter: Optional[str] = None
    ) -> List[FailOutcome]:
        """See ProxyClient.fail_many."""
        return await self._do(self._fail_many(jobs, backoff_ms, dead_letter))

    async def fail(self, job: Job, *, backoff_ms: int = 0, dead_letter: Optional[str] = None) -> FailOutcome:
        """See ProxyClient.fail."""
        return (await self.fail_many([job], backoff_ms=backoff_ms, dead_letter=dead_letter))[0]

    async def extend(self, job: Job, ms: int) -> bool:
        """See ProxyClient.extend."""
        return (await self.extend_many([job], ms))[0]

    async def release(self, job: Job) -> bool:
        """See ProxyClient.release."""
        return (await self.release_many([job]))[0]

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncProxyClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()


def _body(response: Any) -> Any:
    """The JSON of an answer, or its text when it is not JSON (an HTML error page)."""
    content = response.content
    if content[:1] in (b"{", b"["):
        try:
            return _decode(content)
        except msgspec.DecodeError:
            pass
    return response.text

"""The ASGI app of ``sharq-fast serve``: sharq-server's routes and sharq_fast's own.

Raw ASGI (no framework): a request costs a dict lookup to route, one JSON decode and one
encode (msgspec), and two ``send`` calls, which keeps the server's per-request work well
below Redis's. It talks to Redis only through the client ``backend.make_client`` gives
(AsyncClient's interface), created at lifespan start-up, closed at shutdown.
"""

import asyncio
import gc
import logging
import signal
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from redis.exceptions import RedisError

from .. import __version__
from ..client import BatchError
from ..exceptions import BadArgumentException, SharqException
from . import _wire as w
from . import prometheus
from ._router import Route, Router
from .auth import Authenticator
from .backend import length_dequeuer, make_client
from .batch import BatchRoutes
from .routes import SharqRoutes
from .settings import ServerSettings

log = logging.getLogger("sharq_fast.http")

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]

#: Long polls wait in slices this long (seconds), so that a shutdown ends them quickly
#: without cancelling a dequeue in flight (which could leave a job taken but unanswered).
WAIT_SLICE = 1.0
SERVER_HEADER = b"x-sharq-fast"
VERSION = __version__.encode()


class SharqHTTP:
    """The ASGI application. ``client`` (AsyncClient's interface) is made from
    `settings` at start-up unless one is given."""

    def __init__(self, settings: ServerSettings, client: Any = None) -> None:
        self.settings = settings
        self.client: Any = client
        self._length_dequeue = length_dequeuer(client) or self._dequeue_then_length
        self._owns_client = client is None
        self.stopping = False
        self.stats = prometheus.Stats()
        self.auth = Authenticator(settings.auth_token, settings.basic_auth)
        self.router = self._routes()

    def _routes(self) -> Router:
        sharq, batch = SharqRoutes(self), BatchRoutes(self)
        router = Router()
        add = router.add
        add("index", "/", {"GET": sharq.index, "HEAD": sharq.index})
        add("enqueue", "/enqueue/{queue_type}/{queue_id}/", {"POST": sharq.enqueue}, reads_body=True)
        add("dequeue", "/dequeue/", {"GET": sharq.dequeue})
        add("dequeue", "/dequeue/{queue_type}/", {"GET": sharq.dequeue})
        add("finish", "/finish/{queue_type}/{queue_id}/{job_id}/", {"POST": sharq.finish})
        add("interval", "/interval/{queue_type}/{queue_id}/", {"POST": sharq.interval}, reads_body=True)
        add("metrics", "/metrics/", {"GET": sharq.metrics, "HEAD": sharq.metrics})
        add("metrics", "/metrics/{queue_type}/", {"GET": sharq.metrics, "HEAD": sharq.metrics})
        add("metrics", "/metrics/{queue_type}/{queue_id}/", {"GET": sharq.metrics, "HEAD": sharq.metrics})
        add("deletequeue", "/deletequeue/{queue_type}/{queue_id}/", {"DELETE": sharq.clear_queue}, reads_body=True)
        add("deepstatus", "/deepstatus/", {"GET": sharq.deep_status, "HEAD": sharq.deep_status})
        add("batch_enqueue", "/batch/enqueue/", {"POST": batch.enqueue}, reads_body=True)
        add("batch_dequeue", "/batch/dequeue/{queue_type}/", {"GET": batch.dequeue, "POST": batch.dequeue})
        add("batch_finish", "/batch/finish/", {"POST": batch.finish}, reads_body=True)
        add("batch_extend", "/batch/extend/", {"POST": batch.extend}, reads_body=True)
        add("batch_release", "/batch/release/", {"POST": batch.release}, reads_body=True)
        add("batch_fail", "/batch/fail/", {"POST": batch.fail}, reads_body=True)
        add("prometheus", "/prometheus/", {"GET": self._prometheus, "HEAD": self._prometheus})
        return router

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not served
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Make the client, start the requeuer, and watch for SIGINT/SIGTERM."""
        if self.client is None:
            self.client = make_client(self.settings)
            self._length_dequeue = length_dequeuer(self.client) or self._dequeue_then_length
        if self.settings.requeuer and self._owns_client:
            # AsyncClient's requeuer: a task of this loop that requeues while this process
            # holds the key prefix's lock (one worker at a time, across processes).
            self.client.start_requeuer()
        self._watch_signals()

    async def shutdown(self) -> None:
        """Stop the requeuer (releasing its lock) and close the client (when this app made
        it)."""
        self.stopping = True
        if self._owns_client and self.client is not None:
            await self.client.stop_requeuer()
            await self.client.close()
            self.client = None

    def _watch_signals(self) -> None:
        """Have SIGINT/SIGTERM also end long polls (see WAIT_SLICE). uvicorn installs its
        handlers before the lifespan starts; ours calls them after setting the flag, and
        uvicorn puts the original handlers back when it is done."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
                self.stopping = True
                previous(signum, frame)

            signal.signal(sig, handler)

    # -- requests -----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, params = self.router.match(scope["path"])
        name = route.name if route is not None else "unknown"
        headers: List[Tuple[bytes, bytes]] = []
        content_type = w.JSON
        try:
            if route is None:
                raise w.HTTPError(404, f"no route for {scope['path']}")
            handler = route.methods.get(scope["method"])
            if handler is None:
                raise w.HTTPError(
                    405, f"{scope['method']} is not allowed on {route.pattern}", headers=[(b"allow", route.allow.encode())]
                )
            if self.auth.enabled:
                self.auth.check(scope["headers"])
            body = await self._read_body(scope, receive) if route.reads_body else b""
            if self.client is None:  # served without a lifespan (some ASGI servers)
                await self.startup()
            status, data = await handler(params, scope["query_string"], body)
            if name == "prometheus":
                content_type = prometheus.CONTENT_TYPE
            elif name == "index":  # how ProxyClient tells this server from sharq-server
                headers = [(SERVER_HEADER, VERSION)]
        except w.HTTPError as exc:
            status, data, headers = exc.status, exc.body(), exc.headers
        except BadArgumentException as exc:
            status, data = 400, w.HTTPError(400, str(exc)).body()
        except (RedisError, BatchError, ConnectionError, asyncio.TimeoutError) as exc:
            log.warning("%s %s: Redis error: %s", scope["method"], scope["path"], exc)
            status, data = 503, w.HTTPError(503, f"Redis is unavailable or refused the call: {exc}").body()
        except SharqException as exc:
            status, data = 500, w.HTTPError(500, str(exc)).body()
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, data = 500, w.HTTPError(500, f"internal error ({type(exc).__name__}); see the server log").body()
        self.stats.requests[(name, status)] += 1
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(data)), *headers],
            }
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_size
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise w.bad_request("bad Content-Length header") from None
                if declared > limit:
                    raise w.HTTPError(413, f"the request body ({declared} bytes) is larger than {limit} bytes")
                break
        chunks: List[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise w.HTTPError(400, "the client went away before sending its body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise w.HTTPError(413, f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _prometheus(self, params: Sequence[str], query: bytes, body: bytes) -> Tuple[int, bytes]:
        return 200, await prometheus.render(self)

    # -- helpers for the handlers ----------------------------------------------------------

    def wait_param(self, query: bytes, args: Optional[Dict[str, str]] = None) -> float:
        """The ``wait`` query parameter in seconds (0 when absent)."""
        if not query:
            return 0.0
        args = w.query_params(query) if args is None else args
        return w.number_param(args, "wait", low=0, high=self.settings.max_wait) or 0.0

    async def dequeue_waiting(self, queue_type: str, wait: float) -> Tuple[Any, int]:
        """(job or None, the length of its queue after the dequeue), waiting up to `wait`
        seconds for a job (in WAIT_SLICE slices)."""
        length_dequeue = self._length_dequeue
        if not wait:
            return await length_dequeue(queue_type, None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None, 0
            job, length = await length_dequeue(queue_type, min(remaining, WAIT_SLICE))
            if job is not None or remaining <= WAIT_SLICE or self.stopping:
                return job, length

    async def _dequeue_then_length(self, queue_type: str, timeout: Optional[float] = None) -> Tuple[Any, int]:
        """length_dequeuer's answer from a client without it: dequeue, then queue_length
        (as sharq-server reads it)."""
        job = await self.client.dequeue(queue_type, timeout=timeout)
        if job is None:
            return None, 0
        try:
            length = await self.client.queue_length(queue_type, job.queue_id)
        except Exception as exc:  # the job is taken: deliver it (sharq-server answers 0 too)
            log.warning("dequeue: could not read the length of %s/%s: %s", queue_type, job.queue_id, exc)
            length = 0
        return job, length

    async def dequeue_many_waiting(self, queue_type: str, count: int, wait: float) -> List[Any]:
        """client.dequeue_many, waiting up to `wait` seconds for at least one job."""
        client = self.client
        if not wait:
            return await client.dequeue_many(queue_type, count)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            remaining = deadline - loop.time()
            jobs = await client.dequeue_many(queue_type, count, timeout=min(remaining, WAIT_SLICE)) if remaining > 0 else []
            if jobs or remaining <= WAIT_SLICE or self.stopping:
                return jobs


def create_app(settings: Optional[ServerSettings] = None, client: Any = None) -> SharqHTTP:
    """The ASGI app for `settings` (default: ``ServerSettings()``: Redis on localhost)."""
    return SharqHTTP(settings or ServerSettings(), client)


def app_from_env() -> SharqHTTP:
    """The app of a uvicorn worker started by ``sharq-fast serve`` (its settings come in
    the environment): ``uvicorn --factory sharq_fast.http.server:app_from_env``. Tunes
    the worker's garbage collector (tune_gc)."""
    app = SharqHTTP(ServerSettings.from_env())
    tune_gc()
    return app


#: The first generation's collection threshold in a server worker (Python's default: 700).
GC_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collect the youngest generation after GC_THRESHOLD net allocations instead of 700,
    and move what start-up made (modules, the app) out of the collector's sight
    (gc.freeze). A request leaves almost no cycles but allocates a few hundred objects, so
    the default thresholds ran a collection every few requests and a full one (scanning
    every module) every few hundred: measured, 7% of a worker's CPU under 64 clients;
    after this, none in 60,000 requests. Cycles are still collected, less often."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])

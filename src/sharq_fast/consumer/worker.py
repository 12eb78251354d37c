"""``sharq-fast worker module:function``: run a handler over queue types with a Consumer
(threads) or an AsyncConsumer (asyncio), in this process or in N child processes.

One process: the consumer runs in a background thread (an AsyncConsumer: in an event loop
in that thread) so that the main thread is free for signals and the status line. SIGTERM
or SIGINT drains (stop fetching, let running jobs finish within the grace period, release
what was fetched but not started, flush finishes); a second signal stops at once (leases
then expire and a requeuer brings the jobs back).

``--processes N``: N children (``multiprocessing`` spawn: nothing of the parent's
connections or threads is inherited), each with its own client and consumer. The parent
forwards signals over a pipe as "the number of signals received so far", so a child that
also got the signal directly (a terminal's Ctrl-C reaches the whole process group,
systemd signals the whole cgroup) does not count it twice; children send their stats
back over the same pipe every half second and the parent shows the sum. A child whose
parent died drains and exits. The parent restarts nothing and exits 1 if a child failed.
"""

import asyncio
import collections
import dataclasses
import importlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple, Union

log = logging.getLogger("sharq_fast.worker")

#: Seconds between two stats reports of a child, and two redraws of the status line.
_REPORT_EVERY = 0.5
#: A consumer whose loop has not turned for this long is shown as stalled.
_STALLED_AFTER = 30.0
#: The fields of ConsumerStats that are counts (summed across processes).
_COUNTS = ("processed", "failed", "retried", "discarded", "released", "in_flight", "lease_losses")


class WorkerError(Exception):
    """A problem the user can fix (bad handler path, handler not callable, bad options)."""


@dataclasses.dataclass
class WorkerOptions:
    """What ``sharq-fast worker`` runs (picklable: children of --processes get a copy)."""

    handler: str
    queue_types: Union[List[str], Dict[str, int]]
    redis: Dict[str, str]  # {"url": URL} or {"config": PATH}
    client_settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    use_async: bool = False
    concurrency: Optional[int] = None  # None: the consumer's default (threads 1, asyncio 100)
    processes: int = 1
    dead_letter: Optional[str] = None
    grace_period: float = 30.0
    job_timeout: Optional[float] = None
    retry_backoff: float = 0.0
    requeuer: bool = True
    status: Optional[bool] = None  # live status line; None: when stdout is a terminal
    log_every: float = 10.0  # seconds between status log lines when there is no live line


def add_arguments(p: Any, positive_int: Callable[[str], int], seconds: Callable[[str], float]) -> None:
    """The worker command's own options (cli.py adds --url/--config/--key-prefix)."""
    p.add_argument("handler", metavar="MODULE:FUNCTION", help="the handler, e.g. myapp.tasks:handle (the current "
                   "directory is importable)")
    p.add_argument("--queue-type", action="append", required=True, metavar="T[=WEIGHT]",
                   help="a queue type to serve (repeat for several; =WEIGHT serves them weighted)")
    p.add_argument("--concurrency", type=positive_int, metavar="N",
                   help="jobs run at once per process (default: 1 thread; 100 tasks with --async)")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="run an async def handler with AsyncConsumer (implied by an async def handler)")
    p.add_argument("--processes", type=positive_int, default=1, metavar="N",
                   help="consumer processes, each with its own connection (default 1); none is restarted")
    p.add_argument("--dead-letter", metavar="T2", help="queue type that jobs out of retries move to")
    p.add_argument("--grace-period", type=seconds, default=30.0, metavar="S",
                   help="seconds running jobs get to finish after SIGTERM (default 30)")
    p.add_argument("--job-timeout", type=seconds, metavar="S", help="a job running longer fails (default: none)")
    p.add_argument("--retry-backoff", type=seconds, default=0.0, metavar="S",
                   help="seconds before a failed job is retried (default 0: at once)")
    p.add_argument("--no-requeuer", action="store_true",
                   help="do not run the requeuer here (run `sharq-fast requeue --loop` somewhere)")
    status = p.add_mutually_exclusive_group()
    status.add_argument("--status", dest="status", action="store_true", default=None,
                        help="a live status line on stdout (default: when stdout is a terminal)")
    status.add_argument("--no-status", dest="status", action="store_false", help="no live status line: log lines")
    p.add_argument("--log-every", type=seconds, default=10.0, metavar="S",
                   help="seconds between status log lines without a live line (default 10)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


# -- the handler ------------------------------------------------------------------------------


def parse_queue_types(values: Sequence[str]) -> Union[List[str], Dict[str, int]]:
    """``["sms", "email"]`` as given, or ``{"sms": 3, "email": 1}`` when any has ``=WEIGHT``."""
    if not any("=" in value for value in values):
        return list(dict.fromkeys(values))
    weighted: Dict[str, int] = {}
    for value in values:
        name, _, weight = value.partition("=")
        try:
            weighted[name] = int(weight) if weight else 1
        except ValueError:
            raise WorkerError(f"--queue-type {value!r}: the weight after '=' must be a whole number") from None
        if weighted[name] < 1:
            raise WorkerError(f"--queue-type {value!r}: the weight must be at least 1")
    return weighted


def load_handler(spec: str) -> Tuple[Callable[..., Any], bool]:
    """Import ``module:function`` (``module:obj.attr`` too) and return the callable and
    whether it is a coroutine function. The current directory is importable, as for
    ``python -m``. WorkerError says what is wrong."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise WorkerError(f"handler {spec!r}: expected MODULE:FUNCTION, e.g. myapp.tasks:handle")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise WorkerError(
                f"handler {spec!r}: no module named {exc.name!r} (looked in the current directory "
                f"{os.getcwd()} and sys.path; set PYTHONPATH or run from the project's folder)"
            ) from None
        raise WorkerError(f"handler {spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the module itself raised: the user's code
        raise WorkerError(f"handler {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise WorkerError(f"handler {spec!r}: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target):
        raise WorkerError(f"handler {spec!r} is not callable (it is a {type(target).__name__}): "
                          "give a function that takes a Job")
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(getattr(target, "__call__", None))
    return target, is_async


def resolve_mode(options: WorkerOptions) -> Callable[..., Any]:
    """Load the handler and settle threads or asyncio: an ``async def`` handler implies
    --async; --async with a plain function is an error (it would block the event loop)."""
    handler, is_async = load_handler(options.handler)
    if is_async and not options.use_async:
        options.use_async = True  # (the start-up line says AsyncConsumer)
    elif options.use_async and not is_async:
        raise WorkerError(
            f"--async needs a coroutine function (async def), but {options.handler} is a plain function: "
            "drop --async to run it in threads (--concurrency N)"
        )
    return handler


def validate(options: WorkerOptions, handler: Callable[..., Any]) -> None:
    """Refuse bad options before any process starts (BadArgumentException or WorkerError,
    one line each): queue type names, the dead-letter type, and what the consumer checks
    itself (made here with a client that does no I/O until used)."""
    from .._constants import RESERVED_QUEUE_TYPES
    from .._core_py import check_identifier
    from ..exceptions import BadArgumentException
    from ..client import Client
    from . import Consumer

    names = list(options.queue_types)
    rule = "1 to 100 characters of A-Z a-z 0-9 _ -"
    for name in names:
        try:
            check_identifier(name, "queue_type")
        except BadArgumentException:
            raise WorkerError(f"--queue-type {name!r}: a queue type is {rule}") from None
        if name in RESERVED_QUEUE_TYPES:
            raise WorkerError(f"--queue-type {name!r} is reserved: its keys would be SharQ's own keys")
    if options.dead_letter is not None:
        try:
            check_identifier(options.dead_letter, "dead_letter")
        except BadArgumentException:
            raise WorkerError(f"--dead-letter {options.dead_letter!r}: a queue type is {rule}") from None
        if options.dead_letter in RESERVED_QUEUE_TYPES or options.dead_letter in names:
            raise WorkerError(f"--dead-letter {options.dead_letter!r} must be a queue type of its own, not one "
                              "served here or reserved")
    client = Client("redis://127.0.0.1:6379/0")  # never connected: the consumer checks its options
    try:
        kwargs = _consumer_kwargs(options)
        kwargs.pop("logger")
        Consumer(client, options.queue_types, handler, **kwargs)
    finally:
        client.close()


# -- one consumer -----------------------------------------------------------------------------


def _make_client(options: WorkerOptions, use_asyncio: bool) -> Any:
    from ..aio import AsyncClient
    from ..client import Client

    cls = AsyncClient if use_asyncio else Client
    if options.redis.get("config"):
        return cls.from_config(options.redis["config"], **options.client_settings)
    return cls(options.redis["url"], **options.client_settings)


def _consumer_kwargs(options: WorkerOptions) -> Dict[str, Any]:
    kwargs: Dict[str, Any] = {
        "grace_period": options.grace_period, "job_timeout": options.job_timeout,
        "retry_backoff": options.retry_backoff, "dead_letter": options.dead_letter,
        "requeuer": options.requeuer, "handle_signals": False, "logger": logging.getLogger("sharq_fast.consumer"),
    }
    if options.concurrency is not None:
        kwargs["concurrency"] = options.concurrency
    return kwargs


class _Runner:
    """A Consumer or AsyncConsumer running in a background thread; stop() and stats()
    are safe from the main thread, also before the consumer exists."""

    def __init__(self, options: WorkerOptions, handler: Callable[..., Any]) -> None:
        self.options = options
        self.handler = handler
        self.error: Optional[BaseException] = None
        self._consumer: Any = None
        self._stop: Optional[bool] = None  # None: run; False: drain; True: now
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name="sharq-fast-consumer", daemon=True)

    def _main(self) -> None:
        try:
            if self.options.use_async:
                asyncio.run(self._amain())
            else:
                from . import Consumer

                client = _make_client(self.options, use_asyncio=False)
                try:
                    consumer = Consumer(client, self.options.queue_types, self.handler, **_consumer_kwargs(self.options))
                    if self._adopt(consumer):
                        consumer.run()
                finally:
                    client.close()
        except BaseException as exc:  # reported by the main thread: exit status 1
            self.error = exc
            log.error("the consumer stopped on an error: %s: %s", type(exc).__name__, exc,
                      exc_info=bool(os.environ.get("SHARQ_FAST_DEBUG")))

    async def _amain(self) -> None:
        from . import AsyncConsumer

        client = _make_client(self.options, use_asyncio=True)
        try:
            consumer = AsyncConsumer(client, self.options.queue_types, self.handler, **_consumer_kwargs(self.options))
            if self._adopt(consumer):
                await consumer.run()
        finally:
            await client.close()

    def _adopt(self, consumer: Any) -> bool:
        """Publish the consumer; False when a stop came before it existed (nothing was
        fetched yet, so there is nothing to drain)."""
        with self._lock:
            self._consumer = consumer
            return self._stop is None

    def stop(self, now: bool) -> None:
        with self._lock:
            self._stop = now
            consumer = self._consumer
        if consumer is not None:
            consumer.stop(now=now)

    def stats(self) -> Dict[str, Any]:
        consumer = self._consumer
        if consumer is None:
            return {}
        stats = consumer.stats()
        return {name: getattr(stats, name, 0) for name in _COUNTS + ("last_turn",)}


# -- signals, status ----------------------------------------------------------------------------


class _Signals:
    """Counts SIGINT/SIGTERM in the main thread (1: drain, 2 or more: stop now)."""

    def __init__(self) -> None:
        self.count = 0
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.count += 1

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _apply_stop(runner: _Runner, wanted: int, applied: int, grace: float) -> int:
    if wanted > applied:
        if wanted == 1:
            log.info("stopping: no new jobs; running ones get up to %.3g s; signal again to stop at once", grace)
        else:
            log.info("stopping now: unfinished jobs come back when their leases expire")
        runner.stop(now=wanted >= 2)
    return max(wanted, applied)


class _Status:
    """The status line (redrawn in place on a terminal) or a periodic log line."""

    def __init__(self, live: bool, log_every: float, processes: int) -> None:
        self.live = live
        self.log_every = log_every
        self.processes = processes
        self.samples: Deque[Tuple[float, int]] = collections.deque()
        self.last_log = time.monotonic()
        self.shown = False
        if live:
            _ClearLineHandler.status = self

    def line(self, total: Mapping[str, Any], now: float, window: float) -> str:
        self.samples.append((now, int(total.get("processed", 0))))
        while len(self.samples) > 2 and now - self.samples[1][0] >= window:
            self.samples.popleft()
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        text = (
            f"processed {total.get('processed', 0):,} ({rate:,.0f} jobs/s) | in flight {total.get('in_flight', 0):,} | "
            f"failed {total.get('failed', 0):,} (retried {total.get('retried', 0):,}, discarded {total.get('discarded', 0):,}) | "
            f"released {total.get('released', 0):,} | lease losses {total.get('lease_losses', 0):,}"
        )
        if self.processes > 1:
            text += f" | {total.get('alive', self.processes)}/{self.processes} processes"
        last_turn = total.get("last_turn") or 0
        if last_turn and time.time() - last_turn > _STALLED_AFTER:
            text += f" | STALLED: no loop turn for {time.time() - last_turn:.0f} s"
        return text

    def update(self, total: Mapping[str, Any], final: bool = False) -> None:
        now = time.monotonic()
        if self.live:
            text = self.line(total, now, 2.0)
            sys.stdout.write("\r\x1b[K" + text + ("\n" if final else ""))
            sys.stdout.flush()
            self.shown = not final
        elif final or now - self.last_log >= self.log_every:
            self.last_log = now
            log.info("%s%s", "final: " if final else "", self.line(total, now, self.log_every))

    def clear(self) -> None:
        if self.live and self.shown:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()


class _ClearLineHandler(logging.StreamHandler):
    """Log lines on a terminal: wipe the status line first (the next tick redraws it)."""

    status: Optional[_Status] = None
    clear_first = False  # a child of a parent that shows the line: wipe it (the parent redraws it)

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is not None:
            self.status.clear()
        elif self.clear_first:
            self.stream.write("\r\x1b[K")
        super().emit(record)


def setup_logging(level: str = "INFO", who: str = "worker", clear_first: bool = False) -> None:
    """Log to stderr with time, process and level (what `sharq-fast worker` prints)."""
    handler = _ClearLineHandler(sys.stderr)
    handler.clear_first = clear_first and sys.stderr.isatty()
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {who}[%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _sum(reports: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    total: Dict[str, Any] = {name: sum(int(r.get(name, 0)) for r in reports) for name in _COUNTS}
    turns = [r["last_turn"] for r in reports if r.get("last_turn")]
    total["last_turn"] = min(turns) if turns else 0
    return total


# -- processes ----------------------------------------------------------------------------------


def _serve(options: WorkerOptions, handler: Callable[..., Any], pipe: Any = None,
           signals: Optional["_Signals"] = None) -> int:
    """Run one consumer until it stops; report to `pipe` (a child) or show the status
    (the only process). Returns the exit status."""
    signals = signals or _Signals()
    runner = _Runner(options, handler)
    status = None if pipe is not None else _Status(_live(options), options.log_every, 1)
    parent = os.getppid()
    applied = forwarded = 0
    next_report = 0.0
    runner.thread.start()
    try:
        while runner.thread.is_alive():
            runner.thread.join(0.1)
            wanted = max(signals.count, forwarded)
            if pipe is not None:
                try:
                    while pipe.poll():
                        forwarded = max(forwarded, int(pipe.recv()))
                except (EOFError, OSError):
                    forwarded = max(forwarded, 1)  # the parent is gone: drain
                if os.getppid() != parent:
                    forwarded = max(forwarded, 1)
                wanted = max(signals.count, forwarded)
            applied = _apply_stop(runner, wanted, applied, options.grace_period)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + _REPORT_EVERY
                _report(runner, status, pipe)
        _report(runner, status, pipe, final=True)
    finally:
        signals.restore()
    return 1 if runner.error is not None else 0


def _report(runner: _Runner, status: Optional[_Status], pipe: Any, final: bool = False) -> None:
    stats = runner.stats()
    if pipe is not None:
        try:
            pipe.send(stats)
        except (OSError, EOFError, BrokenPipeError):
            pass
    elif status is not None and (stats or final):
        status.update(stats, final=final)


def _live(options: WorkerOptions) -> bool:
    return sys.stdout.isatty() if options.status is None else options.status


def _child_main(options: WorkerOptions, index: int, pipe: Any, level: str, live: bool) -> None:
    signals = _Signals()  # first: a signal while the handler's module imports is counted, not fatal
    setup_logging(level, who=f"worker-{index}", clear_first=live)
    try:
        handler = resolve_mode(options)
    except WorkerError as exc:
        log.error("%s", exc)
        sys.exit(1)
    sys.exit(_serve(options, handler, pipe, signals))


def _supervise(options: WorkerOptions, level: str) -> int:
    ctx = multiprocessing.get_context("spawn")
    children: List[Any] = []
    pipes: List[Any] = []
    signals = _Signals()  # before the children start: a signal meanwhile is forwarded too
    try:
        for index in range(options.processes):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_child_main, args=(options, index, theirs, level, _live(options)), name=f"sharq-fast-worker-{index}")
            proc.start()
            theirs.close()
            children.append(proc)
            pipes.append(mine)
        log.info("started %d worker processes: %s", len(children), ", ".join(str(p.pid) for p in children))
        status = _Status(_live(options), options.log_every, len(children))
        reports: List[Dict[str, Any]] = [{} for _ in children]
        reported_exit = [False] * len(children)
        forwarded = 0
        next_show = 0.0
        while True:
            waitables = [p for p, c in zip(pipes, children) if c.exitcode is None] + [c.sentinel for c in children if c.exitcode is None]
            if not waitables:
                break
            multiprocessing.connection.wait(waitables, timeout=0.1)
            for index, pipe in enumerate(pipes):
                try:
                    while pipe.poll():
                        reports[index] = pipe.recv()
                except (EOFError, OSError):
                    pass
            if signals.count > forwarded:
                forwarded = signals.count
                log.info("got a signal (%d): %s", forwarded, "draining the workers" if forwarded == 1 else "stopping the workers now")
                for pipe, child in zip(pipes, children):
                    if child.exitcode is None:
                        try:
                            pipe.send(forwarded)
                        except (OSError, EOFError):
                            pass
            for index, child in enumerate(children):
                if child.exitcode is not None and not reported_exit[index]:
                    reported_exit[index] = True
                    alive = sum(c.exitcode is None for c in children)
                    how = "cleanly" if child.exitcode == 0 else _exit_text(child.exitcode)
                    (log.info if child.exitcode == 0 else log.error)(
                        "worker process %d (pid %d) exited %s; %d still running", index, child.pid, how, alive)
            if time.monotonic() >= next_show:
                next_show = time.monotonic() + _REPORT_EVERY
                total = _sum(reports)
                total["alive"] = sum(c.exitcode is None for c in children)
                status.update(total)
        total = _sum(reports)
        total["alive"] = 0
        status.update(total, final=True)
    finally:
        signals.restore()
        for child in children:
            child.join(timeout=0 if child.exitcode is not None else 5)
            if child.exitcode is None:  # only after an error of the parent itself
                child.kill()
                child.join()
    failed = [c for c in children if c.exitcode != 0]
    return 1 if failed else 0


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"with status {code}"


def prepare(options: WorkerOptions) -> Callable[..., Any]:
    """Load the handler and check the options (errors once, before any process starts)."""
    handler = resolve_mode(options)
    validate(options, handler)
    return handler


def run_worker(options: WorkerOptions, level: str = "INFO", handler: Optional[Callable[..., Any]] = None) -> int:
    """Run the worker command: prepare() (unless given its `handler`), then serve in this
    process or supervise --processes children. Returns the exit status (0: drained cleanly)."""
    if handler is None:
        handler = prepare(options)
    setup_logging(level)
    mode = f"AsyncConsumer (asyncio), concurrency {options.concurrency or 100}" if options.use_async else \
        f"Consumer (threads), concurrency {options.concurrency or 1}"
    queue_types = ", ".join(f"{k}={v}" for k, v in options.queue_types.items()) if isinstance(options.queue_types, dict) \
        else ", ".join(options.queue_types)
    log.info("worker %s on queue types %s: %s%s; SIGTERM/SIGINT drains (grace %.3g s), a second one stops at once",
             options.handler, queue_types, mode, f", {options.processes} processes" if options.processes > 1 else "",
             options.grace_period)
    if options.processes > 1:
        return _supervise(options, level)
    return _serve(options, handler)

"""Bad input everywhere: every public entry point of Client, AsyncClient (both cores), the
SharQ drop-in and the ``sharq-fast`` command is called with one argument replaced by a
value that is not valid (tests/fuzz_values.py says what valid is, from the docs), the
others good. It must raise the documented error (BadArgumentException naming the field, or
the job's position in a batch; for the command, one error line and a non-zero exit), and
the keyspace must be byte-identical afterwards (DUMP of every key: tests/redis_state.py).

The good arguments would change Redis if the call ran (a new job, a ready queue type,
active jobs, a queue to clear), so a bad value that slipped through shows in the keyspace.

An entry point is one row of a table (ENTRIES, SHARQ_ENTRIES, COMMANDS): a name, how to
call it, and its parameters (good value, bad values). The Consumer is a row of ENTRIES
(on the async transport the row makes an AsyncConsumer of the AsyncClient).

SHARQ_FAST_FUZZ_EXAMPLES sets the examples per (entry point, parameter) (default 8).
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharq_fast
from sharq_fast import BadArgumentException, Job, SharQ
from sharq_fast import cli

from async_facade import SyncFacade
from fuzz_values import VALID, bad, bad_jobs, bad_refs
from redis_server import free_port
from redis_state import raw_snapshot
from test_sharq_dropin import render_config

EXAMPLES = int(os.environ.get("SHARQ_FAST_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much, HealthCheck.too_slow],
)
NEW_JOB = {"queue_type": "t1", "queue_id": "q1", "job_id": "new", "payload": {"a": 1}, "interval": 0}


@dataclass
class World:
    """The state every example starts from, and what good arguments refer to."""

    client: Any
    active: List[Job]  # dequeued, unfinished jobs of t1/q1
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class P:
    """A parameter: its good value (or a function of the World giving it) and the kind of
    its bad values (a fuzz_values kind, a strategy, or None: any value is good)."""

    good: Any
    kind: Any
    field: Optional[str] = ""  # the field the error names ("": the parameter's name; None: not checked)


@dataclass
class Items:
    """A parameter that is a list of items: good items (a function of the World), and a
    strategy of bad ones, one of which replaces a good item."""

    good: Callable[[World], List[Any]]
    bad_items: st.SearchStrategy


@dataclass
class Entry:
    name: str
    call: Callable[[World, Dict[str, Any]], Any]
    params: Dict[str, Any]

    def cases(self) -> List[Tuple["Entry", str]]:
        """(entry, parameter) for each parameter that has bad values."""
        return [(self, name) for name, param in self.params.items() if getattr(param, "kind", True) is not None]


def _method(name: str) -> Callable[[World, Dict[str, Any]], Any]:
    return lambda world, kwargs: getattr(world.client, name)(**kwargs)


def _jobs(world: World) -> List[Job]:
    return list(world.active)


def _ids(world: World) -> List[Tuple[str, str, str]]:
    return [(job.queue_type, job.queue_id, job.job_id) for job in world.active]


def _leases(world: World) -> List[Tuple[str, str, str, int]]:
    return [(job.queue_type, job.queue_id, job.job_id, job.expires_at) for job in world.active]


QT, QID = P("t1", "queue_type"), P("q1", "queue_id")
ENTRIES = [
    Entry("enqueue", _method("enqueue"), {
        "queue_type": QT, "queue_id": QID, "job_id": P("new", "job_id"), "payload": P({"a": 1}, "payload"),
        "interval": P(0, "interval"), "requeue_limit": P(2, "requeue_limit"),
    }),
    Entry("enqueue_many", _method("enqueue_many"), {
        "jobs": Items(lambda w: [dict(NEW_JOB), {**NEW_JOB, "job_id": "new2"}], bad_jobs(NEW_JOB)),
        "chunk_size": P(100, "chunk_size"), "pipeline_depth": P(2, "pipeline_depth"),
    }),
    Entry("dequeue", _method("dequeue"), {"queue_type": QT, "timeout": P(0.01, "timeout")}),
    Entry("dequeue_many", _method("dequeue_many"), {
        "queue_type": QT, "count": P(5, "count"), "timeout": P(0.01, "timeout"),
    }),
    Entry("finish", _method("finish"), {"queue_type": QT, "queue_id": QID, "job_id": P("j1", "job_id")}),
    Entry("finish_many(Job)", _method("finish_many"), {
        "jobs": Items(_jobs, bad_refs(False)), "chunk_size": P(1, "chunk_size"),
    }),
    Entry("finish_many(ids)", _method("finish_many"), {"jobs": Items(_ids, bad_refs(False))}),
    Entry("extend", _method("extend"), {"job": P(lambda w: w.active[0], bad_refs(True), None), "ms": P(5000, "ms")}),
    Entry("extend_many", _method("extend_many"), {
        "jobs": Items(_jobs, bad_refs(True)), "ms": P(5000, "ms"), "chunk_size": P(1, "chunk_size"),
    }),
    Entry("release", _method("release"), {"job": P(lambda w: w.active[0], bad_refs(True), None)}),
    Entry("release_many", _method("release_many"), {
        "jobs": Items(_leases, bad_refs(True)), "chunk_size": P(1, "chunk_size"),
    }),
    Entry("fail", _method("fail"), {
        "job": P(lambda w: w.active[0], bad_refs(True), None), "backoff_ms": P(0, "backoff_ms"),
        "dead_letter": P("dead", "dead_letter"),
    }),
    Entry("fail_many", _method("fail_many"), {
        "jobs": Items(_leases, bad_refs(True)), "backoff_ms": P(10, "backoff_ms"),
        "dead_letter": P("dead", "dead_letter"), "chunk_size": P(1, "chunk_size"),
    }),
    Entry("interval", _method("interval"), {"queue_type": QT, "queue_id": QID, "interval": P(5, "interval")}),
    Entry("clear_queue", _method("clear_queue"), {
        "queue_type": QT, "queue_id": P("q2", "queue_id"), "purge_all": P(True, None),  # any value is taken as a bool
    }),
    Entry("queue_length", _method("queue_length"), {"queue_type": QT, "queue_id": QID}),
    Entry("start_requeuer", _method("start_requeuer"), {"on_discard": P(None, "clock")}),
    # metrics: None means "not given"; a queue_id without a queue_type is refused (field queue_id).
    Entry("metrics", _method("metrics"), {
        "queue_type": P("t1", bad("queue_type").filter(lambda v: v is not None), None),
        "queue_id": P("q1", bad("queue_id").filter(lambda v: v is not None), None),
    }),
]


def _consumer(world: World, kwargs: Dict[str, Any]) -> Any:
    """Consumer(client, ...), or AsyncConsumer of the AsyncClient behind the facade."""
    if isinstance(world.client, SyncFacade):
        return sharq_fast.AsyncConsumer(world.client._client, **kwargs)
    return sharq_fast.Consumer(world.client, **kwargs)


ENTRIES.append(Entry("Consumer", _consumer, {
    "queue_type": P("t1", "queue_types"), "handler": P(lambda w: print, "callable"), "concurrency": P(4, "concurrency"),
    "finish_delay": P(0.01, "seconds"), "finish_batch": P(100, "count"), "grace_period": P(5, "seconds"),
    "job_timeout": P(None, "job_timeout"), "wait_timeout": P(1.0, "poll"), "dead_letter": P(None, "dead_letter"),
    "on_discard": P(None, "clock"),
}))


def _new_client(world: World, kwargs: Dict[str, Any]) -> Any:
    made = world.extra["make"](**kwargs)
    made.close()  # reached only if the bad value was taken: the test fails on the missing error
    return made


MALFORMED_URLS = [
    "redis://127.0.0.1:notaport/0", "redis://[::1", "rediss://127.0.0.1:6379/0?socket_timeout=abc",
    "unix:///tmp/x.sock?db=x",
]
CONSTRUCTOR = Entry("Client()", _new_client, {
    "redis_or_url": P(lambda w: w.extra["url"], bad("url") | st.sampled_from(MALFORMED_URLS), None),
    "key_prefix": P("sharq_server", "key_prefix"),
    "job_expire_interval": P(1000, "expire_ms"),
    "job_requeue_interval": P(1000, "expire_ms"),
    "default_job_requeue_limit": P(-1, "default_limit"),
    "clock": P(None, "clock"),
    "wait_poll_interval": P(1.0, "poll"),
    "retry_for": P(1.0, "retry_for"),
})


def _strategy(kind: Any) -> st.SearchStrategy:
    return kind if isinstance(kind, st.SearchStrategy) else bad(kind)


def _arguments(data: Any, entry: Entry, corrupted: str, world: World) -> Tuple[Dict[str, Any], Any]:
    """Good arguments but one bad; and what the error must name: the field, or the
    position of the bad item."""
    kwargs: Dict[str, Any] = {}
    expected: Any = None
    for name, param in entry.params.items():
        if isinstance(param, Items):
            items = param.good(world)
            if name == corrupted:
                position = data.draw(st.integers(0, len(items) - 1), label="position")
                items[position] = data.draw(param.bad_items, label="bad item")
                expected = ("index", position)
            kwargs[name] = items
        elif name == corrupted:
            kwargs[name] = data.draw(_strategy(param.kind), label=name)
            expected = ("field", name if param.field == "" else param.field)
        else:
            kwargs[name] = param.good(world) if callable(param.good) else param.good
    return kwargs, expected


def _check_refused(data: Any, entry: Entry, corrupted: str, world: World, r: redis.Redis,
                   check_field: bool = True) -> None:
    """Call `entry` with one bad argument: BadArgumentException naming it (or the bad
    item's position), and the keyspace unchanged."""
    kwargs, (what, value) = _arguments(data, entry, corrupted, world)
    before = raw_snapshot(r)
    with pytest.raises(BadArgumentException) as info:
        entry.call(world, kwargs)
    if not check_field:
        pass
    elif what == "index":
        assert info.value.index == value, info.value
    elif value is not None:
        assert info.value.field == value, info.value
    assert raw_snapshot(r) == before


@pytest.fixture
def world(make_client: Any, r: redis.Redis) -> World:
    """Queued jobs in t1/q1 and t1/q2, two of q1's active (make_client: both cores, both
    transports). The time keepers' TTL (real time) is long: nothing expires meanwhile."""
    client = make_client(job_expire_interval=3_600_000)
    for n in (1, 2, 3):
        client.enqueue(queue_type="t1", queue_id="q1", job_id=f"j{n}", payload={"n": n}, interval=0, requeue_limit=2)
    client.enqueue(queue_type="t1", queue_id="q2", job_id="k1", payload="k", interval=1000)
    active = client.dequeue_many("t1", 2)
    assert [job.job_id for job in active] == ["j1", "j2"]
    return World(client, active)


@pytest.mark.parametrize("entry, corrupted", [case for entry in ENTRIES for case in entry.cases()],
                         ids=lambda value: value.name if isinstance(value, Entry) else value)
@FUZZ
@given(data=st.data())
def test_client_refuses_bad_arguments(data: Any, entry: Entry, corrupted: str, world: World, r: redis.Redis) -> None:
    """Client and AsyncClient: BadArgumentException, nothing written."""
    _check_refused(data, entry, corrupted, world, r)


@pytest.mark.parametrize("corrupted", list(CONSTRUCTOR.params))
@FUZZ
@given(data=st.data())
def test_client_constructor_refuses_bad_settings(
    data: Any, corrupted: str, world: World, r: redis.Redis, transport: str, loop_thread: Any, redis_server_url: str
) -> None:
    def make(**kwargs: Any) -> Any:
        if transport == "sync":
            return sharq_fast.Client(**kwargs)
        return SyncFacade(loop_thread, lambda: sharq_fast.AsyncClient(**kwargs))

    world.extra.update(make=make, url=redis_server_url)
    _check_refused(data, CONSTRUCTOR, corrupted, world, r)


# -- the SharQ drop-in -----------------------------------------------------------------------


def _sharq(name: str) -> Callable[[World, Dict[str, Any]], Any]:
    return lambda world, kwargs: getattr(world.extra["sharq"], name)(**kwargs)


SHARQ_ENTRIES = [
    Entry("SharQ.enqueue", _sharq("enqueue"), {
        "payload": P({"a": 1}, "payload"), "interval": P(0, "interval"), "job_id": P("new", "job_id"),
        "queue_id": QID, "queue_type": QT, "requeue_limit": P(1, "requeue_limit"),
    }),
    Entry("SharQ.dequeue", _sharq("dequeue"), {"queue_type": QT}),
    Entry("SharQ.finish", _sharq("finish"), {"job_id": P("j1", "job_id"), "queue_id": QID, "queue_type": QT}),
    Entry("SharQ.interval", _sharq("interval"), {"interval": P(5, "interval"), "queue_id": QID, "queue_type": QT}),
    Entry("SharQ.metrics", _sharq("metrics"), {
        "queue_type": P("t1", bad("queue_type").filter(lambda v: v is not None), None),
        "queue_id": P("q1", bad("queue_id").filter(lambda v: v is not None), None),
    }),
    # SharQ validates clear_queue's queue_id first: None is invalid there.
    Entry("SharQ.clear_queue", _sharq("clear_queue"), {"queue_type": QT, "queue_id": P("q2", "queue_id")}),
    Entry("SharQ.get_queue_length", _sharq("get_queue_length"), {"queue_type": QT, "queue_id": QID}),
]


@pytest.fixture
def sharq_world(world: World, tmp_path: Path, redis_server_url: str) -> World:
    world.extra["sharq"] = SharQ(str(render_config(tmp_path / "sharq.conf", redis_server_url)))
    yield world
    world.extra["sharq"]._client.close()


@pytest.mark.parametrize("entry, corrupted", [case for entry in SHARQ_ENTRIES for case in entry.cases()],
                         ids=lambda value: value.name if isinstance(value, Entry) else value)
@pytest.mark.parametrize("transport", ["sync"])  # the drop-in is sync only
@FUZZ
@given(data=st.data())
def test_sharq_dropin_refuses_bad_arguments(
    data: Any, entry: Entry, corrupted: str, sharq_world: World, r: redis.Redis
) -> None:
    """SharQ: sharq's BadArgumentException (its message names the field), nothing written."""
    _check_refused(data, entry, corrupted, sharq_world, r)


# -- the sharq-fast command --------------------------------------------------------------------


def _positive_int_text(text: str) -> bool:
    """What the command documents as a positive integer (digits; _ and , as separators)."""
    try:
        return int(text.replace("_", "").replace(",", "")) >= 1
    except ValueError:
        return False


def _float_text(text: str, low: float, high: float, low_open: bool = False) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return (low < value if low_open else low <= value) and value <= high


def _text(valid: Callable[[str], bool], *edges: str) -> st.SearchStrategy:
    """Command-line strings that are not valid (no NUL: argv can not hold one)."""
    texts = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=12)
    return (st.sampled_from(list(edges)) | texts).filter(lambda text: not valid(text))


INT_TEXT = _text(_positive_int_text, "0", "-1", "1.5", "", "abc", "1e3", "nan", "0x10", " ")
_EDGES = ("", "a b", "a:b", "é", "a" * 101, "payload", "interval", "active", "-x")
TYPE_TEXT = _text(lambda t: VALID["queue_type"](t), *_EDGES)
QID_TEXT = _text(lambda t: VALID["queue_id"](t), *_EDGES)
INT_LIST_TEXT = _text(lambda t: bool(t.strip(", ")) and all(_positive_int_text(p) for p in t.split(",") if p.strip()),
                      "", ",", "1,0", "1,x", "-1")


@dataclass
class Command:
    """A sharq-fast command line: `argv` with {name} placeholders, and its parameters
    (good text, bad texts)."""

    name: str
    argv: List[str]
    params: Dict[str, Tuple[str, st.SearchStrategy]]

    def cases(self) -> List[Tuple["Command", str]]:
        return [(self, name) for name in self.params]


COMMANDS = [
    Command("stats", ["stats", "--url={url}", "--", "{queue_type}", "{queue_id}"],
            {"queue_type": ("t1", TYPE_TEXT), "queue_id": ("q1", QID_TEXT)}),
    Command("requeue", ["requeue", "--url={url}", "--key-prefix={prefix}", "--job-expire-interval={expire}",
                        "--interval={interval}"],
            {"url": ("{url}", _text(lambda t: False, "", "http://x", "redis://[::1", "redis://127.0.0.1:x/0")),
             "prefix": ("sharq_server", st.just("")), "expire": ("1000", INT_TEXT), "interval": ("1000", INT_TEXT)}),
    Command("requeue --config", ["requeue", "--config={config}"],
            {"config": ("", st.sampled_from(["", "/nonexistent/sharq.conf", "/", "{bad_config}"]))}),
    Command("serve", ["serve", "--url={url}", "--port={port}", "--workers={workers}", "--max-body-size={body}",
                      "--max-batch={batch}", "--max-wait={wait}", "--retry-for={retry}", "--basic-auth={basic}",
                      "--log-level={level}", "--key-prefix={prefix}"],
            {"port": ("8080", INT_TEXT), "workers": ("1", INT_TEXT), "body": ("1000", INT_TEXT),
             "batch": ("10", INT_TEXT),
             "wait": ("5", _text(lambda t: _float_text(t, 0, 3600, low_open=True), "0", "-1", "nan", "inf", "3601", "x")),
             "retry": ("5", _text(lambda t: _float_text(t, 0, 3600), "-1", "nan", "inf", "3601", "x")),
             "basic": ("u:p", _text(lambda t: ":" in t, "", "user")), "level": ("info", st.sampled_from(["", "loud"])),
             "prefix": ("sharq_server", st.just(""))}),
    Command("serve --auth-token", ["serve", "--url={url}", "--auth-token={token}"],
            {"token": ("secret", st.sampled_from(["", " ", "\t"]))}),
    Command("bench", ["bench", "--url={url}", "--n={n}", "--queues={queues}", "--batch={batch}", "--repeat={repeat}",
                      "--scaling-sizes={sizes}", "--scaling-dequeues={dequeues}", "--cores={cores}", "--modes={modes}"],
            {"n": ("10", INT_TEXT), "queues": ("2", INT_TEXT), "batch": ("5", INT_TEXT), "repeat": ("1", INT_TEXT),
             "sizes": ("10", INT_LIST_TEXT), "dequeues": ("5", INT_TEXT),
             "cores": ("py", st.sampled_from(["x", "c,x", "python"])),
             "modes": ("batch", st.sampled_from(["x", "single,x", "batched"]))}),
    Command("worker", ["worker", "{handler}", "--url={url}", "--queue-type={queue_type}", "--concurrency={concurrency}",
                       "--processes={processes}", "--grace-period={grace}", "--job-timeout={timeout}",
                       "--retry-backoff={backoff}", "--dead-letter={dead}", "--log-every={every}"],
            {"handler": ("worker_handlers:handle", st.sampled_from(
                ["", ":", "x", "worker_handlers", "worker_handlers:", ":handle", "no_such_module_x:f", "worker_handlers:nope",
                 "worker_handlers:NOT_CALLABLE", "worker_handlers:handle.x", "os.path:sep"])),
             "queue_type": ("t1", _text(lambda t: VALID["queue_type"](t.partition("=")[0]) and (
                 "=" not in t or _positive_int_text(t.partition("=")[2]) or t.partition("=")[2] == ""), *_EDGES,
                 "t1=0", "t1=x", "=2")),
             "concurrency": ("2", INT_TEXT), "processes": ("1", INT_TEXT),
             "grace": ("5", _text(lambda t: _float_text(t, 0, float("inf")) and t.strip().lower() not in ("inf", "+inf")
                                  and float(t) < float("inf"), "-1", "nan", "inf", "x", "")),
             "timeout": ("5", _text(lambda t: _float_text(t, 0, float("inf"), low_open=True) and float(t) < float("inf"),
                                    "0", "-1", "nan", "inf", "x")),
             "backoff": ("0", _text(lambda t: _float_text(t, 0, float("inf")) and float(t) < float("inf"), "-1", "nan", "x")),
             "dead": ("t1_dead", _text(lambda t: VALID["queue_type"](t) and t != "t1", *_EDGES, "t1")),
             "every": ("10", _text(lambda t: _float_text(t, 0, float("inf")) and float(t) < float("inf"), "-1", "nan", "x"))}),
    Command("redrive", ["redrive", "{dead}", "--url={url}", "--to={to}", "--interval={interval}", "--max={max}"],
            {"dead": ("t1_dead", st.sampled_from(["", "-x", "t2"])), "to": ("t2", st.sampled_from(["", "t1_dead"])),
             "interval": ("0", st.sampled_from(["", "x", "1.5"])), "max": ("5", INT_TEXT)}),
    Command("bench-http", ["bench-http", "--url={url}", "--n={n}", "--clients={clients}", "--workers={workers}"],
            {"n": ("10", INT_TEXT), "clients": ("2", INT_TEXT), "workers": ("1", INT_LIST_TEXT)}),
]


@pytest.fixture
def no_long_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that would run for long (a server, benchmarks) fail the test instead: a
    bad value must be refused before they start."""
    import sharq_fast.http.serve

    def started(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("the command started with a bad value")

    monkeypatch.setattr(sharq_fast.http.serve, "serve", started)
    # A command that falls back to its default Redis finds none there (never port 6379).
    monkeypatch.setenv(cli.URL_ENV, f"redis://127.0.0.1:{free_port()}/0")
    for name in ("cmd_bench", "cmd_compare", "cmd_bench_http"):
        monkeypatch.setattr(cli, name, started)
    from sharq_fast.consumer import worker

    monkeypatch.setattr(worker, "run_worker", started)


@pytest.mark.parametrize("command, corrupted", [case for command in COMMANDS for case in command.cases()],
                         ids=lambda value: value.name if isinstance(value, Command) else value)
@pytest.mark.parametrize("transport", ["sync"])  # the command's own client
@FUZZ
@given(data=st.data())
def test_command_refuses_bad_arguments(
    data: Any, command: Command, corrupted: str, world: World, r: redis.Redis, redis_server_url: str,
    tmp_path: Path, capsys: pytest.CaptureFixture, no_long_runs: None,
) -> None:
    """sharq-fast: exit status 1 or 2, one error line on stderr, nothing written."""
    bad_config = tmp_path / "bad.conf"
    bad_config.write_text("[redis]\nport : notaport\n")
    fill = {"url": redis_server_url, "bad_config": str(bad_config)}

    def placed(text: str, mapping: Dict[str, str]) -> str:  # one pass: values may hold braces
        return re.sub(r"\{(\w+)\}", lambda match: mapping.get(match.group(1), match.group(0)), text)

    values = {**fill, **{name: placed(good, fill) for name, (good, _) in command.params.items()}}
    values[corrupted] = placed(data.draw(command.params[corrupted][1], label=corrupted), fill)
    argv = [placed(part, values) for part in command.argv]
    before = raw_snapshot(r)
    capsys.readouterr()
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status in (1, 2), (argv, status, err)
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, (argv, err)
    assert raw_snapshot(r) == before

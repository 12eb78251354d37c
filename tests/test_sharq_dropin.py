"""``sharq_fast.SharQ`` as a drop-in for ``sharq.SharQ`` 1.3.0.

The spirit of SharQ's own suites (tests/test_queue.py: argument validation with its exact
messages; tests/test_func.py: behaviour, checked key by key in Redis), ported to pytest.
Time is injected (``sq._client.clock``) instead of sleeping, except where a real Redis
TTL is the thing under test.

Deliberate differences from SharQ 1.3.0, each tested under a name containing
``deviation``:
- `interval` and `requeue_limit` refuse bools (SharQ accepts True/False as ints);
- an unserializable payload raises BadArgumentException (SharQ 1.3.0 raised
  AttributeError: it reads ``TypeError.message``, which Python 3 lacks);
- enqueueing a job_id already queued or active in its queue returns
  ``{'status': 'failure', 'message': ...}`` and changes nothing (SharQ overwrote the
  payload and queued the id twice);
- interval 0 is valid (SharQ's test lists 0 as invalid, its code accepts it: the code
  wins).
"""

import configparser
import datetime
import inspect
import math
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List
from urllib.parse import unquote, urlparse

import msgpack
import pytest
import redis

import sharq_fast
from redis_state import data_keys
from sharq_fast import SharQ
from sharq_fast.exceptions import BadArgumentException, ConfigError, SharqException

TEMPLATE = Path(__file__).with_name("sharq.test.conf")
PREFIX = "sharq_server"
QT = "sms"
QID = "johndoe"
PAYLOAD_1 = {"to": "1000000000", "message": "Hello, world"}
PAYLOAD_2 = {"to": "1000000001", "message": "Hello, SharQ"}


def render_config(path: Path, redis_url: str, sharq: Dict[str, Any] = (), redis_opts: Dict[str, Any] = ()) -> Path:
    """Write sharq.test.conf to `path`, its [redis] section pointing at `redis_url`, with
    options of [sharq] and [redis] replaced (or added) as given. Comments elsewhere and
    the `name : value ; comment` style of the template are kept."""
    url = urlparse(redis_url)
    options = {
        "redis": {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 6379,
            "db": int(url.path.lstrip("/") or 0),
            "password": unquote(url.password) if url.password else "",
            **dict(redis_opts),
        },
        "sharq": dict(sharq),
    }
    out: List[str] = []
    section = None
    pending: Dict[str, Any] = {}

    def flush() -> None:
        for name, value in pending.items():
            out.append(f"{name} : {value}")
        pending.clear()

    for line in TEMPLATE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            flush()
            section = stripped[1:-1]
            pending.update(options.get(section, {}))
        elif section in options and ":" in stripped and not stripped.startswith(";"):
            name = stripped.split(":", 1)[0].strip()
            if name in pending:
                line = f"{name} : {pending.pop(name)}"
        out.append(line)
    flush()
    path.write_text("\n".join(out) + "\n")
    return path


def key(*parts: Any) -> str:
    return ":".join((PREFIX, *map(str, parts)))


def job_id() -> str:
    return str(uuid.uuid4())


def minute_of(ms: int) -> int:
    return ms // 60_000 * 60_000


@pytest.fixture
def make_sharq(tmp_path: Path, redis_server_url: str, r: redis.Redis) -> Iterator[Callable[..., SharQ]]:
    """Build SharQ objects on a config written from sharq.test.conf; `clock` (a callable
    returning ms, None for real time) is injected into the wrapped Client."""
    made: List[SharQ] = []

    def make(clock: Any = None, **sharq_options: Any) -> SharQ:
        path = render_config(tmp_path / f"sharq-{len(made)}.conf", redis_server_url, sharq_options)
        sq = SharQ(str(path))
        if clock is not None:
            sq._client.clock = clock
        made.append(sq)
        return sq

    yield make
    for sq in made:
        sq._r.close()


@pytest.fixture
def sq(make_sharq: Callable[..., SharQ], clock: Any) -> SharQ:
    """A SharQ on the clean test database, on the injected clock."""
    return make_sharq(clock=clock)


def enqueue(sq: SharQ, jid: str = None, payload: Any = PAYLOAD_1, interval: int = 10000, **kwargs: Any) -> str:
    jid = jid or job_id()
    kwargs.setdefault("queue_id", QID)
    kwargs.setdefault("queue_type", QT)
    assert sq.enqueue(payload=payload, interval=interval, job_id=jid, **kwargs) == {"status": "queued"}
    return jid


# --------------------------------------------------------------------------------------
# The object: construction, attributes, exceptions, signatures
# --------------------------------------------------------------------------------------


def test_exceptions_import_from_sharq_fast_exceptions() -> None:
    assert issubclass(BadArgumentException, SharqException)
    assert issubclass(ConfigError, SharqException)
    assert issubclass(SharqException, Exception)
    assert sharq_fast.BadArgumentException is BadArgumentException
    assert sharq_fast.SharqException is SharqException


def test_attributes(sq: SharQ, r: redis.Redis) -> None:
    assert sq._key_prefix == PREFIX
    assert sq._job_expire_interval == 1000
    assert sq._default_job_requeue_limit == -1
    assert isinstance(sq._r, redis.Redis)
    assert sq.redis_client() is sq._r
    assert sq._r.ping() is True
    sq._r.set("probe", "1")
    assert r.get("probe") == b"1"


def test_config_values_reach_sharq(make_sharq: Callable[..., SharQ]) -> None:
    sq = make_sharq(job_expire_interval=2500, default_job_requeue_limit=3)
    assert sq._job_expire_interval == 2500
    assert sq._client.job_expire_interval == 2500
    assert sq._default_job_requeue_limit == 3
    enqueue(sq)
    assert sq.dequeue(QT)["requeues_remaining"] == 3


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match="nope.conf"):
        SharQ(str(path))


@pytest.mark.parametrize(
    "method, parameters",
    [
        ("enqueue", [("payload", None), ("interval", None), ("job_id", None), ("queue_id", None),
                     ("queue_type", "default"), ("requeue_limit", None)]),
        ("dequeue", [("queue_type", "default")]),
        ("finish", [("job_id", None), ("queue_id", None), ("queue_type", "default")]),
        ("interval", [("interval", None), ("queue_id", None), ("queue_type", "default")]),
        ("requeue", []),
        ("metrics", [("queue_type", None), ("queue_id", None)]),
        ("deep_status", []),
        ("clear_queue", [("queue_type", None), ("queue_id", None), ("purge_all", False)]),
        ("get_queue_length", [("queue_type", None), ("queue_id", None)]),
        ("reload_config", [("config_path", None)]),
        ("reload_lua_scripts", []),
        ("redis_client", []),
    ],
)
def test_signatures_match_sharq(method: str, parameters: List[Any]) -> None:
    """Same argument names, order and defaults as SharQ 1.3.0 (None: no default, except
    where SharQ's default is None itself: metrics, clear_queue, reload_config and
    requeue_limit)."""
    none_defaults = {"requeue_limit", "config_path"} | ({"queue_type", "queue_id"} if method in ("metrics", "clear_queue") else set())
    sig = inspect.signature(getattr(SharQ, method))
    got = [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]
    want = [
        (name, default if default is not None or name in none_defaults else inspect.Parameter.empty)
        for name, default in parameters
    ]
    assert got == want


@pytest.mark.parametrize(
    "call",
    [
        lambda sq: sq.enqueue(payload={}, interval=1, job_id="j"),  # queue_id missing
        lambda sq: sq.enqueue(payload={}, interval=1, queue_id="q"),  # job_id missing
        lambda sq: sq.enqueue(payload={}, job_id="j", queue_id="q"),  # interval missing
        lambda sq: sq.enqueue(interval=1, job_id="j", queue_id="q"),  # payload missing
        lambda sq: sq.finish(job_id="j"),
        lambda sq: sq.finish(queue_id="q"),
        lambda sq: sq.interval(queue_id="q"),
        lambda sq: sq.interval(interval=1),
        lambda sq: sq.get_queue_length(queue_type="t"),
    ],
    ids=["enqueue-queue_id", "enqueue-job_id", "enqueue-interval", "enqueue-payload",
         "finish-queue_id", "finish-job_id", "interval-queue_id", "interval-interval",
         "get_queue_length-queue_id"],
)
def test_missing_argument_is_type_error(sq: SharQ, call: Callable[[SharQ], Any], r: redis.Redis) -> None:
    with pytest.raises(TypeError):
        call(sq)
    assert r.dbsize() == 0


# --------------------------------------------------------------------------------------
# Argument validation (SharQ's tests/test_queue.py), exact messages
# --------------------------------------------------------------------------------------

VALID = dict(payload={"phone_number": "1000000000", "message": "hello world"}, interval=5000,
             job_id="96c82500-9f88-11e3-bb98-22000ac6964a", queue_id="queue_001-", queue_type="5m5_qu-eue")
INVALID_IDENTIFIERS = ["s!ms_queue", "s!ms queue", "", "queue#002", "93)c8", "a" * 101, "é", "abc\n",
                       None, 123, b"abc", ["a"]]
VALID_IDENTIFIERS = ["a", "A" * 100, "5m5_qu-eue", "queue_001-", "ABC-def_019"]
INVALID_INTERVALS = ["100", "$#", "", -1, 1.5, None, [1]]
INVALID_REQUEUE_LIMITS = ["100", "$#", "", -2, -100, 1.5, [1]]


def message(field: str) -> str:
    return f"^`{field}` has an invalid value\\.$"


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
@pytest.mark.parametrize("field", ["job_id", "queue_id", "queue_type"])
def test_enqueue_invalid_identifier(sq: SharQ, r: redis.Redis, field: str, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message(field)):
        sq.enqueue(**{**VALID, field: value})
    assert r.dbsize() == 0


@pytest.mark.parametrize("value", VALID_IDENTIFIERS)
@pytest.mark.parametrize("field", ["job_id", "queue_id", "queue_type"])
def test_enqueue_valid_identifier(sq: SharQ, field: str, value: str) -> None:
    assert sq.enqueue(**{**VALID, field: value}) == {"status": "queued"}


@pytest.mark.parametrize("value", INVALID_INTERVALS, ids=repr)
def test_enqueue_invalid_interval(sq: SharQ, r: redis.Redis, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("interval")):
        sq.enqueue(**{**VALID, "interval": value})
    assert r.dbsize() == 0


@pytest.mark.parametrize("value", [True, False])
def test_deviation_enqueue_interval_bool_is_invalid(sq: SharQ, r: redis.Redis, value: bool) -> None:
    with pytest.raises(BadArgumentException, match=message("interval")):
        sq.enqueue(**{**VALID, "interval": value})
    assert r.dbsize() == 0


def test_deviation_interval_zero_is_valid(sq: SharQ, r: redis.Redis) -> None:
    """SharQ's test_queue.py lists 0 as invalid, but its is_valid_interval accepts it."""
    assert sq.enqueue(**{**VALID, "interval": 0}) == {"status": "queued"}
    assert r.hget(key("interval"), "5m5_qu-eue:queue_001-") == b"0"
    assert sq.interval(0, "queue_001-", "5m5_qu-eue") == {"status": "success"}


@pytest.mark.parametrize("value", INVALID_REQUEUE_LIMITS, ids=repr)
def test_enqueue_invalid_requeue_limit(sq: SharQ, r: redis.Redis, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("requeue_limit")):
        sq.enqueue(**VALID, requeue_limit=value)
    assert r.dbsize() == 0


@pytest.mark.parametrize("value", [True, False])
def test_deviation_enqueue_requeue_limit_bool_is_invalid(sq: SharQ, r: redis.Redis, value: bool) -> None:
    with pytest.raises(BadArgumentException, match=message("requeue_limit")):
        sq.enqueue(**VALID, requeue_limit=value)
    assert r.dbsize() == 0


@pytest.mark.parametrize("value", [5, 0, -1])
def test_enqueue_valid_requeue_limit(sq: SharQ, r: redis.Redis, value: int) -> None:
    assert sq.enqueue(**VALID, requeue_limit=value) == {"status": "queued"}
    assert r.hget(key("5m5_qu-eue", "queue_001-", "requeues_remaining"), VALID["job_id"]) == str(value).encode()


@pytest.mark.parametrize(
    "payload",
    [
        {"phone_number": "10000000000", "message": "summer is here!", "date": datetime.date.today()},
        datetime.datetime.now(),
        {1, 2},
        object(),
        2**64,
    ],
    ids=["dict-with-date", "datetime", "set", "object", "int-too-big"],
)
def test_deviation_unserializable_payload_is_bad_argument(sq: SharQ, r: redis.Redis, payload: Any) -> None:
    """SharQ 1.3.0 meant BadArgumentException('can not serialize ...') but raised
    AttributeError (``TypeError.message``); sharq_fast raises what SharQ meant."""
    with pytest.raises(BadArgumentException, match="^`payload` can not be serialized") as info:
        sq.enqueue(**{**VALID, "payload": payload})
    assert info.value.field == "payload"
    assert r.dbsize() == 0


def test_enqueue_validation_order_matches_sharq(sq: SharQ) -> None:
    """SharQ checks interval, job_id, queue_id, queue_type, requeue_limit, then payload."""
    bad = dict(payload=object(), interval=-1, job_id="", queue_id="", queue_type="", requeue_limit=-2)
    for field in ["interval", "job_id", "queue_id", "queue_type", "requeue_limit"]:
        with pytest.raises(BadArgumentException, match=message(field)):
            sq.enqueue(**bad)
        bad[field] = VALID.get(field, -1)
    with pytest.raises(BadArgumentException, match="`payload`"):
        sq.enqueue(**bad)


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
def test_dequeue_invalid_queue_type(sq: SharQ, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("queue_type")):
        sq.dequeue(queue_type=value)


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
@pytest.mark.parametrize("field", ["job_id", "queue_id", "queue_type"])
def test_finish_invalid_identifier(sq: SharQ, field: str, value: Any) -> None:
    args = dict(job_id=VALID["job_id"], queue_id=VALID["queue_id"], queue_type=VALID["queue_type"])
    with pytest.raises(BadArgumentException, match=message(field)):
        sq.finish(**{**args, field: value})


def test_finish_validation_order_matches_sharq(sq: SharQ) -> None:
    with pytest.raises(BadArgumentException, match=message("job_id")):
        sq.finish(job_id="", queue_id="", queue_type="")
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.finish(job_id="j", queue_id="", queue_type="")


@pytest.mark.parametrize("value", INVALID_INTERVALS + [True, False], ids=repr)
def test_interval_invalid_interval(sq: SharQ, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("interval")):
        sq.interval(interval=value, queue_id=VALID["queue_id"], queue_type=VALID["queue_type"])


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
@pytest.mark.parametrize("field", ["queue_id", "queue_type"])
def test_interval_invalid_identifier(sq: SharQ, field: str, value: Any) -> None:
    args = dict(interval=5000, queue_id=VALID["queue_id"], queue_type=VALID["queue_type"])
    with pytest.raises(BadArgumentException, match=message(field)):
        sq.interval(**{**args, field: value})


def test_interval_validation_order_matches_sharq(sq: SharQ) -> None:
    with pytest.raises(BadArgumentException, match=message("interval")):
        sq.interval(interval=-1, queue_id="", queue_type="")
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.interval(interval=1, queue_id="", queue_type="")


def test_metrics_only_queue_id(sq: SharQ) -> None:
    with pytest.raises(BadArgumentException, match="^`queue_id` should be accompanied by `queue_type`\\.$"):
        sq.metrics(queue_id=VALID["queue_id"])


@pytest.mark.parametrize("value", [v for v in INVALID_IDENTIFIERS if v is not None], ids=repr)
def test_metrics_invalid_queue_id(sq: SharQ, value: Any) -> None:
    """SharQ validates a given queue_id first, with or without a queue_type; '' included
    (it is not None, so it is checked, not taken as 'absent')."""
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.metrics(queue_type=VALID["queue_type"], queue_id=value)
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.metrics(queue_id=value)
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.metrics(queue_type="s!ms", queue_id=value)


@pytest.mark.parametrize("value", [v for v in INVALID_IDENTIFIERS if v is not None], ids=repr)
def test_metrics_invalid_queue_type(sq: SharQ, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("queue_type")):
        sq.metrics(queue_type=value, queue_id=VALID["queue_id"])
    with pytest.raises(BadArgumentException, match=message("queue_type")):
        sq.metrics(queue_type=value)


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
def test_clear_queue_invalid_queue_type(sq: SharQ, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("queue_type")):
        sq.clear_queue(queue_type=value, queue_id=VALID["queue_id"])


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
def test_clear_queue_invalid_queue_id(sq: SharQ, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.clear_queue(queue_type=VALID["queue_type"], queue_id=value)
    # SharQ checks queue_id before queue_type.
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.clear_queue(queue_type=None, queue_id=value)


def test_clear_queue_without_arguments(sq: SharQ) -> None:
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.clear_queue()


@pytest.mark.parametrize("value", INVALID_IDENTIFIERS, ids=repr)
def test_get_queue_length_invalid(sq: SharQ, value: Any) -> None:
    with pytest.raises(BadArgumentException, match=message("queue_type")):
        sq.get_queue_length(queue_type=value, queue_id=VALID["queue_id"])
    with pytest.raises(BadArgumentException, match=message("queue_id")):
        sq.get_queue_length(queue_type=VALID["queue_type"], queue_id=value)
    # SharQ checks queue_type first.
    with pytest.raises(BadArgumentException, match=message("queue_type")):
        sq.get_queue_length(queue_type=value, queue_id=value)


def test_finish_all_ok_on_unknown_job(sq: SharQ) -> None:
    assert sq.finish(queue_type=VALID["queue_type"], queue_id=VALID["queue_id"], job_id=VALID["job_id"]) == {
        "status": "failure"
    }
    assert sq.finish(queue_id=VALID["queue_id"], job_id=VALID["job_id"]) == {"status": "failure"}


def test_metrics_response_shapes(sq: SharQ) -> None:
    assert set(sq.metrics()) == {"status", "queue_types", "enqueue_counts", "dequeue_counts"}
    assert sq.metrics(queue_type=VALID["queue_type"]) == {"status": "success", "queue_ids": []}
    assert set(sq.metrics(VALID["queue_type"], VALID["queue_id"])) == {
        "status", "queue_length", "enqueue_counts", "dequeue_counts"
    }


# --------------------------------------------------------------------------------------
# enqueue (SharQ's tests/test_func.py)
# --------------------------------------------------------------------------------------


def test_enqueue_writes_sharq_keys(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq)
    assert r.lrange(key(QT, QID), 0, -1) == [jid.encode()]
    assert r.hget(key("payload"), f"{QT}:{QID}:{jid}") == msgpack.packb(PAYLOAD_1, use_bin_type=True)
    assert msgpack.unpackb(r.hget(key("payload"), f"{QT}:{QID}:{jid}"), raw=False) == PAYLOAD_1
    assert r.hget(key("interval"), f"{QT}:{QID}") == b"10000"
    assert r.hget(key(QT, QID, "requeues_remaining"), jid) == b"-1"  # from the config
    assert r.zrange(key(QT), 0, -1, withscores=True) == [(QID.encode(), float(clock.now))]
    assert r.smembers(key("ready", "queue_type")) == {QT.encode()}
    assert not r.exists(key("active", "queue_type"))
    assert not r.exists(key(QT, "active"))
    assert not r.exists(key(QT, QID, "time"))
    minute = minute_of(clock.now)
    assert r.get(key("enqueue_counter", minute)) == b"1"
    assert r.get(key(QT, QID, "enqueue_counter", minute)) == b"1"
    assert r.ttl(key("enqueue_counter", minute)) > 0
    assert r.expiretime(key("enqueue_counter", minute)) == (minute + 600_000) // 1000
    assert r.expiretime(key(QT, QID, "enqueue_counter", minute)) == (minute + 600_000) // 1000


def test_enqueue_explicit_requeue_limit(sq: SharQ, r: redis.Redis) -> None:
    jid = enqueue(sq, requeue_limit=5)
    assert r.hget(key(QT, QID, "requeues_remaining"), jid) == b"5"


def test_enqueue_default_queue_type(sq: SharQ, r: redis.Redis) -> None:
    jid = job_id()
    assert sq.enqueue(PAYLOAD_1, 100, jid, QID) == {"status": "queued"}  # positional, as SharQ
    assert r.lrange(key("default", QID), 0, -1) == [jid.encode()]
    assert sq.get_queue_length("default", QID) == 1
    assert sq.dequeue()["job_id"] == jid


def test_enqueue_uses_real_time_by_default(make_sharq: Callable[..., SharQ], r: redis.Redis) -> None:
    sq = make_sharq()
    start = int(time.time() * 1000)
    enqueue(sq)
    end = int(time.time() * 1000)
    assert r.zrangebyscore(key(QT), start, end) == [QID.encode()]


def test_enqueue_second_job(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    first = enqueue(sq)
    clock.advance(500)
    second = enqueue(sq, payload=PAYLOAD_2, interval=2000)
    assert r.lrange(key(QT, QID), 0, -1) == [first.encode(), second.encode()]
    assert r.llen(key(QT, QID)) == 2
    assert r.hget(key("payload"), f"{QT}:{QID}:{second}") == msgpack.packb(PAYLOAD_2, use_bin_type=True)
    # Every enqueue overwrites the queue's interval; the ready score is the first one's.
    assert r.hget(key("interval"), f"{QT}:{QID}") == b"2000"
    assert r.zscore(key(QT), QID) == clock.now - 500
    assert r.smembers(key("ready", "queue_type")) == {QT.encode()}
    assert not r.exists(key("active", "queue_type"))
    assert r.get(key("enqueue_counter", minute_of(clock.now))) == b"2"


def test_enqueue_after_dequeue_waits_for_interval(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    """A queue re-entering the ready set while its time keeper lives is ready at
    last dequeue + interval (the interval of the enqueue that made it ready)."""
    enqueue(sq, interval=3000)
    dequeued_at = clock.now
    assert sq.dequeue(QT)["status"] == "success"
    assert not r.exists(key(QT))
    clock.advance(100)
    enqueue(sq, interval=4000)
    assert r.zscore(key(QT), QID) == dequeued_at + 4000
    assert sq.dequeue(QT) == {"status": "failure"}
    clock.advance(3899)
    assert sq.dequeue(QT) == {"status": "failure"}
    clock.advance(1)
    assert sq.dequeue(QT)["status"] == "success"


@pytest.mark.parametrize(
    "payload",
    [
        PAYLOAD_1,
        "a str",
        b"\x00\xffbytes",
        [1, 2.5, None, True, {"nested": ["x"]}],
        12345678901234,
        -1,
        None,
        {},
        "é" * 1000,
    ],
    ids=["dict", "str", "bytes", "list", "bigint", "neg", "none", "empty", "unicode"],
)
def test_payload_round_trip(sq: SharQ, r: redis.Redis, payload: Any) -> None:
    jid = enqueue(sq, payload=payload)
    assert r.hget(key("payload"), f"{QT}:{QID}:{jid}") == msgpack.packb(payload, use_bin_type=True)
    response = sq.dequeue(QT)
    assert response["payload"] == payload
    assert type(response["payload"]) is type(payload)


def test_tuple_payload_comes_back_as_list(sq: SharQ) -> None:
    enqueue(sq, payload=(1, "a"))
    assert sq.dequeue(QT)["payload"] == [1, "a"]


def test_quoted_payload_of_go_sharq_is_read(sq: SharQ, r: redis.Redis) -> None:
    """Payloads wrapped in one '"' on each side (go-sharq, old sharq-server) decode."""
    jid = enqueue(sq)
    r.hset(key("payload"), f"{QT}:{QID}:{jid}", b'"' + msgpack.packb(PAYLOAD_2) + b'"')
    assert sq.dequeue(QT)["payload"] == PAYLOAD_2


# --- duplicates (deviation) ------------------------------------------------------------


def test_deviation_duplicate_queued_job_id_is_refused(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq, interval=1000, requeue_limit=2)
    before = {k: r.dump(k) for k in data_keys(r, "*")}
    response = sq.enqueue(payload=PAYLOAD_2, interval=5000, job_id=jid, queue_id=QID, queue_type=QT, requeue_limit=7)
    assert response["status"] == "failure"
    assert isinstance(response["message"], str) and response["message"]
    assert set(response) == {"status", "message"}
    assert {k: r.dump(k) for k in data_keys(r, "*")} == before  # nothing changed, counters included
    job = sq.dequeue(QT)
    assert (job["payload"], job["requeues_remaining"]) == (PAYLOAD_1, 2)


def test_deviation_duplicate_active_job_id_is_refused(sq: SharQ, r: redis.Redis) -> None:
    jid = enqueue(sq)
    assert sq.dequeue(QT)["job_id"] == jid
    assert sq.enqueue(payload=PAYLOAD_2, interval=1, job_id=jid, queue_id=QID, queue_type=QT)["status"] == "failure"
    assert not r.exists(key(QT, QID))
    assert sq.finish(jid, QID, QT) == {"status": "success"}
    # Once finished, the id may be used again.
    assert sq.enqueue(payload=PAYLOAD_2, interval=1, job_id=jid, queue_id=QID, queue_type=QT) == {"status": "queued"}


def test_same_job_id_in_other_queue_is_not_a_duplicate(sq: SharQ, r: redis.Redis) -> None:
    jid = enqueue(sq)
    enqueue(sq, jid, queue_id="other")
    enqueue(sq, jid, queue_type="other_type")
    assert r.hlen(key("payload")) == 3


# --------------------------------------------------------------------------------------
# dequeue
# --------------------------------------------------------------------------------------


def test_dequeue_empty(sq: SharQ) -> None:
    assert sq.dequeue(QT) == {"status": "failure"}
    assert sq.dequeue() == {"status": "failure"}


@pytest.mark.parametrize("requeue_limit, expected", [(None, -1), (5, 5), (0, 0), (-1, -1)])
def test_dequeue_response(sq: SharQ, requeue_limit: Any, expected: int) -> None:
    jid = enqueue(sq, requeue_limit=requeue_limit)
    response = sq.dequeue(queue_type=QT)
    assert response == {
        "status": "success",
        "queue_id": QID,
        "job_id": jid,
        "payload": PAYLOAD_1,
        "requeues_remaining": expected,
    }
    assert type(response["queue_id"]) is str and type(response["job_id"]) is str
    assert type(response["requeues_remaining"]) is int


def test_dequeue_writes_sharq_keys(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq)
    now = clock.now
    sq.dequeue(QT)
    assert not r.exists(key(QT, QID))  # job queue emptied
    assert not r.exists(key(QT))  # ready set emptied
    assert r.get(key(QT, QID, "time")) == str(now).encode()
    assert 0 < r.pttl(key(QT, QID, "time")) <= 1000  # job_expire_interval
    assert r.zrange(key(QT, "active"), 0, -1, withscores=True) == [(f"{QID}:{jid}".encode(), float(now + 1000))]
    assert not r.exists(key("ready", "queue_type"))
    assert r.smembers(key("active", "queue_type")) == {QT.encode()}
    # The payload, interval and requeue count stay until finish.
    assert r.hexists(key("payload"), f"{QT}:{QID}:{jid}")
    assert r.hget(key("interval"), f"{QT}:{QID}") == b"10000"
    assert r.hget(key(QT, QID, "requeues_remaining"), jid) == b"-1"
    minute = minute_of(now)
    assert r.get(key("dequeue_counter", minute)) == b"1"
    assert r.get(key(QT, QID, "dequeue_counter", minute)) == b"1"
    assert r.expiretime(key("dequeue_counter", minute)) == (minute + 600_000) // 1000
    assert r.get(key(QT, QID, "enqueue_counter", minute)) == b"1"


def test_dequeue_with_jobs_left_reschedules_queue(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    enqueue(sq, interval=2000)
    enqueue(sq, interval=2000)
    sq.dequeue(QT)
    assert r.zscore(key(QT), QID) == clock.now + 2000
    assert r.smembers(key("ready", "queue_type")) == {QT.encode()}
    assert r.llen(key(QT, QID)) == 1


def test_time_keeper_expires_after_job_expire_interval(make_sharq: Callable[..., SharQ], r: redis.Redis) -> None:
    """Real time: the time keeper's TTL is a Redis TTL."""
    sq = make_sharq(job_expire_interval=200)
    enqueue(sq, interval=1000)
    sq.dequeue(QT)
    assert r.exists(key(QT, QID, "time"))
    time.sleep(0.25)
    assert not r.exists(key(QT, QID, "time"))


def test_rate_limiting(sq: SharQ, clock: Any) -> None:
    first = enqueue(sq, interval=2000)
    second = enqueue(sq, payload=PAYLOAD_2, interval=2000)
    response = sq.dequeue(QT)
    assert (response["status"], response["job_id"], response["payload"]) == ("success", first, PAYLOAD_1)
    assert sq.dequeue(QT) == {"status": "failure"}
    clock.advance(1999)
    assert sq.dequeue(QT) == {"status": "failure"}
    clock.advance(1)
    response = sq.dequeue(QT)
    assert (response["status"], response["job_id"], response["payload"]) == ("success", second, PAYLOAD_2)


def test_rate_limiting_in_real_time(make_sharq: Callable[..., SharQ]) -> None:
    sq = make_sharq()
    enqueue(sq, interval=300)
    second = enqueue(sq, interval=300)
    sq.dequeue(QT)
    assert sq.dequeue(QT) == {"status": "failure"}
    time.sleep(0.35)
    assert sq.dequeue(QT)["job_id"] == second


def test_dequeue_takes_earliest_ready_queue(sq: SharQ, clock: Any) -> None:
    enqueue(sq, "late", queue_id="q2")
    clock.advance(-10)  # q1 became ready earlier
    enqueue(sq, "early", queue_id="q1")
    clock.advance(10)
    assert sq.dequeue(QT)["job_id"] == "early"
    assert sq.dequeue(QT)["job_id"] == "late"


def test_dequeue_queue_types_are_separate(sq: SharQ) -> None:
    enqueue(sq, "a", queue_type="t1")
    assert sq.dequeue("t2") == {"status": "failure"}
    assert sq.dequeue("t1")["job_id"] == "a"


def test_interval_zero_gives_jobs_back_to_back(sq: SharQ) -> None:
    ids = [enqueue(sq, interval=0) for _ in range(3)]
    assert [sq.dequeue(QT)["job_id"] for _ in range(3)] == ids
    assert sq.dequeue(QT) == {"status": "failure"}


# --------------------------------------------------------------------------------------
# finish
# --------------------------------------------------------------------------------------


def test_finish_unknown_queue(sq: SharQ) -> None:
    assert sq.finish(job_id=job_id(), queue_id="doesnotexist", queue_type=QT) == {"status": "failure"}


def test_finish_cleans_up(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq, requeue_limit=5)
    response = sq.dequeue(QT)
    assert sq.finish(job_id=jid, queue_id=response["queue_id"], queue_type=QT) == {"status": "success"}
    assert not r.exists(key(QT))
    assert not r.exists(key(QT, "active"))
    assert not r.hexists(key("payload"), f"{QT}:{QID}:{jid}")
    # The job queue is empty: its interval goes once no job of it can be held, by a requeue
    # after job_expire_interval (sharq 1.3.0 deletes it now; README: intervals outlive held jobs).
    assert r.hexists(key("interval"), f"{QT}:{QID}")
    assert not r.hexists(key(QT, QID, "requeues_remaining"), jid)
    assert not r.exists(key(QT, QID))
    assert not r.exists(key("ready", "queue_type"))
    assert not r.exists(key("active", "queue_type"))
    # The time keeper is left to expire by itself.
    assert r.exists(key(QT, QID, "time"))
    # A second finish fails.
    assert sq.finish(jid, QID, QT) == {"status": "failure"}
    clock.advance(sq._client.job_expire_interval)
    sq.requeue()
    assert not r.hexists(key("interval"), f"{QT}:{QID}")


def test_finish_keeps_interval_while_jobs_wait(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq, interval=1000)
    other = enqueue(sq, interval=1000)
    sq.dequeue(QT)
    assert sq.finish(jid, QID, QT) == {"status": "success"}
    assert r.hget(key("interval"), f"{QT}:{QID}") == b"1000"
    assert r.smembers(key("ready", "queue_type")) == {QT.encode()}
    assert not r.exists(key("active", "queue_type"))
    assert r.hexists(key("payload"), f"{QT}:{QID}:{other}")


def test_finish_keeps_active_queue_type_while_others_active(sq: SharQ, r: redis.Redis) -> None:
    a = enqueue(sq, queue_id="q1")
    b = enqueue(sq, queue_id="q2")
    sq.dequeue(QT)
    sq.dequeue(QT)
    assert sq.finish(a, "q1", QT) == {"status": "success"}
    assert r.smembers(key("active", "queue_type")) == {QT.encode()}
    assert r.zrange(key(QT, "active"), 0, -1) == [f"q2:{b}".encode()]


def test_finish_of_queued_job_fails(sq: SharQ, r: redis.Redis) -> None:
    jid = enqueue(sq)
    assert sq.finish(jid, QID, QT) == {"status": "failure"}
    assert r.llen(key(QT, QID)) == 1
    assert r.hexists(key("payload"), f"{QT}:{QID}:{jid}")


# --------------------------------------------------------------------------------------
# requeue
# --------------------------------------------------------------------------------------


def expire(sq: SharQ, clock: Any) -> None:
    clock.advance(sq._job_expire_interval)


def test_requeue_returns_none_and_restores_queue(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq)
    dequeued_at = clock.now
    sq.dequeue(QT)
    clock.advance(999)
    assert sq.requeue() is None
    assert r.zcard(key(QT, "active")) == 1  # not expired yet
    clock.advance(1)
    assert sq.requeue() is None
    assert not r.exists(key(QT, "active"))
    assert not r.exists(key("active", "queue_type"))
    assert r.smembers(key("ready", "queue_type")) == {QT.encode()}
    assert r.lrange(key(QT, QID), 0, -1) == [jid.encode()]
    # The time keeper (real TTL 1000 ms) still lives: ready at last dequeue + interval.
    assert r.zscore(key(QT), QID) == dequeued_at + 10000
    assert r.hget(key(QT, QID, "requeues_remaining"), jid) == b"-1"


def test_requeue_puts_job_at_the_front(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    first = enqueue(sq, interval=0)
    second = enqueue(sq, interval=0)
    assert sq.dequeue(QT)["job_id"] == first
    expire(sq, clock)
    sq.requeue()
    assert r.lrange(key(QT, QID), 0, -1) == [first.encode(), second.encode()]
    assert sq.dequeue(QT)["job_id"] == first


def test_requeue_without_time_keeper_is_ready_now(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    enqueue(sq)
    sq.dequeue(QT)
    r.delete(key(QT, QID, "time"))
    expire(sq, clock)
    sq.requeue()
    assert r.zscore(key(QT), QID) == clock.now


def test_requeue_limit_5_counts_down(sq: SharQ, clock: Any) -> None:
    enqueue(sq, requeue_limit=5, interval=0)
    for remaining in (5, 4, 3, 2):
        response = sq.dequeue(QT)
        assert response["requeues_remaining"] == remaining
        expire(sq, clock)
        sq.requeue()


def test_requeue_limit_0_discards(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    jid = enqueue(sq, requeue_limit=0)
    assert sq.dequeue(QT)["requeues_remaining"] == 0
    expire(sq, clock)
    sq.requeue()
    clock.advance(60_000)
    assert sq.dequeue(QT) == {"status": "failure"}
    # Discarded as SharQ does (by finishing it): nothing of the job is left.
    assert not r.exists(key(QT, "active"))
    assert not r.exists(key("active", "queue_type"))
    assert not r.hexists(key("payload"), f"{QT}:{QID}:{jid}")
    assert not r.hexists(key(QT, QID, "requeues_remaining"), jid)
    assert not r.hexists(key("interval"), f"{QT}:{QID}")
    assert not r.exists(key(QT, QID))


def test_requeue_limit_1_gives_one_retry(sq: SharQ, clock: Any) -> None:
    enqueue(sq, requeue_limit=1, interval=0)
    assert sq.dequeue(QT)["requeues_remaining"] == 1
    expire(sq, clock)
    sq.requeue()
    assert sq.dequeue(QT)["requeues_remaining"] == 0
    expire(sq, clock)
    sq.requeue()
    assert sq.dequeue(QT) == {"status": "failure"}


def test_requeue_limit_minus_1_requeues_forever(sq: SharQ, clock: Any) -> None:
    jid = enqueue(sq, requeue_limit=-1, interval=0)
    for _ in range(5):
        response = sq.dequeue(QT)
        assert (response["job_id"], response["requeues_remaining"]) == (jid, -1)
        expire(sq, clock)
        sq.requeue()


def test_requeue_many_queue_types(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    for queue_type in ("t1", "t2", "t3"):
        enqueue(sq, "j", queue_type=queue_type, interval=0)
        sq.dequeue(queue_type)
    expire(sq, clock)
    sq.requeue()
    assert not r.exists(key("active", "queue_type"))
    assert r.smembers(key("ready", "queue_type")) == {b"t1", b"t2", b"t3"}


def test_requeue_with_nothing_active(sq: SharQ, r: redis.Redis) -> None:
    assert sq.requeue() is None
    assert r.dbsize() == 0


def test_requeue_in_real_time(make_sharq: Callable[..., SharQ], r: redis.Redis) -> None:
    sq = make_sharq(job_expire_interval=100)
    jid = enqueue(sq, interval=0)
    sq.dequeue(QT)
    sq.requeue()
    assert r.zcard(key(QT, "active")) == 1
    time.sleep(0.15)
    sq.requeue()
    assert sq.dequeue(QT)["job_id"] == jid


# --------------------------------------------------------------------------------------
# interval
# --------------------------------------------------------------------------------------


def test_interval_of_unknown_queue(sq: SharQ, r: redis.Redis) -> None:
    assert sq.interval(interval=1000, queue_id=QID, queue_type=QT) == {"status": "failure"}
    assert not r.exists(key("interval"))


def test_interval_of_known_queue(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    enqueue(sq)
    enqueue(sq)
    assert sq.interval(interval=5000, queue_id=QID, queue_type=QT) == {"status": "success"}
    assert r.hget(key("interval"), f"{QT}:{QID}") == b"5000"
    sq.dequeue(QT)
    assert r.zscore(key(QT), QID) == clock.now + 5000


def test_interval_default_queue_type(sq: SharQ, r: redis.Redis) -> None:
    enqueue(sq, queue_type="default")
    assert sq.interval(7, QID) == {"status": "success"}
    assert r.hget(key("interval"), f"default:{QID}") == b"7"


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def expected_minutes(now: int) -> List[str]:
    newest = minute_of(now)
    return [str(newest - i * 60_000) for i in range(10)]


def test_metrics_global_empty(sq: SharQ, clock: Any) -> None:
    response = sq.metrics()
    minutes = expected_minutes(clock.now)
    assert response == {
        "status": "success",
        "queue_types": [],
        "enqueue_counts": dict.fromkeys(minutes, 0),
        "dequeue_counts": dict.fromkeys(minutes, 0),
    }
    assert list(response["enqueue_counts"]) == minutes  # newest first
    assert list(response["dequeue_counts"]) == minutes


def test_metrics_global(sq: SharQ, clock: Any) -> None:
    enqueue(sq)
    response = sq.metrics()
    assert response["queue_types"] == [QT]
    assert sum(response["enqueue_counts"].values()) == 1
    assert sum(response["dequeue_counts"].values()) == 0
    sq.dequeue(QT)
    response = sq.metrics()
    assert response["queue_types"] == [QT]  # active now
    assert response["dequeue_counts"][str(minute_of(clock.now))] == 1
    enqueue(sq, queue_type="other")
    assert sorted(sq.metrics()["queue_types"]) == ["other", QT]
    for value in sq.metrics()["enqueue_counts"].values():
        assert type(value) is int


def test_metrics_queue_type(sq: SharQ) -> None:
    assert sq.metrics(queue_type=QT) == {"status": "success", "queue_ids": []}
    enqueue(sq)
    assert sq.metrics(queue_type=QT) == {"status": "success", "queue_ids": [QID]}
    sq.dequeue(QT)
    # Only active now: still listed.
    assert sq.metrics(queue_type=QT) == {"status": "success", "queue_ids": [QID]}
    enqueue(sq, queue_id="q2")
    enqueue(sq, queue_id="q3")
    assert sorted(sq.metrics(QT)["queue_ids"]) == sorted([QID, "q2", "q3"])


def test_metrics_queue(sq: SharQ, clock: Any) -> None:
    minutes = expected_minutes(clock.now)
    assert sq.metrics(queue_type=QT, queue_id=QID) == {
        "status": "success",
        "queue_length": 0,
        "enqueue_counts": dict.fromkeys(minutes, 0),
        "dequeue_counts": dict.fromkeys(minutes, 0),
    }
    enqueue(sq)
    enqueue(sq)
    enqueue(sq, queue_id="other")
    response = sq.metrics(QT, QID)
    assert response["queue_length"] == 2
    assert response["enqueue_counts"][minutes[0]] == 2
    sq.dequeue(QT)
    response = sq.metrics(QT, QID)
    assert response["queue_length"] == 1
    assert response["dequeue_counts"] == {**dict.fromkeys(minutes, 0), minutes[0]: 1}
    assert list(response["dequeue_counts"]) == minutes


def test_metrics_sliding_window(sq: SharQ, clock: Any) -> None:
    start = clock.now
    enqueue(sq, interval=0)
    clock.advance(60_000)
    enqueue(sq, interval=0)
    enqueue(sq, interval=0)
    sq.dequeue(QT)
    clock.advance(60_000)
    sq.dequeue(QT)
    sq.dequeue(QT)
    m0, m1, m2 = (str(minute_of(start) + i * 60_000) for i in range(3))
    for response in (sq.metrics(), sq.metrics(QT, QID)):
        assert list(response["enqueue_counts"])[:3] == [m2, m1, m0]
        assert response["enqueue_counts"][m0] == 1
        assert response["enqueue_counts"][m1] == 2
        assert response["enqueue_counts"][m2] == 0
        assert response["dequeue_counts"][m1] == 1
        assert response["dequeue_counts"][m2] == 2
        assert sum(response["dequeue_counts"].values()) == 3
    # Ten minutes on, the first minute has left the window.
    clock.advance(8 * 60_000)
    response = sq.metrics()
    assert m0 not in response["enqueue_counts"]
    assert response["enqueue_counts"][m1] == 2
    assert len(response["enqueue_counts"]) == 10


def test_metrics_counters_are_sharq_compatible(sq: SharQ, r: redis.Redis, clock: Any) -> None:
    """Counters written by another SharQ client (plain strings) are read."""
    minute = minute_of(clock.now)
    r.set(key("enqueue_counter", minute - 120_000), "7")
    r.set(key(QT, QID, "dequeue_counter", minute), "3")
    assert sq.metrics()["enqueue_counts"][str(minute - 120_000)] == 7
    assert sq.metrics(QT, QID)["dequeue_counts"][str(minute)] == 3


def test_metrics_real_time_minute(make_sharq: Callable[..., SharQ]) -> None:
    """Without an injected clock, counts are keyed by the real minute, as SharQ's."""
    sq = make_sharq()
    before = str(int(math.floor(time.time() * 1000 / 60000.0) * 60000))
    enqueue(sq)
    response = sq.metrics()
    after = str(int(math.floor(time.time() * 1000 / 60000.0) * 60000))
    assert list(response["enqueue_counts"])[0] in (before, after)
    assert response["enqueue_counts"][before] + response["enqueue_counts"].get(after, 0) >= 1
    assert sum(response["enqueue_counts"].values()) == 1


# --------------------------------------------------------------------------------------
# clear_queue, get_queue_length, deep_status
# --------------------------------------------------------------------------------------


def test_clear_queue_without_purge(sq: SharQ, r: redis.Redis) -> None:
    jid = enqueue(sq)
    assert sq.clear_queue(queue_type=QT, queue_id=QID) == {
        "status": "Success",
        "message": "Successfully removed all queued calls",
    }
    assert QID.encode() not in r.zrange(key(QT), 0, -1)
    assert not r.exists(key(QT, QID))
    # Without purge the interval stays; unlike sharq 1.3.0, the cleared job's payload goes
    # (SharQ kept it: unreachable, and its job id refused for good).
    assert not r.hexists(key("payload"), f"{QT}:{QID}:{jid}")
    assert r.hget(key("interval"), f"{QT}:{QID}") == b"10000"
    assert sq.dequeue(QT) == {"status": "failure"}
    assert sq.get_queue_length(QT, QID) == 0


def test_clear_queue_with_purge(sq: SharQ, r: redis.Redis) -> None:
    jids = [enqueue(sq) for _ in range(3)]
    other = enqueue(sq, queue_id="other")
    assert sq.clear_queue(queue_type=QT, queue_id=QID, purge_all=True) == {
        "status": "Success",
        "message": "Successfully removed all queued calls and purged related resources",
    }
    assert r.zrange(key(QT), 0, -1) == [b"other"]
    for jid in jids:
        assert not r.hexists(key("payload"), f"{QT}:{QID}:{jid}")
    assert not r.hexists(key("interval"), f"{QT}:{QID}")
    assert not r.exists(key(QT, QID))
    # The other queue is untouched.
    assert r.hexists(key("payload"), f"{QT}:other:{other}")
    assert sq.dequeue(QT)["job_id"] == other


def test_clear_queue_leaves_active_jobs(sq: SharQ, r: redis.Redis) -> None:
    active = enqueue(sq, interval=0)
    queued = enqueue(sq, interval=0)
    sq.dequeue(QT)
    assert sq.clear_queue(QT, QID, purge_all=True)["status"] == "Success"
    assert r.zrange(key(QT, "active"), 0, -1) == [f"{QID}:{active}".encode()]
    assert r.hexists(key("payload"), f"{QT}:{QID}:{active}")
    assert not r.hexists(key("payload"), f"{QT}:{QID}:{queued}")
    assert sq.finish(active, QID, QT) == {"status": "success"}


@pytest.mark.parametrize("purge_all", [False, True])
def test_clear_queue_non_existing(sq: SharQ, r: redis.Redis, purge_all: bool) -> None:
    assert sq.clear_queue(queue_type="package", queue_id="thetourist", purge_all=purge_all) == {
        "status": "Failure",
        "message": "No queued calls found",
    }
    assert r.dbsize() == 0


def test_clear_queue_not_ready_still_deletes_job_list(sq: SharQ, r: redis.Redis) -> None:
    """As SharQ: the job list is deleted even when the queue is not in the ready set."""
    r.rpush(key(QT, QID), "stray")
    assert sq.clear_queue(QT, QID)["status"] == "Failure"
    assert not r.exists(key(QT, QID))


def test_deviation_clear_queue_cleans_ready_queue_type(sq: SharQ, r: redis.Redis) -> None:
    """Not in the brief's list: SharQ 1.3.0 leaves T in P:ready:queue_type (and the
    requeue counts) after clearing the last ready queue; sharq_fast removes them."""
    jid = enqueue(sq, requeue_limit=3)
    sq.clear_queue(QT, QID, purge_all=True)
    assert not r.exists(key("ready", "queue_type"))
    assert not r.hexists(key(QT, QID, "requeues_remaining"), jid)
    assert sq.metrics()["queue_types"] == []


def test_get_queue_length(sq: SharQ) -> None:
    assert sq.get_queue_length(QT, QID) == 0
    enqueue(sq)
    enqueue(sq)
    length = sq.get_queue_length(queue_type=QT, queue_id=QID)
    assert length == 2 and type(length) is int
    sq.dequeue(QT)
    assert sq.get_queue_length(QT, QID) == 1


def test_deep_status(sq: SharQ, r: redis.Redis) -> None:
    assert sq.deep_status() is True
    assert r.get(f"sharq:deep_status:{PREFIX}") == b"sharq_deep_status"


def test_deep_status_raises_when_redis_is_down(tmp_path: Path, r: redis.Redis) -> None:
    from redis_server import free_port

    path = render_config(tmp_path / "down.conf", f"redis://127.0.0.1:{free_port()}/0")
    sq = SharQ(str(path))
    with pytest.raises(redis.ConnectionError):
        sq.deep_status()


# --------------------------------------------------------------------------------------
# reload_config, reload_lua_scripts, key prefix
# --------------------------------------------------------------------------------------


def test_reload_config(sq: SharQ, tmp_path: Path, redis_server_url: str) -> None:
    original = sq.config_path
    connection = sq._r
    sq.reload_config()
    assert sq.config_path == original
    other = render_config(tmp_path / "other.conf", redis_server_url, {"job_expire_interval": 4321},
                          {"key_prefix": "other_prefix"})
    assert sq.reload_config(str(other)) is None
    assert sq.config_path == str(other)
    assert sq._config.job_expire_interval == 4321
    assert sq._config.key_prefix == "other_prefix"
    # As SharQ: reloading only reads the file; the running settings and connection stay.
    assert sq._r is connection
    assert sq._key_prefix == PREFIX
    assert sq._job_expire_interval == 1000


def test_reload_config_missing_file(sq: SharQ, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gone.conf"):
        sq.reload_config(str(tmp_path / "gone.conf"))


def test_reload_lua_scripts(sq: SharQ, r: redis.Redis) -> None:
    r.script_flush()
    shas = [s.decode() for s in sq._client.settings.sha.values()]
    assert r.script_exists(*shas) == [False] * len(shas)
    assert sq.reload_lua_scripts() is None
    assert r.script_exists(*shas) == [True] * len(shas)
    enqueue(sq)
    assert sq.dequeue(QT)["status"] == "success"


def test_scripts_reload_by_themselves_after_flush(sq: SharQ, r: redis.Redis) -> None:
    enqueue(sq)
    r.script_flush()
    assert sq.dequeue(QT)["status"] == "success"


def test_key_prefix_from_config(make_sharq: Callable[..., SharQ], tmp_path: Path, redis_server_url: str,
                                r: redis.Redis) -> None:
    path = render_config(tmp_path / "p.conf", redis_server_url, redis_opts={"key_prefix": "myapp"})
    sq = SharQ(str(path))
    try:
        assert sq._key_prefix == "myapp"
        jid = job_id()
        sq.enqueue(PAYLOAD_1, 0, jid, QID, QT)
        assert r.lrange(f"myapp:{QT}:{QID}", 0, -1) == [jid.encode()]
        assert not data_keys(r, f"{PREFIX}:*")
        sq.deep_status()
        assert r.get("sharq:deep_status:myapp") == b"sharq_deep_status"
    finally:
        sq._r.close()


def test_two_sharq_objects_share_state(make_sharq: Callable[..., SharQ], clock: Any) -> None:
    """A producer and a consumer on the same config see one queue."""
    producer, consumer = make_sharq(clock=clock), make_sharq(clock=clock)
    jid = enqueue(producer)
    response = consumer.dequeue(QT)
    assert response["job_id"] == jid
    assert producer.finish(jid, QID, QT) == {"status": "success"}


def test_deviation_dequeue_drops_orphan_job_ids(sq: SharQ, r: redis.Redis) -> None:
    """SharQ 1.3.0 moves a job id without a payload to the active set and answers
    failure; sharq_fast drops the orphan and delivers the next job."""
    r.rpush(key(QT, QID), "orphan")
    r.zadd(key(QT), {QID: 0})
    r.sadd(key("ready", "queue_type"), QT)
    jid = enqueue(sq, interval=0)
    response = sq.dequeue(QT)
    assert (response["status"], response["job_id"]) == ("success", jid)
    assert r.zrange(key(QT, "active"), 0, -1) == [f"{QID}:{jid}".encode()]
    assert sq.dequeue(QT) == {"status": "failure"}

"""What a valid argument is, kind by kind, as README.md and SharQ document it, and
Hypothesis strategies for values that are NOT valid: the fuzz tests (tests/test_fuzz*.py)
call every public entry point with one such value and expect the documented error and an
unchanged keyspace.

Each kind is a predicate written from the documentation (not from the code it checks) and
a strategy: a few known edge cases plus arbitrary Python values filtered by the predicate.
"""

import collections.abc
import datetime
import decimal
import enum
import math
import re
from typing import Any, Callable, Dict

from hypothesis import strategies as st

from sharq_fast import Job, JobRequest

MAX = 2**53 - 1  # the largest integer Redis' Lua holds exactly (README: bad input)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}")
#: Names whose keys would be SharQ's own keys (README: bad input).
RESERVED_TYPES = {"payload", "interval", "enqueue_counter", "dequeue_counter"}
RESERVED_IDS = {"active"}


class Color(enum.IntEnum):
    RED = 1


# -- predicates -----------------------------------------------------------------------------


def is_int(value: Any, low: int, high: int) -> bool:
    """An int (bools are not) from low to high."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_identifier(value: Any) -> bool:
    """1 to 100 characters of A-Z a-z 0-9 _ - (ASCII only)."""
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def is_seconds(value: Any, allow_none: bool = True, positive: bool = False) -> bool:
    """A finite number of seconds >= 0 (> 0 if positive), or None where allowed."""
    if value is None:
        return allow_none
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value > 0 if positive else value >= 0


def is_queue_types(value: Any) -> bool:
    """What a Consumer serves: a queue type, an iterable of them, or a mapping of them to
    int weights >= 1 (README, Consumer loops)."""
    one = VALID["queue_type"]
    if isinstance(value, str):
        return one(value)
    if isinstance(value, collections.abc.Mapping):
        return bool(value) and all(one(k) and type(w) is int and w >= 1 for k, w in value.items())
    try:
        names = list(value)
    except TypeError:
        return False
    return bool(names) and all(one(name) for name in names)


VALID: Dict[str, Callable[[Any], bool]] = {
    "queue_type": lambda v: is_identifier(v) and v not in RESERVED_TYPES,
    "queue_id": lambda v: is_identifier(v) and v not in RESERVED_IDS,
    "job_id": is_identifier,
    "interval": lambda v: is_int(v, 0, MAX),
    "requeue_limit": lambda v: v is None or is_int(v, -1, MAX),
    "count": lambda v: is_int(v, 1, 10_000),
    "timeout": is_seconds,
    "chunk_size": lambda v: is_int(v, 1, 5000),
    "pipeline_depth": lambda v: is_int(v, 1, 1000),
    "ms": lambda v: is_int(v, 1, MAX),
    "backoff_ms": lambda v: is_int(v, 0, MAX),
    # fail_many's dead-letter queue type: none, or a queue type other than the jobs' own
    # (the fuzz world's jobs are of type t1).
    "dead_letter": lambda v: v is None or (is_identifier(v) and v not in RESERVED_TYPES and v != "t1"),
    "expire_ms": lambda v: is_int(v, 1, MAX),
    "default_limit": lambda v: is_int(v, -1, MAX),
    "key_prefix": lambda v: isinstance(v, str) and v != "",
    "clock": lambda v: v is None or callable(v),
    "poll": lambda v: is_seconds(v, allow_none=False, positive=True),
    "retry_for": lambda v: is_seconds(v, allow_none=False),
    "url": lambda v: isinstance(v, str) and v.startswith(("redis://", "rediss://", "unix://")),
    # Kinds for the Consumer's settings (tests/test_fuzz.py's docstring).
    "callable": callable,
    "queue_types": lambda v: is_queue_types(v),
    "concurrency": lambda v: is_int(v, 1, MAX),
    "job_timeout": lambda v: is_seconds(v, positive=True),
    "seconds": lambda v: is_seconds(v, allow_none=False),
}


def valid_ref(item: Any, need_lease: bool) -> bool:
    """A reference to a dequeued job (README, Client.finish_many/extend/release): a Job, or
    a (queue_type, queue_id, job_id, lease) tuple, or (finish only) a 3-tuple of ids; the
    lease an int from 0 (1 where one is needed) to 2**53 - 1."""
    if isinstance(item, Job):
        ids, lease = (item.queue_type, item.queue_id, item.job_id), item.expires_at
    elif isinstance(item, tuple) and (len(item) == 4 or (len(item) == 3 and not need_lease)):
        ids, lease = item[:3], item[3] if len(item) == 4 else 0
    else:
        return False
    return (VALID["queue_type"](ids[0]) and VALID["queue_id"](ids[1]) and VALID["job_id"](ids[2])
            and is_int(lease, 1 if need_lease else 0, MAX))


JOB_FIELDS = {"queue_type", "queue_id", "job_id", "payload", "interval", "requeue_limit"}
REQUIRED = {"queue_id", "job_id", "payload", "interval"}


def valid_job(item: Any) -> bool:
    """A job for enqueue_many: a dict (or JobRequest) with enqueue's argument names, valid
    values, and a payload MessagePack can hold."""
    if isinstance(item, JobRequest):
        item = {name: getattr(item, name) for name in JOB_FIELDS}
    if not isinstance(item, dict) or not set(item) <= JOB_FIELDS or not REQUIRED <= set(item):
        return False
    for name in ("queue_id", "job_id", "interval", "requeue_limit"):
        if name in item and not VALID[name](item[name]):
            return False
    return VALID["queue_type"](item.get("queue_type", "default")) and packable(item["payload"])


def packable(value: Any, depth: int = 0) -> bool:
    """A payload msgpack-python packs (use_bin_type=True), nested at most 512 deep."""
    if value is None or isinstance(value, (bool, float, str, bytes, bytearray)):
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return False
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, (list, tuple)):
        return depth < 512 and all(packable(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return depth < 512 and all(packable(k, depth + 1) and packable(v, depth + 1) for k, v in value.items())
    return False


# -- strategies -------------------------------------------------------------------------------

_ODD = [
    object(), {1, 2}, frozenset([1]), datetime.date(2024, 1, 1), decimal.Decimal("1.5"), 1 + 2j, float("nan"),
    float("inf"), -float("inf"), 2**64, -(2**63) - 1, 2**53, -2, -1, 0, 1, True, False, Color.RED, "\ud800", b"",
    bytearray(b"x"), "", " ", "a" * 101, "a b", "a:b", "é", "a\n", "ab\x00", "active", "payload", "interval",
    "enqueue_counter", "dequeue_counter", "1.5", "5", [], {}, (), ("t1", "q1"), Job("t1", "q1", "j1", None, -1, 0),
    JobRequest(queue_id="q1", job_id="j1", payload=1, interval=0), print, "redis:/x", "http://127.0.0.1",
]
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=110)
    | st.binary(max_size=12) | st.sampled_from(_ODD)
)
def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=3), inner, max_size=2)


def _filled(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, min_size=1, max_size=3) | st.dictionaries(st.text(max_size=3), inner, min_size=1)


anything = st.recursive(scalars, _containers, max_leaves=4)
_unpackable = st.sampled_from([object(), {1}, datetime.date(2024, 1, 1), decimal.Decimal(1), 1 + 2j, 2**64, "\ud800",
                               Job("t", "q", "j", None, 1)])


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


bad_payloads = st.recursive(_unpackable, _filled, max_leaves=3) | st.just(nested(600))


def bad(kind: str) -> st.SearchStrategy:
    """Values that are not a valid `kind`."""
    if kind == "payload":
        return bad_payloads
    return anything.filter(lambda value: not VALID[kind](value))


def bad_refs(need_lease: bool) -> st.SearchStrategy:
    """Items that are not a valid job reference: odd values, tuples of the wrong length or
    with a bad part, Jobs with a bad field."""
    parts = st.sampled_from(["t1", "q1", "j1", 1, 0]) | anything
    tuples = st.tuples(parts, parts, parts) | st.tuples(parts, parts, parts, parts) | st.tuples(parts, parts)
    jobs = st.builds(Job, parts, parts, parts, st.none(), st.just(-1), parts)
    return (anything | tuples | jobs).filter(lambda item: not valid_ref(item, need_lease))


def bad_jobs(good: Dict[str, Any]) -> st.SearchStrategy:
    """Jobs for enqueue_many that are not valid: `good` with one field bad, missing or
    unknown, a JobRequest with a bad field, or not a job at all."""
    kinds = {"queue_type": "queue_type", "queue_id": "queue_id", "job_id": "job_id", "payload": "payload",
             "interval": "interval", "requeue_limit": "requeue_limit"}

    @st.composite
    def one(draw: Any) -> Any:
        shape = draw(st.sampled_from(["field", "field", "missing", "unknown", "request", "other"]))
        if shape == "field":
            name = draw(st.sampled_from(sorted(kinds)))
            return {**good, name: draw(bad(kinds[name]))}
        if shape == "missing":
            name = draw(st.sampled_from(sorted(REQUIRED)))
            return {key: value for key, value in good.items() if key != name}
        if shape == "unknown":
            return {**good, draw(st.text(max_size=5).filter(lambda key: key not in JOB_FIELDS) | st.integers()): 1}
        if shape == "request":
            name = draw(st.sampled_from(sorted(kinds)))
            return JobRequest(**{**good, name: draw(bad(kinds[name]))})
        return draw(anything)

    return one().filter(lambda item: not valid_job(item))

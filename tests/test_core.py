"""The compiled core (_core_c) against the pure one (_core_py): byte-identical RESP and
payloads, identical exceptions; and encode_payload against msgpack-python's packb.

These tests compare the two modules directly, so they ignore conftest's `core` fixture
(they run once per its parameter; both runs check the same thing).
"""

import collections
import datetime
import decimal
import enum
import os
import subprocess
import sys
import uuid

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharq_fast
from sharq_fast import BadArgumentException, Job, JobRequest, UndecodablePayload
from sharq_fast import _core_py as py

try:
    from sharq_fast import _core_c as c
except ImportError:  # built without extensions
    c = None

needs_c = pytest.mark.skipif(c is None, reason="compiled core not built")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


class Color(enum.IntEnum):
    RED = 1
    BIG = 2**63


class Name(str, enum.Enum):
    ALICE = "alice"


class Ratio(float):
    pass


class Blob(bytes):
    pass


class Text(str):
    pass


Point = collections.namedtuple("Point", "x y")


def outcome(func, *args):
    """What func(*args) does: ("ok", result) or ("raise", type, message, field, index)."""
    try:
        result = func(*args)
    except BadArgumentException as exc:
        return ("raise", type(exc), str(exc), exc.field, exc.index)
    except Exception as exc:  # noqa: BLE001 - any exception must match too
        return ("raise", type(exc), str(exc))
    if isinstance(result, BadArgumentException):  # bad_argument() returns one
        return ("ok", type(result), str(result), result.field, result.index)
    return ("ok", result)


def same(name, *args):
    """Both cores do the same for core.name(*args); returns that outcome."""
    expected = outcome(getattr(py, name), *args)
    actual = outcome(getattr(c, name), *args)
    assert actual == expected
    if expected[0] == "ok" and len(expected) == 2:
        assert type(actual[1]) is type(expected[1])
    return expected


# -- strategies ------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
subclassed = (
    st.sampled_from([Color.RED, Color.BIG, Name.ALICE])
    | st.floats(allow_nan=False).map(Ratio)
    | st.binary(max_size=8).map(Blob)
    | st.text(max_size=8).map(Text)
    | st.binary(max_size=8).map(bytearray)
    | st.binary(max_size=8).map(memoryview)
)
keys = st.none() | st.booleans() | ints | st.text(max_size=10) | st.binary(max_size=10)
payloads = st.recursive(
    scalars | subclassed,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(keys, inner, max_size=5)
        | st.dictionaries(st.text(max_size=5), inner, max_size=5).map(collections.OrderedDict)
        | st.tuples(inner, inner).map(lambda t: Point(*t))
        | st.tuples(st.integers(0, 4), st.integers(0, 4)).map(lambda t: Point(*t))  # a hashable key...
        .flatmap(lambda p: st.dictionaries(st.just(p), inner, max_size=1))  # ...used as one
    ),
    max_leaves=20,
)
unserializable = st.sampled_from(
    [
        datetime.date(2024, 1, 1),
        datetime.datetime(2024, 1, 1, 12, 0),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        datetime.time(1, 2),
        datetime.timedelta(1),
        {1, 2},
        frozenset([1]),
        decimal.Decimal("1.5"),
        uuid.UUID(int=5),
        object(),
        Job("a", "b", "c", None, 1),
        msgspec.msgpack.Ext(1, b"x"),
        2**64,
        -(2**63) - 1,
        "\ud800",
        1 + 2j,
        memoryview(b"abcd")[::2],
    ]
)
bad_payloads = st.recursive(
    unserializable,
    lambda inner: st.lists(inner, min_size=1, max_size=3) | st.dictionaries(st.text(max_size=3), inner, min_size=1),
    max_leaves=4,
)
identifiers = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=100)
maybe_identifiers = identifiers | st.sampled_from(
    ["", "a" * 101, "a b", "é", "a\n", None, 5, b"abc", Text("ok"), Name.ALICE, "ab\x00"]
) | st.text(max_size=5)
maybe_ints = ints | st.sampled_from([None, True, False, 1.0, "5", -1, -2, Color.RED, 2**80, -(2**80)])
args = st.lists(
    st.binary(max_size=20) | st.text(max_size=20) | ints | st.sampled_from([True, Color.RED, Text("t"), Blob(b"b"), 2**100]),
    max_size=8,
)
bad_args = st.lists(st.sampled_from([None, 1.5, [1], "\ud800", bytearray(b"x")]) | st.binary(max_size=3), max_size=4)


def job_dicts():
    fields = {
        "queue_type": maybe_identifiers,
        "queue_id": maybe_identifiers,
        "job_id": maybe_identifiers,
        "payload": payloads | bad_payloads,
        "interval": maybe_ints,
        "requeue_limit": maybe_ints,
        "bogus": st.just(1),
        5: st.just(1),
    }
    return st.fixed_dictionaries(
        {}, optional=fields
    )


good_jobs = st.fixed_dictionaries(
    {"queue_id": identifiers, "job_id": identifiers, "payload": payloads, "interval": st.integers(0, 2**40)},
    optional={"queue_type": identifiers, "requeue_limit": st.integers(-1, 10)},
)
job_requests = st.builds(
    JobRequest,
    queue_id=maybe_identifiers,
    job_id=maybe_identifiers,
    payload=payloads,
    interval=maybe_ints,
    queue_type=maybe_identifiers,
    requeue_limit=maybe_ints,
)
any_jobs = good_jobs | job_dicts() | job_requests | st.sampled_from([None, 5, ("a", "b"), [1]])


# -- parity: payloads ------------------------------------------------------------------


@needs_c
@SETTINGS
@given(payloads)
def test_encode_payload_matches_msgpack(payload):
    expected = msgpack.packb(payload, use_bin_type=True)
    assert py.encode_payload(payload) == expected
    assert c.encode_payload(payload) == expected


@needs_c
@SETTINGS
@given(bad_payloads, st.integers(-1, 10))
def test_encode_payload_rejects_what_msgpack_rejects(payload, index):
    with pytest.raises((TypeError, ValueError, OverflowError, BufferError)):
        msgpack.packb(payload, use_bin_type=True)
    result = same("encode_payload", payload, index)
    assert result[0] == "raise" and result[1] is BadArgumentException and result[3] == "payload"


def test_encode_payload_pure_matches_msgpack_without_c():
    """The pure core alone (also when the extension is missing)."""
    for payload in [{"a": [1, 2.5, None, True, b"x", "y"]}, Color.RED, Point(1, 2), {(1, 2): 3}, bytearray(b"z"),
                    {(Color.RED, Point(1, Name.ALICE)): 3}, nested(512)]:
        assert py.encode_payload(payload) == msgpack.packb(payload, use_bin_type=True)
    with pytest.raises(BadArgumentException, match="can not be serialized"):
        py.encode_payload(datetime.date(2024, 1, 1))


@needs_c
@pytest.mark.parametrize(
    "payload",
    [msgpack.ExtType(5, b"abc"), msgpack.Timestamp(1, 2), {"t": msgpack.ExtType(1, b"")}, [msgpack.Timestamp(10**9, 0)]],
)
def test_encode_payload_msgpack_ext_types(payload):
    expected = msgpack.packb(payload, use_bin_type=True)
    assert py.encode_payload(payload) == expected
    assert c.encode_payload(payload) == expected


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@needs_c
@pytest.mark.parametrize("depth", [1, 100, 511, 512, 513, 2000])
def test_nesting_limit_is_the_same(depth):
    result = same("encode_payload", nested(depth))
    assert (result[0] == "ok") == (depth <= 512)
    if result[0] == "ok":
        assert result[1] == msgpack.packb(nested(depth))


@needs_c
@SETTINGS
@given(payloads)
def test_decode_payload_round_trip(payload):
    data = py.encode_payload(payload)
    for blob in (data, b'"' + data + b'"'):
        expected = py.decode_payload(blob)
        assert c.decode_payload(blob) == expected
        assert type(c.decode_payload(blob)) is type(expected)


@needs_c
@SETTINGS
@given(st.binary(max_size=30))
def test_decode_payload_of_any_bytes(data):
    for blob in (data, b'"' + data + b'"', bytearray(data)):
        expected, actual = outcome(py.decode_payload, blob), outcome(c.decode_payload, blob)
        assert actual == expected
        if expected[0] == "ok":
            assert type(actual[1]) is type(expected[1])


@needs_c
@pytest.mark.parametrize(
    "data, expected",
    [
        (b'"\x81\xa1a\x01"', {"a": 1}),  # go-sharq wraps payloads in quotes
        (b'"', 34),  # the int 34, one byte
        (b"\xc1garbage", UndecodablePayload(b"\xc1garbage")),
        (b'"\xc1"', UndecodablePayload(b"\xc1")),
        (b"", UndecodablePayload(b"")),
        (b"\x01\x02", UndecodablePayload(b"\x01\x02")),  # trailing bytes
    ],
)
def test_decode_payload_cases(data, expected):
    for core in (py, c):
        result = core.decode_payload(data)
        assert result == expected and type(result) is type(expected)


# -- parity: RESP ----------------------------------------------------------------------


@needs_c
@SETTINGS
@given(args | bad_args)
def test_pack_command(values):
    result = same("pack_command", values)
    if result[0] == "ok":
        assert result[1].startswith(b"*%d\r\n" % len(values))


@needs_c
@SETTINGS
@given(st.binary(min_size=1, max_size=40), st.lists(st.text(max_size=10) | st.binary(max_size=5), max_size=3), args | bad_args)
def test_pack_evalsha(sha, keys, values):
    same("pack_evalsha", sha, keys, values)


@needs_c
@SETTINGS
@given(st.binary(min_size=1, max_size=40), st.lists(st.text(max_size=10) | st.binary(max_size=5), max_size=3), st.integers(0, 10**6))
def test_evalsha_head_and_pack_args(sha, keys, argc):
    same("evalsha_head", sha, keys, argc)
    same("pack_args", keys)
    for core in filter(None, (py, c)):  # head + args is the whole command
        assert core.evalsha_head(sha, keys, len(keys)) + core.pack_args(keys) == core.pack_evalsha(sha, keys, keys)


@needs_c
@SETTINGS
@given(
    st.lists(any_jobs, max_size=8),
    st.integers(0, 2**45) | st.sampled_from([None, "now", 1.5]),
    st.integers(-1, 5) | st.sampled_from([None, True, -2, 2**53 - 1, 2**53]),
    st.integers(0, 10_000),
    st.integers(1, 4),
)
def test_enqueue_chunks(jobs, now, default_limit, first_index, chunk_size):
    same("enqueue_chunks", now, jobs, default_limit, first_index, chunk_size)
    for i, job in enumerate(jobs):
        same("job_fields", job, first_index + i, default_limit)


@needs_c
@SETTINGS
@given(st.lists(good_jobs, min_size=1, max_size=20))
def test_enqueue_chunks_good_jobs(jobs):
    result = same("enqueue_chunks", 1_700_000_000_000, jobs, -1, 0, 100)
    assert result[0] == "ok"


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["q1", "q2", "q3"])), max_size=30), st.integers(1, 7))
@SETTINGS
def test_enqueue_chunks_keep_queue_order_and_cover_every_job(core, queues, chunk_size):
    jobs = [
        {"queue_type": t, "queue_id": q, "job_id": f"j{i}", "payload": i, "interval": 0}
        for i, (t, q) in enumerate(queues)
    ]
    bodies, positions = core.enqueue_chunks(1, jobs, -1, 0, chunk_size)
    order = [i for part in positions for i in part]
    assert sorted(order) == list(range(len(jobs)))
    assert all(1 <= len(part) <= chunk_size for part in positions) and len(bodies) == len(positions)
    for queue in set(queues):
        mine = [i for i in order if queues[i] == queue]
        assert mine == sorted(mine)  # each queue's jobs stay in input order
    # Each queue's jobs are contiguous: Redis sees a queue once per chunk at most twice.
    runs = [queues[i] for i in order]
    assert sum(1 for a, b in zip(runs, runs[1:]) if a != b) == len(set(queues)) - 1 if queues else True


finish_jobs = (
    st.tuples(maybe_identifiers, maybe_identifiers, maybe_identifiers)
    | st.tuples(maybe_identifiers, maybe_identifiers, maybe_identifiers, maybe_ints)
    | st.builds(Job, maybe_identifiers, maybe_identifiers, maybe_identifiers, st.none(), st.integers(), maybe_ints)
    | st.sampled_from([None, ("a", "b"), ["a", "b", "c"], "abc", Point("a", "b"), ("t", "active", "j")])
)


@needs_c
@SETTINGS
@given(st.lists(finish_jobs, max_size=6), st.integers(0, 10_000), st.booleans())
def test_pack_job_refs(jobs, first_index, need_lease):
    same("pack_job_refs", jobs, first_index, need_lease)
    for i, job in enumerate(jobs):
        same("job_ref", job, first_index + i, need_lease)


@needs_c
@SETTINGS
@given(maybe_identifiers, st.sampled_from(["queue_id", "job_id", "queue_type"]), st.integers(-1, 3), maybe_ints)
def test_checks(value, field, index, number):
    same("check_identifier", value, field, index)
    same("check_identifier", value, field)
    same("check_interval", number, index)
    same("check_interval", number)
    same("check_requeue_limit", number, index)
    same("check_requeue_limit", number)
    same("bad_argument", field, index)
    same("bad_argument", field, index, "is odd.")


def test_bad_argument_fields():
    for core in filter(None, (py, c)):
        exc = core.bad_argument("job_id", 3, "is odd.")
        assert isinstance(exc, BadArgumentException)
        assert (str(exc), exc.field, exc.index) == ("job 3: `job_id` is odd.", "job_id", 3)
        exc = core.bad_argument("interval", -1)
        assert (str(exc), exc.index) == ("`interval` has an invalid value.", None)


# -- parity: replies -------------------------------------------------------------------

reply_groups = st.tuples(
    identifiers.map(str.encode) | st.binary(max_size=5),
    identifiers.map(str.encode),
    payloads.map(py.encode_payload) | payloads.map(lambda p: b'"' + py.encode_payload(p) + b'"') | st.binary(max_size=8),
    st.integers(-1, 100) | st.integers(-1, 100).map(lambda n: b"%d" % n),
)


@needs_c
@SETTINGS
@given(st.lists(reply_groups, max_size=10), st.sampled_from([0, 2]), st.booleans(), st.integers(0, 2**53))
def test_parse_jobs(groups, start, truncate, expires_at):
    reply = [b"x", b"y"][:start] + [value for group in groups for value in group]
    if truncate and reply:
        reply = reply[:-1]
    expected = outcome(py.parse_jobs, reply, "qt", start, expires_at)
    actual = outcome(c.parse_jobs, reply, "qt", start, expires_at)
    assert actual == expected
    if expected[0] == "ok":
        assert [type(job.payload) for job in actual[1]] == [type(job.payload) for job in expected[1]]


@needs_c
def test_parse_jobs_shared_queue_ids():
    payload = py.encode_payload({"a": 1})
    reply = []
    for i in range(50):
        reply += [b"q%d" % (i // 7), b"j%d" % i, payload, i]
    assert c.parse_jobs(reply, "t", 0, 5) == py.parse_jobs(reply, "t", 0, 5)
    assert c.parse_jobs(tuple(reply), "t", 4, 0) == py.parse_jobs(tuple(reply), "t", 4, 0)


# -- which core is used ----------------------------------------------------------------


@needs_c
def test_compiled_core_is_the_default():
    if os.environ.get("SHARQ_FAST_NO_EXTENSIONS"):
        pytest.skip("SHARQ_FAST_NO_EXTENSIONS is set")
    assert sharq_fast.USE_EXTENSIONS is True
    code = "import sharq_fast._core as k, sharq_fast._core_c as c; assert k.core is c; print('compiled')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "compiled"


def test_no_extensions_env_gives_the_pure_core():
    code = (
        "import sharq_fast, sharq_fast._core as k, sharq_fast._core_py as p;"
        "assert sharq_fast.USE_EXTENSIONS is False and k.core is p; print('pure')"
    )
    env = dict(os.environ, SHARQ_FAST_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pure"


@needs_c
def test_compiled_jobs_are_real_jobs():
    """The compiled parse_jobs builds Jobs that behave as Job()s do."""
    import copy
    import gc
    import pickle

    payload = py.encode_payload({"a": [1, "x"]})
    jobs = c.parse_jobs([b"q", b"j", payload, 3] * 200, "t", 0, 7)
    expected = Job("t", "q", "j", {"a": [1, "x"]}, 3, 7)
    assert all(type(job) is Job and job == expected for job in jobs)
    assert copy.copy(jobs[0]) == expected and pickle.loads(pickle.dumps(jobs[0])) == expected
    assert msgspec.structs.replace(jobs[0], job_id="k").job_id == "k"
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(jobs[0]), type=Job) == expected
    jobs[1].payload = jobs  # a cycle, for the collector
    del jobs
    gc.collect()

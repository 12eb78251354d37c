"""The hot path, in pure Python: validation, payload coding, RESP packing, reply parsing.

``_core_c.pyx`` is its compiled twin with the same functions and the same results, byte
for byte; ``_core.py`` picks one. Batch requests are packed here into the complete RESP
bytes of one EVALSHA, so redis-py never re-packs thousands of arguments.
"""

import re
import sys
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import msgspec

from ._constants import (
    MAX_INTEGER,
    RESERVED_MESSAGE,
    TOO_LARGE,
    RESERVED_QUEUE_IDS,
    RESERVED_QUEUE_TYPE_IDS,
    RESERVED_QUEUE_TYPES,
)
from .exceptions import BadArgumentException
from .types import Job, JobRequest, UndecodablePayload

_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}")
_JOB_RESP = b"$%d\r\n%b\r\n" * 6
_JOB_FIELDS = frozenset(("queue_type", "queue_id", "job_id", "payload", "interval", "requeue_limit"))
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
_EXACT_SCALARS = frozenset((str, int, float, bool, bytes, type(None)))
#: Deepest nesting of containers in a payload (msgpack-python allows 1024, but msgspec
#: runs out of Python stack before that).
_MAX_DEPTH = 512


def bad_argument(field: str, index: int, message: str = "has an invalid value.") -> BadArgumentException:
    """The error for a bad `field`; `index` >= 0 names the job's position in a batch."""
    text = f"`{field}` {message}"
    if index >= 0:
        text = f"job {index}: {text}"
    return BadArgumentException(text, field=field, index=index if index >= 0 else None)


def check_identifier(value: Any, field: str, index: int = -1) -> str:
    """Return `value` if it is 1..100 characters of A-Z a-z 0-9 _ -, else raise."""
    if isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None:
        return value
    raise bad_argument(field, index)


def check_not_reserved(queue_type: str, queue_id: str, index: int = -1) -> None:
    """Raise if a queue's keys would collide with SharQ's own keys (see _constants)."""
    if queue_type in RESERVED_QUEUE_TYPES:
        raise bad_argument("queue_type", index, f"{queue_type!r} {RESERVED_MESSAGE}")
    if queue_id in RESERVED_QUEUE_IDS or (queue_type, queue_id) in RESERVED_QUEUE_TYPE_IDS:
        raise bad_argument("queue_id", index, f"{queue_id!r} {RESERVED_MESSAGE}")


def check_interval(value: Any, index: int = -1) -> int:
    """Return `value` if it is an int from 0 to MAX_INTEGER (not a bool), else raise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value <= MAX_INTEGER:
            return value
        raise bad_argument("interval", index, TOO_LARGE)
    raise bad_argument("interval", index)


def check_requeue_limit(value: Any, index: int = -1) -> int:
    """Return `value` if it is an int from -1 to MAX_INTEGER (not a bool), else raise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
        if value <= MAX_INTEGER:
            return value
        raise bad_argument("requeue_limit", index, TOO_LARGE)
    raise bad_argument("requeue_limit", index)


def _msgpack_ext(obj: Any) -> Any:
    """msgpack-python's ExtType or Timestamp `obj` as the msgspec Ext packed the same way,
    else None (msgpack is not a dependency: such objects exist only if it is imported)."""
    msgpack = sys.modules.get("msgpack")
    if msgpack is None:
        return None
    if isinstance(obj, msgpack.ExtType):
        return msgspec.msgpack.Ext(obj.code, obj.data)
    if type(obj) is msgpack.Timestamp:
        return msgspec.msgpack.Ext(-1, obj.to_bytes())
    return None


def _plain(obj: Any, depth: int = 0) -> Any:
    """`obj` with every value msgpack-python accepts turned into a type msgspec encodes the
    same way; raises TypeError for anything msgpack-python refuses (dates, sets, ...),
    which msgspec would otherwise encode. Returns `obj` itself when nothing changes.
    Containers nested deeper than _MAX_DEPTH raise ValueError (a fixed limit, so that
    both cores agree whatever the depth of the Python stack)."""
    kind = type(obj)
    if kind in _EXACT_SCALARS:
        return obj
    if kind is dict:
        if depth >= _MAX_DEPTH:
            raise ValueError("recursion limit exceeded")
        for key, value in obj.items():  # the common case: plain scalars, nothing to change
            if type(key) not in _EXACT_SCALARS or type(value) not in _EXACT_SCALARS:
                break
        else:
            return obj
        changed = False
        items = []
        for key, value in obj.items():
            new_key, new_value = _plain(key, depth + 1), _plain(value, depth + 1)
            changed = changed or new_key is not key or new_value is not value
            items.append((new_key, new_value))
        return dict(items) if changed else obj
    if kind is list or kind is tuple:
        if depth >= _MAX_DEPTH:
            raise ValueError("recursion limit exceeded")
        for item in obj:
            if type(item) not in _EXACT_SCALARS:
                break
        else:
            return obj
        changed = False
        new = []
        for item in obj:
            new_item = _plain(item, depth + 1)
            changed = changed or new_item is not item
            new.append(new_item)
        if not changed:
            return obj
        # A tuple stays a tuple: it may be a dict key.
        return new if kind is list else tuple(new)
    # Subclasses, by value, as msgpack-python packs them (bool before int: bool is an int;
    # bool itself can not be subclassed).
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int.__int__(obj)
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        if isinstance(obj, memoryview) and not obj.c_contiguous:
            raise ValueError("memoryview is not C-contiguous")
        return bytes(memoryview(obj))
    if isinstance(obj, dict):
        return _plain(dict(obj), depth)
    ext = _msgpack_ext(obj)
    if ext is not None:
        return ext
    if isinstance(obj, list):
        return _plain(list(obj), depth)
    if isinstance(obj, tuple):
        return _plain(tuple(obj), depth)
    raise TypeError(f"can not serialize {kind.__name__!r} object")


def encode_payload(payload: Any, index: int = -1) -> bytes:
    """MessagePack bytes of `payload`, identical to msgpack-python's
    ``packb(payload, use_bin_type=True)``; raises BadArgumentException if it can't."""
    try:
        return _encode(_plain(payload))
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise bad_argument("payload", index, f"can not be serialized: {exc}") from None


def decode_payload(data: bytes) -> Any:
    """The payload stored as `data`. Accepts payloads wrapped in one ``"`` on each side
    (go-sharq, old sharq-server); undecodable bytes come back as UndecodablePayload."""
    # A plain MessagePack value that starts with 0x22 (the int 34) is that one byte, so
    # two or more bytes between quotes can only be a wrapped payload.
    if len(data) >= 2 and data[0] == 0x22 and data[-1] == 0x22:
        data = data[1:-1]
    try:
        return _decode(data)
    except Exception:  # DecodeError, and UnicodeDecodeError / RecursionError msgspec lets out
        return UndecodablePayload(data)


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, int):
        data = b"%d" % value
    else:
        raise TypeError(f"can not pack {type(value).__name__!r} as a Redis argument")
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack_command(args: Sequence[Any]) -> bytes:
    """The RESP request of one command; `args` are bytes, str or int."""
    return b"*%d\r\n%b" % (len(args), b"".join([_arg(arg) for arg in args]))


def pack_args(args: Sequence[Any]) -> bytes:
    """The RESP bulk strings of `args` (bytes, str or int), to follow a command's head."""
    return b"".join([_arg(arg) for arg in args])


def evalsha_head(sha: bytes, keys: Sequence[Any], argc: int) -> bytes:
    """RESP of ``EVALSHA sha numkeys keys...`` for a command of `argc` ARGV values."""
    return b"*%d\r\n%b" % (
        3 + len(keys) + argc,
        b"".join([_arg(b"EVALSHA"), _arg(sha), _arg(len(keys))] + [_arg(key) for key in keys]),
    )


def _check_ids(job_id: Any, queue_id: Any, queue_type: Any, index: int) -> None:
    """SharQ's order of identifier checks: job_id, queue_id, queue_type."""
    check_identifier(job_id, "job_id", index)
    check_identifier(queue_id, "queue_id", index)
    check_identifier(queue_type, "queue_type", index)


def job_fields(job: Any, index: int, default_requeue_limit: int) -> Tuple[str, str, str, bytes, int, int]:
    """Validate one job request (dict or JobRequest), in SharQ's order of checks, and return
    (queue_type, queue_id, job_id, encoded payload, interval, requeue_limit)."""
    if isinstance(job, dict):
        if not _JOB_FIELDS.issuperset(job):
            unknown = sorted(str(key) for key in job if key not in _JOB_FIELDS)[0]
            raise bad_argument(unknown, index, "is not a job field.")
        get = job.get
        queue_type, queue_id, job_id = get("queue_type", "default"), get("queue_id"), get("job_id")
        interval, requeue_limit = get("interval"), get("requeue_limit")
        if "payload" not in job:
            raise bad_argument("payload", index, "is missing.")
        payload = job["payload"]
    elif isinstance(job, JobRequest):
        queue_type, queue_id, job_id = job.queue_type, job.queue_id, job.job_id
        interval, requeue_limit, payload = job.interval, job.requeue_limit, job.payload
    else:
        raise BadArgumentException(
            f"job {index}: expected a dict or a JobRequest, got {type(job).__name__}", index=index
        )
    check_interval(interval, index)
    _check_ids(job_id, queue_id, queue_type, index)
    check_not_reserved(queue_type, queue_id, index)
    if requeue_limit is None:
        requeue_limit = default_requeue_limit
    check_requeue_limit(requeue_limit, index)
    return queue_type, queue_id, job_id, encode_payload(payload, index), interval, requeue_limit


def _enqueue_body(now: int, fields: List[Tuple[Any, ...]], part: Iterable[int]) -> bytes:
    """RESP of enqueue.lua's ARGV: `now`, then the validated jobs `fields[i]`, i in `part`."""
    body = [_arg(now)]
    append = body.append
    for i in part:
        # One format per job: identifiers are validated ASCII, interval and limit ints.
        queue_type, queue_id, job_id, payload, interval, limit = fields[i]
        interval_b, limit_b = b"%d" % interval, b"%d" % limit
        append(
            _JOB_RESP
            % (
                len(queue_type), queue_type.encode(), len(queue_id), queue_id.encode(),
                len(job_id), job_id.encode(), len(payload), payload,
                len(interval_b), interval_b, len(limit_b), limit_b,
            )
        )
    return b"".join(body)


def enqueue_chunks(
    now: int, jobs: Sequence[Any], default_requeue_limit: int, first_index: int, chunk_size: int
) -> Tuple[List[bytes], List[List[int]]]:
    """Validate and encode all `jobs` (raising BadArgumentException naming index
    ``first_index + i`` of the first bad one), order them queue by queue, each queue's jobs
    in input order, and pack them in chunks of `chunk_size` jobs. Returns (bodies,
    positions): bodies[c] is the RESP of enqueue.lua's ARGV for chunk c (1 + 6 values a
    job), positions[c] the offsets in `jobs` of its jobs.

    Jobs of one queue then share chunks, so Redis does its per-queue work (RPUSH, ready
    set, counters) once per chunk instead of once per job. With one `now` for all, the
    result is the same as enqueueing in input order: only each queue's order matters."""
    fields = []
    groups: Dict[Tuple[str, str], List[int]] = {}
    for i, job in enumerate(jobs):
        values = job_fields(job, first_index + i, default_requeue_limit)
        fields.append(values)
        group = groups.get((values[0], values[1]))
        if group is None:
            groups[(values[0], values[1])] = [i]
        else:
            group.append(i)
    order = [i for group in groups.values() for i in group]
    bodies, positions = [], []
    for start in range(0, len(order), chunk_size):
        part = order[start : start + chunk_size]
        bodies.append(_enqueue_body(now, fields, part))
        positions.append(part)
    return bodies, positions


def job_ref(job: Any, index: int, need_lease: bool) -> Tuple[str, str, str, int]:
    """Validate one reference to a dequeued job and return (queue_type, queue_id, job_id,
    lease): a Job (its lease is its expires_at), a (queue_type, queue_id, job_id, lease)
    tuple, or, when `need_lease` is false, a (queue_type, queue_id, job_id) tuple (lease 0:
    by id, as SharQ's finish). A Job whose expires_at is 0 holds no lease: -1, which no
    job's score matches."""
    if isinstance(job, Job):
        queue_type, queue_id, job_id, lease = job.queue_type, job.queue_id, job.job_id, job.expires_at
    elif isinstance(job, tuple) and (len(job) == 4 or (len(job) == 3 and not need_lease)):
        queue_type, queue_id, job_id = job[0], job[1], job[2]
        lease = job[3] if len(job) == 4 else 0
    else:
        shape = "(queue_type, queue_id, job_id, lease)" if need_lease else "(queue_type, queue_id, job_id)"
        raise BadArgumentException(
            f"job {index}: expected a Job or a {shape} tuple, got {type(job).__name__}", index=index
        )
    _check_ids(job_id, queue_id, queue_type, index)
    check_not_reserved(queue_type, queue_id, index)
    if isinstance(lease, bool) or not isinstance(lease, int) or not 0 <= lease <= MAX_INTEGER:
        raise bad_argument("lease", index, "must be an int from 0 to 2**53 - 1 (a Job's expires_at).")
    if need_lease and lease == 0:
        raise bad_argument("lease", index, "is 0: the job was not dequeued (no lease to act on).")
    if lease == 0 and isinstance(job, Job):
        # A Job that holds no lease (a discarded job of requeue) finishes nothing: by its
        # ids it would finish a later delivery of the same job id. -1 matches no score.
        lease = -1
    return queue_type, queue_id, job_id, lease


def pack_job_refs(jobs: Sequence[Any], first_index: int, need_lease: bool) -> bytes:
    """Validate `jobs` (see job_ref) and return their RESP as groups of 4 ARGV values:
    queue_type, queue_id, job_id, lease (finish.lua, extend.lua, release.lua)."""
    body: List[bytes] = []
    append = body.append
    for i, job in enumerate(jobs):
        for value in job_ref(job, first_index + i, need_lease):
            append(_arg(value))
    return b"".join(body)


def pack_evalsha(sha: bytes, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """The RESP of ``EVALSHA sha len(keys) *keys *args``."""
    return evalsha_head(sha, keys, len(args)) + b"".join([_arg(arg) for arg in args])


def parse_jobs(reply: Sequence[Any], queue_type: str, start: int, expires_at: int) -> List[Job]:
    """Jobs from a flat script reply of (queue_id, job_id, payload, requeues_remaining)
    groups, beginning at `start` (dequeue.lua's reply, requeue.lua's discarded list), each
    with the lease expiry `expires_at` (0 for jobs that are not active)."""
    jobs = []
    for i in range(start, len(reply), 4):
        jobs.append(
            Job(
                queue_type,
                reply[i].decode(),
                reply[i + 1].decode(),
                decode_payload(reply[i + 2]),
                int(reply[i + 3]),
                expires_at,
            )
        )
    return jobs

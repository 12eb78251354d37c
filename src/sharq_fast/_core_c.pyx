# cython: language_level=3, boundscheck=True, wraparound=True, cdivision=True
"""The hot path, compiled: the twin of ``_core_py.py`` with the same functions, the same
exceptions and the same results, byte for byte (tests/test_core.py checks it).

RESP is written into one growable C buffer; identifiers are checked by a loop over their
characters; payloads go through the same msgspec Encoder/Decoder as in the pure core.
Values of unusual types (subclasses, ...) take the pure core's code, written out here.
"""


import msgspec

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Next, PyDict_SetItem
from cpython.list cimport PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.sequence cimport PySequence_GetItem
from cpython.set cimport PySet_Contains
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from ._constants import (
    MAX_INTEGER,
    RESERVED_MESSAGE,
    RESERVED_QUEUE_IDS,
    RESERVED_QUEUE_TYPE_IDS,
    RESERVED_QUEUE_TYPES,
    TOO_LARGE,
)
from . import _core_py
from .exceptions import BadArgumentException
from .types import Job, JobRequest, UndecodablePayload

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
    PyObject* PyDict_GetItem(object d, object key)

_JOB_FIELDS = frozenset(("queue_type", "queue_id", "job_id", "payload", "interval", "requeue_limit"))
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
_DecodeError = msgspec.DecodeError

cdef object JOB_FIELDS = _JOB_FIELDS
cdef object ENCODE = _encode
cdef object DECODE = _decode
cdef object DECODE_ERROR = _DecodeError
cdef object JOB = Job
cdef object JOB_REQUEST = JobRequest
cdef object UNDECODABLE = UndecodablePayload
cdef object BAD_ARGUMENT = BadArgumentException
cdef int MAX_DEPTH = 512
cdef long long C_MAX_INTEGER = MAX_INTEGER
_MAX_DEPTH = MAX_DEPTH


# -- errors and validation -------------------------------------------------------------


def bad_argument(field, index, message="has an invalid value."):
    """The error for a bad `field`; `index` >= 0 names the job's position in a batch."""
    text = f"`{field}` {message}"
    if index >= 0:
        text = f"job {index}: {text}"
    return BadArgumentException(text, field=field, index=index if index >= 0 else None)


cdef inline bint _is_identifier(object value):
    cdef str text
    cdef Py_ssize_t n
    cdef Py_UCS4 c
    if not isinstance(value, str):
        return False
    text = <str>value
    n = len(text)
    if n < 1 or n > 100:
        return False
    for c in text:
        if not (
            (c >= u'a' and c <= u'z') or (c >= u'A' and c <= u'Z') or (c >= u'0' and c <= u'9')
            or c == u'_' or c == u'-'
        ):
            return False
    return True


def check_identifier(value, field, index=-1):
    """Return `value` if it is 1..100 characters of A-Z a-z 0-9 _ -, else raise."""
    if _is_identifier(value):
        return value
    raise bad_argument(field, index)


cdef inline int _int_in_range(object value, long long low) except -2:
    """1 if isinstance(value, int) and not isinstance(value, bool) and low <= value <=
    MAX_INTEGER; 0 if it is such an int but larger; -1 if it is not such an int at all."""
    cdef int overflow
    cdef long long v
    if PyLong_CheckExact(value):
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        if overflow:
            return 0 if overflow > 0 else -1
        if v < low:
            return -1
        return 1 if v <= C_MAX_INTEGER else 0
    if isinstance(value, int) and not isinstance(value, bool):
        if value < low:
            return -1
        return 1 if value <= MAX_INTEGER else 0
    return -1


cdef inline int _check_int(object value, long long low, str field, object index) except -1:
    cdef int found = _int_in_range(value, low)
    if found == 1:
        return 0
    if found == 0:
        raise bad_argument(field, index, TOO_LARGE)
    raise bad_argument(field, index)


def check_not_reserved(queue_type, queue_id, index = -1):
    """Raise if a queue's keys would collide with SharQ's own keys (see _constants)."""
    if queue_type in RESERVED_QUEUE_TYPES:
        raise bad_argument("queue_type", index, f"{queue_type!r} {RESERVED_MESSAGE}")
    if queue_id in RESERVED_QUEUE_IDS or (queue_type, queue_id) in RESERVED_QUEUE_TYPE_IDS:
        raise bad_argument("queue_id", index, f"{queue_id!r} {RESERVED_MESSAGE}")


def check_interval(value, index=-1):
    """Return `value` if it is an int from 0 to MAX_INTEGER (not a bool), else raise."""
    _check_int(value, 0, "interval", index)
    return value


def check_requeue_limit(value, index=-1):
    """Return `value` if it is an int from -1 to MAX_INTEGER (not a bool), else raise."""
    _check_int(value, -1, "requeue_limit", index)
    return value


# -- payloads --------------------------------------------------------------------------


cdef object _plain_dict(dict obj, int depth):
    cdef Py_ssize_t pos = 0, prev = 0, pos2 = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef dict new = None
    if depth >= MAX_DEPTH:
        raise ValueError("recursion limit exceeded")
    while PyDict_Next(obj, &pos, &k, &v):
        key = <object>k
        value = <object>v
        new_key = _plain(key, depth + 1)
        new_value = _plain(value, depth + 1)
        if new is None:
            if new_key is key and new_value is value:
                prev = pos
                continue
            new = {}
            pos2 = 0
            while pos2 < prev and PyDict_Next(obj, &pos2, &k, &v):
                PyDict_SetItem(new, <object>k, <object>v)
        PyDict_SetItem(new, new_key, new_value)
        prev = pos
    return obj if new is None else new


cdef object _plain_sequence(object obj, bint is_list, int depth):
    cdef Py_ssize_t i, j, n
    cdef list new = None
    if depth >= MAX_DEPTH:
        raise ValueError("recursion limit exceeded")
    n = len(obj)
    i = 0
    while i < n:
        if is_list and i >= PyList_GET_SIZE(obj):  # shrunk by user code: stop as `for` does
            break
        item = (<list>obj)[i] if is_list else (<tuple>obj)[i]
        new_item = _plain(item, depth + 1)
        if new is None:
            if new_item is item:
                i += 1
                continue
            new = list(obj[:i])
        new.append(new_item)
        i += 1
    if new is None:
        return obj
    return new if is_list else tuple(new)


cdef object _plain(object obj, int depth):
    cdef type kind = type(obj)
    if kind is str or kind is int or obj is None or kind is bytes or kind is float or kind is bool:
        return obj
    if kind is dict:
        return _plain_dict(<dict>obj, depth)
    if kind is list:
        return _plain_sequence(obj, True, depth)
    if kind is tuple:
        return _plain_sequence(obj, False, depth)
    # Subclasses, msgpack's own types and what it refuses: rare, so the pure twin's code
    # handles them, which keeps the two cores' answers the same by construction.
    return _core_py._plain(obj, depth)


cdef object _encode_payload(object payload, object index):
    try:
        return ENCODE(_plain(payload, 0))
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise bad_argument("payload", index, f"can not be serialized: {exc}") from None


def encode_payload(payload, index=-1):
    """MessagePack bytes of `payload`, identical to msgpack-python's
    ``packb(payload, use_bin_type=True)``; raises BadArgumentException if it can't."""
    return _encode_payload(payload, index)



# Short ASCII strings that recur (queue ids) are decoded once and kept, with their hash,
# in a small direct-mapped cache, as msgspec does for map keys.

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    bint PyUnicode_IS_COMPACT_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    void Py_XDECREF(PyObject*)
    int memcmp(const void*, const void*, size_t)

cdef enum:
    _CACHE_SIZE = 1024
    _CACHE_MAX_LENGTH = 40

cdef PyObject* STR_CACHE[_CACHE_SIZE]


cdef object _utf8_str(const char* p, Py_ssize_t n):
    """The str of UTF-8 `p[:n]`, as bytes.decode() makes it (ASCII: copied straight)."""
    cdef Py_ssize_t i
    if n <= 64:
        for i in range(n):
            if <unsigned char>p[i] >= 0x80:
                break
        else:
            text = PyUnicode_New(n, 127)
            memcpy(PyUnicode_DATA(text), p, n)
            return text
    return PyUnicode_DecodeUTF8(p, n, NULL)


cdef object _cached_str(const char* p, Py_ssize_t n):
    """The str of UTF-8 `p[:n]` (raises as bytes.decode() does)."""
    cdef unsigned int h = 2166136261u
    cdef Py_ssize_t i
    cdef PyObject* found
    if n > _CACHE_MAX_LENGTH:
        return _utf8_str(p, n)
    for i in range(n):
        h = (h ^ <unsigned char>p[i]) * 16777619u
    h = (h ^ (h >> 15)) & (_CACHE_SIZE - 1)
    found = STR_CACHE[h]
    if found != NULL:
        text = <object>found
        if PyUnicode_GET_LENGTH(text) == n and memcmp(PyUnicode_DATA(text), p, n) == 0:
            return text
    text = _utf8_str(p, n)
    if PyUnicode_IS_COMPACT_ASCII(text):  # then its UTF-8 is its data: the test above holds
        hash(text)
        Py_INCREF(text)
        Py_XDECREF(STR_CACHE[h])
        STR_CACHE[h] = <PyObject*>text
    return text


cdef object _decode_payload(object data):
    cdef const char* raw
    cdef Py_ssize_t n
    if PyBytes_CheckExact(data):
        n = PyBytes_GET_SIZE(data)
        raw = PyBytes_AS_STRING(data)
        if n >= 2 and raw[0] == 0x22 and raw[n - 1] == 0x22:
            data = PyBytes_FromStringAndSize(raw + 1, n - 2)
    elif len(data) >= 2 and data[0] == 0x22 and data[-1] == 0x22:
        data = data[1:-1]
    try:
        return DECODE(data)
    except Exception:  # DecodeError, and UnicodeDecodeError / RecursionError msgspec lets out
        return UNDECODABLE(data)


def decode_payload(data):
    """The payload stored as `data`. Accepts payloads wrapped in one ``"`` on each side
    (go-sharq, old sharq-server); undecodable bytes come back as UndecodablePayload."""
    return _decode_payload(data)


# -- RESP ------------------------------------------------------------------------------


cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int buf_init(Buf* b, Py_ssize_t capacity) except -1:
    b.data = <char*>malloc(capacity)
    if b.data == NULL:
        raise MemoryError()
    b.size = 0
    b.capacity = capacity
    return 0


cdef inline int buf_reserve(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t capacity
    cdef char* data
    if b.size + extra <= b.capacity:
        return 0
    capacity = b.capacity * 2
    if capacity < b.size + extra:
        capacity = b.size + extra
    data = <char*>realloc(b.data, capacity)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.capacity = capacity
    return 0


cdef inline int buf_write(Buf* b, const char* text, Py_ssize_t n) except -1:
    buf_reserve(b, n)
    memcpy(b.data + b.size, text, n)
    b.size += n
    return 0


cdef inline int _decimal(char* digits, long long value):
    """Write `value` in decimal (as b"%d" does) to the end of digits[24]; return where the
    text starts."""
    cdef int i = 24
    cdef unsigned long long u
    if value < 0:
        u = <unsigned long long>(-(value + 1)) + 1
    else:
        u = <unsigned long long>value
    while True:
        i -= 1
        digits[i] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if value < 0:
        i -= 1
        digits[i] = 45
    return i


cdef inline int buf_decimal(Buf* b, long long value) except -1:
    cdef char digits[24]
    cdef int i = _decimal(digits, value)
    return buf_write(b, digits + i, 24 - i)


cdef inline int buf_header(Buf* b, char kind, Py_ssize_t n) except -1:
    """``*n\\r\\n`` or ``$n\\r\\n``."""
    buf_reserve(b, 24)
    b.data[b.size] = kind
    b.size += 1
    buf_decimal(b, n)
    b.data[b.size] = 13
    b.data[b.size + 1] = 10
    b.size += 2
    return 0


cdef inline int buf_bulk(Buf* b, const char* data, Py_ssize_t n) except -1:
    buf_header(b, 36, n)
    buf_reserve(b, n + 2)
    memcpy(b.data + b.size, data, n)
    b.data[b.size + n] = 13
    b.data[b.size + n + 1] = 10
    b.size += n + 2
    return 0


cdef inline int _bulk_decimal(Buf* b, long long number) except -1:
    cdef char digits[24]
    cdef int i = _decimal(digits, number)
    return buf_bulk(b, digits + i, 24 - i)


cdef object _arg_data(object value):
    """The bytes of one argument of an unusual type, as _core_py._arg makes them."""
    if isinstance(value, bytes):
        return value
    elif isinstance(value, str):
        return value.encode()
    elif isinstance(value, int):
        return b"%d" % value
    raise TypeError(f"can not pack {type(value).__name__!r} as a Redis argument")


cdef int buf_arg(Buf* b, object value) except -1:
    """One RESP bulk string: bytes, str (UTF-8) or int (decimal)."""
    cdef const char* data
    cdef Py_ssize_t n
    cdef int overflow
    cdef long long number
    if PyUnicode_CheckExact(value):
        data = PyUnicode_AsUTF8AndSize(value, &n)
        return buf_bulk(b, data, n)
    if PyBytes_CheckExact(value):
        return buf_bulk(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    if PyLong_CheckExact(value):
        number = PyLong_AsLongLongAndOverflow(value, &overflow)
        if not overflow:
            return _bulk_decimal(b, number)
    value = _arg_data(value)
    if isinstance(value, bytes):
        # A bytes subclass: its buffer, as b"%b" takes it.
        value = bytes(memoryview(value))
    return buf_bulk(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))


def pack_command(args):
    """The RESP request of one command; `args` are bytes, str or int."""
    cdef Buf b
    buf_init(&b, 256)
    try:
        buf_header(&b, 42, len(args))
        for arg in args:
            buf_arg(&b, arg)
        return PyBytes_FromStringAndSize(b.data, b.size)
    finally:
        free(b.data)


def pack_args(args):
    """The RESP bulk strings of `args` (bytes, str or int), to follow a command's head."""
    cdef Buf b
    buf_init(&b, 256)
    try:
        for arg in args:
            buf_arg(&b, arg)
        return PyBytes_FromStringAndSize(b.data, b.size)
    finally:
        free(b.data)


def evalsha_head(sha, keys, argc):
    """RESP of ``EVALSHA sha numkeys keys...`` for a command of `argc` ARGV values."""
    cdef Buf b
    buf_init(&b, 256)
    try:
        _evalsha_head(&b, sha, keys, argc)
        return PyBytes_FromStringAndSize(b.data, b.size)
    finally:
        free(b.data)


cdef int _evalsha_head(Buf* b, object sha, object keys, Py_ssize_t argc) except -1:
    """RESP of ``EVALSHA sha numkeys keys...`` for a command of `argc` ARGV values."""
    cdef Py_ssize_t nkeys = len(keys)
    buf_header(b, 42, 3 + nkeys + argc)
    buf_bulk(b, b"EVALSHA", 7)
    buf_arg(b, sha)
    buf_arg(b, nkeys)
    for key in keys:
        buf_arg(b, key)
    return 0


# -- jobs ------------------------------------------------------------------------------


cdef object _unknown_field(dict job):
    return sorted(str(key) for key in job if key not in _JOB_FIELDS)[0]


cdef int _check_ids(object job_id, object queue_id, object queue_type, object index) except -1:
    """SharQ's order of identifier checks: job_id, queue_id, queue_type."""
    if not _is_identifier(job_id):
        raise bad_argument("job_id", index)
    if not _is_identifier(queue_id):
        raise bad_argument("queue_id", index)
    if not _is_identifier(queue_type):
        raise bad_argument("queue_type", index)
    return 0


cdef tuple _job_fields(object job, object index, object default_requeue_limit):
    cdef PyObject* found
    cdef PyObject* k
    cdef PyObject* v
    cdef Py_ssize_t pos = 0
    if isinstance(job, dict):
        while PyDict_Next(<dict>job, &pos, &k, &v):
            if not PySet_Contains(JOB_FIELDS, <object>k):
                raise bad_argument(_unknown_field(<dict>job), index, "is not a job field.")
        found = PyDict_GetItem(job, "queue_type")
        queue_type = "default" if found == NULL else <object>found
        found = PyDict_GetItem(job, "queue_id")
        queue_id = None if found == NULL else <object>found
        found = PyDict_GetItem(job, "job_id")
        job_id = None if found == NULL else <object>found
        found = PyDict_GetItem(job, "interval")
        interval = None if found == NULL else <object>found
        found = PyDict_GetItem(job, "requeue_limit")
        requeue_limit = None if found == NULL else <object>found
        found = PyDict_GetItem(job, "payload")
        if found == NULL:
            raise bad_argument("payload", index, "is missing.")
        payload = <object>found
    elif isinstance(job, JOB_REQUEST):
        queue_type, queue_id, job_id = job.queue_type, job.queue_id, job.job_id
        interval, requeue_limit, payload = job.interval, job.requeue_limit, job.payload
    else:
        raise BadArgumentException(
            f"job {index}: expected a dict or a JobRequest, got {type(job).__name__}", index=index
        )
    _check_int(interval, 0, "interval", index)
    _check_ids(job_id, queue_id, queue_type, index)
    check_not_reserved(queue_type, queue_id, index)
    if requeue_limit is None:
        requeue_limit = default_requeue_limit
    _check_int(requeue_limit, -1, "requeue_limit", index)
    return (queue_type, queue_id, job_id, _encode_payload(payload, index), interval, requeue_limit)


def job_fields(job, index, default_requeue_limit):
    """Validate one job request (dict or JobRequest), in SharQ's order of checks, and return
    (queue_type, queue_id, job_id, encoded payload, interval, requeue_limit)."""
    return _job_fields(job, index, default_requeue_limit)


cdef bytes _enqueue_body(object now, list fields, list part):
    """RESP of enqueue.lua's ARGV: `now`, then the validated jobs `fields[i]`, i in `part`."""
    cdef Buf body
    buf_init(&body, 8192)
    try:
        buf_arg(&body, now)
        for i in part:
            for value in <tuple>fields[i]:
                buf_arg(&body, value)
        return PyBytes_FromStringAndSize(body.data, body.size)
    finally:
        free(body.data)


def enqueue_chunks(now, jobs, default_requeue_limit, first_index, chunk_size):
    """Validate and encode all `jobs`, order them queue by queue (each queue's jobs in input
    order) and pack enqueue.lua's ARGV for chunks of `chunk_size` jobs: (bodies, positions)."""
    cdef list fields = []
    cdef dict groups = {}
    cdef list order = []
    cdef list bodies = []
    cdef list positions = []
    cdef Py_ssize_t i = 0, start, n
    cdef tuple values
    for job in jobs:
        values = _job_fields(job, first_index + i, default_requeue_limit)
        fields.append(values)
        key = (values[0], values[1])
        group = groups.get(key)
        if group is None:
            groups[key] = [i]
        else:
            (<list>group).append(i)
        i += 1
    for group in groups.values():
        order.extend(<list>group)
    n = len(order)
    for start in range(0, n, chunk_size):
        part = order[start:start + chunk_size]
        bodies.append(_enqueue_body(now, fields, part))
        positions.append(part)
    return bodies, positions


cdef tuple _job_ref(object job, object index, bint need_lease):
    cdef Py_ssize_t size
    if isinstance(job, JOB):
        queue_type, queue_id, job_id, lease = job.queue_type, job.queue_id, job.job_id, job.expires_at
    elif isinstance(job, tuple) and (len(job) == 4 or (len(job) == 3 and not need_lease)):
        size = len(job)
        queue_type, queue_id, job_id = job[0], job[1], job[2]
        lease = job[3] if size == 4 else 0
    else:
        shape = "(queue_type, queue_id, job_id, lease)" if need_lease else "(queue_type, queue_id, job_id)"
        raise BadArgumentException(
            f"job {index}: expected a Job or a {shape} tuple, got {type(job).__name__}", index=index
        )
    _check_ids(job_id, queue_id, queue_type, index)
    check_not_reserved(queue_type, queue_id, index)
    if _int_in_range(lease, 0) != 1:
        raise bad_argument("lease", index, "must be an int from 0 to 2**53 - 1 (a Job's expires_at).")
    if need_lease and lease == 0:
        raise bad_argument("lease", index, "is 0: the job was not dequeued (no lease to act on).")
    if lease == 0 and isinstance(job, JOB):
        lease = -1  # a Job without a lease finishes nothing (see _core_py.job_ref)
    return (queue_type, queue_id, job_id, lease)


def job_ref(job, index, need_lease):
    """Validate one reference to a dequeued job: (queue_type, queue_id, job_id, lease)."""
    return _job_ref(job, index, need_lease)


def pack_job_refs(jobs, first_index, need_lease):
    """Validate `jobs` (see job_ref) and return their RESP as groups of 4 ARGV values."""
    cdef Buf body
    cdef Py_ssize_t i = 0
    buf_init(&body, 4096)
    try:
        for job in jobs:
            for value in _job_ref(job, first_index + i, need_lease):
                buf_arg(&body, value)
            i += 1
        return PyBytes_FromStringAndSize(body.data, body.size)
    finally:
        free(body.data)


def pack_evalsha(sha, keys, args):
    """The RESP of ``EVALSHA sha len(keys) *keys *args``."""
    cdef Buf b
    buf_init(&b, 256)
    try:
        _evalsha_head(&b, sha, keys, len(args))
        for arg in args:
            buf_arg(&b, arg)
        return PyBytes_FromStringAndSize(b.data, b.size)
    finally:
        free(b.data)


cdef inline object _decode_text(object data):
    if PyBytes_CheckExact(data):
        return _utf8_str(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    return data.decode()


def parse_jobs(reply, queue_type, start, expires_at):
    """Jobs from a flat script reply of (queue_id, job_id, payload, requeues_remaining)
    groups, beginning at `start` (dequeue.lua's reply, requeue.lua's discarded list), each
    with the lease expiry `expires_at`."""
    cdef list jobs = []
    cdef Py_ssize_t i, n = len(reply)
    for i in range(start, n, 4):
        raw = PySequence_GetItem(reply, i)
        if PyBytes_CheckExact(raw):  # queue ids recur: cached
            queue_id = _cached_str(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
        else:
            queue_id = raw.decode()
        job_id = _decode_text(PySequence_GetItem(reply, i + 1))
        payload = _decode_payload(PySequence_GetItem(reply, i + 2))
        remaining = PySequence_GetItem(reply, i + 3)
        if not PyLong_CheckExact(remaining):
            remaining = int(remaining)
        jobs.append(JOB(queue_type, queue_id, job_id, payload, remaining, expires_at))
    return jobs

"""Bad input on every HTTP route of ``sharq-fast serve`` (see tests/test_fuzz.py for the
Python entry points and the command): one part of a request (a path segment, a body
field, a query parameter, the body itself) replaced by a value that is not valid, the rest
good. The route must answer 400 with a message (the batch routes: 200 with a 400 entry for
a bad job), and the keyspace must be byte-identical afterwards.

A route is one row of ROUTES: method, path and body templates, and its parameters. The
proxy client (ProxyClient) is fuzzed with tests/test_fuzz.py's table of Client methods,
those it has.
"""

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sharq_fast
from sharq_fast import Job, ProxyClient

from fuzz_values import MAX, VALID, is_int
from http_helpers import ServeProcess
from redis_state import raw_snapshot
from test_fuzz import ENTRIES, Entry, World, _check_refused

EXAMPLES = int(os.environ.get("SHARQ_FAST_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much, HealthCheck.too_slow],
)
MAX_WAIT = 10


@pytest.fixture(autouse=True)
def core() -> None:
    """Once, not once per core: the server process picks its own core."""


@pytest.fixture(scope="module")
def server(redis_server_url: str) -> Iterator[ServeProcess]:
    process = ServeProcess(redis_server_url, "--no-requeuer", "--max-wait", str(MAX_WAIT), "--max-batch", "50")
    yield process
    process.close()


@pytest.fixture
def active(r: redis.Redis, redis_server_url: str) -> List[Job]:
    """Queued jobs in t1/q1 and t1/q2, two of q1's active (returned), on a flushed database."""
    with sharq_fast.Client(redis_server_url, job_expire_interval=3_600_000) as client:
        for n in (1, 2, 3):
            client.enqueue(queue_type="t1", queue_id="q1", job_id=f"j{n}", payload={"n": n}, interval=0)
        client.enqueue(queue_type="t1", queue_id="q2", job_id="k1", payload="k", interval=1000)
        jobs = client.dequeue_many("t1", 2)
    assert len(jobs) == 2
    return jobs


@pytest.fixture
def http(server: ServeProcess, active: List[Job]) -> Iterator[httpx.Client]:
    """A client of the server, on the database of `active`."""
    with httpx.Client(base_url=server.url, timeout=20) as session:
        yield session


# -- values ----------------------------------------------------------------------------------

def _json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["", "a b", "é", "a" * 101, "active", "payload", -1, 2**53, 1.5, True]),
    _json_containers,
    max_leaves=4,
)


def bad_json(valid: Callable[[Any], bool]) -> st.SearchStrategy:
    return json_values.filter(lambda value: not valid(value))


# A path segment: no "/" (another route), not empty (a path "/a/b//" is "/a/b/": routes
# take a missing trailing slash), no "." or ".." (normalised away by the client).
segments = st.text(st.characters(blacklist_characters="/", blacklist_categories=["Cs"]), min_size=1, max_size=12) | (
    st.sampled_from(["a b", "a:b", "é", "a" * 101, "active", "payload", "interval", "a%2Fb", "%00", "-"])
)


def bad_segment(kind: str) -> st.SearchStrategy:
    return segments.filter(lambda text: text not in (".", "..") and not VALID[kind](text))


def bad_number_text(valid: Callable[[float], bool], integer: bool = False) -> st.SearchStrategy:
    def ok(text: str) -> bool:
        try:
            return valid(int(text) if integer else float(text))
        except ValueError:
            return False

    return (st.text(max_size=8) | st.sampled_from(["", "-1", "0", "1.5", "nan", "inf", "1e9", "x"])).filter(
        lambda text: not ok(text)
    )


BAD_BODIES = st.sampled_from([b"", b"{", b"abc", b"[]", b'"x"', b"1", b"null", b"true", b"\xff"])
# A batch may be a bare array of jobs ([] is an empty batch).
BAD_BATCH_BODIES = BAD_BODIES.filter(lambda body: body != b"[]") | st.sampled_from([b'{"jobs": 1}', b'{"jobs": {}}', b"{}"])
DUPLICATE_FREE = {"job_id": "new", "payload": {"a": 1}, "interval": 0, "requeue_limit": 1}


@dataclass
class Part:
    """Where a parameter goes: "path", "query", "body" (a field of the JSON body), "raw"
    (the whole body), or "item" (a field of the one job of a batch body)."""

    where: str
    good: Any
    bad: st.SearchStrategy


@dataclass
class Route:
    name: str
    method: str
    path: str  # with {param} placeholders
    body: Optional[Dict[str, Any]]
    params: Dict[str, Part]
    batch: bool = False  # a batch route: a bad job gets a 400 entry in a 200 answer

    def cases(self) -> list:
        return [(self, name) for name in self.params]


IDS = {"queue_type": Part("path", "t1", bad_segment("queue_type")), "queue_id": Part("path", "q1", bad_segment("queue_id"))}
JOB_ITEM = {"queue_type": "t1", "queue_id": "q1", "job_id": "new", "payload": 1, "interval": 0}
ROUTES = [
    Route("enqueue", "POST", "/enqueue/{queue_type}/{queue_id}/", dict(DUPLICATE_FREE), {
        **IDS,
        "job_id": Part("body", "new", bad_json(VALID["job_id"])),
        "interval": Part("body", 0, bad_json(VALID["interval"])),
        "requeue_limit": Part("body", 1, bad_json(VALID["requeue_limit"])),
        # A payload may be anything, but a max_queued_length in it must be a number.
        "payload": Part("body", {"a": 1}, bad_json(
            lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
        ).map(lambda v: {"max_queued_length": v})),
        "missing": Part("drop", None, st.sampled_from(["job_id", "payload", "interval"])),
        "unknown": Part("body", None, st.just(1)),
        "body": Part("raw", None, BAD_BODIES),
    }),
    Route("dequeue", "GET", "/dequeue/{queue_type}/", None, {
        "queue_type": IDS["queue_type"],
        "wait": Part("query", "0", bad_number_text(lambda v: 0 <= v <= MAX_WAIT)),
    }),
    Route("finish", "POST", "/finish/{queue_type}/{queue_id}/{job_id}/", None, {
        **IDS, "job_id": Part("path", "j1", bad_segment("job_id")),
    }),
    Route("interval", "POST", "/interval/{queue_type}/{queue_id}/", {"interval": 5}, {
        **IDS, "interval": Part("body", 5, bad_json(VALID["interval"])), "body": Part("raw", None, BAD_BODIES),
    }),
    Route("metrics queue type", "GET", "/metrics/{queue_type}/", None, {"queue_type": IDS["queue_type"]}),
    Route("metrics queue", "GET", "/metrics/{queue_type}/{queue_id}/", None, dict(IDS)),
    Route("deletequeue", "DELETE", "/deletequeue/{queue_type}/{queue_id}/", {"purge_all": True}, {
        "queue_type": IDS["queue_type"], "queue_id": Part("path", "q2", bad_segment("queue_id")),
        "purge_all": Part("body", True, bad_json(lambda v: isinstance(v, bool))),
        "unknown": Part("body", None, st.just(1)),
        "body": Part("raw", None, BAD_BODIES.filter(lambda b: b.strip() != b"")),
    }),
    Route("batch enqueue", "POST", "/batch/enqueue/", {"jobs": [dict(JOB_ITEM)]}, {
        "queue_type": Part("item", "t1", bad_json(VALID["queue_type"])),
        "queue_id": Part("item", "q1", bad_json(VALID["queue_id"])),
        "job_id": Part("item", "new", bad_json(VALID["job_id"])),
        "interval": Part("item", 0, bad_json(VALID["interval"])),
        "requeue_limit": Part("item", None, bad_json(VALID["requeue_limit"])),
        "body": Part("raw", None, BAD_BATCH_BODIES),
    }, batch=True),
    Route("batch dequeue", "GET", "/batch/dequeue/{queue_type}/", None, {
        "queue_type": IDS["queue_type"],
        "count": Part("query", "5", bad_number_text(lambda v: is_int(v, 1, 50), integer=True)),
        "wait": Part("query", "0", bad_number_text(lambda v: 0 <= v <= MAX_WAIT)),
    }),
    Route("batch finish", "POST", "/batch/finish/", {"jobs": [{"queue_type": "t1", "queue_id": "q1", "job_id": "j1"}]}, {
        "queue_type": Part("item", "t1", bad_json(VALID["queue_type"])),
        "queue_id": Part("item", "q1", bad_json(VALID["queue_id"])),
        "job_id": Part("item", "j1", bad_json(VALID["job_id"])),
        "body": Part("raw", None, BAD_BATCH_BODIES),
    }, batch=True),
]


def _request(data: Any, route: Route, corrupted: str) -> Tuple[str, str, Dict[str, str], Optional[bytes]]:
    """(method, path, query, body) with one part bad."""
    path_values: Dict[str, str] = {}
    query: Dict[str, str] = {}
    body = json.loads(json.dumps(route.body)) if route.body is not None else None
    raw: Optional[bytes] = None
    for name, part in route.params.items():
        value = data.draw(part.bad, label=name) if name == corrupted else part.good
        if part.where == "path":
            path_values[name] = quote(value, safe="")
        elif part.where == "query":
            query[name] = value
        elif part.where == "body" and (name == corrupted or value is not None):
            body[name] = value
        elif part.where == "item" and name == corrupted:
            body["jobs"][0][name] = value
        elif part.where == "drop" and name == corrupted:
            del body[value]
        elif part.where == "raw" and name == corrupted:
            raw = value
    path = re.sub(r"\{(\w+)\}", lambda match: path_values[match.group(1)], route.path)
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
    return route.method, path, query, raw


@pytest.mark.parametrize("route, corrupted", [case for route in ROUTES for case in route.cases()],
                         ids=lambda value: value.name if isinstance(value, Route) else value)
@FUZZ
@given(data=st.data())
def test_route_refuses_bad_input(data: Any, route: Route, corrupted: str, http: httpx.Client, r: redis.Redis) -> None:
    method, path, query, body = _request(data, route, corrupted)
    before = raw_snapshot(r)
    response = http.request(method, path, params=query, content=body)
    item_level = route.batch and route.params[corrupted].where == "item"
    if item_level:
        assert response.status_code == 200, (path, body, response.text)
        (entry,) = response.json()["results"]
        assert entry["code"] == 400 and entry["message"], response.text
    else:
        assert response.status_code == 400, (method, path, query, body, response.status_code, response.text)
        if response.headers.get("content-type", "").startswith("application/json"):
            assert response.json()["message"], response.text
    assert raw_snapshot(r) == before


# -- ProxyClient ------------------------------------------------------------------------------


def _proxy_rows() -> List[Entry]:
    """test_fuzz's Client rows for the methods ProxyClient has, without the batching
    parameters it does not take."""
    rows = []
    for entry in ENTRIES:
        method = entry.name.split("(")[0]
        if hasattr(ProxyClient, method):
            params = {k: v for k, v in entry.params.items() if k not in ("chunk_size", "pipeline_depth")}
            rows.append(Entry(f"ProxyClient.{entry.name}", entry.call, params))
    return rows


@pytest.mark.parametrize("entry, corrupted", [case for entry in _proxy_rows() for case in entry.cases()],
                         ids=lambda value: value.name if isinstance(value, Entry) else value)
@FUZZ
@given(data=st.data())
def test_proxy_client_refuses_bad_arguments(data: Any, entry: Entry, corrupted: str, server: ServeProcess,
                                            active: List[Job], r: redis.Redis) -> None:
    """ProxyClient: BadArgumentException (its own checks, or the server's 400), nothing written."""
    with ProxyClient(server.url) as proxy:
        _check_refused(data, entry, corrupted, World(proxy, active), r, check_field=False)

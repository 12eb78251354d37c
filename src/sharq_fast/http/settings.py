"""The server's settings: sharq.conf's ``[sharq-server]`` section, environment, command line.

Precedence: command line > environment (secrets) > config file > defaults. The settings
travel to uvicorn's worker processes as JSON in an environment variable (``to_env`` /
``from_env``), because uvicorn starts workers from an import string.
"""

import configparser
import json
import os
from typing import Any, Dict, Optional

import msgspec

from ..exceptions import ConfigError

#: Environment: the settings of a running server (set by ``serve`` for its workers).
SETTINGS_ENV = "SHARQ_FAST_SERVE_SETTINGS"
#: Environment: a bearer token clients must send (``Authorization: Bearer TOKEN``).
AUTH_TOKEN_ENV = "SHARQ_FAST_AUTH_TOKEN"
#: Environment: ``USER:PASSWORD`` for HTTP basic authentication.
BASIC_AUTH_ENV = "SHARQ_FAST_BASIC_AUTH"

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_WAIT = 60.0
DEFAULT_MAX_BATCH = 10_000
#: Seconds a Redis call whose connection failed is retried before the request fails (503):
#: long enough for a reconnect or a quick failover, short enough for an HTTP client.
DEFAULT_RETRY_FOR = 3.0


class ServerSettings(msgspec.Struct, kw_only=True):
    """Everything ``sharq-fast serve`` needs; see ``docs/http.md`` for each setting."""

    #: Redis: a URL, or a sharq.conf (which also gives the queue settings).
    url: Optional[str] = None
    config: Optional[str] = None
    key_prefix: Optional[str] = None
    job_expire_interval: Optional[int] = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    #: Run the requeuer in every worker (one at a time holds the prefix's lock).
    requeuer: bool = True
    auth_token: Optional[str] = None
    basic_auth: Optional[str] = None  # "user:password"
    #: Largest request body in bytes (413 above it).
    max_body_size: int = DEFAULT_MAX_BODY
    #: Longest long-poll (``?wait=``) in seconds.
    max_wait: float = DEFAULT_MAX_WAIT
    #: Most jobs in one batch request.
    max_batch: int = DEFAULT_MAX_BATCH
    #: The client's retry_for (seconds): how long a failed Redis call is retried.
    retry_for: float = DEFAULT_RETRY_FOR
    access_log: Optional[str] = None  # a file, or "-" for stderr; None: no access log
    log_level: str = "info"

    def to_env(self) -> str:
        """JSON for SETTINGS_ENV."""
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_env(cls, environ: Optional[Dict[str, str]] = None) -> "ServerSettings":
        """The settings ``serve`` left in the environment for this worker process."""
        raw = (environ if environ is not None else os.environ).get(SETTINGS_ENV)
        if not raw:
            raise ConfigError(f"${SETTINGS_ENV} is not set: start the server with `sharq-fast serve`")
        return msgspec.json.decode(raw, type=cls)

    @property
    def redis_description(self) -> str:
        """Where Redis is, for logs (no password)."""
        if self.config:
            return f"the Redis of {self.config}"
        url = self.url or ""
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            url = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return url


def _positive(value: Any, name: str, kind: type = int) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return number


def read_server_section(path: str) -> Dict[str, Any]:
    """The ``[sharq-server]`` settings of a sharq.conf (sharq-server's keys host, port,
    workers, accesslog, plus sharq_fast's), and ``[sharq] enable_requeue_script`` (the key
    GitHub's sharq-server reads: ``false`` turns the requeuer off)."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read SharQ config {path!r}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"SharQ config {path!r} is not valid INI: {exc}") from None

    def get(section: str, option: str) -> Optional[str]:
        value = parser.get(section, option, fallback="").strip()
        return value or None

    out: Dict[str, Any] = {}
    if get("sharq-server", "host"):
        out["host"] = get("sharq-server", "host")
    for option, name, kind in (
        ("port", "port", int), ("workers", "workers", int), ("max_body_size", "max_body_size", int),
        ("max_wait", "max_wait", float), ("max_batch", "max_batch", int),
    ):
        raw = get("sharq-server", option)
        if raw is not None:
            out[name] = _positive(raw, f"[sharq-server] {option}", kind)
    for option in ("auth_token", "basic_auth"):
        if get("sharq-server", option):
            out[option] = get("sharq-server", option)
    if get("sharq-server", "accesslog"):
        out["access_log"] = get("sharq-server", "accesslog")
    enable = (get("sharq", "enable_requeue_script") or "true").lower()
    if enable not in configparser.ConfigParser.BOOLEAN_STATES:
        raise ConfigError(f"[sharq] enable_requeue_script must be true or false, got {enable!r}")
    out["requeuer"] = configparser.ConfigParser.BOOLEAN_STATES[enable]
    return out


def build_settings(
    *, config: Optional[str] = None, environ: Optional[Dict[str, str]] = None, **given: Any
) -> ServerSettings:
    """Settings from a config file (if any), the environment's secrets and `given`
    (command-line values; None means "not given")."""
    environ = os.environ if environ is None else environ
    values: Dict[str, Any] = {}
    if config:
        values.update(read_server_section(config))
        values["config"] = config
    if environ.get(AUTH_TOKEN_ENV):
        values["auth_token"] = environ[AUTH_TOKEN_ENV]
    if environ.get(BASIC_AUTH_ENV):
        values["basic_auth"] = environ[BASIC_AUTH_ENV]
    values.update({key: value for key, value in given.items() if value is not None})
    if values.get("basic_auth") is not None and ":" not in values["basic_auth"]:
        raise ConfigError("basic auth must be given as USER:PASSWORD")
    if values.get("auth_token") is not None and not values["auth_token"].strip():
        raise ConfigError("the auth token is empty")
    try:
        settings = msgspec.convert(values, ServerSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad server setting: {exc}") from None
    if not 0 <= settings.retry_for <= 3600:
        raise ConfigError(f"retry_for must be from 0 to 3600 seconds, got {settings.retry_for}")
    if not 0 < settings.max_wait <= 3600:
        raise ConfigError(f"max_wait must be more than 0 and at most 3600 seconds, got {settings.max_wait}")
    for name in ("port", "workers", "max_body_size", "max_batch"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be a positive number, got {getattr(settings, name)}")
    return settings


def describe(settings: ServerSettings) -> str:
    """One line for the start-up log (no secrets)."""
    auth = "bearer token" if settings.auth_token else ""
    if settings.basic_auth:
        auth = f"{auth} or basic auth" if auth else "basic auth"
    return json.dumps(
        {
            "redis": settings.redis_description, "key_prefix": settings.key_prefix, "workers": settings.workers,
            "requeuer": settings.requeuer, "auth": auth or "none", "max_body_size": settings.max_body_size,
            "max_wait": settings.max_wait, "max_batch": settings.max_batch,
        }
    )

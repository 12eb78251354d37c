"""Running the server under uvicorn (``sharq-fast serve``).

SIGTERM (or SIGINT) stops a server cleanly: uvicorn stops accepting connections and
lets the requests in flight finish (long polls end within a second, see
``server.WAIT_SLICE``), then the app's lifespan shutdown stops the requeuer (releasing
its lock) and closes the Redis client. The process then exits with status 0.
"""

import importlib.util
import logging
import os
import signal
import sys
from typing import Any, Dict

from .settings import SETTINGS_ENV, ServerSettings, describe

log = logging.getLogger("sharq_fast.http")

#: Most seconds a shutdown waits for requests in flight before cancelling them.
GRACEFUL_SHUTDOWN = 30


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def uvicorn_options(settings: ServerSettings) -> Dict[str, Any]:
    """uvicorn.run's keyword arguments for `settings`."""
    options: Dict[str, Any] = {
        "app": "sharq_fast.http.server:app_from_env",
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        # The C parser and event loop roughly double the requests/s of h11 + asyncio.
        "http": "httptools" if _available("httptools") else "h11",
        "loop": "uvloop" if _available("uvloop") else "asyncio",
        "lifespan": "on",
        "log_level": settings.log_level,
        "access_log": bool(settings.access_log),
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN,
        # Longer than clients' idle keep-alive (ProxyClient: 2 s), so that a client never
        # sends on a connection the server is closing.
        "timeout_keep_alive": 15,
    }
    if settings.access_log and settings.access_log != "-":
        options["log_config"] = _log_config(settings.access_log)
    return options


def _log_config(access_log_path: str) -> Dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config: Dict[str, Any] = {**LOGGING_CONFIG, "handlers": dict(LOGGING_CONFIG["handlers"])}
    config["handlers"]["access"] = {
        "formatter": "access", "class": "logging.FileHandler", "filename": access_log_path,
    }
    return config


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status."""
    try:
        import uvicorn
    except ImportError:
        raise SystemExit(
            "sharq-fast serve needs uvicorn: pip install 'sharq-fast[server]'"
        ) from None
    # The workers (and the app factory in this process) read their settings from here.
    os.environ[SETTINGS_ENV] = settings.to_env()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("sharq-fast serve on http://%s:%d: %s", settings.host, settings.port, describe(settings))

    def stop(signum: int, frame: Any) -> None:
        # uvicorn re-raises the signal once it has shut down gracefully; end with 0 then.
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    status = 0
    try:
        uvicorn.run(**uvicorn_options(settings))
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info("sharq-fast serve stopped (exit status %d)", status)
    return status

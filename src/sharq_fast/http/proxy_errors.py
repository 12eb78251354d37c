"""The exceptions of the proxy clients: one per kind of HTTP answer, with what the
server said (``status_code``, ``body``) and which request got it."""

from typing import Any, Optional

from ..exceptions import BadArgumentException, SharqException


class ProxyError(SharqException):
    """The server answered an error (or could not be reached: ProxyConnectionError)."""

    def __init__(self, message: str, *, status_code: Optional[int] = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class ProxyBadRequest(ProxyError, BadArgumentException):
    """400: the server refused the arguments (also a BadArgumentException)."""

    def __init__(self, message: str, *, status_code: Optional[int] = None, body: Any = None) -> None:
        ProxyError.__init__(self, message, status_code=status_code, body=body)
        self.field = None
        self.index = None
        self.enqueued = 0


class ProxyAuthError(ProxyError):
    """401/403: missing or wrong credentials (the ``auth=`` argument)."""


class UnsupportedByServer(ProxyError):
    """The server has no such route (404/405): e.g. batch routes on Plivo's sharq-server,
    or /deletequeue/ on its PyPI release."""


class PayloadTooLarge(ProxyError):
    """413: the request body is over the server's limit (``--max-body-size``)."""


class QueueFull(ProxyError):
    """429: the payload's ``max_queued_length`` is reached; ``current_queue_length``
    says how many jobs wait in the queue."""

    def __init__(self, body: Any, method: str, path: str) -> None:
        length = body.get("current_queue_length") if isinstance(body, dict) else None
        super().__init__(f"{method} {path}: 429 queue full ({length} jobs queued)", status_code=429, body=body)
        self.current_queue_length = length


class ProxyServerError(ProxyError):
    """5xx: the server failed (503: its Redis is unavailable). Plivo's sharq-server also
    answers most bad input with a 500."""


class ProxyConnectionError(ProxyError):
    """The server could not be reached, or did not answer within the timeout."""

    @classmethod
    def from_httpx(cls, exc: Exception, method: str, url: str) -> "ProxyConnectionError":
        """From an httpx transport error."""
        kind = type(exc).__name__
        return cls(f"{method} {url}: {kind}: {exc or 'no details'} (is the server running? is the timeout long enough?)")


def _message(body: Any) -> str:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, str):
        text = " ".join(body.split())
        return text[:200] or "(empty body)"
    return repr(body)[:200]


def error_for(status: int, body: Any, method: str, path: str) -> ProxyError:
    """The exception for an unexpected answer."""
    text = f"{method} {path}: {status}: {_message(body)}"
    if status == 400:
        return ProxyBadRequest(text, status_code=status, body=body)
    if status in (401, 403):
        return ProxyAuthError(text, status_code=status, body=body)
    if status in (404, 405):
        return UnsupportedByServer(text, status_code=status, body=body)
    if status == 413:
        return PayloadTooLarge(text, status_code=status, body=body)
    if status >= 500:
        return ProxyServerError(text, status_code=status, body=body)
    return ProxyError(text, status_code=status, body=body)

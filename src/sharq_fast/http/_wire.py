"""JSON bodies, request parsing and HTTP errors, shared by the route handlers.

Answers are JSON as sharq-server's Flask ``jsonify`` writes them: compact, keys sorted,
a trailing newline, ``Content-Type: application/json``. Handlers build their dicts with
keys in sorted order (payloads are sent as they came), so no sorting is done per request.
"""

from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl

import msgspec

JSON = b"application/json"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def dumps(obj: Any) -> bytes:
    """The JSON body of `obj` (with jsonify's trailing newline)."""
    return _encode(obj) + b"\n"


# Constant answers, encoded once.
INDEX = dumps({"message": "Hello, SharQ!"})
FAILURE = dumps({"status": "failure"})
SUCCESS = dumps({"status": "success"})
QUEUED = dumps({"status": "queued"})


class HTTPError(Exception):
    """An answer other than success: `status`, a JSON body ``{"message", "status":
    "failure"}`` plus `extra` fields, and `headers`."""

    def __init__(
        self, status: int, message: str, *, headers: Optional[List[Tuple[bytes, bytes]]] = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.extra = extra

    def body(self) -> bytes:
        """The JSON body, keys sorted."""
        fields = dict(self.extra, message=self.message, status="failure")
        return dumps({key: fields[key] for key in sorted(fields)})


def bad_request(message: str) -> HTTPError:
    """A 400 with `message`."""
    return HTTPError(400, message)


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body; 400 when it is not JSON."""
    if not body.strip():
        raise bad_request("the request body is empty: expected a JSON object")
    try:
        return _decode(body)
    except msgspec.DecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


def json_object(body: bytes, *, empty_ok: bool = False) -> Dict[str, Any]:
    """The JSON object of a request body; 400 when it is something else. With
    `empty_ok`, an empty body is ``{}``."""
    if empty_ok and not body.strip():
        return {}
    value = decode_json(body)
    if not isinstance(value, dict):
        raise bad_request(f"the request body must be a JSON object, not {_json_kind(value)}")
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def query_params(query: bytes) -> Dict[str, str]:
    """The query string's parameters (the last value of a repeated one)."""
    if not query:
        return {}
    try:
        return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise bad_request(f"bad query string: {exc}") from None


def number_param(params: Dict[str, str], name: str, *, low: float, high: float, integer: bool = False) -> Optional[float]:
    """The number in query parameter `name` (None when absent); 400 unless low <= n <= high."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also false for nan
        kind = "an integer" if integer else "a number"
        raise bad_request(f"`{name}` must be {kind} from {low:g} to {high:g}, got {raw!r}")
    return value

"""Optional authentication: a bearer token and/or HTTP basic auth (sharq-server had none;
its deployments put nginx basic auth in front of it)."""

import base64
import binascii
import hmac
from typing import List, Optional, Sequence, Tuple

from ._wire import HTTPError


class Authenticator:
    """Checks the Authorization header against the configured credentials, in constant
    time. Accepts ``Bearer TOKEN`` when a token is set, ``Basic base64(user:password)``
    when basic auth is set (either one when both are)."""

    def __init__(self, token: Optional[str] = None, basic: Optional[str] = None) -> None:
        self.token = token.encode() if token else None
        self.basic = basic.encode() if basic else None
        schemes = (["Bearer"] if token else []) + (["Basic"] if basic else [])
        # One challenge per scheme (RFC 9110 allows a list in one header).
        self.challenge: List[Tuple[bytes, bytes]] = [
            (b"www-authenticate", ", ".join(f'{scheme} realm="sharq"' for scheme in schemes).encode())
        ]

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured."""
        return bool(self.token or self.basic)

    def check(self, headers: Sequence[Tuple[bytes, bytes]]) -> None:
        """Return if the request's credentials are right; raise a 401 otherwise."""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, credentials = value.strip().partition(b" ")
                scheme = scheme.lower()
                credentials = credentials.strip()
                if scheme == b"bearer" and self.token is not None and hmac.compare_digest(credentials, self.token):
                    return
                if scheme == b"basic" and self.basic is not None:
                    try:
                        decoded = base64.b64decode(credentials, validate=True)
                    except (binascii.Error, ValueError):
                        decoded = b""
                    if hmac.compare_digest(decoded, self.basic):
                        return
                raise HTTPError(401, "wrong credentials", headers=self.challenge)
        raise HTTPError(401, "authentication required: send an Authorization header", headers=self.challenge)

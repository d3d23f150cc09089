"""Errors the gateway raises, each carrying its facts as attributes.

GatewayError
├── ConfigError     bad operator input; stops start-up
├── PayloadError    a device sent something we cannot decode; dead-lettered
└── SinkError       InfluxDB refused a write or is unreachable; retried
    └── PointsRejected   the server refused some points for good (4xx)
"""

from __future__ import annotations

import os
import ssl

__all__ = [
    "ConfigError",
    "describe_connection_failure",
    "GatewayError",
    "PayloadError",
    "PointsRejected",
    "SinkError",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is wrong: names the file, the key and the reason."""

    def __init__(self, reason: str, *, key: str = "", source: str = "") -> None:
        self.reason = reason
        self.key = key
        self.source = source
        where = source + (f": {key}" if key else "") if source else key
        super().__init__(f"{where}: {reason}" if where else reason)


class PayloadError(GatewayError):
    """A payload could not be turned into points; `reason` is a short code."""

    def __init__(self, reason: str, detail: str, *, topic: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.topic = topic
        super().__init__(
            f"{reason}: {detail}" + (f" (topic {topic!r})" if topic else "")
        )


class SinkError(GatewayError):
    """A write to the sink failed and may succeed if retried."""

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None
    ) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class PointsRejected(SinkError):
    """The server refused a write for good: retrying the same lines cannot help."""

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None, body: str = ""
    ) -> None:
        self.body = body
        super().__init__(message, url=url, status=status)


# How far down a chain of wrapped exceptions to look for the system's reason.
MAX_CAUSE_DEPTH = 8


def describe_connection_failure(exc: BaseException) -> str:
    """Name why a connection failed in words an operator can act on.

    HTTP and MQTT clients wrap the OSError several levels deep and word it
    "Connect call failed ('127.0.0.1', 8086)" or "All connection attempts
    failed"; the errno underneath says "Connection refused". TLS errors are
    OSErrors too, but their errno is OpenSSL's code, not the system's.
    """
    cause: BaseException | None = exc
    for _ in range(MAX_CAUSE_DEPTH):
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or cause}"
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__

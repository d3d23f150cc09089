"""Camera URLs: which kind of source a URL names, and how to show it safely.

Camera URLs often carry a user name and password (rtsp://admin:secret@...).
Libraries put the URL they were given into their error messages, so every
message that leaves a camera's code goes through `redact_text` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["SourceKind", "redact_text", "redact_url", "source_kind"]

SourceKind = Literal["rtsp", "http", "file"]
REDACTED = "***"


def source_kind(url: str) -> SourceKind:
    """Return the kind of source a camera URL names; raise ValueError if none."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("", "file"):
        return "file"
    raise ValueError(
        f"camera URL scheme {scheme!r} is not one of rtsp, rtsps, http, https, "
        "file (or a plain path)"
    )


def file_path(url: str) -> Path:
    """Return the local path a file:// URL or a plain path names."""
    if url.lower().startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    return Path(url)


def redact_url(url: str) -> str:
    """Return the URL with any user name and password replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def redact_text(text: str, url: str) -> str:
    """Remove a camera URL's credentials from a message that may quote them.

    The URL is replaced by its redacted form; the password and user name are
    also removed where they appear alone or percent-decoded.
    """
    safe = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return safe
    for secret in (parts.password, parts.username):
        if secret:
            for form in {secret, unquote(secret)}:
                if len(form) >= 3:
                    safe = safe.replace(form, REDACTED)
    return safe

"""Log lines for people or for log collectors, with device ids and no secrets.

Two formats: text (one readable line) and JSON Lines (one object per line,
for Loki, Elasticsearch or journald). A line about a device or camera carries
its id: as `device_id=...` at the end of a text line, as a key in JSON. The id
comes from `extra={"device_id": ...}` on the call, or from the context a task
declares with `about_device`, `about_camera` or `enter_subject`, so the lines of
libraries and helpers called while handling one message carry it too.

Every line, exception tracebacks included, passes through a `Redactor` that
replaces the configured secrets (passwords, tokens, database URLs) and
credentials in URLs or Authorization headers with `***`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel

__all__ = [
    "CAMERA_ID",
    "DEVICE_ID",
    "JsonFormatter",
    "Redactor",
    "TextFormatter",
    "about_camera",
    "about_device",
    "enter_subject",
    "leave_subject",
    "secrets_in",
    "setup_logging",
]

DEVICE_ID = "device_id"
CAMERA_ID = "camera_id"
SUBJECT_KEYS = (DEVICE_ID, CAMERA_ID)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MASK = "***"
# A secret shorter than this is not masked on its own: masking "a" or "1"
# would garble every line while hiding nothing worth hiding.
MIN_SECRET_CHARS = 4
# httpx logs every request at info, and gmqtt warns on every failed connection
# attempt (with a traceback); the gateway logs each change of state once.
NOISY_LOGGERS = ("gmqtt", "gateway.sources.gmqtt", "httpx")
LogFormat = Literal["text", "json"]

# user:password@ in any URL; Authorization headers; key=value pairs whose key
# says it holds a secret (query strings, DSNs, dumped settings).
_URL_PASSWORD = re.compile(
    r"(?P<keep>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)", re.IGNORECASE
)
_AUTH_HEADER = re.compile(
    r"(?P<keep>\b(?:Bearer|Token|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE
)
_SECRET_PAIR = re.compile(
    r"(?P<keep>\b(?:password|passwd|pwd|token|secret|api_key|apikey)"
    r"[\"']?\s*[=:]\s*[\"']?)(?!\*\*\*)[^\s\"'&,;)}]+",
    re.IGNORECASE,
)

# What the running task is handling: a function and its argument giving
# {key: id}, so the hot path only sets a reference (a few hundred ns a
# message) and the ids are worked out only when a line is logged.
Subject = tuple[Callable[[str], Mapping[str, str]], str]
_subject: ContextVar[Subject | None] = ContextVar("decor_log_subject", default=None)


class Redactor:
    """Replace secrets in text with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        """Return `text` with every known secret and credential masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in (_URL_PASSWORD, _AUTH_HEADER, _SECRET_PAIR):
            text = pattern.sub(lambda m: m.group("keep") + MASK, text)
        return text


class TextFormatter(logging.Formatter):
    """One line for people; `device_id=...` / `camera_id=...` appended."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a redacted text line."""
        text = super().format(record)
        ids = " ".join(f"{key}={value}" for key, value in _ids_of(record).items())
        if ids:
            # Before any traceback, so the id stays on the line it belongs to.
            first, newline, rest = text.partition("\n")
            text = f"{first} [{ids}]{newline}{rest}"
        return self._redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one redacted JSON line."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        document.update(_ids_of(record))
        if record.exc_info:
            document["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exception"] = self._redact(record.exc_text)
        if record.stack_info:
            document["stack"] = self._redact(self.formatStack(record.stack_info))
        return orjson.dumps(document, default=str).decode()


def setup_logging(
    level: str, log_format: LogFormat = "text", secrets: Iterable[str] = ()
) -> None:
    """Send the process's log lines to stderr in `log_format`, secrets masked."""
    redactor = Redactor(secrets)
    formatter: logging.Formatter = (
        JsonFormatter(redactor) if log_format == "json" else TextFormatter(redactor)
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    library_level = logging.DEBUG if level == "debug" else logging.ERROR
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(library_level)


def secrets_in(settings: BaseModel) -> list[str]:
    """Return the values of every field marked `repr=False` in the settings.

    The configuration marks its passwords, tokens and database URL so; the
    URL's own password is returned as well, so it is masked wherever it shows.
    """
    found: list[str] = []
    for name, info in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            found.extend(secrets_in(value))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    found.extend(secrets_in(item))
        elif not info.repr and isinstance(value, str) and value:
            found.append(value)
            match = _URL_PASSWORD.search(value)
            if match:
                found.append(match.group(0)[len(match.group("keep")) :])
    return found


@contextlib.contextmanager
def about_device(device_id: str) -> Iterator[None]:
    """Tag the lines logged in this block (in this task) with `device_id`."""
    with _about({DEVICE_ID: device_id}):
        yield


@contextlib.contextmanager
def about_camera(camera_id: str) -> Iterator[None]:
    """Tag the lines logged in this block (in this task) with `camera_id`.

    The seam for the camera sampler: wrap each camera's task body in it.
    """
    with _about({CAMERA_ID: camera_id}):
        yield


def enter_subject(ids: Callable[[str], Mapping[str, str]], key: str) -> Token[Any]:
    """Tag the lines this task logs from now on with `ids(key)`; return a token.

    `ids` is called only when a line is logged. The message path calls this
    per message (with `Gateway.device_ids` and the topic) instead of a
    context manager, which costs several times as much; pass the token to
    `leave_subject` in a `finally`.
    """
    return _subject.set((ids, key))


def leave_subject(token: Token[Any]) -> None:
    """Undo the `enter_subject` that returned `token`."""
    _subject.reset(token)


@contextlib.contextmanager
def _about(ids: Mapping[str, str]) -> Iterator[None]:
    token = enter_subject(lambda _: ids, "")
    try:
        yield
    finally:
        leave_subject(token)


def _ids_of(record: logging.LogRecord) -> dict[str, str]:
    """Return the device and camera ids of a record: its extra, else the task's."""
    ids = {
        key: str(getattr(record, key)) for key in SUBJECT_KEYS if hasattr(record, key)
    }
    subject = _subject.get()
    if subject is not None:
        lookup, key = subject
        try:
            found = lookup(key)
        except Exception:  # noqa: BLE001 - an id must never cost a log line
            found = {}
        for key in SUBJECT_KEYS:
            if key not in ids and found.get(key):
                ids[key] = found[key]
    return ids

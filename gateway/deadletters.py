"""Keep everything the gateway refused, with its reason, where an operator can read it.

Each entry is one JSON line: time, kind (message / field / point), reason code,
a human detail, the topic, and the payload or line. A payload that is valid
UTF-8 is kept as text, anything else as base64, so nothing is altered.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DeadLetterStore"]

logger = logging.getLogger(__name__)

MAX_KEPT_PAYLOAD_BYTES = 256 * 1024


class DeadLetterStore:
    """Append refused input to a JSON Lines file, rotating it past a size."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._file: Any = None
        self.entries_written = 0

    def add(
        self,
        kind: str,
        reason: str,
        detail: str,
        *,
        topic: str = "",
        payload: bytes | str | None = None,
    ) -> None:
        """Record one refused message, field or point."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kind": kind,
            "reason": reason,
            "detail": detail,
        }
        if topic:
            entry["topic"] = topic
        if payload is not None:
            entry.update(_encode_payload(payload))
        self._write(orjson.dumps(entry) + b"\n")

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, line: bytes) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab", buffering=64 * 1024)  # noqa: SIM115
            self._file.write(line)
            self._file.flush()
            self.entries_written += 1
            if self._file.tell() > self._max_bytes:
                self._rotate()
        except OSError as exc:
            # The dead-letter file is where rejects go; if it cannot be written
            # the operator must hear about it in the log instead.
            logger.error("Cannot write dead letter to %s: %s", self.path, exc)

    def _rotate(self) -> None:
        self.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        logger.info("Rotated dead-letter file %s (kept one old copy)", self.path)


def _encode_payload(payload: bytes | str) -> dict[str, Any]:
    if isinstance(payload, str):
        return {"payload": payload[:MAX_KEPT_PAYLOAD_BYTES]}
    truncated = len(payload) > MAX_KEPT_PAYLOAD_BYTES
    payload = payload[:MAX_KEPT_PAYLOAD_BYTES]
    try:
        kept: dict[str, Any] = {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        kept = {"payload_base64": base64.b64encode(payload).decode("ascii")}
    if truncated:
        kept["payload_truncated"] = True
    return kept

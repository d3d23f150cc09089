"""Logging helpers: warnings that would repeat for every message, rate-limited."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

__all__ = ["RateLimitedLogger"]

MAX_TRACKED_KEYS = 10_000


class RateLimitedLogger:
    """Log at most one line per key per interval; count what was held back.

    A device that sends NaN every second must not fill the log: the first
    warning is logged, the repeats are counted and reported with the next one.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last_logged: dict[Hashable, float] = {}
        self._held_back: dict[Hashable, int] = {}

    def warning(self, key: Hashable, message: str, *args: object) -> None:
        """Log a warning unless one with this key was logged recently."""
        self._log(logging.WARNING, key, message, args)

    def _log(
        self, level: int, key: Hashable, message: str, args: tuple[object, ...]
    ) -> None:
        now = time.monotonic()
        last = self._last_logged.get(key)
        if last is not None and now - last < self._interval_s:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return
        if len(self._last_logged) >= MAX_TRACKED_KEYS:
            self._last_logged.clear()
            self._held_back.clear()
        self._last_logged[key] = now
        held = self._held_back.pop(key, 0)
        if held:
            message += " (and %d more like it since the last report)"
            args = (*args, held)
        self._logger.log(level, message, *args)

"""Batch encoded points and deliver them to a sink, retrying until stored.

Points wait in a bounded in-memory buffer. A batch goes out when it is full or
when the flush interval passes. When the sink is unreachable the same batch is
retried with capped, jittered backoff while new points keep buffering; once
the buffer is full, `add` waits, which holds back the MQTT acknowledgements
and so the broker, instead of dropping anything.

A request the server refuses for good (4xx) is split in halves until the
refused lines are isolated; they go to the dead-letter store with the server's
reason, and the rest is stored. A "partial write" answer means the server
already stored the other points, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from gateway.config import InfluxConfig
from gateway.deadletters import DeadLetterStore
from gateway.errors import PointsRejected, SinkError
from gateway.points import escape_measurement, escape_tag
from gateway.sinks.base import Sink, classify_rejection
from gateway.stats import GatewayStats

__all__ = ["BatchWriter"]

logger = logging.getLogger(__name__)

SHUTDOWN_FLUSH_TIMEOUT_S = 10.0


class BatchWriter:
    """Own the point buffer and the one task that writes it to the sink."""

    def __init__(
        self,
        sink: Sink,
        config: InfluxConfig,
        stats: GatewayStats,
        dead_letters: DeadLetterStore,
    ) -> None:
        self.sink = sink
        self._config = config
        self._stats = stats
        self._dead_letters = dead_letters
        self._buffer: list[str] = []
        self._batch_ready = asyncio.Event()
        self._room = asyncio.Condition()
        self._down_since: float | None = None
        self._opened = False
        self.ready = asyncio.Event()

    @property
    def buffered(self) -> int:
        """Return how many points wait in memory."""
        return len(self._buffer)

    async def add(self, lines: list[str]) -> None:
        """Buffer encoded lines, waiting while the buffer is full."""
        limit = self._config.max_buffered_points
        if len(self._buffer) >= limit:
            async with self._room:
                await self._room.wait_for(lambda: len(self._buffer) < limit)
        self._buffer.extend(lines)
        self._stats.points_buffered = len(self._buffer)
        if len(self._buffer) >= self._config.batch_size:
            self._batch_ready.set()

    async def run(self) -> None:
        """Open the sink, then flush batches until cancelled."""
        await self._open_with_retry()
        while True:
            try:
                await asyncio.wait_for(
                    self._batch_ready.wait(), timeout=self._config.flush_interval_s
                )
            except asyncio.TimeoutError:
                pass
            self._batch_ready.clear()
            while self._buffer:
                await self._flush_one_batch()
                if len(self._buffer) < self._config.batch_size:
                    break

    async def flush_remaining(self, timeout_s: float = SHUTDOWN_FLUSH_TIMEOUT_S) -> int:
        """Write what is buffered, within a time limit; return points left unwritten.

        Points that cannot be written in time go to the dead-letter store as
        line protocol, so they can be replayed by hand rather than vanish.
        """
        if self._buffer and self._opened:
            try:
                async with asyncio.timeout(timeout_s):
                    while self._buffer:
                        await self._flush_one_batch()
            except TimeoutError:
                pass
        left = self._buffer
        self._buffer = []
        for line in left:
            self._dead_letters.add(
                "point",
                "unwritten_at_shutdown",
                f"{self.sink.description} did not take it before shutdown",
                payload=line,
            )
        if left:
            logger.error(
                "%d points were not written before shutdown; kept in %s",
                len(left),
                self._dead_letters.path,
            )
        return len(left)

    async def _open_with_retry(self) -> None:
        delay_s = self._config.retry_min_s
        while True:
            try:
                await self.sink.open()
                break
            except SinkError as exc:
                self._note_down(exc)
                await _sleep_jittered(delay_s)
                delay_s = min(delay_s * 2, self._config.retry_max_s)
        self._opened = True
        self.ready.set()
        logger.info("Writing to %s", self.sink.description)
        self._note_up()

    async def _flush_one_batch(self) -> None:
        batch = self._buffer[: self._config.batch_size]
        await self._deliver(batch)
        del self._buffer[: len(batch)]
        self._stats.points_buffered = len(self._buffer)
        async with self._room:
            self._room.notify_all()

    async def _deliver(self, lines: list[str]) -> None:
        """Store `lines`, retrying transient failures; never returns early."""
        delay_s = self._config.retry_min_s
        while True:
            self._stats.write_requests += 1
            try:
                await self.sink.write(lines)
            except PointsRejected as exc:
                await self._handle_rejection(lines, exc)
                return
            except SinkError as exc:
                self._stats.write_failures += 1
                self._note_down(exc)
                await _sleep_jittered(delay_s)
                delay_s = min(delay_s * 2, self._config.retry_max_s)
                continue
            self._stats.points_written += len(lines)
            self._note_up()
            return

    async def _handle_rejection(self, lines: list[str], exc: PointsRejected) -> None:
        reason, facts = classify_rejection(exc.body)
        if "partial write" in exc.body:
            # The server stored every point it could; only the refused ones
            # are lost to it. Resending would duplicate the others.
            self._dead_letter_partial(lines, reason, facts, exc)
            return
        if len(lines) == 1:
            self._stats.points_rejected[reason] += 1
            self._dead_letters.add("point", reason, exc.body, payload=lines[0])
            logger.warning(
                "%s refused a point (%s): %s; kept in %s",
                self.sink.description,
                reason,
                exc.body[:200],
                self._dead_letters.path,
            )
            return
        # Whole request refused: split it to find the bad lines and keep the rest.
        middle = len(lines) // 2
        await self._deliver(lines[:middle])
        await self._deliver(lines[middle:])

    def _dead_letter_partial(
        self, lines: list[str], reason: str, facts: dict[str, str], exc: PointsRejected
    ) -> None:
        refused = lines
        if reason == "unparsable_line" and "lines" in facts:
            # InfluxDB quotes the lines it could not parse and stored the rest.
            quoted = set(facts["lines"].split("\n"))
            refused = [line for line in lines if line in quoted] or lines
        if reason == "field_type_conflict":
            refused = _lines_with_field(lines, facts["measurement"], facts["field"])
            logger.warning(
                "Field %r of measurement %r already exists as type %s in %s; "
                "%d point(s) of type %s refused and kept in %s",
                facts["field"],
                facts["measurement"],
                facts["existing"],
                self.sink.description,
                len(refused),
                facts["attempted"],
                self._dead_letters.path,
            )
        else:
            logger.warning(
                "%s stored part of a batch and refused the rest: %s",
                self.sink.description,
                exc.body[:300],
            )
        for line in refused:
            self._dead_letters.add("point", reason, exc.body, payload=line)
        self._stats.points_rejected[reason] += len(refused)
        self._stats.points_written += len(lines) - len(refused)

    def _note_down(self, exc: SinkError) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("%s; buffering and retrying with backoff", exc)
        else:
            logger.debug("Still failing: %s", exc)

    def _note_up(self) -> None:
        if self._down_since is None:
            return
        # The batch just written is still counted in the buffer.
        logger.info(
            "%s is back after %.1f s; writing the %d points buffered meanwhile",
            self.sink.description,
            time.monotonic() - self._down_since,
            self.buffered,
        )
        self._down_since = None


def _lines_with_field(lines: list[str], measurement: str, field: str) -> list[str]:
    """Pick the lines of `measurement` that carry field `field`."""
    prefix = escape_measurement(measurement)
    key = escape_tag(field) + "="
    picked = []
    for line in lines:
        if not line.startswith(prefix) or line[len(prefix) : len(prefix) + 1] not in (
            ",",
            " ",
        ):
            continue
        field_part = _field_section(line)
        if field_part.startswith(key) or ("," + key) in field_part:
            picked.append(line)
    return picked or lines


def _field_section(line: str) -> str:
    # The field set starts after the first unescaped space.
    index = 0
    while True:
        index = line.find(" ", index)
        if index <= 0 or line[index - 1] != "\\":
            return line[index + 1 :] if index > 0 else ""
        index += 1


async def _sleep_jittered(delay_s: float) -> None:
    await asyncio.sleep(random.uniform(delay_s / 2, delay_s))

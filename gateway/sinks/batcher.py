"""Batch encoded points and deliver them to a sink, retrying until stored.

Points wait in a bounded in-memory buffer. A batch goes out when it is full or
when the flush interval passes. When the sink is unreachable the same batch is
retried with capped, jittered backoff while new points keep buffering; once
the buffer is full, `add` waits, which holds back the MQTT acknowledgements
and so the broker, instead of dropping anything.

A request the server refuses for good (4xx) is split in halves until the
refused lines are isolated; they go to the dead-letter store with the server's
reason, and the rest is stored. A "partial write" answer means the server
stored the points it did not refuse, but InfluxDB names only its first reason
and counts the points dropped: lines that reason covers are dead-lettered and,
while the count is not made up, the lines not yet named are sent again (a
stored point is overwritten by itself) to learn the next reason, a bounded
number of times. A partial write fully explained by its answer is never resent.

A request refused as too large (413, usually from a proxy) teaches the writer
the server's size limit: it lies between the largest body accepted and the
smallest refused. Batches are then cut by bytes, in order, into requests below
it, for this flush and later ones. A point too large to go alone is sent once,
alone, and kept as a dead letter when that is refused too.

Lines leave the buffer as soon as they are settled (stored or dead-lettered),
so a shutdown in the middle of a split keeps only what was not written.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from gateway.config import InfluxConfig
from gateway.deadletters import DeadLetterStore
from gateway.errors import PointsRejected, SinkError
from gateway.sinks.base import (
    LineFacts,
    Sink,
    body_bytes,
    classify_rejection,
    dropped_count,
    read_line,
    summarize_answer,
)
from gateway.stats import GatewayStats

__all__ = ["BatchWriter", "RequestSizeLimit"]

logger = logging.getLogger(__name__)

SHUTDOWN_FLUSH_TIMEOUT_S = 10.0
# Requests spent on one partial write, the first included, before the lines
# still not told apart are dead-lettered as UNATTRIBUTED.
MAX_PARTIAL_WRITE_REQUESTS = 8
UNATTRIBUTED = "partial_write_unattributed"
# InfluxDB keeps field types per shard, and no shard group spans less than an
# hour, aligned to the hour: points of one hour share a shard.
SHARD_GROUP_MIN_NS = 3_600_000_000_000


class RequestSizeLimit:
    """What is known of the server's limit on a write body, in bytes.

    The limit lies above `accepted_bytes` (the largest body stored) and below
    `refused_bytes` (the smallest body refused as too large). A proxy's limit
    rarely changes, so this is kept for the life of the writer; if it does
    change, an answer that contradicts what was known replaces it.
    """

    def __init__(self, configured_bytes: int | None = None) -> None:
        self.configured_bytes = configured_bytes
        self.accepted_bytes = 0
        self.refused_bytes: int | None = None

    def chunk_bytes(self) -> int | None:
        """Return the largest body to send now, or None when nothing limits it."""
        limits = [] if self.configured_bytes is None else [self.configured_bytes]
        if self.refused_bytes is not None:
            # Send what is known to pass when that is at least half the
            # smallest refusal; else try half of it, so that each refusal at
            # least halves what is tried and a flush meets only a few.
            limits.append(max(self.accepted_bytes, self.refused_bytes // 2))
        return min(limits) if limits else None

    def note_accepted(self, size: int) -> None:
        """Remember that a body of `size` bytes was stored."""
        if self.refused_bytes is not None and size >= self.refused_bytes:
            self.refused_bytes = None  # the limit went up
        self.accepted_bytes = max(self.accepted_bytes, size)

    def note_refused(self, size: int) -> None:
        """Remember that a body of `size` bytes was refused as too large."""
        if size <= self.accepted_bytes:
            self.accepted_bytes = 0  # the limit went down
        if self.refused_bytes is None or size < self.refused_bytes:
            self.refused_bytes = size

    def describe(self) -> str:
        """Say what is known of the limit, for an operator."""
        refused = "unknown" if self.refused_bytes is None else _mb(self.refused_bytes)
        text = f"< {refused}"
        if self.accepted_bytes:
            text += f"; {_mb(self.accepted_bytes)} was accepted"
        return text


class BatchWriter:
    """Own the point buffer and the one task that writes it to the sink.

    Args:
        max_request_bytes: largest write body to send, in bytes; None learns
            the limit from 413 answers alone.
    """

    def __init__(
        self,
        sink: Sink,
        config: InfluxConfig,
        stats: GatewayStats,
        dead_letters: DeadLetterStore,
        max_request_bytes: int | None = None,
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
        if max_request_bytes is None:
            # Not given by the caller: the configured limit, if any.
            max_request_bytes = config.max_request_bytes
        self.size_limit = RequestSizeLimit(max_request_bytes)
        self.ready = asyncio.Event()

    @property
    def buffered(self) -> int:
        """Return how many points wait in memory."""
        return len(self._buffer)

    async def add(self, lines: list[str]) -> None:
        """Buffer encoded lines, waiting while the buffer is full.

        A message's lines are taken whole once there is room for one more
        point, so the buffer may exceed max_buffered_points by one message's
        points less one; splitting a message would store half of it.
        """
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
        Those of a request cut short by the time limit may already be stored;
        replaying them is harmless, as InfluxDB overwrites an identical point.
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
        self._stats.points_buffered = 0
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
        """Write the oldest batch; each part leaves the buffer once settled."""
        # Parts still to send, the next one last. Together they are always the
        # front of the buffer, in order, so settling a part drops a prefix.
        parts = [self._buffer[: self._config.batch_size]]
        while parts:
            part = parts.pop()
            size = body_bytes(part)
            chunk_bytes = self.size_limit.chunk_bytes()
            if len(part) > 1 and chunk_bytes is not None and size > chunk_bytes:
                # Cut from everything still to send, so no sliver is left
                # between parts; the rest is cut on its turn, to the limit
                # known by then.
                rest = part + [line for later in reversed(parts) for line in later]
                first, rest = _front_by_bytes(rest, chunk_bytes)
                parts = [rest, first] if rest else [first]
                continue
            refusal = await self._send(part, size)
            if refusal is None:
                await self._settle(len(part))
                continue
            parts.extend(reversed(await self._handle_rejection(part, size, refusal)))

    async def _send(self, lines: list[str], size: int) -> PointsRejected | None:
        """Store `lines`, retrying transient failures; return a refusal for good."""
        delay_s = self._config.retry_min_s
        while True:
            self._stats.write_requests += 1
            try:
                await self.sink.write(lines)
            except PointsRejected as exc:
                return exc
            except SinkError as exc:
                self._stats.write_failures += 1
                self._note_down(exc)
                await _sleep_jittered(delay_s)
                delay_s = min(delay_s * 2, self._config.retry_max_s)
                continue
            self._stats.points_written += len(lines)
            self.size_limit.note_accepted(size)
            self._note_up()
            return None

    async def _handle_rejection(
        self, lines: list[str], size: int, exc: PointsRejected
    ) -> list[list[str]]:
        """Settle what the refusal decides; return the parts to send instead."""
        reason, _ = classify_rejection(exc.body, exc.status)
        if "partial write" in exc.body:
            # The server stored every point it could; only the refused ones
            # are lost to it, and they are told apart from the answer.
            await self._settle_partial_write(lines, exc)
            await self._settle(len(lines))
            return []
        if reason == "too_large":
            self.size_limit.note_refused(size)
            if len(lines) > 1:
                # Sent again in parts below the new limit (see _flush_one_batch).
                logger.info(
                    "%s refused %s as too large; sending at most %s per request",
                    self.sink.description,
                    _mb(size),
                    _mb(self.size_limit.chunk_bytes() or 0),
                )
                return [lines]
            # The point's own size: the body also carries its newline.
            detail = _too_large_detail(size - 1, self.size_limit, exc.body)
        elif len(lines) > 1:
            # Whole request refused: halve it to find the bad lines, keep the rest.
            middle = len(lines) // 2
            return [lines[:middle], lines[middle:]]
        else:
            detail = exc.body
        self._reject_point(lines[0], reason, detail)
        await self._settle(1)
        return []

    async def _settle(self, count: int) -> None:
        """Drop the first `count` buffered lines, now stored or dead-lettered."""
        del self._buffer[:count]
        self._stats.points_buffered = len(self._buffer)
        async with self._room:
            self._room.notify_all()

    def _reject_point(self, line: str, reason: str, detail: str) -> None:
        self._stats.points_rejected[reason] += 1
        self._dead_letters.add("point", reason, detail, payload=line)
        logger.warning(
            "%s refused a point (%s): %s; kept in %s",
            self.sink.description,
            reason,
            summarize_answer(detail),
            self._dead_letters.path,
        )

    async def _settle_partial_write(
        self, lines: list[str], exc: PointsRejected
    ) -> None:
        """Tell the stored lines of a partial write from the refused; count both.

        InfluxDB names one refusal reason (the first type conflict, or the
        lines it could not parse) and how many points it dropped. When the
        lines that reason covers fall short of that count, or the answer
        cannot be trusted to cover the request, the other lines are sent
        again to learn the next reason, until the answer is fully explained.
        """
        pending = rest = lines
        for requests in range(1, MAX_PARTIAL_WRITE_REQUESTS + 1):
            refused, explained = _attribute(pending, exc)
            self._dead_letter_refused(pending, refused, exc)
            rest = [line for index, line in enumerate(pending) if index not in refused]
            if explained:
                self._stats.points_written += len(rest)
                return
            if not rest:
                # Known limitation: InfluxDB 1.x keeps field types per shard,
                # so a line naming a conflicting field in a shard where the
                # field is new was stored, yet it is dead-lettered with the
                # others (more lines named than dropped). Replaying it is
                # harmless; points_written counts it short. Only batches that
                # span shard groups and such a conflict meet this.
                return
            if not refused or requests == MAX_PARTIAL_WRITE_REQUESTS:
                break
            # Safe to send again: InfluxDB overwrites a point with the same
            # series and timestamp, so the lines it stored stay stored once,
            # and its answer names the next refusal.
            answer = await self._send(rest, body_bytes(rest))
            if answer is None:
                return
            pending, exc = rest, answer
        # Known limitation: lines no answer names are kept whole, though
        # some of them may be stored (say, all but the points a retention
        # policy dropped); replaying those is harmless, and points_written
        # counts them short.
        self._dead_letter_unattributed(rest, exc)

    def _dead_letter_refused(
        self, lines: list[str], refused: set[int], exc: PointsRejected
    ) -> None:
        if not refused:
            return
        reason, facts = classify_rejection(exc.body, exc.status)
        if reason == "field_type_conflict" and "field" in facts:
            attempted = sorted({_type_of(lines[i], facts) for i in refused})
            logger.warning(
                "Field %r of measurement %r already exists as type %s in %s; "
                "%d point(s) of type %s refused and kept in %s",
                facts["field"],
                facts["measurement"],
                facts["existing"],
                self.sink.description,
                len(refused),
                " or ".join(attempted),
                self._dead_letters.path,
            )
        else:
            logger.warning(
                "%s refused %d point(s) (%s): %s; kept in %s",
                self.sink.description,
                len(refused),
                reason,
                summarize_answer(exc.body),
                self._dead_letters.path,
            )
        for index in sorted(refused):
            self._dead_letters.add("point", reason, exc.body, payload=lines[index])
        self._stats.points_rejected[reason] += len(refused)

    def _dead_letter_unattributed(self, lines: list[str], exc: PointsRejected) -> None:
        if not lines:
            return
        logger.warning(
            "%s refused points it did not name (%s); %d point(s) that may or may "
            "not be stored are kept in %s as %s (replaying stored ones is harmless)",
            self.sink.description,
            summarize_answer(exc.body),
            len(lines),
            self._dead_letters.path,
            UNATTRIBUTED,
        )
        for line in lines:
            self._dead_letters.add("point", UNATTRIBUTED, exc.body, payload=line)
        self._stats.points_rejected[UNATTRIBUTED] += len(lines)

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


def _attribute(lines: list[str], exc: PointsRejected) -> tuple[set[int], bool]:
    """Return the indexes of `lines` the answer refuses, and whether it says all.

    "Says all" means every other line is known stored (a partial write) or
    nothing was stored and every line is named (a refusal of the whole).
    """
    reason, facts = classify_rejection(exc.body, exc.status)
    read = [read_line(line) for line in lines]
    refused: set[int] = set()
    if reason == "field_type_conflict" and "field" in facts:
        refused = _conflicting(read, facts)
    elif reason == "unparsable_line" and "lines" in facts:
        quoted = set(facts["lines"].split("\n"))
        refused = {index for index, line in enumerate(lines) if line in quoted}
    if "partial write" not in exc.body:
        # Nothing stored: one line alone is refused, whatever the reason.
        if len(lines) == 1:
            refused = {0}
        return refused, len(refused) == len(lines)
    if reason == "unparsable_line":
        # InfluxDB 1.x reports lines it could not parse only when it stored
        # every line it could: the rest is stored unless it is malformed too
        # (a long answer is cut short, leaving some quotes out).
        return refused, all(read[i] is not None for i in _others(lines, refused))
    return refused, len(refused) == dropped_count(exc.body) and _counts_hold(read)


def _conflicting(read: list[LineFacts | None], facts: dict[str, str]) -> set[int]:
    """Pick the lines giving the conflicting field a type other than the stored."""
    measurement, field, existing = (
        facts["measurement"],
        facts["field"],
        facts["existing"],
    )
    return {
        index
        for index, line in enumerate(read)
        if line is not None
        and line.measurement == measurement
        and line.field_types.get(field, existing) != existing
    }


def _counts_hold(read: list[LineFacts | None]) -> bool:
    """Tell whether a type-conflict answer's dropped count covers the request.

    It does not when InfluxDB 1.x could have hidden a refusal: a line it
    could not parse (a conflict answer never mentions those), a field given
    two types within the request (the conflict found last overrides the
    reason and count of earlier ones), or points of more than one shard (only
    one shard's answer comes back).
    """
    readable = [line for line in read if line is not None]
    if len(readable) < len(read):
        return False
    types: dict[tuple[str, str], str] = {}
    for line in readable:
        for field, kind in line.field_types.items():
            if types.setdefault((line.measurement, field), kind) != kind:
                return False
    hours = {
        None if line.time_ns is None else line.time_ns // SHARD_GROUP_MIN_NS
        for line in readable
    }
    return len(hours) == 1


def _others(lines: list[str], refused: set[int]) -> list[int]:
    return [index for index in range(len(lines)) if index not in refused]


def _type_of(line: str, facts: dict[str, str]) -> str:
    read = read_line(line)
    return "unknown" if read is None else read.field_types.get(facts["field"], "?")


def _front_by_bytes(lines: list[str], chunk_bytes: int) -> tuple[list[str], list[str]]:
    """Split off the longest front of `lines` whose body fits `chunk_bytes`.

    The front holds at least one line: whether the server takes a line larger
    than the limit is for the server to say.
    """
    total = 0
    for index, line in enumerate(lines):
        total += body_bytes([line])
        if total > chunk_bytes and index > 0:
            return lines[:index], lines[index:]
    return lines, []


def _too_large_detail(size: int, limit: RequestSizeLimit, body: str) -> str:
    return (
        f"point of {_mb(size)} ({size:,} bytes) exceeds the server's request "
        f"limit ({limit.describe()}); refused alone with HTTP 413: "
        f"{summarize_answer(body)}"
    )


def _mb(size: int) -> str:
    """Return a size in decimal megabytes (kilobytes when small), one decimal."""
    if size < 100_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


async def _sleep_jittered(delay_s: float) -> None:
    await asyncio.sleep(random.uniform(delay_s / 2, delay_s))

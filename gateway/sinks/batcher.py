"""Batch encoded points and deliver them to a sink, retrying until stored.

Points wait in a bounded in-memory buffer. A batch goes out when it is full,
when enough messages wait for their acknowledgement, or when the flush
interval passes. `add` hands back a future that completes once the points are
settled: stored, kept in the on-disk spool, or kept as dead letters. The
gateway acknowledges a QoS 1 message to the broker only then.

When the sink is unreachable, slow (a write times out) or failing (5xx), the
batch goes to the spool (gateway/sinks/spool.py) and new batches follow it
there, so messages keep being acknowledged and memory stays small; the sink is
tried again with capped, jittered backoff. Once it answers, the newest points,
those in memory, are written first, and the spool is replayed after them,
oldest batch first, whenever no live batch is due: the operations room sees
the present before the past. When there is no spool, or it is full or cannot
be written, the batch stays in memory and is retried; once the buffer is full,
`add` waits, which holds back the MQTT acknowledgements and so the broker,
instead of dropping anything.

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
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

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
from gateway.sinks.spool import Spool
from gateway.stats import GatewayStats

__all__ = ["BatchWriter", "RequestSizeLimit", "Settlement"]

logger = logging.getLogger(__name__)

SHUTDOWN_FLUSH_TIMEOUT_S = 10.0
# Messages waiting for their points to settle before a batch goes out early;
# the gateway sets it to half the broker's in-flight window.
DEFAULT_FLUSH_WHEN_WAITING = 500
# The writer never sleeps shorter than this between two looks at its work.
MIN_IDLE_WAIT_S = 0.005
# After an outage live batches go first, but a steady live stream must not
# starve the backlog: every this many live writes, one spooled batch goes.
LIVE_WRITES_PER_REPLAY = 4
SPOOL_REPORT_INTERVAL_S = 30.0
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


class Settlement:
    """Tells one callback, once, that a message's lines are settled.

    A lighter stand-in for an asyncio.Future on the hot path: the writer calls
    the callback in the same step that settles the lines, with no task or
    scheduled callback per message. It is never called if the lines are left
    unsettled at shutdown (their message then stays unacknowledged).
    """

    __slots__ = ("_callback", "_settled")

    def __init__(self) -> None:
        self._callback: Callable[[], None] | None = None
        self._settled = False

    def then(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the lines are settled (now, if they are)."""
        if self._settled:
            callback()
        else:
            self._callback = callback

    def settle(self) -> None:
        """Mark the lines settled and call the callback, if one is set."""
        self._settled = True
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


class BatchWriter:
    """Own the point buffer and the one task that writes it to the sink.

    Args:
        max_request_bytes: largest write body to send, in bytes; None learns
            the limit from 413 answers alone.
        spool: where batches go while the sink cannot take them; None keeps
            them in memory and retries.
    """

    def __init__(
        self,
        sink: Sink,
        config: InfluxConfig,
        stats: GatewayStats,
        dead_letters: DeadLetterStore,
        max_request_bytes: int | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self._config = config
        self._stats = stats
        self._dead_letters = dead_letters
        self._buffer: list[str] = []
        # Lines ever added and ever settled: a message's future completes once
        # the settled count passes the position of its last line.
        self._added_total = 0
        self._settled_total = 0
        self._waiting: collections.deque[
            tuple[int, asyncio.Future[None] | Settlement]
        ] = collections.deque()
        # Monotonic time the oldest line not yet due arrived at.
        self._oldest_line_at: float | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._retry_delay_s = config.retry_min_s
        self._opened = False
        self._draining = False
        self._spool_reported_at = 0.0
        self._spool_blocked_until = 0.0
        self._spool_full_warned = False
        self._replay_started: tuple[float, int] | None = None
        self._live_writes_since_replay = 0
        if max_request_bytes is None:
            # Not given by the caller: the configured limit, if any.
            max_request_bytes = config.max_request_bytes
        self.size_limit = RequestSizeLimit(max_request_bytes)
        # Write a batch once this many messages wait for their futures: the
        # broker stops sending when its in-flight window is used up.
        self.flush_when_waiting = DEFAULT_FLUSH_WHEN_WAITING
        self.ready = asyncio.Event()
        # Told (points, seconds) after each request the sink stored: /metrics.
        self.on_write: Callable[[int, float], None] | None = None

    @property
    def buffered(self) -> int:
        """Return how many points wait in memory."""
        return len(self._buffer)

    @property
    def sink_down_since(self) -> float | None:
        """Return the monotonic time the sink stopped answering, None while it does.

        Also set while the sink has never been opened; None before the first try.
        """
        return self._down_since

    async def add(self, lines: list[str]) -> asyncio.Future[None]:
        """Buffer encoded lines; return a future completed once they are settled.

        Waits while the buffer is full. A message's lines are taken whole once
        there is room for one more point, so the buffer may exceed
        max_buffered_points by one message's points less one; splitting a
        message would store half of it. The future is cancelled if the lines
        are still unsettled when the writer gives up at shutdown.
        """
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not lines:
            settled.set_result(None)
            return settled
        limit = self._config.max_buffered_points
        if len(self._buffer) >= limit:
            async with self._room:
                await self._room.wait_for(lambda: len(self._buffer) < limit)
        if not self._buffer:
            self._oldest_line_at = time.monotonic()
        self._buffer.extend(lines)
        self._added_total += len(lines)
        self._waiting.append((self._added_total, settled))
        self._stats.points_buffered = len(self._buffer)
        if self._batch_due():
            self._wake.set()
        return settled

    def add_nowait(self, lines: list[str]) -> Settlement | None:
        """Buffer encoded lines if there is room; return their Settlement, or
        None (nothing taken) when the buffer is full: then await add()."""
        if len(self._buffer) >= self._config.max_buffered_points:
            return None
        settlement = Settlement()
        if not lines:
            settlement.settle()
            return settlement
        if not self._buffer:
            self._oldest_line_at = time.monotonic()
        self._buffer.extend(lines)
        self._added_total += len(lines)
        self._waiting.append((self._added_total, settlement))
        self._stats.points_buffered = len(self._buffer)
        if self._batch_due():
            self._wake.set()
        return settlement

    async def run(self) -> None:
        """Open the sink, then write, spool and replay batches until cancelled."""
        if self.spool is not None:
            await self.spool.open()
            self._note_spool()
        while True:
            if not self._work_waiting():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_wait_s())
            self._wake.clear()
            await self._work_once()
            self._report_spool()

    async def drain(self, timeout_s: float = SHUTDOWN_FLUSH_TIMEOUT_S) -> int:
        """Have the running writer settle everything buffered now, within a time
        limit; return the points still unsettled.

        New batches are due at once; the sink or, while it is down, the spool
        takes them. The spool is not replayed meanwhile: it waits on disk.
        """
        self._draining = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._room:
                await self._room.wait_for(lambda: not self._buffer)
        return len(self._buffer)

    async def flush_remaining(self, timeout_s: float = SHUTDOWN_FLUSH_TIMEOUT_S) -> int:
        """Write what is buffered, within a time limit; return points left unwritten.

        Called once the writer's task has stopped. Points that cannot be
        written in time go to the spool if it takes them, else to the
        dead-letter store as line protocol, so they can be replayed by hand
        rather than vanish; their messages are not acknowledged, so the broker
        sends them again at the next start (storing them twice is harmless).
        Those of a request cut short by the time limit may already be stored;
        replaying them is harmless, as InfluxDB overwrites an identical point.
        """
        self._spool_blocked_until = 0.0
        if self._buffer and self._opened and self._down_since is None:
            try:
                async with asyncio.timeout(timeout_s):
                    while self._buffer:
                        if await self._write_front(self._buffer, self._settle):
                            break
            except TimeoutError:
                pass
        while self._buffer and await self._spool_front():
            pass
        left = self._buffer
        self._buffer = []
        self._stats.points_buffered = 0
        for _, settled in self._waiting:
            # A Settlement is simply never called: its message stays
            # unacknowledged, like the cancelled future's.
            if type(settled) is not Settlement:
                settled.cancel()
        self._waiting.clear()
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

    def _batch_due(self) -> bool:
        """Tell whether the front of the buffer should go out now."""
        if not self._buffer:
            return False
        return (
            self._draining
            or len(self._buffer) >= self._config.batch_size
            or len(self._waiting) >= self.flush_when_waiting
            or (
                self._oldest_line_at is not None
                and time.monotonic() - self._oldest_line_at
                >= self._config.flush_interval_s
            )
        )

    def _retry_due(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _work_waiting(self) -> bool:
        """Tell whether there is something to do without waiting."""
        up = self._opened and self._down_since is None
        if self._batch_due():
            return up or self._retry_due() or self._spool_has_room()
        replay = self.spool is not None and self.spool.segments and not self._draining
        return bool(replay) and (up or self._retry_due())

    def _idle_wait_s(self) -> float:
        """Return how long to wait for a message when there is nothing to do."""
        now = time.monotonic()
        wait_s = self._config.flush_interval_s
        if self._buffer and not self._batch_due() and self._oldest_line_at:
            wait_s -= now - self._oldest_line_at
        if self._down_since is not None or not self._opened:
            retry_in_s = self._retry_at - now
            # A due batch that cannot be spooled waits for the next try.
            wait_s = retry_in_s if self._batch_due() else min(wait_s, retry_in_s)
        return max(wait_s, MIN_IDLE_WAIT_S)

    async def _work_once(self) -> None:
        """Do the one most urgent thing: open, write, spool or replay."""
        if not self._opened:
            if self._retry_due():
                await self._try_open()
            if not self._opened:
                if self._batch_due():
                    await self._spool_front()
                return
        if self._batch_due():
            if self._down_since is not None and not self._retry_due():
                await self._spool_front()
                return
            if self._replay_turn():
                await self._replay_oldest()
                return
            self._live_writes_since_replay += 1
            if await self._write_front(self._buffer, self._settle):
                await self._spool_front()
            return
        # Lines not due yet are newer than the spool, but they wait for their
        # batch to fill; the spool takes the time until then.
        if self.spool is None or not self.spool.segments or self._draining:
            return
        if self._down_since is not None and not self._retry_due():
            return
        await self._replay_oldest()

    def _replay_turn(self) -> bool:
        """Tell whether the spool's backlog gets this write, though live is due."""
        return (
            self.spool is not None
            and bool(self.spool.segments)
            and not self._draining
            and self._down_since is None
            and self._live_writes_since_replay >= LIVE_WRITES_PER_REPLAY
        )

    async def _try_open(self) -> None:
        try:
            await self.sink.open()
        except SinkError as exc:
            self._note_down(exc)
            return
        self._opened = True
        self.ready.set()
        logger.info("Writing to %s", self.sink.description)
        self._note_up()

    async def _write_front(
        self, lines: list[str], settle: Callable[[int], Awaitable[None]]
    ) -> bool:
        """Write the first batch of `lines`; each part leaves it once settled.

        Returns True if the sink failed with the batch, or its unsettled
        rest, still at the front of `lines` (the caller spools it or tries
        again later); False once the batch is settled.
        """
        # Parts still to send, the next one last. Together they are always the
        # front of `lines`, in order, so settling a part drops a prefix.
        parts = [lines[: self._config.batch_size]]
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
            try:
                refusal = await self._send_once(part, size)
            except SinkError as exc:
                self._note_down(exc)
                return True
            if refusal is None:
                await settle(len(part))
                continue
            parts.extend(
                reversed(await self._handle_rejection(part, size, refusal, settle))
            )
        return False

    async def _spool_front(self) -> bool:
        """Move the first batch of the buffer to the spool; return whether it went."""
        if not self._buffer or self.spool is None:
            return False
        lines = self._buffer[: self._config.batch_size]
        if time.monotonic() < self._spool_blocked_until:
            return False
        if not await self.spool.append(lines, body_bytes(lines)):
            if not self.spool.has_room(body_bytes(lines)):
                self._warn_spool_full()
            # Try again with the sink's next try, not in a tight loop.
            self._spool_blocked_until = max(
                self._retry_at, time.monotonic() + self._config.retry_min_s
            )
            return False
        self._note_spool()
        await self._settle(len(lines))
        return True

    async def _replay_oldest(self) -> None:
        """Write the oldest spooled batch; forget it once settled."""
        assert self.spool is not None
        segment = self.spool.oldest()
        if segment is None:
            return
        try:
            lines = await self.spool.read(segment)
        except OSError as exc:
            logger.error(
                "Cannot read spooled batch %s: %s; it stays in the spool, "
                "newer batches are replayed meanwhile",
                segment.path,
                exc,
            )
            # Put it last, so one unreadable file does not stop the replay.
            self.spool.requeue_last(segment)
            return
        self._live_writes_since_replay = 0
        if self._replay_started is None:
            self._replay_started = (time.monotonic(), self.spool.points_replayed)
            logger.info("Replaying the spool: %s", self.spool.describe())

        async def settle(count: int) -> None:
            del lines[:count]

        while lines:
            if await self._write_front(lines, settle):
                break
        if lines:
            await self.spool.replace(segment, lines)
        else:
            await self.spool.remove(segment)
        self._note_spool()
        if not self.spool.segments:
            started_s, replayed = self._replay_started
            elapsed_s = max(time.monotonic() - started_s, 1e-3)
            count = self.spool.points_replayed - replayed
            logger.info(
                "Spool replayed: %d points in %.1f s (%.0f points/s)",
                count,
                elapsed_s,
                count / elapsed_s,
            )
            self._replay_started = None

    async def _send_once(self, lines: list[str], size: int) -> PointsRejected | None:
        """Store `lines` in one request; return a refusal for good.

        Raises SinkError when the sink is unreachable or failing for now.
        """
        self._stats.write_requests += 1
        started_s = time.perf_counter()
        try:
            await self.sink.write(lines)
        except PointsRejected as exc:
            return exc
        except SinkError:
            self._stats.write_failures += 1
            raise
        self._stats.points_written += len(lines)
        if self.on_write is not None:
            self.on_write(len(lines), time.perf_counter() - started_s)
        self.size_limit.note_accepted(size)
        self._note_up()
        return None

    async def _send(self, lines: list[str], size: int) -> PointsRejected | None:
        """Store `lines`, retrying transient failures; return a refusal for good."""
        delay_s = self._config.retry_min_s
        while True:
            try:
                return await self._send_once(lines, size)
            except SinkError as exc:
                self._note_down(exc)
                await _sleep_jittered(delay_s)
                delay_s = min(delay_s * 2, self._config.retry_max_s)

    async def _handle_rejection(
        self,
        lines: list[str],
        size: int,
        exc: PointsRejected,
        settle: Callable[[int], Awaitable[None]],
    ) -> list[list[str]]:
        """Settle what the refusal decides; return the parts to send instead."""
        reason, _ = classify_rejection(exc.body, exc.status)
        if "partial write" in exc.body:
            # The server stored every point it could; only the refused ones
            # are lost to it, and they are told apart from the answer.
            await self._settle_partial_write(lines, exc)
            await settle(len(lines))
            return []
        if reason == "too_large":
            self.size_limit.note_refused(size)
            if len(lines) > 1:
                # Sent again in parts below the new limit (see _write_front).
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
        await settle(1)
        return []

    async def _settle(self, count: int) -> None:
        """Drop the first `count` buffered lines, now stored, spooled or
        dead-lettered, and complete the futures of messages now whole."""
        del self._buffer[:count]
        self._settled_total += count
        while self._waiting and self._waiting[0][0] <= self._settled_total:
            _, settled = self._waiting.popleft()
            if type(settled) is Settlement:
                settled.settle()
            elif not settled.done():
                settled.set_result(None)
        self._stats.points_buffered = len(self._buffer)
        # What is left waits from now: it was not due, or it failed.
        self._oldest_line_at = time.monotonic() if self._buffer else None
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

    def _spool_has_room(self) -> bool:
        if self.spool is None or time.monotonic() < self._spool_blocked_until:
            return False
        return self.spool.has_room(body_bytes(self._buffer[: self._config.batch_size]))

    def _warn_spool_full(self) -> None:
        if self._spool_full_warned:
            return
        self._spool_full_warned = True
        assert self.spool is not None
        logger.warning(
            "Spool %s is full (%s); holding points in memory and taking MQTT "
            "messages only as fast as %s stores them (raise spool.max_bytes or "
            "free disk space)",
            self.spool.directory,
            self.spool.describe(),
            self.sink.description,
        )

    def _note_spool(self) -> None:
        """Copy the spool's figures into the counters."""
        spool = self.spool
        if spool is None:
            return
        stats = self._stats
        stats.spool_points = spool.points
        stats.spool_bytes = spool.size_bytes
        stats.spool_batches = spool.segments
        stats.spool_oldest_age_s = spool.oldest_age_s()
        stats.points_spooled = spool.points_spooled
        stats.points_replayed = spool.points_replayed
        if self._spool_full_warned and spool.size_bytes <= spool.max_bytes // 2:
            self._spool_full_warned = False

    def _report_spool(self) -> None:
        """Log what the spool holds every SPOOL_REPORT_INTERVAL_S while it holds any."""
        spool = self.spool
        if spool is None or not spool.segments:
            return
        # The age grows while nothing happens; keep the counter current.
        self._stats.spool_oldest_age_s = spool.oldest_age_s()
        now = time.monotonic()
        if now - self._spool_reported_at < SPOOL_REPORT_INTERVAL_S:
            return
        self._spool_reported_at = now
        self._note_spool()
        if self._down_since is not None or not self._opened:
            logger.warning(
                "Spool holds %s; %s unavailable for %.0f s",
                spool.describe(),
                self.sink.description,
                now - (self._down_since or now),
            )
        elif self._replay_started is not None:
            started_s, replayed = self._replay_started
            rate = (spool.points_replayed - replayed) / max(now - started_s, 1e-3)
            logger.info(
                "Replaying the spool at %.0f points/s; it holds %s",
                rate,
                spool.describe(),
            )

    def _note_down(self, exc: SinkError) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._retry_delay_s = self._config.retry_min_s
            # This warning says it all for now; the spool's figures follow later.
            self._spool_reported_at = now
            if self.spool is not None:
                logger.warning(
                    "%s; spooling batches to %s and retrying with backoff",
                    exc,
                    self.spool.directory,
                )
            else:
                logger.warning("%s; buffering and retrying with backoff", exc)
        else:
            logger.debug("Still failing: %s", exc)
        self._retry_at = now + _jittered(self._retry_delay_s)
        self._retry_delay_s = min(self._retry_delay_s * 2, self._config.retry_max_s)

    def _note_up(self) -> None:
        if self._down_since is None:
            return
        # The batch just written is still counted in the buffer.
        then = ""
        if self.spool is not None and self.spool.points:
            then = f", then the {self.spool.points} spooled"
        logger.info(
            "%s is back after %.1f s; writing the %d points buffered meanwhile%s",
            self.sink.description,
            time.monotonic() - self._down_since,
            self.buffered,
            then,
        )
        self._down_since = None
        self._retry_delay_s = self._config.retry_min_s
        self._spool_blocked_until = 0.0


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


def _jittered(delay_s: float) -> float:
    """Return a delay between half of `delay_s` and all of it: a fleet of
    gateways then does not retry in lockstep."""
    return random.uniform(delay_s / 2, delay_s)


async def _sleep_jittered(delay_s: float) -> None:
    await asyncio.sleep(_jittered(delay_s))

"""Keep batches InfluxDB cannot take now on disk, to write them when it can.

The spool is a directory of segment files, one per batch, each holding line
protocol, one point per line. A segment is written to a temporary file,
flushed to the disk (fsync) and only then renamed into place, so a segment
either holds its whole batch or does not exist; a temporary file found at
start-up is the remains of a batch whose messages were never acknowledged,
and is deleted (the broker sends those messages again).

A segment's name carries its place in the order, when it was spooled and how
many points it holds, so the spool's figures are known without reading it:
``<sequence>-<spooled unix ms>-<points>.lp``.

Replaying a segment twice (the gateway killed after writing it to InfluxDB,
before deleting it) writes the same points again: InfluxDB keeps one point
per series and timestamp, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Spool", "SpoolSegment"]

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".lp"
PARTIAL_SUFFIX = ".tmp"


@dataclass(frozen=True, slots=True)
class SpoolSegment:
    """One spooled batch: where it is, its place in the order, what it holds."""

    path: Path
    sequence: int
    spooled_ms: int
    points: int
    size_bytes: int


class Spool:
    """A bounded, ordered store of batches on disk.

    Only the writer's task calls it, one call at a time; the file work runs in
    a worker thread so the event loop keeps taking messages meanwhile.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._segments: list[SpoolSegment] = []
        self._size_bytes = 0
        self._points = 0
        self._next_sequence = 1
        self._failing = False
        self.points_spooled = 0
        self.points_replayed = 0

    @property
    def size_bytes(self) -> int:
        """Return the bytes the spooled segments take."""
        return self._size_bytes

    @property
    def points(self) -> int:
        """Return how many points wait in the spool."""
        return self._points

    @property
    def segments(self) -> int:
        """Return how many batches wait in the spool."""
        return len(self._segments)

    def oldest_age_s(self, now_ms: int | None = None) -> float:
        """Return how long the oldest spooled batch has waited, in seconds."""
        if not self._segments:
            return 0.0
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return max(0.0, (now_ms - self._segments[0].spooled_ms) / 1000)

    def oldest(self) -> SpoolSegment | None:
        """Return the batch spooled first, or None when the spool is empty."""
        return self._segments[0] if self._segments else None

    def has_room(self, size_bytes: int) -> bool:
        """Tell whether a batch of `size_bytes` fits within max_bytes."""
        return self._size_bytes + size_bytes <= self.max_bytes

    async def open(self) -> None:
        """Find the segments left by an earlier run; drop unfinished ones."""
        await asyncio.to_thread(self._scan)
        if self._segments:
            logger.warning(
                "Spool %s holds %d points (%s) from an earlier run, spooled %.0f s "
                "ago; they are written to InfluxDB after the newest readings",
                self.directory,
                self._points,
                _mb(self._size_bytes),
                self.oldest_age_s(),
            )

    async def append(self, lines: list[str], size_bytes: int) -> bool:
        """Store a batch durably; return False, keeping nothing, if it cannot.

        It cannot when the batch would take the spool past max_bytes, or when
        the disk refuses it (full, read-only); the caller then keeps the batch
        in memory and tries again later.
        """
        if not lines or not self.has_room(size_bytes):
            return False
        sequence = self._next_sequence
        spooled_ms = time.time_ns() // 1_000_000
        path = self.directory / _segment_name(sequence, spooled_ms, len(lines))
        try:
            written = await asyncio.to_thread(_write_durably, path, lines)
        except OSError as exc:
            if not self._failing:
                logger.error(
                    "Cannot write to the spool %s: %s; holding points in memory, "
                    "so MQTT intake slows to what InfluxDB takes",
                    self.directory,
                    exc,
                )
                self._failing = True
            return False
        if self._failing:
            logger.info("Writing to the spool %s again", self.directory)
            self._failing = False
        self._next_sequence += 1
        self._add(SpoolSegment(path, sequence, spooled_ms, len(lines), written))
        self.points_spooled += len(lines)
        return True

    async def read(self, segment: SpoolSegment) -> list[str]:
        """Return the lines of a spooled batch, in the order they were spooled."""
        text = await asyncio.to_thread(segment.path.read_text, "utf-8")
        return text.splitlines()

    async def remove(self, segment: SpoolSegment) -> None:
        """Forget a batch now written to InfluxDB (or kept as dead letters)."""
        await asyncio.to_thread(segment.path.unlink, True)
        self._drop(segment)
        self.points_replayed += segment.points

    async def replace(self, segment: SpoolSegment, lines: list[str]) -> None:
        """Keep only `lines` of a batch whose other lines are settled."""
        if not lines:
            await self.remove(segment)
            return
        path = self.directory / _segment_name(
            segment.sequence, segment.spooled_ms, len(lines)
        )
        written = await asyncio.to_thread(_write_durably, path, lines)
        if path != segment.path:
            await asyncio.to_thread(segment.path.unlink, True)
        index = self._segments.index(segment)
        self._drop(segment)
        self.points_replayed += segment.points - len(lines)
        replacement = SpoolSegment(
            path, segment.sequence, segment.spooled_ms, len(lines), written
        )
        self._segments.insert(index, replacement)
        self._size_bytes += written
        self._points += len(lines)

    def requeue_last(self, segment: SpoolSegment) -> None:
        """Put a batch that cannot be read now behind the others."""
        self._segments.remove(segment)
        self._segments.append(segment)

    def describe(self) -> str:
        """Say what the spool holds, for a log line."""
        return (
            f"{self._points} points ({_mb(self._size_bytes)} of "
            f"{_mb(self.max_bytes)}) in {len(self._segments)} batches, "
            f"oldest spooled {self.oldest_age_s():.0f} s ago"
        )

    def _scan(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found = []
        for path in self.directory.iterdir():
            if path.name.endswith(PARTIAL_SUFFIX):
                # A batch cut short by a crash: its messages were not
                # acknowledged, so the broker still has them.
                path.unlink(missing_ok=True)
                continue
            segment = _parse_name(path)
            if segment is None:
                if path.is_file():
                    logger.warning(
                        "Ignoring %s in the spool: not a name the gateway writes", path
                    )
                continue
            found.append(segment)
        found.sort(key=lambda segment: segment.sequence)
        self._segments = []
        self._size_bytes = self._points = 0
        for segment in found:
            self._add(segment)
        self._next_sequence = found[-1].sequence + 1 if found else 1

    def _add(self, segment: SpoolSegment) -> None:
        self._segments.append(segment)
        self._size_bytes += segment.size_bytes
        self._points += segment.points

    def _drop(self, segment: SpoolSegment) -> None:
        self._segments.remove(segment)
        self._size_bytes -= segment.size_bytes
        self._points -= segment.points


def _segment_name(sequence: int, spooled_ms: int, points: int) -> str:
    return f"{sequence:012d}-{spooled_ms}-{points}{SEGMENT_SUFFIX}"


def _parse_name(path: Path) -> SpoolSegment | None:
    if not path.name.endswith(SEGMENT_SUFFIX):
        return None
    parts = path.name.removesuffix(SEGMENT_SUFFIX).split("-")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    sequence, spooled_ms, points = (int(part) for part in parts)
    return SpoolSegment(path, sequence, spooled_ms, points, size)


def _write_durably(path: Path, lines: list[str]) -> int:
    """Write `lines` to `path` so that it exists whole or not at all."""
    body = ("\n".join(lines) + "\n").encode("utf-8")
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        with open(partial, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory is flushed too.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return len(body)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"

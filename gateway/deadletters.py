"""Keep everything the gateway refused, with its reason, so it can be replayed.

The dead-letter store is a set of JSON Lines files: ``<path>`` takes new
entries, ``<path>.1`` is the one before it, and so on up to ``max_files``
files holding ``max_bytes`` together; past that the oldest file is deleted.
Each entry is one line with a sortable id, the time it was kept, its kind
(``message``: a message refused whole; ``field``: values left out of a stored
message; ``point``: a point InfluxDB refused or that was unwritten at
shutdown), the reason code, a readable detail and, for messages, the topic,
QoS, retain flag, receive time, decoder and the payload bytes (as text when
they are UTF-8, else base64, so nothing is altered). A point's line protocol
is kept as its payload. ``<path>.replayed`` lists the ids already replayed.

While the gateway runs, entries are buffered and written to the files at least
once a second (sooner under a flood), off the event loop; used alone, the
store writes each entry at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from gateway.decoding.base import FieldReject, Route
from gateway.decoding.timestamps import format_ns
from gateway.errors import PayloadError, PointsRejected
from gateway.points import Point, encode_line
from gateway.sources.mqtt import MqttMessage, topic_matches

if TYPE_CHECKING:
    # gateway.sinks imports this module (the writer dead-letters refused points).
    from gateway.sinks.base import Sink

__all__ = [
    "DeadLetter",
    "DeadLetterPublisher",
    "DeadLetterStore",
    "QUIET_FIELD_REASONS",
    "ReplayLog",
    "ReplayOutcome",
    "find_entry",
    "prepare_replay",
    "read_entries",
    "select_entries",
    "write_replay",
]

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# Under a flood of garbage, write sooner than the interval so memory stays small.
FLUSH_EARLY_ENTRIES = 1000
FLUSH_EARLY_BYTES = 1024 * 1024
MAX_KEPT_PAYLOAD_BYTES = 256 * 1024
MAX_PUBLISHED_PAYLOAD_BYTES = 4096
DEFAULT_MAX_FILES = 5
TAIL_READ_BYTES = 64 * 1024
# A null is how firmware says "no reading now": normal, not news, and no
# configuration can turn it into a value.
QUIET_FIELD_REASONS = frozenset({"null_value"})
# Values no configuration can store (InfluxDB holds no NaN or infinity): a
# replay that leaves them out again has still recovered everything it could.
UNRECOVERABLE_FIELD_REASONS = frozenset({"null_value", "non_finite"})
# Ids are Crockford base32: 10 characters of milliseconds since the epoch, then
# 4 of a sequence number within that millisecond, so they sort by time.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_CHARS = 10
_SEQ_CHARS = 4
_ID_AT_START = re.compile(rb'^\{"id":"([0-9A-Z]{14})"', re.MULTILINE)
_UNSAFE_IN_TOPIC = str.maketrans({"/": "_", "+": "_", "#": "_"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One kept entry, as read back from the store."""

    id: str
    kind: str
    reason: str
    detail: str
    time: str
    topic: str = ""
    qos: int = 0
    retain: bool = False
    received_ns: int | None = None
    decoder: str = ""
    payload: bytes | None = None
    payload_truncated: bool = False
    fields: tuple[FieldReject, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any], fallback_id: str) -> DeadLetter:
        """Build an entry from its JSON line; older lines without an id get one."""
        payload: bytes | None = None
        if "payload_base64" in raw:
            payload = base64.b64decode(raw["payload_base64"])
        elif raw.get("payload") is not None:
            payload = str(raw["payload"]).encode("utf-8")
        return cls(
            id=str(raw.get("id") or fallback_id),
            kind=str(raw.get("kind", "message")),
            reason=str(raw.get("reason", "")),
            detail=str(raw.get("detail", "")),
            time=str(raw.get("time", "")),
            topic=str(raw.get("topic", "")),
            qos=int(raw.get("qos", 0)),
            retain=bool(raw.get("retain", False)),
            received_ns=raw.get("received_ns"),
            decoder=str(raw.get("decoder", "")),
            payload=payload,
            payload_truncated=bool(raw.get("payload_truncated", False)),
            fields=tuple(
                FieldReject(str(f["field"]), str(f["reason"]), str(f["detail"]))
                for f in raw.get("fields", ())
            ),
            raw=raw,
        )

    @property
    def time_ns(self) -> int:
        """Return when the message was received, else when the entry was kept."""
        if self.received_ns is not None:
            return self.received_ns
        try:
            moment = datetime.fromisoformat(self.time)
        except ValueError:
            return 0
        return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000

    def reasons(self) -> set[str]:
        """Return the entry's reason and those of the values it left out."""
        return {self.reason, *(f.reason for f in self.fields)}

    def message(self) -> MqttMessage:
        """Rebuild the MQTT message as it was received."""
        return MqttMessage(
            topic=self.topic,
            payload=self.payload or b"",
            qos=self.qos,
            retain=self.retain,
            received_ns=self.time_ns,
        )


class DeadLetterPublisher:
    """Publish dead letters for operators, at most a few per second per reason.

    Each reason has a token bucket: `burst` entries go out at once, then
    `rate_per_s` on average; the rest are counted, and the next one published
    says how many of its reason were held back. Values left out only for
    being null are kept on disk but not published: they are not news.
    """

    def __init__(
        self,
        prefix: str,
        rate_per_s: float,
        burst: int,
        publish: Callable[[str, bytes], bool],
    ) -> None:
        self._prefix = prefix.rstrip("/")
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._publish = publish
        self._buckets: dict[str, tuple[float, float]] = {}
        self._held_back: Counter[str] = Counter()
        self.published = 0
        self.suppressed: Counter[str] = Counter()
        self.not_connected = 0

    def offer(self, entry: dict[str, Any], payload: bytes | str | None) -> bool:
        """Publish one entry unless its reason is over its rate; say if it went."""
        fields = entry.get("fields", ())
        if fields and all(f["reason"] in QUIET_FIELD_REASONS for f in fields):
            return False
        reason = str(entry["reason"])
        if not self._take_token(reason):
            self.suppressed[reason] += 1
            self._held_back[reason] += 1
            return False
        document = _published_document(entry, payload)
        document["suppressed_before"] = self._held_back.pop(reason, 0)
        topic = f"{self._prefix}/{reason.translate(_UNSAFE_IN_TOPIC) or 'unknown'}"
        if not self._publish(topic, orjson.dumps(document)):
            self.not_connected += 1
            return False
        self.published += 1
        return True

    def _take_token(self, reason: str) -> bool:
        now = time.monotonic()
        tokens, since = self._buckets.get(reason, (self._burst, now))
        tokens = min(self._burst, tokens + (now - since) * self._rate_per_s)
        taken = tokens >= 1.0
        self._buckets[reason] = (tokens - 1.0 if taken else tokens, now)
        return taken


class DeadLetterStore:
    """Append refused input to rotated JSON Lines files, bounded in total size.

    While the gateway runs, entries are written together at least every
    FLUSH_INTERVAL_S; `written()` waits until the entries kept so far are in
    the file (handed to the operating system, so they survive the process
    being killed), and the gateway acknowledges a refused message only then.
    """

    def __init__(
        self, path: Path, max_bytes: int, max_files: int = DEFAULT_MAX_FILES
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._max_files = max(2, max_files)
        self._segment_bytes = max(1, max_bytes // self._max_files)
        self.publisher: DeadLetterPublisher | None = None
        # Only the event loop's thread touches these.
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._buffering = False
        self._wake = asyncio.Event()
        self._inflight: asyncio.Future[None] | None = None
        self._last_id: tuple[int, int] | None = None
        # The file and its sizes are touched by the writing thread, under the lock.
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._sizes: dict[int, int] = {}
        self._failing = False
        self._warned_deletion = False
        # Entries kept and entries handed to the file, in order: a waiter
        # for the first n entries is woken once n are written.
        self.entries_kept = 0
        self._entries_flushed = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.entries_written = 0
        self.entries_by_reason: Counter[str] = Counter()
        self.entries_lost = 0
        self.entries_deleted = 0
        self.entries_deleted_unreplayed = 0

    def add(
        self,
        kind: str,
        reason: str,
        detail: str,
        *,
        topic: str = "",
        payload: bytes | str | None = None,
    ) -> str:
        """Record one refused message, field or point; return its id."""
        entry = self._new_entry(kind, reason, detail)
        if topic:
            entry["topic"] = topic
        return self._keep(entry, payload)

    def add_message(
        self,
        message: MqttMessage,
        reason: str,
        detail: str,
        *,
        decoder: str,
        fields: Sequence[FieldReject] = (),
    ) -> str:
        """Record a message refused whole, or the values left out of it; return its id.

        With `fields`, the entry is of kind "field": the message was stored
        without those values.
        """
        entry = self._new_entry("field" if fields else "message", reason, detail)
        entry.update(
            topic=message.topic,
            qos=message.qos,
            retain=message.retain,
            received_ns=message.received_ns,
            received=format_ns(message.received_ns),
            decoder=decoder,
        )
        if fields:
            entry["fields"] = [
                {"field": f.field, "reason": f.reason, "detail": f.detail}
                for f in fields
            ]
        return self._keep(entry, message.payload)

    async def run(self) -> None:
        """Write buffered entries at least every FLUSH_INTERVAL_S until cancelled."""
        self._buffering = True
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
                self._wake.clear()
                await self._flush_pending()
        finally:
            self._buffering = False

    async def written(self) -> None:
        """Return once every entry kept so far is written (or found unwritable)."""
        target = self.entries_kept
        if self._entries_flushed >= target or not self._buffering:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, done))
        self._wake.set()
        await done

    async def aclose(self) -> None:
        """Write what is buffered, off the event loop, and close the file."""
        self._buffering = False
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
        await self._flush_pending()
        await asyncio.to_thread(self.close)
        # Nothing is pending any more: no one waits for a flush that will
        # not come.
        self._note_flushed(0)
        for _, done in self._flush_waiters:
            if not done.done():
                done.set_result(None)
        self._flush_waiters = []

    def close(self) -> None:
        """Write what is buffered and close the file (blocking)."""
        self._buffering = False
        lines = self._take_pending()
        with self._lock:
            if lines:
                self._write_locked(lines)
            if self._file is not None:
                self._file.close()
                self._file = None

    def _new_entry(self, kind: str, reason: str, detail: str) -> dict[str, Any]:
        now_ns = time.time_ns()
        return {
            "id": self._next_id(now_ns // 1_000_000),
            "time": format_ns(now_ns // 1_000_000 * 1_000_000)[:23] + "Z",
            "kind": kind,
            "reason": reason,
            "detail": detail,
        }

    def _keep(self, entry: dict[str, Any], payload: bytes | str | None) -> str:
        if payload is not None:
            entry.update(_encode_payload(payload))
        line = orjson.dumps(entry) + b"\n"
        self.entries_by_reason[entry["reason"]] += 1
        self.entries_kept += 1
        if self._buffering:
            self._pending.append(line)
            self._pending_bytes += len(line)
            if (
                len(self._pending) >= FLUSH_EARLY_ENTRIES
                or self._pending_bytes >= FLUSH_EARLY_BYTES
            ):
                self._wake.set()
        else:
            with self._lock:
                self._write_locked([line])
            self._entries_flushed += 1
        if self.publisher is not None:
            self.publisher.offer(entry, payload)
        return str(entry["id"])

    def _next_id(self, now_ms: int) -> str:
        if self._last_id is None:
            # Once per process: continue after the newest id already on disk,
            # so ids stay unique and sorted across restarts and clock steps.
            self._last_id = _newest_id(self.path) or (0, 0)
        last_ms, last_seq = self._last_id
        if now_ms > last_ms:
            self._last_id = (now_ms, 0)
        else:
            self._last_id = (last_ms, last_seq + 1)
        return _encode_id(*self._last_id)

    def _take_pending(self) -> list[bytes]:
        lines, self._pending, self._pending_bytes = self._pending, [], 0
        return lines

    async def _flush_pending(self) -> None:
        lines = self._take_pending()
        if not lines:
            return
        # Shielded: a cancelled flusher must not drop a batch already taken;
        # aclose() waits for it.
        self._inflight = asyncio.ensure_future(asyncio.to_thread(self._write, lines))
        self._inflight.add_done_callback(
            lambda _: self._note_flushed(len(lines))
        )
        await asyncio.shield(self._inflight)

    def _note_flushed(self, count: int) -> None:
        # Written or lost (the error is logged): either way nothing more comes
        # of waiting, and a broken disk must not stop the gateway.
        self._entries_flushed += count
        still_waiting = []
        for target, done in self._flush_waiters:
            if target <= self._entries_flushed:
                if not done.done():
                    done.set_result(None)
            else:
                still_waiting.append((target, done))
        self._flush_waiters = still_waiting

    def _write(self, lines: list[bytes]) -> None:
        with self._lock:
            self._write_locked(lines)

    def _write_locked(self, lines: list[bytes]) -> None:
        try:
            file = self._open_locked()
            for line in lines:
                if self._sizes[0] and self._sizes[0] + len(line) > self._segment_bytes:
                    file = self._rotate_locked()
                file.write(line)
                self._sizes[0] += len(line)
            file.flush()
        except OSError as exc:
            self.entries_lost += len(lines)
            self._close_quietly()
            if not self._failing:
                # The store is where rejects go; if it cannot be written the
                # operator must hear about it in the log instead.
                logger.error("Cannot write dead letters to %s: %s", self.path, exc)
            self._failing = True
            return
        self.entries_written += len(lines)
        if self._failing:
            logger.info(
                "Writing dead letters to %s again (%d entries lost meanwhile)",
                self.path,
                self.entries_lost,
            )
            self._failing = False

    def _open_locked(self) -> IO[bytes]:
        if self._file is not None:
            return self._file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sizes = {0: _size(self.path)}
        for number in _rotated_numbers(self.path):
            if number >= self._max_files:
                self._delete_locked(number)
            else:
                self._sizes[number] = _size(_numbered(self.path, number))
        self._file = open(self.path, "ab")  # noqa: SIM115
        if self._sizes[0] and not _ends_with_newline(self.path):
            # A crash cut the last line short: start the next one on its own.
            self._file.write(b"\n")
            self._sizes[0] += 1
        return self._file

    def _rotate_locked(self) -> IO[bytes]:
        self._close_quietly()
        for number in sorted(self._sizes, reverse=True):
            if number + 1 >= self._max_files:
                self._delete_locked(number)
                continue
            os.replace(_numbered(self.path, number), _numbered(self.path, number + 1))
            self._sizes[number + 1] = self._sizes.pop(number)
        # The total bound holds too when one file grew past its share.
        while sum(self._sizes.values()) > self._max_bytes and self._sizes:
            self._delete_locked(max(self._sizes))
        return self._open_locked()

    def _delete_locked(self, number: int) -> None:
        path = _numbered(self.path, number)
        try:
            ids = _ID_AT_START.findall(path.read_bytes())
            path.unlink()
        except FileNotFoundError:
            ids = []
        self._sizes.pop(number, None)
        replayed = ReplayLog(self.path).load()
        unreplayed = sum(1 for i in ids if i.decode() not in replayed)
        self.entries_deleted += len(ids)
        self.entries_deleted_unreplayed += unreplayed
        if unreplayed and not self._warned_deletion:
            logger.warning(
                "The dead-letter store %s is full: deleted its oldest file with %d "
                "entries never replayed (raise [dead_letters] max_bytes to keep "
                "more); further deletions are counted, not logged",
                self.path,
                unreplayed,
            )
            self._warned_deletion = True
        else:
            logger.debug(
                "Deleted %s (%d entries, %d unreplayed)", path, len(ids), unreplayed
            )

    def _close_quietly(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What replaying one entry gave: lines to write, or why it still fails."""

    entry: DeadLetter
    lines: tuple[str, ...] = ()
    reason: str = ""
    detail: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        """Tell whether the entry can now be stored (or needs nothing stored)."""
        return not self.reason


class ReplayLog:
    """The ids of replayed entries, one JSON line each, beside the store's files."""

    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(store_path.name + ".replayed")

    def load(self) -> dict[str, dict[str, Any]]:
        """Return every replayed id with when and how it was replayed."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        done = {}
        for line in text.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                record = orjson.loads(line)
                done[str(record["id"])] = record
        return done

    def mark(self, outcomes: Iterable[ReplayOutcome]) -> None:
        """Append the entries just replayed, and make it durable."""
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        lines = b"".join(
            orjson.dumps({"id": o.entry.id, "at": now, "points": len(o.lines)}) + b"\n"
            for o in outcomes
        )
        if not lines:
            return
        with open(self.path, "ab") as file:
            file.write(lines)
            file.flush()
            os.fsync(file.fileno())

    @contextlib.contextmanager
    def locked(self, keep_ids: set[str]) -> Iterator[None]:
        """Hold the log for one replay, dropping ids no longer in the store.

        Raises BlockingIOError when another replay holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            kept = {i: r for i, r in self.load().items() if i in keep_ids}
            # Rewritten in place (same file, still locked) so the log stays as
            # small as the store it describes.
            file.seek(0)
            file.truncate()
            file.write(b"".join(orjson.dumps(r) + b"\n" for r in kept.values()))
            file.flush()
            yield


def read_entries(path: Path) -> tuple[list[DeadLetter], int]:
    """Return every kept entry, oldest first, and how many lines were unreadable."""
    entries: list[DeadLetter] = []
    seen: set[str] = set()
    damaged = 0
    numbers = sorted(_rotated_numbers(path), reverse=True)
    for number in [*numbers, 0]:
        file_path = _numbered(path, number)
        try:
            text = file_path.read_bytes()
        except FileNotFoundError:
            continue  # rotated away while we read
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
                entry = DeadLetter.from_json(raw, _legacy_id(line))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                damaged += 1
                continue
            if entry.id not in seen:
                seen.add(entry.id)
                entries.append(entry)
    return entries, damaged


def select_entries(
    entries: Iterable[DeadLetter],
    *,
    reason: str | None = None,
    topic_filter: str | None = None,
    since_ns: int | None = None,
) -> list[DeadLetter]:
    """Keep the entries with `reason`, on topics in `topic_filter`, since a time."""
    chosen = []
    for entry in entries:
        if reason and reason not in entry.reasons():
            continue
        if topic_filter and not topic_matches(topic_filter, entry.topic):
            continue
        if since_ns is not None and entry.time_ns < since_ns:
            continue
        chosen.append(entry)
    return chosen


def find_entry(entries: Iterable[DeadLetter], wanted: str) -> DeadLetter:
    """Return the entry whose id is `wanted` or starts with it; raise LookupError."""
    wanted = wanted.strip().upper()
    matches = [e for e in entries if e.id.upper().startswith(wanted)]
    exact = [e for e in matches if e.id.upper() == wanted]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise LookupError(f"no dead letter has id {wanted!r}")
    raise LookupError(f"{len(matches)} dead letters have ids starting {wanted!r}")


def prepare_replay(
    entry: DeadLetter,
    routes: Sequence[Route],
    quality: Any = None,
    admit: Callable[[list[Point]], tuple[list[Point], list[Any]]] | None = None,
) -> ReplayOutcome:
    """Decode an entry again under the current routes, without writing anything.

    `quality` (a gateway.validation.QualityChecker, or None) checks the points
    as the live pipeline does, so a replay never stores what it would refuse;
    `admit` (gateway.registry.running.replay_admission) checks their devices
    against the registry and tags them with their agency.
    """
    if entry.kind == "point":
        line = (entry.payload or b"").decode("utf-8", "replace")
        if entry.payload_truncated or not line:
            return ReplayOutcome(entry, reason="payload_truncated", detail="line lost")
        return ReplayOutcome(entry, lines=(line,))
    if entry.payload_truncated:
        return ReplayOutcome(
            entry,
            reason="payload_truncated",
            detail=f"only the first {MAX_KEPT_PAYLOAD_BYTES} bytes were kept",
        )
    message = entry.message()
    # As the live gateway routes: the first subscription that covers the
    # topic and does not exclude it.
    topic = message.topic
    route = next(
        (r for r in routes if r.accepts(topic) and not r.excludes(topic)), None
    )
    if route is None:
        if any(r.accepts(topic) for r in routes):
            return ReplayOutcome(entry, note="topic is excluded now; nothing to store")
        return ReplayOutcome(entry, reason="unmatched_topic", detail="no subscription")
    try:
        decoded = route.decode(message)
    except PayloadError as exc:
        return ReplayOutcome(entry, reason=exc.reason, detail=exc.detail)
    except Exception as exc:  # a decoder bug must not stop the whole replay
        return ReplayOutcome(
            entry, reason="decoder_error", detail=f"{type(exc).__name__}: {exc}"
        )
    if admit is not None:
        decoded.points, refusals = admit(decoded.points)
        if refusals:
            # A device still unknown, pending or retired keeps its entry.
            return ReplayOutcome(
                entry, reason=refusals[0].reason, detail=refusals[0].detail
            )
    if quality is not None:
        checked_points = []
        for point in decoded.points:
            checked = quality.check(point, message.received_ns)
            decoded.rejected_fields.extend(checked.rejected_fields)
            if checked.point is not None:
                checked_points.append(checked.point)
        decoded.points = checked_points
    points = decoded.points
    note = _left_out_note(decoded.rejected_fields)
    if entry.kind == "field":
        still = [
            r
            for r in decoded.rejected_fields
            if r.field in {f.field for f in entry.fields}
            and r.reason not in UNRECOVERABLE_FIELD_REASONS
        ]
        if still:
            return ReplayOutcome(
                entry,
                reason=still[0].reason,
                detail=f"{still[0].field}: {still[0].detail}",
            )
        points = _recovered(points, entry.fields)
        note = "" if points else "nothing left to recover (null or NaN values)"
    try:
        lines = tuple(encode_line(point) for point in points)
    except ValueError as exc:
        return ReplayOutcome(entry, reason="unencodable_point", detail=str(exc))
    return ReplayOutcome(entry, lines=lines, note=note)


async def write_replay(
    outcomes: Sequence[ReplayOutcome],
    sink: Sink,
    batch_size: int,
    on_batch: Callable[[list[ReplayOutcome]], None],
) -> None:
    """Write the lines of replayable outcomes in batches, one request each.

    `on_batch` gets each batch's final outcomes once it is stored, so the
    caller can mark and report them. A batch InfluxDB refuses is written
    again entry by entry, so only the entries it refuses stay rejected. A
    SinkError (server unreachable) stops the replay and propagates.
    """
    for batch in _batches([o for o in outcomes if o.ok], batch_size):
        lines = [line for outcome in batch for line in outcome.lines]
        if not lines:
            on_batch(batch)
            continue
        try:
            await sink.write(lines)
        except PointsRejected:
            batch = [await _write_alone(outcome, sink) for outcome in batch]
        on_batch(batch)


async def _write_alone(outcome: ReplayOutcome, sink: Sink) -> ReplayOutcome:
    from gateway.sinks.base import classify_rejection

    if not outcome.lines:
        return outcome
    try:
        await sink.write(list(outcome.lines))
    except PointsRejected as exc:
        reason, _ = classify_rejection(exc.body)
        return ReplayOutcome(outcome.entry, reason=reason, detail=exc.body[:300])
    return outcome


def _batches(
    outcomes: list[ReplayOutcome], batch_size: int
) -> Iterator[list[ReplayOutcome]]:
    batch: list[ReplayOutcome] = []
    size = 0
    for outcome in outcomes:
        if batch and size + len(outcome.lines) > batch_size:
            yield batch
            batch, size = [], 0
        batch.append(outcome)
        size += len(outcome.lines)
    if batch:
        yield batch


def _recovered(points: list[Point], left_out: Sequence[FieldReject]) -> list[Point]:
    """Keep only the values that were left out before; the rest is stored."""
    names = {f.field for f in left_out}
    kept = []
    for point in points:
        fields = {k: v for k, v in point.fields.items() if k in names}
        if fields:
            kept.append(Point(point.measurement, point.tags, fields, point.time_ns))
    return kept


def _left_out_note(rejects: Sequence[FieldReject]) -> str:
    if not rejects:
        return ""
    reasons = ", ".join(sorted({r.reason for r in rejects}))
    return f"{len(rejects)} value(s) left out ({reasons})"


def _published_document(
    entry: dict[str, Any], payload: bytes | str | None
) -> dict[str, Any]:
    document = {
        key: entry[key]
        for key in ("id", "kind", "topic", "reason", "detail", "decoder", "fields")
        if key in entry
    }
    document["received"] = entry.get("received", entry["time"])
    if payload is not None:
        document.update(_encode_payload(payload, MAX_PUBLISHED_PAYLOAD_BYTES))
    return document


def _encode_payload(
    payload: bytes | str, limit: int = MAX_KEPT_PAYLOAD_BYTES
) -> dict[str, Any]:
    raw = _as_bytes(payload)
    kept: dict[str, Any] = {}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        kept["payload_base64"] = base64.b64encode(raw[:limit]).decode("ascii")
    else:
        # A cut inside a character leaves that character out.
        kept["payload"] = raw[:limit].decode("utf-8", "ignore")
    if len(raw) > limit:
        kept["payload_truncated"] = True
        kept["payload_bytes"] = len(raw)
    return kept


def _as_bytes(payload: bytes | str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return payload.encode("utf-8", "surrogatepass")


def _encode_id(time_ms: int, seq: int) -> str:
    number = (time_ms << (5 * _SEQ_CHARS)) | (seq & (32**_SEQ_CHARS - 1))
    chars = []
    for _ in range(_TIME_CHARS + _SEQ_CHARS):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _decode_id(text: str) -> tuple[int, int] | None:
    if len(text) != _TIME_CHARS + _SEQ_CHARS:
        return None
    number = 0
    for char in text:
        digit = _ALPHABET.find(char)
        if digit < 0:
            return None
        number = number * 32 + digit
    return number >> (5 * _SEQ_CHARS), number & (32**_SEQ_CHARS - 1)


def _newest_id(path: Path) -> tuple[int, int] | None:
    """Return the newest id on disk, from the tail of the newest non-empty file."""
    for number in [0, *sorted(_rotated_numbers(path))]:
        try:
            with open(_numbered(path, number), "rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - TAIL_READ_BYTES))
                tail = file.read()
        except OSError:
            continue
        ids = [_decode_id(i.decode()) for i in _ID_AT_START.findall(tail)]
        valid = [i for i in ids if i is not None]
        if valid:
            return max(valid)
    return None


def _legacy_id(line: bytes) -> str:
    # Entries written before ids existed get one derived from their content,
    # so it stays the same at every read.
    return "L" + hashlib.sha1(line).hexdigest()[:13].upper()


def _rotated_numbers(path: Path) -> list[int]:
    prefix = path.name + "."
    numbers = []
    # A missing or unreadable folder has no rotated files; writing will say why.
    with contextlib.suppress(OSError):
        for child in path.parent.iterdir():
            suffix = child.name[len(prefix) :]
            if child.name.startswith(prefix) and suffix.isdigit():
                numbers.append(int(suffix))
    return numbers


def _numbered(path: Path, number: int) -> Path:
    return path if number == 0 else path.with_name(f"{path.name}.{number}")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"

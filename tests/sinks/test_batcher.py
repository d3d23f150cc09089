"""The batch writer's own logic, against a scripted sink (the Sink seam is ours).

Everything that talks to a real InfluxDB lives in test_influx_v1.py,
test_too_large.py and tests/test_faults.py; here the sink only says yes, no
(400, 413 or a partial write), or "not reachable".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import InfluxConfig
from gateway.deadletters import DeadLetterStore
from gateway.errors import PointsRejected, SinkError
from gateway.sinks import BatchWriter
from gateway.sinks import batcher as batcher_module
from gateway.stats import GatewayStats
from tests.conftest import wait_until

Answer = Callable[[list[str]], Exception | None]

HTML_413 = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n"
    "<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class ScriptedSink:
    """A sink that records every request and answers as the test decides."""

    description = "scripted sink"

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or (lambda lines: None)
        self.requests: list[list[str]] = []
        self.stored: list[str] = []
        # While cleared, every write waits: a server that does not answer yet.
        self.answering = asyncio.Event()
        self.answering.set()

    async def open(self) -> None:
        """Open nothing."""

    async def write(self, lines: list[str]) -> None:
        """Record the request, wait until answering, then store or raise."""
        self.requests.append(list(lines))
        await self.answering.wait()
        error = self.answer(lines)
        if error is not None:
            raise error
        self.stored.extend(lines)

    async def close(self) -> None:
        """Close nothing."""


class Harness:
    """A BatchWriter over a ScriptedSink, with its counters and dead letters."""

    def __init__(
        self,
        sink: ScriptedSink,
        tmp_path: Path,
        max_request_bytes: int | None = None,
        **influx: Any,
    ) -> None:
        self.sink = sink
        self.stats = GatewayStats()
        self.dead_letters = DeadLetterStore(tmp_path / "dead-letters.jsonl", 1_000_000)
        config = InfluxConfig.model_validate(
            {"flush_interval_s": 0.05, "retry_min_s": 0.01, "retry_max_s": 0.05}
            | influx
        )
        self.writer = BatchWriter(
            sink, config, self.stats, self.dead_letters, max_request_bytes
        )

    def dead(self) -> list[dict[str, Any]]:
        """Return the dead-letter entries written so far."""
        path = self.dead_letters.path
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BatchWriter]:
        """Run the writer's task for the block, then cancel it."""
        task = asyncio.create_task(self.writer.run(), name="test.influx.write")
        try:
            await asyncio.wait_for(self.writer.ready.wait(), timeout=5)
            yield self.writer
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.dead_letters.close()


@pytest.fixture
def harness(tmp_path: Path) -> Callable[..., Harness]:
    """Give a factory of writers over a scripted sink."""

    def make(
        sink: ScriptedSink, max_request_bytes: int | None = None, **influx: Any
    ) -> Harness:
        return Harness(sink, tmp_path, max_request_bytes, **influx)

    return make


def numbered_lines(count: int) -> list[str]:
    """Return `count` distinct, valid lines of line protocol."""
    return [
        f"meter,device=d{i:04d} v={i}.5 {1_700_000_000_000_000_000 + i}"
        for i in range(count)
    ]


def refuse_lines_containing(marker: str) -> Answer:
    """Answer like InfluxDB 2.x does for a bad line: 400, whole request refused."""

    def answer(lines: list[str]) -> Exception | None:
        bad = [line for line in lines if marker in line]
        if not bad:
            return None
        body = orjson.dumps(
            {
                "code": "invalid",
                "message": f"unable to parse '{bad[0]}': invalid field format",
            }
        ).decode()
        return PointsRejected("refused", status=400, body=body)

    return answer


async def test_batcher_splits_a_refused_batch_until_the_bad_lines_are_isolated(
    harness,
):
    """Test that a 400 for a whole batch is halved until only bad lines are refused."""
    lines = numbered_lines(64)
    bad_indexes = {13, 50}
    for index in bad_indexes:
        lines[index] = lines[index].replace(" v=", " bad=")
    good = [line for i, line in enumerate(lines) if i not in bad_indexes]
    h = harness(ScriptedSink(refuse_lines_containing(" bad=")), batch_size=64)

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: len(h.dead()) == 2 and h.writer.buffered == 0)

    assert h.sink.stored == good
    assert h.stats.points_written == 62
    assert h.stats.points_rejected == {"unparsable_line": 2}
    assert sorted(entry["payload"] for entry in h.dead()) == sorted(
        lines[i] for i in bad_indexes
    )
    assert {entry["reason"] for entry in h.dead()} == {"unparsable_line"}
    # Halving finds each bad line in about 2·log2(n) requests.
    bound = 1 + 2 * len(bad_indexes) * math.log2(len(lines))
    assert len(h.sink.requests) <= bound
    assert h.stats.write_requests == len(h.sink.requests)


async def test_batcher_isolates_a_single_bad_line_in_two_log2_n_requests(harness):
    """Test that one bad line among 1024 costs 1 + 2·log2(1024) requests."""
    lines = numbered_lines(1024)
    lines[700] = lines[700].replace(" v=", " bad=")
    h = harness(ScriptedSink(refuse_lines_containing(" bad=")), batch_size=1024)

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: len(h.dead()) == 1 and h.writer.buffered == 0)

    assert h.sink.stored == lines[:700] + lines[701:]
    assert len(h.sink.requests) == 1 + 2 * 10


async def test_batcher_splits_a_413_too_large_batch_and_rejects_an_oversized_point(
    harness,
):
    """Test that 413 answers split the batch and a point too big alone is rejected."""
    limit_bytes = 4096

    def by_size(lines: list[str]) -> Exception | None:
        size = len(("\n".join(lines) + "\n").encode())
        if size > limit_bytes:
            return PointsRejected("too large", status=413, body=HTML_413)
        return None

    lines = numbered_lines(300)
    huge = 'meter,device=d9999 dump="' + "x" * 10_000 + '" 1700000000000009999'
    lines.insert(123, huge)
    h = harness(ScriptedSink(by_size), batch_size=len(lines))

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: len(h.dead()) == 1 and h.writer.buffered == 0)

    normal = [line for line in lines if line != huge]
    # Every normal point exactly once, in order: no half was sent twice.
    assert h.sink.stored == normal
    assert h.stats.points_rejected == {"too_large": 1}
    [entry] = h.dead()
    assert entry["reason"] == "too_large"
    assert entry["payload"] == huge
    assert "413 Request Entity Too Large" in entry["detail"]
    # Sent alone once, refused, and not tried again.
    assert h.sink.requests.count([huge]) == 1


async def test_batcher_retries_an_unreachable_sink_with_backoff_then_writes_in_order(
    harness, monkeypatch, caplog
):
    """Test that connection failures retry the same batch, with doubling delays."""
    failures_left = [5]

    def refused_five_times(lines: list[str]) -> Exception | None:
        if failures_left[0]:
            failures_left[0] -= 1
            return SinkError("scripted sink unreachable: Connection refused")
        return None

    delays: list[float] = []

    def record_delay(delay_s: float) -> float:
        delays.append(delay_s)
        return 0.0

    monkeypatch.setattr(batcher_module, "_jittered", record_delay)
    caplog.set_level(logging.DEBUG, logger="gateway.sinks.batcher")
    lines = numbered_lines(8)
    h = harness(
        ScriptedSink(refused_five_times), batch_size=4, retry_min_s=0.1, retry_max_s=0.4
    )

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: h.stats.points_written == 8)

    # The first batch was retried unchanged until it went through, then the next.
    assert h.sink.requests == [lines[:4]] * 6 + [lines[4:]]
    assert h.sink.stored == lines
    assert delays == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert h.stats.write_failures == 5
    assert h.stats.write_requests == 7
    assert h.dead() == []
    records = [r for r in caplog.records if r.name == "gateway.sinks.batcher"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert warnings == [
        "scripted sink unreachable: Connection refused; buffering and retrying "
        "with backoff"
    ]
    assert sum(r.levelno == logging.DEBUG for r in records) == 4
    back = [r.getMessage() for r in records if "is back after" in r.getMessage()]
    assert len(back) == 1
    assert back[0].endswith("writing the 8 points buffered meanwhile")


async def test_batcher_add_waits_while_the_buffer_is_full_and_drops_nothing(harness):
    """Test that add() blocks at max_buffered_points until the writer drains."""
    sink = ScriptedSink()
    sink.answering.clear()
    h = harness(sink, batch_size=5, max_buffered_points=10)
    lines = numbered_lines(12)

    async with h.running() as writer:
        await writer.add(lines[:10])
        assert await wait_until(lambda: len(sink.requests) == 1)
        late = asyncio.create_task(writer.add(lines[10:]))
        # The sink holds the first batch; the buffer is full, so add() waits.
        await asyncio.sleep(0.3)
        assert not late.done()
        assert writer.buffered == 10

        sink.answering.set()
        await asyncio.wait_for(late, timeout=5)
        assert await wait_until(lambda: h.stats.points_written == 12)

    assert sink.stored == lines
    assert h.dead() == []


async def test_batcher_flush_remaining_writes_what_it_can_and_keeps_the_rest(
    harness, caplog
):
    """Test that shutdown writes while the sink answers, then dead-letters the rest."""
    accepted = [0]

    def first_request_only(lines: list[str]) -> Exception | None:
        if accepted[0]:
            return SinkError("scripted sink unreachable: Connection refused")
        accepted[0] += 1
        return None

    h = harness(ScriptedSink(first_request_only), batch_size=3, flush_interval_s=60)
    lines = numbered_lines(7)
    async with h.running():
        pass
    await h.writer.add(lines)

    left = await h.writer.flush_remaining(timeout_s=0.5)
    h.dead_letters.close()

    assert left == 4
    assert h.sink.stored == lines[:3]
    dead = h.dead()
    assert [entry["payload"] for entry in dead] == lines[3:]
    assert {entry["reason"] for entry in dead} == {"unwritten_at_shutdown"}
    assert h.writer.buffered == 0
    assert any(
        "4 points were not written before shutdown" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR
    )


async def test_batcher_flush_remaining_dead_letters_everything_if_never_opened(
    harness,
):
    """Test that points buffered before the sink ever opened are kept at shutdown."""
    sink = ScriptedSink()
    h = harness(sink)
    lines = numbered_lines(3)
    await h.writer.add(lines)

    left = await h.writer.flush_remaining(timeout_s=0.5)
    h.dead_letters.close()

    assert left == 3
    assert sink.requests == []
    assert [entry["payload"] for entry in h.dead()] == lines


async def test_batcher_sends_a_422_partial_write_once_and_keeps_only_the_conflict(
    harness, caplog
):
    """Test that an InfluxDB 2.x partial write is not resent and rejects one point."""
    body = (
        '{"code":"unprocessable entity","message":"failure writing points to '
        'database: partial write: field type conflict: input field \\"energy\\" on '
        'measurement \\"meter\\" is type float, already exists as type integer '
        'dropped=1"}'
    )
    lines = [
        "meter,device=m1 energy=101.5 1717200000000000000",
        "meter,device=m2 power=230.5 1717200000000000000",
        "meter,device=m3 voltage=229.9 1717200000000000000",
    ]
    h = harness(
        ScriptedSink(lambda _: PointsRejected("partial", status=422, body=body)),
        batch_size=3,
    )

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: h.writer.buffered == 0 and len(h.dead()) == 1)

    assert h.sink.requests == [lines]
    assert h.stats.points_written == 2
    assert h.stats.points_rejected == {"field_type_conflict": 1}
    [entry] = h.dead()
    assert entry["payload"] == lines[0]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "'energy'" in warning and "'meter'" in warning
    assert "type integer" in warning and "type float" in warning


def v2_conflict(field: str, dropped: int) -> PointsRejected:
    """Return InfluxDB 2.x's 422 for a float sent to an integer field of "meter"."""
    body = (
        '{"code":"unprocessable entity","message":"failure writing points to '
        f'database: partial write: field type conflict: input field \\"{field}\\" '
        'on measurement \\"meter\\" is type float, already exists as type integer '
        f'dropped={dropped}"}}'
    )
    return PointsRejected("partial", status=422, body=body)


async def test_batcher_sends_the_unnamed_lines_again_until_the_count_is_made_up(
    harness,
):
    """Test that a 422 naming one conflict of two sends the other lines once more."""
    lines = [
        "meter,device=m1 energy=101.5 1717200000000000000",
        "meter,device=m2 power=230.5 1717200000000000000",
        "meter,device=m3 voltage=229.9 1717200000000000000",
    ]
    answers = [v2_conflict("energy", 2), v2_conflict("power", 1)]
    h = harness(ScriptedSink(lambda _: answers.pop(0)), batch_size=3)

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: h.writer.buffered == 0 and len(h.dead()) == 2)

    assert h.sink.requests == [lines, lines[1:]]
    assert [entry["payload"] for entry in h.dead()] == lines[:2]
    assert h.stats.points_written == 1
    assert h.stats.points_rejected == {"field_type_conflict": 2}


async def test_batcher_keeps_apart_only_the_quoted_lines_of_a_v1_parse_error(harness):
    """Test that a 1.x partial write naming unparsable lines rejects only those."""
    lines = ["m,d=1 v=1 1", "m,d=2 v= 2", "m,d=3 v=3 3", 'm,d=4 v="x 4']
    # What InfluxDB 1.6 answers for exactly these lines.
    body = orjson.dumps(
        {
            "error": "partial write: unable to parse 'm,d=2 v= 2': missing field "
            "value\n"
            "unable to parse 'm,d=4 v=\"x 4': unbalanced quotes dropped=0"
        }
    ).decode()
    h = harness(
        ScriptedSink(lambda _: PointsRejected("partial", status=400, body=body)),
        batch_size=4,
    )

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: h.writer.buffered == 0 and len(h.dead()) == 2)

    assert len(h.sink.requests) == 1
    assert [entry["payload"] for entry in h.dead()] == [lines[1], lines[3]]
    assert h.stats.points_written == 2
    assert h.stats.points_rejected == {"unparsable_line": 2}


def refuse_bodies_over(limit: list[int]) -> Answer:
    """Answer like a proxy with a body size limit: 413 and an HTML page.

    The limit is a one-item list, so a test can change it between flushes.
    """

    def answer(lines: list[str]) -> Exception | None:
        if len(("\n".join(lines) + "\n").encode()) > limit[0]:
            return PointsRejected("too large", status=413, body=HTML_413)
        return None

    return answer


def body_size(lines: list[str]) -> int:
    """Return the size of the write body for `lines`, in bytes."""
    return len(("\n".join(lines) + "\n").encode())


def statuses(sink: ScriptedSink, limit_bytes: int) -> list[int]:
    """Return 413 or 204 for each request the sink saw, by its body size."""
    return [413 if body_size(r) > limit_bytes else 204 for r in sink.requests]


async def test_batcher_cuts_a_413_batch_by_bytes_in_few_requests(harness):
    """Test that 413 answers teach the limit and the batch is cut by bytes, in order."""
    limit = [8192]
    lines = numbered_lines(2000)
    huge = 'meter,device=d9999 dump="' + "x" * 10_000 + '" 1700000000000009999'
    lines.insert(1000, huge)
    h = harness(ScriptedSink(refuse_bodies_over(limit)), batch_size=len(lines))

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: len(h.dead()) == 1 and h.writer.buffered == 0)

    normal = [line for line in lines if line != huge]
    assert h.sink.stored == normal
    answers = statuses(h.sink, limit[0])
    # Each refusal at least halves the size tried; then requests are at least
    # half the limit, except the last before the huge point and the last one.
    refusals_bound = math.log2(body_size(lines) / limit[0]) + 2
    assert answers.count(413) <= refusals_bound
    assert answers.count(204) <= 2 * body_size(normal) / limit[0] + 2
    assert h.sink.requests.count([huge]) == 1
    [entry] = h.dead()
    assert entry["reason"] == "too_large"
    assert entry["detail"].startswith(
        f"point of 10.0 kB ({len(huge):,} bytes) exceeds the server's request limit"
    )
    assert h.writer.size_limit.refused_bytes is not None
    assert h.writer.size_limit.refused_bytes <= len(huge) + 1


async def test_batcher_reuses_the_learned_request_limit_on_the_next_flush(harness):
    """Test that once a 413 taught the limit, later batches are cut before sending."""
    limit = [8192]
    first, later = numbered_lines(2000)[:1000], numbered_lines(2000)[1000:]
    h = harness(ScriptedSink(refuse_bodies_over(limit)), batch_size=1000)

    async with h.running() as writer:
        await writer.add(first)
        assert await wait_until(lambda: h.stats.points_written == 1000)
        learned = len(h.sink.requests)
        await writer.add(later)
        assert await wait_until(lambda: h.stats.points_written == 2000)

    assert 413 in statuses(h.sink, limit[0])[:learned]
    assert 413 not in statuses(h.sink, limit[0])[learned:]
    assert h.sink.stored == first + later
    assert h.dead() == []


async def test_batcher_cuts_batches_to_max_request_bytes_without_a_413(harness):
    """Test that a configured max_request_bytes cuts batches before any refusal."""
    lines = numbered_lines(1000)
    sink = ScriptedSink(refuse_bodies_over([8192]))
    h = harness(sink, max_request_bytes=6000, batch_size=1000)

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: h.stats.points_written == 1000)

    assert all(body_size(request) <= 6000 for request in sink.requests)
    assert len(sink.requests) == math.ceil(body_size(lines) / 6000)
    assert sink.stored == lines


async def test_batcher_relearns_a_request_limit_that_went_down(harness):
    """Test that a proxy lowering its limit is met by a new, smaller limit."""
    limit = [8192]
    lines = numbered_lines(3000)
    h = harness(ScriptedSink(refuse_bodies_over(limit)), batch_size=1000)

    async with h.running() as writer:
        await writer.add(lines[:1000])
        assert await wait_until(lambda: h.stats.points_written == 1000)
        limit[0] = 2048
        await writer.add(lines[1000:])
        assert await wait_until(lambda: h.stats.points_written == 3000)

    assert h.sink.stored == lines
    assert h.writer.size_limit.accepted_bytes <= 2048
    assert h.dead() == []


async def test_batcher_isolates_bad_lines_and_oversized_points_in_one_batch(harness):
    """Test that 400 halving and 413 cutting together keep every good line once."""
    limit = [4096]
    lines = numbered_lines(400)
    lines[37] = lines[37].replace(" v=", " bad=")
    huge = 'meter,device=d9999 dump="' + "x" * 5000 + '" 1700000000000009999'
    lines.insert(250, huge)
    too_large = refuse_bodies_over(limit)
    bad_line = refuse_lines_containing(" bad=")

    def answer(batch: list[str]) -> Exception | None:
        return too_large(batch) or bad_line(batch)

    h = harness(ScriptedSink(answer), batch_size=len(lines))

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: len(h.dead()) == 2 and h.writer.buffered == 0)

    assert h.sink.stored == [line for line in lines if line not in (huge, lines[37])]
    assert sorted(entry["reason"] for entry in h.dead()) == [
        "too_large",
        "unparsable_line",
    ]
    assert h.stats.points_written == len(lines) - 2


def hang_after(requests: int, sink: ScriptedSink, answer: Answer) -> Answer:
    """Answer as `answer`, then stop answering once `requests` were answered."""

    def hanging(lines: list[str]) -> Exception | None:
        if len(sink.requests) >= requests:
            sink.answering.clear()
        return answer(lines)

    return hanging


async def test_batcher_flush_remaining_dead_letters_only_unwritten_lines_mid_split(
    harness,
):
    """Test that a shutdown timeout mid-split dead-letters only unwritten lines."""
    lines = numbered_lines(16)
    lines[2] = lines[2].replace(" v=", " bad=")
    sink = ScriptedSink()
    # [0:16] 400, [0:8] 400, [0:4] 400, [0:2] ok, [2:4] 400, [2] 400, [3] ok,
    # then [4:8] never answered.
    sink.answer = hang_after(7, sink, refuse_lines_containing(" bad="))
    h = harness(sink, batch_size=16, flush_interval_s=60)
    async with h.running():
        pass
    await h.writer.add(lines)

    left = await h.writer.flush_remaining(timeout_s=0.5)
    h.dead_letters.close()

    assert len(sink.requests) == 8
    assert sink.stored == [lines[0], lines[1], lines[3]]
    assert left == 12
    dead = [(entry["reason"], entry["payload"]) for entry in h.dead()]
    assert dead == [("unparsable_line", lines[2])] + [
        ("unwritten_at_shutdown", line) for line in lines[4:]
    ]


async def test_batcher_flush_remaining_resumes_a_split_cut_short_by_cancel(harness):
    """Test that shutdown resends only the lines a cancelled split had not settled."""
    lines = numbered_lines(16)
    lines[2] = lines[2].replace(" v=", " bad=")
    sink = ScriptedSink()
    sink.answer = hang_after(7, sink, refuse_lines_containing(" bad="))
    h = harness(sink, batch_size=16)

    async with h.running() as writer:
        await writer.add(lines)
        assert await wait_until(lambda: len(sink.requests) == 8)
    assert h.writer.buffered == 12
    sink.answer = refuse_lines_containing(" bad=")
    sink.answering.set()

    left = await h.writer.flush_remaining(timeout_s=5)
    h.dead_letters.close()

    assert left == 0
    assert sink.requests[8:] == [lines[4:]]
    # lines[4:8] were in flight when cancelled: whether the server kept them is
    # unknown, so they are sent again (InfluxDB overwrites identical points).
    assert sink.stored == [lines[0], lines[1], lines[3]] + lines[4:]
    assert [entry["payload"] for entry in h.dead()] == [lines[2]]


async def test_batcher_add_overshoots_max_buffered_points_by_less_than_one_message(
    harness,
):
    """Test that add() takes a message whole once there is room for one point."""
    sink = ScriptedSink()
    h = harness(sink, batch_size=100, max_buffered_points=10, flush_interval_s=60)
    lines = numbered_lines(20)

    await h.writer.add(lines[:9])
    await h.writer.add(lines[9:14])
    assert h.writer.buffered == 14
    late = asyncio.create_task(h.writer.add(lines[14:]))
    await asyncio.sleep(0.1)

    assert not late.done()
    late.cancel()
    await asyncio.gather(late, return_exceptions=True)

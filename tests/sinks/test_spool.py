"""The on-disk spool, alone and under the batch writer (scripted sink).

The end-to-end proofs, with a real InfluxDB stopped and a real gateway killed,
are in tests/test_delivery.py; here each rule of the spool is shown on its own.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path

import pytest

from gateway.errors import SinkError
from gateway.sinks import batcher as batcher_module
from gateway.sinks import spool as spool_module
from gateway.sinks.spool import Spool
from tests.conftest import wait_until
from tests.sinks.test_batcher import Harness, ScriptedSink, numbered_lines


def body(lines: list[str]) -> int:
    return len(("\n".join(lines) + "\n").encode())


async def test_spool_keeps_batches_in_order_across_a_restart(tmp_path):
    """Test that a reopened spool finds every batch, in order, with its figures,
    and deletes a batch whose writing a crash cut short."""
    first = Spool(tmp_path, 1_000_000)
    await first.open()
    lines = numbered_lines(9)
    for start in (0, 3, 6):
        assert await first.append(lines[start : start + 3], body(lines[:3]))
    # What a crash between write and rename leaves behind.
    (tmp_path / "000000000004-1-3.lp.tmp").write_text("meter v=1 1\nmeter v=")
    (tmp_path / "notes.txt").write_text("not a batch")

    again = Spool(tmp_path, 1_000_000)
    await again.open()

    assert again.segments == 3
    assert again.points == 9
    assert again.size_bytes == first.size_bytes
    read = []
    while (segment := again.oldest()) is not None:
        read += await again.read(segment)
        await again.remove(segment)
    assert read == lines
    assert not list(tmp_path.glob("*.tmp"))
    # Numbering goes on after the batches found, so order holds across runs.
    assert await again.append(lines[:1], body(lines[:1]))
    assert again.oldest().sequence == 4


async def test_spool_refuses_a_batch_past_its_limit_and_keeps_nothing_of_it(tmp_path):
    """Test that a batch that does not fit is refused whole, not cut."""
    lines = numbered_lines(4)
    spool = Spool(tmp_path, body(lines[:2]) * 2)
    await spool.open()

    assert await spool.append(lines[:2], body(lines[:2]))
    assert await spool.append(lines[2:], body(lines[2:]))
    assert not await spool.append(lines[:1], body(lines[:1]))
    assert spool.points == 4
    assert len(list(tmp_path.iterdir())) == 2


async def test_spool_replace_keeps_only_the_unsettled_rest(tmp_path):
    """Test that a partly written batch keeps its place and only its rest."""
    lines = numbered_lines(6)
    spool = Spool(tmp_path, 1_000_000)
    await spool.open()
    await spool.append(lines[:4], body(lines[:4]))
    await spool.append(lines[4:], body(lines[4:]))

    await spool.replace(spool.oldest(), lines[2:4])

    assert spool.points == 4
    assert spool.points_replayed == 2
    assert await spool.read(spool.oldest()) == lines[2:4]
    reopened = Spool(tmp_path, 1_000_000)
    await reopened.open()
    assert reopened.points == 4
    assert [s.points for s in (reopened.oldest(),)] == [2]


async def test_spool_reports_a_disk_that_refuses_writes_once(
    tmp_path, monkeypatch, caplog
):
    """Test that a full disk refuses the batch, logs once, and recovers."""
    real_write = spool_module._write_durably
    disk_full = [True]

    def write(path: Path, lines: list[str]) -> int:
        if disk_full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, lines)

    monkeypatch.setattr(spool_module, "_write_durably", write)
    spool = Spool(tmp_path, 1_000_000)
    await spool.open()
    lines = numbered_lines(2)

    assert not await spool.append(lines, body(lines))
    assert not await spool.append(lines, body(lines))
    disk_full[0] = False
    assert await spool.append(lines, body(lines))

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "No space left on device" in errors[0]
    assert spool.points == 2


def spooled_harness(tmp_path: Path, sink: ScriptedSink, max_bytes: int, **influx):
    harness = Harness(sink, tmp_path, **influx)
    harness.writer.spool = Spool(tmp_path / "spool", max_bytes)
    return harness


async def test_writer_spools_while_down_then_writes_the_newest_first(
    tmp_path, monkeypatch
):
    """Test that batches spooled during an outage are acknowledged at once,
    and after it the live batch goes before the backlog, which follows in order."""
    monkeypatch.setattr(batcher_module, "_jittered", lambda delay_s: delay_s)
    down = [True]

    def answer(lines: list[str]) -> Exception | None:
        return SinkError("scripted sink unreachable") if down[0] else None

    sink = ScriptedSink(answer)
    h = spooled_harness(
        tmp_path, sink, 1_000_000, batch_size=3, retry_min_s=0.05, retry_max_s=0.05
    )
    lines = numbered_lines(12)

    async with h.running() as writer:
        settled = [await writer.add(lines[i : i + 3]) for i in range(0, 9, 3)]
        # Acknowledgeable while InfluxDB is down: the spool holds them.
        await asyncio.wait_for(asyncio.gather(*settled), timeout=5)
        assert h.stats.spool_points == 9
        sink.answering.clear()  # the next request waits: live data lines up
        down[0] = False
        # The first try after the outage (a spooled batch) hangs meanwhile.
        assert await wait_until(lambda: len(sink.requests) == 2)
        live = await writer.add(lines[9:])
        sink.answering.set()
        await asyncio.wait_for(live, timeout=5)
        assert await wait_until(lambda: h.stats.spool_points == 0)

    written = sink.stored  # in the order the sink took them
    # The request that reopened the sink was a spooled batch (the oldest);
    # then the live batch, then the rest of the backlog in order.
    assert sorted(written) == sorted(lines)
    assert written.index(lines[9]) < written.index(lines[3])
    assert [line for line in written if line not in lines[9:]] == lines[:9]
    assert h.stats.points_replayed == 9
    assert h.dead() == []


async def test_writer_gives_the_backlog_a_turn_under_steady_live_load(
    tmp_path, monkeypatch
):
    """Test that a live stream that always has a batch due does not starve
    the spool: it is replayed between live writes."""
    h = spooled_harness(tmp_path, ScriptedSink(), 1_000_000, batch_size=2)
    spool = h.writer.spool
    await spool.open()
    backlog = numbered_lines(40)[20:]
    for start in range(0, 20, 2):
        await spool.append(backlog[start : start + 2], body(backlog[:2]))
    live = numbered_lines(20)

    # All live batches are due before the writer's first look.
    pending = [await h.writer.add(live[start : start + 2]) for start in range(0, 20, 2)]
    async with h.running():
        await asyncio.wait_for(asyncio.gather(*pending), timeout=5)
        assert await wait_until(lambda: h.stats.spool_points == 0)

    requests = [tuple(r) for r in h.sink.requests]
    last_live = max(requests.index(tuple(live[i : i + 2])) for i in range(0, 20, 2))
    first_replay = requests.index(tuple(backlog[:2]))
    assert first_replay < last_live, "the backlog waited for all live batches"


async def test_writer_with_a_full_spool_holds_messages_unacknowledged(
    tmp_path, monkeypatch, caplog
):
    """Test that once the spool is full, new lines stay unsettled in memory
    (their messages are not acknowledged), and are written when the sink is back."""
    monkeypatch.setattr(batcher_module, "_jittered", lambda delay_s: delay_s)
    down = [True]
    sink = ScriptedSink(lambda lines: SinkError("unreachable") if down[0] else None)
    lines = numbered_lines(8)
    h = spooled_harness(
        tmp_path, sink, body(lines[:2]) * 2, batch_size=2, retry_min_s=0.05
    )

    async with h.running() as writer:
        spooled = [await writer.add(lines[0:2]), await writer.add(lines[2:4])]
        await asyncio.wait_for(asyncio.gather(*spooled), timeout=5)
        held = await writer.add(lines[4:6])
        await asyncio.sleep(0.3)
        assert not held.done(), "acknowledged with nowhere to keep it"
        assert h.stats.points_buffered == 2
        down[0] = False
        await asyncio.wait_for(held, timeout=5)
        assert await wait_until(lambda: h.stats.spool_points == 0)

    assert sorted(sink.stored) == sorted(lines[:6])
    assert any("is full" in r.getMessage() for r in caplog.records)
    assert h.dead() == []


@pytest.mark.parametrize("spooled", [True, False])
async def test_writer_at_shutdown_spools_what_the_sink_cannot_take(tmp_path, spooled):
    """Test that flush_remaining keeps unwritten lines in the spool when there
    is one, and dead-letters them only when there is not."""
    sink = ScriptedSink(lambda lines: SinkError("unreachable"))
    h = spooled_harness(tmp_path, sink, 1_000_000, batch_size=2)
    if not spooled:
        h.writer.spool = None
    lines = numbered_lines(4)

    writer = h.writer
    task = asyncio.create_task(writer.run())
    pending = await writer.add(lines)
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    left = await writer.flush_remaining(timeout_s=1)
    h.dead_letters.close()

    if spooled:
        assert left == 0
        assert pending.done() and not pending.cancelled()
        assert h.stats.spool_points == 4
        assert h.dead() == []
    else:
        assert left == 4
        assert [entry["reason"] for entry in h.dead()] == ["unwritten_at_shutdown"] * 4

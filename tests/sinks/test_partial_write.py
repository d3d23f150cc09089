"""Partial writes on the real InfluxDB 1.6: every refused point named, none lost.

InfluxDB names only the first reason of a partial write and counts what it
dropped; these tests drive the real BatchWriter over the real InfluxV1Sink
into databases prepared as another tool would have left them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.stats import GatewayStats
from tests.conftest import INFLUX_V1_URL, wait_until
from tests.sinks.test_influx_v1 import influx_config, read_dead_letters, running_writer

T = 1_717_200_000_000_000_000
EARLIER = 1_717_000_000_000_000_000
DAY_NS = 86_400 * 1_000_000_000
CONFLICT = "field_type_conflict"
SINK_LOGGER = "gateway.sinks.batcher"


@dataclass
class Outcome:
    """What one batch did: counters, dead letters and the writer's warnings."""

    stats: GatewayStats
    dead: list[tuple[str, str]]  # (reason, line) in the order kept
    details: dict[str, str]  # line -> the server's text kept with it
    warnings: list[str]


async def write_batch(
    influx_v1: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    lines: list[str],
    **config: Any,
) -> Outcome:
    """Send `lines` as one batch through a real writer and wait until settled."""
    caplog.set_level(logging.INFO, logger=SINK_LOGGER)
    settings = influx_config(influx_v1.database, batch_size=len(lines), **config)
    async with running_writer(settings, tmp_path) as (writer, stats, dead_letters):
        await writer.add(lines)
        assert await wait_until(lambda: writer.buffered == 0)
    entries = read_dead_letters(dead_letters)
    return Outcome(
        stats=stats,
        dead=[(entry["reason"], entry["payload"]) for entry in entries],
        details={entry["payload"]: entry["detail"] for entry in entries},
        warnings=[
            record.getMessage()
            for record in caplog.records
            if record.name == SINK_LOGGER and record.levelno == logging.WARNING
        ],
    )


def assert_conflict_warnings(
    warnings: list[str], expected: list[tuple[str, str, str, int, str]]
) -> None:
    """Check one warning per conflict: field, measurement, types and count."""
    assert len(warnings) == len(expected)
    for field, measurement, existing, count, attempted in expected:
        [match] = [
            text
            for text in warnings
            if text.startswith(f"Field {field!r} of measurement {measurement!r} ")
        ]
        assert f"already exists as type {existing} in InfluxDB v1 at " in match
        assert f"; {count} point(s) of type {attempted} refused and kept in " in match


def stored(influx_v1: Any, measurement: str) -> list[dict[str, Any]]:
    """Return a measurement's rows, oldest first, each without its empty columns."""
    return [
        {key: value for key, value in row.items() if value is not None}
        for row in influx_v1.rows(measurement)
    ]


async def test_partial_write_keeps_both_conflicts_when_the_answer_names_one(
    influx_v1, tmp_path, caplog
):
    """Test that two conflicts answered as one ("dropped=2") are both dead-lettered."""
    pre = f"mx,room=old,m=mx energy=100i,power=5i {EARLIER}\n"
    assert influx_v1.write(pre).status_code == 204
    lines = [
        f"mx,room=a1 energy=1.5 {T}",
        f"mx,room=a2 power=2.5 {T}",
        f"mx,room=a3 voltage=3.5 {T}",
    ]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    assert stored(influx_v1, "mx") == [
        {"energy": 100, "m": "mx", "power": 5, "room": "old", "time": EARLIER},
        {"room": "a3", "time": T, "voltage": 3.5},
    ]
    assert outcome.dead == [(CONFLICT, lines[0]), (CONFLICT, lines[1])]
    assert 'input field \\"energy\\"' in outcome.details[lines[0]]
    assert 'input field \\"power\\"' in outcome.details[lines[1]]
    # The first answer named energy but dropped 2; a second request, of the
    # lines not named, named power.
    assert outcome.stats.write_requests == 2
    assert outcome.stats.points_written == 1
    assert outcome.stats.points_rejected == {CONFLICT: 2}
    assert_conflict_warnings(
        outcome.warnings,
        [
            ("energy", "mx", "integer", 1, "float"),
            ("power", "mx", "integer", 1, "float"),
        ],
    )


async def test_partial_write_keeps_three_conflicts_across_two_measurements(
    influx_v1, tmp_path, caplog
):
    """Test that three conflicts in two measurements cost one request each."""
    pre = (
        f"mx,room=old energy=100i,power=5i {EARLIER}\n"
        f'my,room=old level="low" {EARLIER}\n'
    )
    assert influx_v1.write(pre).status_code == 204
    lines = [
        f"my,room=b1 level=1.5 {T}",
        f"mx,room=a1 energy=1.5 {T}",
        f"mx,room=a2 power=2.5 {T}",
        f"mx,room=a3 voltage=3.5 {T}",
        f"my,room=b2 ok=1i {T}",
    ]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    assert stored(influx_v1, "mx") == [
        {"energy": 100, "power": 5, "room": "old", "time": EARLIER},
        {"room": "a3", "time": T, "voltage": 3.5},
    ]
    assert stored(influx_v1, "my") == [
        {"level": "low", "room": "old", "time": EARLIER},
        {"ok": 1, "room": "b2", "time": T},
    ]
    assert sorted(outcome.dead) == sorted((CONFLICT, line) for line in lines[:3])
    assert outcome.stats.write_requests == 3
    assert outcome.stats.points_written == 2
    assert outcome.stats.points_rejected == {CONFLICT: 3}
    assert_conflict_warnings(
        outcome.warnings,
        [
            ("level", "my", "string", 1, "float"),
            ("energy", "mx", "integer", 1, "float"),
            ("power", "mx", "integer", 1, "float"),
        ],
    )


@pytest.mark.parametrize(
    ("first", "second", "first_type", "second_type"),
    [('"on"', "1.5", "string", "float"), ("1.5", '"on"', "float", "string")],
)
async def test_partial_write_keeps_the_first_type_of_a_new_field_stored(
    influx_v1, tmp_path, caplog, first, second, first_type, second_type
):
    """Test that a new field sent as string and float keeps only the refused one."""
    # The measurement exists in the shard, so InfluxDB stores the first type
    # it sees and answers a partial write for the other.
    assert influx_v1.write(f"n,d=0 other=1i {EARLIER}\n").status_code == 204
    lines = [f"n,d=1 f={first} {T}", f"n,d=2 f={second} {T}", f"n,d=3 g=7i {T}"]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    first_value = "on" if first_type == "string" else 1.5
    assert stored(influx_v1, "n") == [
        {"d": "0", "other": 1, "time": EARLIER},
        {"d": "1", "f": first_value, "time": T},
        {"d": "3", "g": 7, "time": T},
    ]
    assert outcome.dead == [(CONFLICT, lines[1])]
    # A field given two types in one request makes InfluxDB's count
    # unreliable, so the lines not named are sent once more to be sure.
    assert outcome.stats.write_requests == 2
    assert outcome.stats.points_written == 2
    assert outcome.stats.points_rejected == {CONFLICT: 1}
    assert_conflict_warnings(outcome.warnings, [("f", "n", first_type, 1, second_type)])


async def test_partial_write_splits_a_new_field_with_two_types_in_a_new_shard(
    influx_v1, tmp_path, caplog
):
    """Test that a bare "field type conflict" (nothing stored) is halved to the line."""
    lines = [f'n,d=1 f="on" {T}', f"n,d=2 f=1.5 {T}", f"n,d=3 g=7i {T}"]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    assert stored(influx_v1, "n") == [
        {"d": "1", "f": "on", "time": T},
        {"d": "3", "g": 7, "time": T},
    ]
    assert outcome.dead == [(CONFLICT, lines[1])]
    # The whole, then [d=1] stored, then [d=2, d=3] as a partial write.
    assert outcome.stats.write_requests == 3
    assert outcome.stats.points_written == 2
    assert outcome.stats.points_rejected == {CONFLICT: 1}
    assert_conflict_warnings(outcome.warnings, [("f", "n", "string", 1, "float")])


async def test_partial_write_keeps_an_unparsable_line_a_conflict_answer_hides(
    influx_v1, tmp_path, caplog
):
    """Test that a conflict plus an unparsable line dead-letters both, each named."""
    assert influx_v1.write(f"mx,room=old energy=100i {EARLIER}\n").status_code == 204
    lines = [
        f"mx,room=a1 energy=1.5 {T}",
        f"mx,room=a2 power= {T}",
        f"mx,room=a3 voltage=3.5 {T}",
    ]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    assert stored(influx_v1, "mx") == [
        {"energy": 100, "room": "old", "time": EARLIER},
        {"room": "a3", "time": T, "voltage": 3.5},
    ]
    assert outcome.dead == [(CONFLICT, lines[0]), ("unparsable_line", lines[1])]
    assert "missing field value" in outcome.details[lines[1]]
    # InfluxDB's conflict answer says nothing of the unparsable line.
    assert outcome.stats.write_requests == 2
    assert outcome.stats.points_written == 1
    assert outcome.stats.points_rejected == {CONFLICT: 1, "unparsable_line": 1}
    assert len(outcome.warnings) == 2
    assert_conflict_warnings(
        outcome.warnings[:1], [("energy", "mx", "integer", 1, "float")]
    )
    assert outcome.warnings[1].startswith(
        f"InfluxDB v1 at {influx_v1.url} "
        f"(database {influx_v1.database}) refused 1 point(s) (unparsable_line): "
        "partial write: unable to parse 'mx,room=a2 power= "
    )


async def test_partial_write_keeps_a_conflict_another_shard_did_not_report(
    influx_v1, tmp_path, caplog
):
    """Test that a batch over two shards gets both shards' conflicts dead-lettered."""
    later = T + 30 * DAY_NS
    pre = f"mx,room=old energy=100i {T}\nmx,room=old power=5i {later}\n"
    assert influx_v1.write(pre).status_code == 204
    lines = [
        f"mx,room=a1 energy=1.5 {T + 1}",
        f"mx,room=b1 power=2.5 {later + 1}",
        f"mx,room=c voltage=1 {T + 2}",
    ]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    assert stored(influx_v1, "mx") == [
        {"energy": 100, "room": "old", "time": T},
        {"room": "c", "time": T + 2, "voltage": 1.0},
        {"power": 5, "room": "old", "time": later},
    ]
    assert sorted(outcome.dead) == [(CONFLICT, lines[0]), (CONFLICT, lines[1])]
    # InfluxDB answers for one shard only, dropped=1, so points of more than
    # one shard hour are confirmed by sending the lines not named again.
    assert outcome.stats.write_requests == 2
    assert outcome.stats.points_written == 1
    assert outcome.stats.points_rejected == {CONFLICT: 2}


async def test_partial_write_stops_after_the_request_limit_and_keeps_the_rest(
    influx_v1, tmp_path, caplog
):
    """Test that more conflicts than rounds end as unattributed dead letters."""
    fields = [f"f{i}" for i in range(9)]
    pre = "mx,room=old " + ",".join(f"{f}=1i" for f in fields) + f" {EARLIER}\n"
    assert influx_v1.write(pre).status_code == 204
    lines = [f"mx,room=a{i} {f}=1.5 {T}" for i, f in enumerate(fields)]
    lines.append(f"mx,room=ok v=2.5 {T}")

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    assert outcome.stats.write_requests == 8
    assert outcome.stats.points_written == 0
    assert outcome.stats.points_rejected == {
        CONFLICT: 8,
        "partial_write_unattributed": 2,
    }
    named = [line for reason, line in outcome.dead if reason == CONFLICT]
    left = [line for reason, line in outcome.dead if reason != CONFLICT]
    assert sorted(named + left) == sorted(lines)
    assert lines[-1] in left
    assert len(outcome.warnings) == 9
    assert outcome.warnings[-1].startswith(
        f"InfluxDB v1 at {influx_v1.url} "
        f"(database {influx_v1.database}) refused points it did not name "
        "(partial write: field type conflict: input field "
    )
    assert outcome.warnings[-1].endswith(
        "2 point(s) that may or may not be stored are kept in "
        f"{tmp_path / 'dead-letters.jsonl'} as partial_write_unattributed "
        "(replaying stored ones is harmless)"
    )
    # The line that was fine is stored all the same; kept to be safe.
    assert [row["room"] for row in influx_v1.rows("mx")][-1] == "ok"


async def test_partial_write_keeps_what_the_answer_cannot_name_once(
    influx_v1, tmp_path, caplog
):
    """Test that "points beyond retention policy" dead-letters the batch in one go."""
    created = httpx.post(
        f"{INFLUX_V1_URL}/query",
        params={
            "q": f'CREATE RETENTION POLICY "hour" ON "{influx_v1.database}" '
            "DURATION 1h REPLICATION 1"
        },
    )
    assert created.status_code == 200 and "error" not in created.text
    now_ns = time.time_ns()
    lines = [
        f"r,d=old v=1 {now_ns - 3 * 3_600_000_000_000}",
        f"r,d=new v=2 {now_ns}",
    ]

    outcome = await write_batch(
        influx_v1, tmp_path, caplog, lines, retention_policy="hour"
    )

    assert influx_v1.query('SELECT d, v FROM "hour"."r"')[0]["values"] == [
        [now_ns, "new", 2.0]
    ]
    # Nothing names the old point, so no request is sent again; both lines
    # are kept, the stored one too, as replaying it is harmless.
    assert outcome.dead == [
        ("partial_write_unattributed", lines[0]),
        ("partial_write_unattributed", lines[1]),
    ]
    assert "points beyond retention policy dropped=1" in outcome.details[lines[0]]
    assert outcome.stats.write_requests == 1
    assert outcome.stats.points_written == 0
    assert outcome.stats.points_rejected == {"partial_write_unattributed": 2}
    assert len(outcome.warnings) == 1


async def test_partial_write_names_a_line_stored_in_a_shard_without_the_conflict(
    influx_v1, tmp_path, caplog
):
    """Test that a conflict named in two shards but held by one keeps both lines."""
    later = T + 30 * DAY_NS
    assert influx_v1.write(f"mx,room=old energy=100i {T}\n").status_code == 204
    lines = [f"mx,room=a1 energy=1.5 {T + 1}", f"mx,room=a2 energy=2.5 {later}"]

    outcome = await write_batch(influx_v1, tmp_path, caplog, lines)

    # The later shard has no "energy" yet, so it took the float.
    assert stored(influx_v1, "mx") == [
        {"energy": 100, "room": "old", "time": T},
        {"energy": 2.5, "room": "a2", "time": later},
    ]
    # Known limitation: both lines carry a float "energy", so both are kept
    # although the answer dropped one; nothing is left to send again.
    assert outcome.dead == [(CONFLICT, lines[0]), (CONFLICT, lines[1])]
    assert "dropped=1" in outcome.details[lines[1]]
    assert outcome.stats.write_requests == 1
    assert outcome.stats.points_written == 0
    assert outcome.stats.points_rejected == {CONFLICT: 2}

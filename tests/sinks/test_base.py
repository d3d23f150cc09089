"""Reading InfluxDB's refusals: which reason, which facts, retry or not."""

from __future__ import annotations

import socket

import httpx
import pytest

from gateway.sinks import classify_rejection
from gateway.sinks.base import (
    LineFacts,
    describe_failure,
    dropped_count,
    read_line,
    refuses_points,
)

CONFLICT_FACTS = {
    "field": "energy",
    "measurement": "meter",
    "attempted": "float",
    "existing": "integer",
}

# Captured from InfluxDB 1.6.7 (HTTP 400) for the C18 batch.
V1_CONFLICT = (
    '{"error":"partial write: field type conflict: input field \\"energy\\" on '
    'measurement \\"meter\\" is type float, already exists as type integer '
    'dropped=1"}'
)
# InfluxDB 2.x (HTTP 422), as in the C18 case and InfluxDB's documentation.
V2_CONFLICT = (
    '{"code":"unprocessable entity","message":"failure writing points to database: '
    'partial write: field type conflict: input field \\"energy\\" on measurement '
    '\\"meter\\" is type float, already exists as type integer dropped=1"}'
)
# InfluxDB 1.x's X-Influxdb-Error header carries the same words unescaped.
V1_CONFLICT_HEADER = (
    'partial write: field type conflict: input field "energy" on measurement '
    '"meter" is type float, already exists as type integer dropped=1'
)


@pytest.mark.parametrize("body", [V1_CONFLICT, V2_CONFLICT, V1_CONFLICT_HEADER])
def test_classify_rejection_reads_a_field_type_conflict_from_1x_and_2x(body):
    """Test that both InfluxDB 1.x and 2.x conflict texts yield the same facts."""
    assert classify_rejection(body) == ("field_type_conflict", CONFLICT_FACTS)


def test_classify_rejection_quotes_every_unparsable_line_of_a_1x_answer():
    """Test that each line InfluxDB 1.x could not parse is returned, unescaped."""
    body = (
        '{"error":"partial write: unable to parse \'m,d=2 v= 2\': missing field '
        "value\\nunable to parse 'm,d=4 v=\\\"x 4': unbalanced quotes dropped=0\"}"
    )

    reason, facts = classify_rejection(body)

    assert reason == "unparsable_line"
    assert facts["lines"].split("\n") == ["m,d=2 v= 2", 'm,d=4 v="x 4']


def test_classify_rejection_reads_an_unparsable_line_from_2x():
    """Test that InfluxDB 2.x's 400 for a bad line names the line."""
    body = (
        '{"code":"invalid","message":"unable to parse \'meter,device=m5 voltage= '
        "1717200001000000000': missing field value\"}"
    )

    assert classify_rejection(body) == (
        "unparsable_line",
        {"lines": "meter,device=m5 voltage= 1717200001000000000"},
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "<html><head><title>413 Request Entity Too Large</title></head></html>",
            "too_large",
        ),
        (
            '{"code":"request too large","message":"unable to read data: points batch '
            'is too large"}',
            "too_large",
        ),
        ('{"error":"something else entirely"}', "rejected"),
        ("", "rejected"),
    ],
)
def test_classify_rejection_names_other_refusals(body, reason):
    """Test that size refusals (even as HTML) and unknown ones get a reason code."""
    assert classify_rejection(body)[0] == reason


def test_classify_rejection_names_a_bare_field_type_conflict():
    """Test that InfluxDB 1.x's whole-request "field type conflict" is a conflict."""
    assert classify_rejection('{"error":"field type conflict"}\n', 400) == (
        "field_type_conflict",
        {},
    )


@pytest.mark.parametrize(
    ("body", "count"),
    [
        (V1_CONFLICT, 1),
        (V2_CONFLICT.replace("dropped=1", "dropped=12"), 12),
        ('{"error":"partial write: points beyond retention policy dropped=3"}', 3),
        ('{"error":"field type conflict"}', None),
    ],
)
def test_dropped_count_reads_how_many_points_a_partial_write_dropped(body, count):
    """Test that the dropped=N of 1.x and 2.x answers is read, None when absent."""
    assert dropped_count(body) == count


@pytest.mark.parametrize(
    ("line", "facts"),
    [
        (
            "meter,device=m1 energy=101.5 1717200000000000000",
            LineFacts("meter", {"energy": "float"}, 1717200000000000000),
        ),
        (
            'm a=1i,b=2u,c=t,d=FALSE,e="",f=-1.5e3,g=.5,h=-7',
            LineFacts(
                "m",
                {
                    "a": "integer",
                    "b": "unsigned",
                    "c": "boolean",
                    "d": "boolean",
                    "e": "string",
                    "f": "float",
                    "g": "float",
                    "h": "float",
                },
                None,
            ),
        ),
        # Escaped space, comma and equals sign in names; commas, spaces,
        # equals signs and escaped quotes inside a string value.
        (
            'e\\ x,t=a\\ b\\,c f\\ \\,\\=k=1.5,s="q \\"x\\" , y=1",n=2i -5',
            LineFacts("e x", {"f ,=k": "float", "s": "string", "n": "integer"}, -5),
        ),
        ('m v="ends in a backslash\\\\" 5', LineFacts("m", {"v": "string"}, 5)),
    ],
)
def test_read_line_reads_field_types_through_escapes(line, facts):
    """Test that each field's line-protocol type is read, escapes honoured."""
    assert read_line(line) == facts


@pytest.mark.parametrize(
    "line",
    [
        "m,d=2 v= 2",
        'm,d=4 v="x 4',
        'm v="escaped quote at the end\\"',
        "m",
        "m v=1,",
        "m v=nan",
        "m v=1 soon",
        "m,=x v=1",
        "m,k= v=1",
        "m,k v=1",
        " v=1",
    ],
)
def test_read_line_refuses_what_influxdb_cannot_parse(line):
    """Test that a malformed line reads as None, so no refusal is pinned on it."""
    assert read_line(line) is None


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [
        (400, V1_CONFLICT, True),
        (422, V2_CONFLICT, True),
        (413, "<html>413</html>", True),
        (400, '{"code":"invalid","message":"unable to parse ..."}', True),
        # Early 2.0 releases wrapped a partial write in a 500.
        (500, '{"code":"internal error","message":"' + V1_CONFLICT_HEADER + '"}', True),
        (401, '{"code":"unauthorized","message":"unauthorized access"}', False),
        (403, '{"error":"insufficient permissions"}', False),
        (404, '{"error":"database not found: \\"decor\\""}', False),
        (404, '{"code":"not found","message":"bucket \\"decor\\" not found"}', False),
        (429, "", False),
        (503, "", False),
    ],
)
def test_refuses_points_tells_bad_lines_from_server_trouble(status, body, refused):
    """Test that only answers about the lines themselves stop the retries."""
    assert refuses_points(status, body) is refused


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_describe_failure_says_connection_refused_for_a_closed_port():
    """Test that a refused connection is described in the OS's words."""
    port = _free_port()
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{port}/ping")

    assert describe_failure(caught.value) == "Connection refused"


def test_describe_failure_falls_back_to_the_message():
    """Test that an error without an errno is described by its message or type."""
    assert describe_failure(httpx.ReadTimeout("timed out")) == "timed out"
    assert describe_failure(httpx.ReadTimeout("")) == "ReadTimeout"

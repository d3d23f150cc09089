"""Points as line protocol: exact lines, refusals, and a check by another parser.

The property test reads every encoded line back with line-protocol-parser, an
independent implementation of InfluxDB 1.x's parser, and compares it with what
the module docstring promises InfluxDB stores. tests/test_points_roundtrip.py
checks the same promise against the real InfluxDB.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from line_protocol_parser import parse_line

from gateway.points import (
    INT64_MAX,
    INT64_MIN,
    MAX_TIME_NS,
    MIN_TIME_NS,
    Point,
    encode_line,
    escape_field_key,
    escape_measurement,
    escape_tag,
)

T = 1_717_200_000_123_456_789
# Characters with a meaning in line protocol, or in InfluxDB's reading of it.
SPECIAL_CHARS = ' ,="\\\n\r\t\x00#'
# Characters before which InfluxDB swallows a backslash (module docstring, rule 2).
SWALLOWING_CHARS = ',= "'


# --- the promise, stated independently of the encoder -----------------------------


def stored_text(text: str, *, skips_leading: bool = False) -> str:
    """Return the text InfluxDB stores for a name, by the module docstring's rules.

    Rule 3: measurement names and field keys (`skips_leading`) lose leading tabs
    and NULs. Rule 2: a run of backslashes right before , = space or ", or at
    the end, is removed. Rule 1: newline and carriage return become \\n / \\r.
    """
    if skips_leading:
        text = text.lstrip("\t\x00")
    kept: list[str] = []
    for char in text:
        if char in SWALLOWING_CHARS:
            while kept and kept[-1] == "\\":
                kept.pop()
        kept.append(char)
    while kept and kept[-1] == "\\":
        kept.pop()
    return "".join(kept).replace("\n", "\\n").replace("\r", "\\r")


def stored_value(value):
    """Return the value InfluxDB stores for a field value (rule 1 for strings)."""
    if isinstance(value, str):
        return value.replace("\n", "\\n").replace("\r", "\\r")
    return value


def stored_tags(point: Point) -> dict[str, str]:
    """Return the tags InfluxDB stores: sanitised, the empty ones left out."""
    tags = {}
    for key, value in point.tags.items():
        key, value = stored_text(key), stored_text(value)
        if key and value:
            tags[key] = value
    return tags


def stored_point(point: Point) -> tuple[str, dict[str, str], dict]:
    """Return the measurement, tags and fields InfluxDB stores for a point."""
    fields = {
        stored_text(key, skips_leading=True): stored_value(value)
        for key, value in point.fields.items()
    }
    measurement = stored_text(point.measurement, skips_leading=True)
    return measurement, stored_tags(point), fields


def expected_refusal(point: Point) -> str | None:
    """Return a pattern matching the ValueError the point must raise, or None."""
    problems = []
    measurement = stored_text(point.measurement, skips_leading=True)
    if not measurement:
        problems.append("measurement name .*empty")
    elif measurement.startswith("#"):
        problems.append("starts with '#'")
    if any(stored_text(key) == "time" for key in point.tags):
        problems.append("tag key .*reserved by InfluxDB")
    written_tag_keys = [
        stored_text(key)
        for key, value in point.tags.items()
        if stored_text(key) and stored_text(value)
    ]
    if len(set(written_tag_keys)) < len(written_tag_keys):
        problems.append("tag keys .* are both stored as")
    field_keys = [stored_text(key, skips_leading=True) for key in point.fields]
    if not field_keys:
        problems.append("has no field")
    if "" in field_keys:
        problems.append("field key .* is empty")
    if "time" in field_keys:
        problems.append("field key .*reserved by InfluxDB")
    if len(set(field_keys)) < len(field_keys):
        problems.append("field keys .* are both stored as")
    return "|".join(f"({p})" for p in problems) or None


# --- strategies: names and values over all of Unicode, special characters often ----


def names(chars: st.SearchStrategy[str], max_size: int = 8) -> st.SearchStrategy[str]:
    """Generate names: any text, often ending in backslashes, sometimes reserved."""
    text = st.text(chars, min_size=1, max_size=max_size)
    return st.one_of(
        text,
        text,
        st.builds(lambda t, tail: t + tail, text, st.sampled_from(["\\", "\\\\"])),
        st.sampled_from(["", "time", "temp", "_field", "#c", " ", "\t", "\\"]),
    )


def points(
    times: st.SearchStrategy[int] = st.integers(MIN_TIME_NS, MAX_TIME_NS),
    *,
    parser_safe: bool = False,
) -> st.SearchStrategy[Point]:
    """Generate points with up to 3 tags and 1 to 4 fields, over all of Unicode.

    Special characters come often. `parser_safe=True` leaves out what
    line-protocol-parser (a C extension) cannot read but InfluxDB stores: NUL
    characters and subnormal floats (5e-324).
    """
    nul = "\x00" if parser_safe else ""
    chars = st.one_of(
        st.sampled_from(SPECIAL_CHARS.replace(nul, "") if nul else SPECIAL_CHARS),
        st.characters(codec="utf-8", exclude_characters=nul),
    )
    values = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=not nul),
        st.integers(INT64_MIN, INT64_MAX),
        st.booleans(),
        st.text(chars, max_size=20),
    )
    return st.builds(
        Point,
        names(chars),
        st.dictionaries(names(chars), names(chars), max_size=3),
        st.dictionaries(names(chars), values, min_size=1, max_size=4),
        times,
    )


def line(measurement, tags, fields, time_ns=T):
    """Encode a point given by its parts."""
    return encode_line(Point(measurement, tags, fields, time_ns))


# --- C16 inputs: the exact lines -------------------------------------------


def test_encode_line_escapes_space_in_tag_value_c16_input_1():
    """Test that C16 input 1 gives its line: the space in the room is escaped."""
    assert line("temp", {"room": "Living Room"}, {"value": 21.5}) == (
        rf"temp,room=Living\ Room value=21.5 {T}"
    )


def test_encode_line_escapes_comma_space_equals_in_tag_value_c16_input_2():
    """Test that C16 input 2 gives its line; a float 55 is written 55.0."""
    # C16 writes value=55; a float field is written 55.0, the same number.
    assert line("temp", {"room": "Boiler, Main=A"}, {"value": 55.0}) == (
        rf"temp,room=Boiler\,\ Main\=A value=55.0 {T}"
    )


def test_encode_line_escapes_space_and_comma_in_measurement_c16_input_3():
    """Test that C16 input 3 gives its line: measurement space and comma escaped."""
    assert line("boiler temp,raw", {"room": "attic"}, {"value": 60.5}) == (
        rf"boiler\ temp\,raw,room=attic value=60.5 {T}"
    )


def test_encode_line_quotes_strings_and_escapes_field_key_c16_input_4():
    """Test that C16 input 4 gives its line: only quotes and backslashes escaped."""
    fields = {
        "state": "partially open",
        "note": 'say "hi" C:\\temp\\',
        "water level": 3.0,
    }

    assert line("status", {"room": "shade-2"}, fields) == (
        r'status,room=shade-2 state="partially open",'
        rf'note="say \"hi\" C:\\temp\\",water\ level=3.0 {T}'
    )


def test_encode_line_writes_newline_in_string_as_backslash_n_c16_input_5():
    """Test that C16 input 5 keeps both fields, the newline written as \\n."""
    fields = {"state": "line1\nline2", "pos": 40.0}

    assert line("status", {"room": "shade-3"}, fields) == (
        rf'status,room=shade-3 state="line1\\nline2",pos=40.0 {T}'
    )


def test_encode_line_drops_trailing_backslash_of_tag_value_c16_input_6():
    """Test that C16 input 6's tag value C:\\ is written as C: (documented)."""
    assert line("temp", {"room": "C:\\"}, {"value": 19.0}) == (
        f"temp,room=C: value=19.0 {T}"
    )


# --- values -----------------------------------------------------------------


def test_encode_line_writes_each_value_type():
    """Test that ints get an i, floats repr(), booleans true/false, strings quotes."""
    fields = {"i": 42, "n": -7, "f": 0.1, "e": 1e16, "t": True, "b": False, "s": "ok"}

    assert line("m", {}, fields) == (
        f'm i=42i,n=-7i,f=0.1,e=1e+16,t=true,b=false,s="ok" {T}'
    )


def test_encode_line_writes_int64_limits():
    """Test that the smallest and largest 64-bit integers are written."""
    assert line("m", {}, {"lo": INT64_MIN, "hi": INT64_MAX}) == (
        f"m lo={INT64_MIN}i,hi={INT64_MAX}i {T}"
    )


def test_encode_line_leaves_space_comma_equals_in_string_unescaped():
    """Test that a string value escapes only quotes and backslashes."""
    value = 'a b,c=d "e" \\f\\'

    assert line("m", {}, {"s": value}) == rf'm s="a b,c=d \"e\" \\f\\" {T}'


def test_encode_line_writes_carriage_return_in_string_as_backslash_r():
    """Test that a carriage return in a string is written as the text \\r."""
    assert line("m", {}, {"s": "a\r\nb"}) == rf'm s="a\\r\\nb" {T}'


def test_encode_line_writes_float_subclass_as_plain_float():
    """Test that a float subclass is written with float's own text."""

    class Reading(float):
        def __repr__(self) -> str:
            return f"Reading({float(self)})"

    assert line("m", {}, {"v": Reading(1.5)}) == f"m v=1.5 {T}"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_line_refuses_non_finite_float(value):
    """Test that NaN and infinities raise ValueError naming the field."""
    with pytest.raises(ValueError, match=r"field 'level_cm' is (nan|inf|-inf)"):
        line("m", {}, {"ok": 1.0, "level_cm": value})


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10**30])
def test_encode_line_refuses_int_beyond_64_bits(value):
    """Test that an integer outside int64 raises ValueError naming the field."""
    with pytest.raises(ValueError, match="field 'count' = .* does not fit a 64-bit"):
        line("m", {}, {"count": value})


def test_encode_line_refuses_unsupported_value_type():
    """Test that a value of another type raises ValueError naming the field."""
    with pytest.raises(ValueError, match="field 'raw' has a value of type bytes"):
        line("m", {}, {"raw": b"\x00"})


def test_encode_line_refuses_string_over_64_kib():
    """Test that a string over 64 KiB raises ValueError; 64 KiB is written."""
    assert line("m", {}, {"s": "x" * 65_536}).endswith(f'"{"x" * 65_536}" {T}')

    with pytest.raises(ValueError, match="field 'blob' is a string of 65537 bytes"):
        line("m", {}, {"blob": "x" * 65_537})
    with pytest.raises(ValueError, match="field 'blob' is a string of 65538 bytes"):
        line("m", {}, {"blob": "é" * 32_769})


def test_encode_line_refuses_lone_surrogate():
    """Test that a lone surrogate, which UTF-8 cannot carry, raises ValueError."""
    with pytest.raises(ValueError, match="lone surrogate in field 'note'"):
        line("m", {}, {"note": "bad \ud800"})
    with pytest.raises(ValueError, match="lone surrogate in tag 'room'"):
        line("m", {"room": "\udfff"}, {"v": 1.0})


# --- points as a whole ---------------------------------------------------------


def test_encode_line_refuses_point_without_fields():
    """Test that a point with no field raises ValueError naming its measurement."""
    with pytest.raises(ValueError, match="'temp' has no field"):
        line("temp", {"room": "a"}, {})


def test_encode_line_sorts_tags_and_leaves_out_empty_ones():
    """Test that tags are sorted by key and empty keys or values are left out."""
    tags = {"zone": "b", "empty": "", "": "no key", "area": "a"}

    assert line("m", tags, {"v": 1.0}) == f"m,area=a,zone=b v=1.0 {T}"


def test_encode_line_writes_time_range_influxdb_accepts():
    """Test that InfluxDB's extreme times are written, and one beyond them refused."""
    assert line("m", {}, {"v": 1.0}, MIN_TIME_NS).endswith(f" {MIN_TIME_NS}")
    assert line("m", {}, {"v": 1.0}, MAX_TIME_NS).endswith(f" {MAX_TIME_NS}")

    for time_ns in [MIN_TIME_NS - 1, MAX_TIME_NS + 1, 1.5e18]:
        with pytest.raises(ValueError, match="outside what InfluxDB can store"):
            line("m", {}, {"v": 1.0}, time_ns)


def test_encode_line_refuses_series_key_over_65535_bytes():
    """Test that a key of 65,535 bytes with the field key is written, one more not."""
    # measurement "m" + ",t=" + value, then 4 bytes and the field key "v".
    fits = "y" * (65_535 - len("m,t=") - 4 - len("v"))

    assert line("m", {"t": fits}, {"v": 1.0})
    with pytest.raises(ValueError, match="is 65536 bytes; InfluxDB refuses more"):
        line("m", {"t": fits + "y"}, {"v": 1.0})
    # Bytes count, not characters: é takes two, in the tag value and field key.
    with pytest.raises(ValueError, match="field 'é' is 65537 bytes"):
        line("m", {"t": fits[:-1] + "é"}, {"é": 2.0})


# --- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("a b,c=d", r"a\ b\,c=d"),
        ('say "hi"', r'say\ "hi"'),
        ("C:\\temp\\x", "C:\\temp\\x"),
        ("ends\\", "ends"),
        ("two\\\\", "two"),
        ("a\\,b", r"a\,b"),
        ("a\\ b", r"a\ b"),
        ("a\\=b", "a=b"),
        ('a\\"b', 'a"b'),
        ("line\nbreak\r", r"line\nbreak\r"),
        ("\t\x00lead", "lead"),
        (" #not a comment", r"\ #not\ a\ comment"),
        ("time", "time"),
        ("_internal", "_internal"),
        ("Zürich 🌧", r"Zürich\ 🌧"),
    ],
)
def test_escape_measurement_escapes_and_sanitises(name, written):
    """Test that a measurement name is escaped and sanitised as documented."""
    assert escape_measurement(name) == written


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("Living Room", r"Living\ Room"),
        ("Boiler, Main=A", r"Boiler\,\ Main\=A"),
        ('say "hi"', r'say\ "hi"'),
        ("C:\\", "C:"),
        ("C:\\temp\\x", "C:\\temp\\x"),
        ("a\\,b", r"a\,b"),
        ("a\\\\ b", r"a\ b"),
        ("a\\=b", r"a\=b"),
        ("line\nbreak", r"line\nbreak"),
        ("\tlead", "\tlead"),
        ("   ", r"\ \ \ "),
        ("\\", ""),
        ("", ""),
    ],
)
def test_escape_tag_escapes_and_sanitises(text, written):
    """Test that a tag key or value is escaped and sanitised as documented."""
    assert escape_tag(text) == written


@pytest.mark.parametrize(
    ("key", "written"),
    [
        ("water level", r"water\ level"),
        ("a,b=c", r"a\,b\=c"),
        ('say "hi"', r'say\ "hi"'),
        ("ends\\", "ends"),
        ('a\\"b', 'a"b'),
        ("\t\x00lead", "lead"),
        ("Time", "Time"),
        ("_field", "_field"),
    ],
)
def test_escape_field_key_escapes_and_sanitises(key, written):
    """Test that a field key is escaped and sanitised as documented."""
    assert escape_field_key(key) == written


@pytest.mark.parametrize(
    ("measurement", "message"),
    [
        ("", "measurement name is empty"),
        ("\\", r"measurement name '\\\\' is empty once sanitised"),
        ("\t", "measurement name '\\\\t' is empty once sanitised"),
        ("#temp", "measurement name '#temp' starts with '#'"),
        ("\t#temp", "starts with '#', which InfluxDB reads as a comment"),
    ],
)
def test_encode_line_refuses_empty_or_comment_measurement(measurement, message):
    """Test that an empty or '#' measurement raises ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        line(measurement, {}, {"v": 1.0})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"": 1.0}, "field key '' is empty"),
        ({"ok": 1.0, "\\": 1.0}, r"field key '\\\\' is empty once sanitised"),
        ({"time": 1.0}, "field key 'time' is reserved by InfluxDB"),
        ({"ok": 1.0, "time\\": 1.0}, r"field key 'time\\\\' \(stored as 'time'\)"),
    ],
)
def test_encode_line_refuses_empty_or_time_field_key(fields, message):
    """Test that an empty field key or one stored as 'time' raises ValueError."""
    with pytest.raises(ValueError, match=message):
        line("m", {}, fields)


def test_encode_line_refuses_tag_key_time():
    """Test that a tag key 'time', which InfluxDB refuses, raises ValueError."""
    with pytest.raises(ValueError, match="tag key 'time' is reserved by InfluxDB"):
        line("m", {"time": "noon"}, {"v": 1.0})


def test_encode_line_refuses_tag_keys_that_become_the_same():
    """Test that two tag keys sanitised to one raise ValueError naming both."""
    with pytest.raises(ValueError, match=r"tag keys 'room' and 'room\\\\' are both"):
        line("m", {"room": "a", "room\\": "b"}, {"v": 1.0})

    assert line("m", {"room": "a", "room\\": ""}, {"v": 1.0}) == f"m,room=a v=1.0 {T}"


def test_encode_line_refuses_field_keys_that_become_the_same():
    """Test that two field keys sanitised to one raise ValueError naming both."""
    with pytest.raises(ValueError, match=r"field keys 'level' and 'level\\\\' are"):
        line("m", {}, {"level": 1.0, "level\\": "high"})


def test_encode_line_gives_the_same_line_from_the_cache():
    """Test that encoding the same point twice gives the same line."""
    point = Point("a b", {"c,d": "e=f", "g": "h\\"}, {"i j": 'k"l'}, T)

    assert (
        encode_line(point)
        == encode_line(point)
        == (rf'a\ b,c\,d=e\=f,g=h i\ j="k\"l" {T}')
    )


# --- property: another parser reads what the docstring promises -------------------


@settings(max_examples=600, deadline=None)
@given(point=points(parser_safe=True))
def test_encode_line_reads_back_with_independent_parser(point):
    """Test that line-protocol-parser reads each line as the stored text promised."""
    refusal = expected_refusal(point)
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            encode_line(point)
        return

    parsed = parse_line(encode_line(point))

    measurement, tags, fields = stored_point(point)
    assert parsed == {
        "measurement": measurement,
        "tags": tags,
        "fields": fields,
        "time": point.time_ns,
    }
    assert {k: type(v) for k, v in parsed["fields"].items()} == {
        k: type(v) for k, v in fields.items()
    }

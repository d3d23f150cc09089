"""Points through the real InfluxDB 1.x (and VictoriaMetrics): stored as promised.

Each batch goes to a fresh database in one request and is read back with
InfluxQL; what comes back must be exactly what the module docstring of
gateway.points promises (tests.test_points.stored_point states it). The raw-line
tests pin down the server behaviour the encoder's sanitisations rest on.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.points import MAX_KEY_BYTES, Point, encode_line
from tests.conftest import INFLUX_V1_URL, VICTORIA_URL, InfluxV1
from tests.test_points import expected_refusal, points, stored_point

BASE_NS = 1_717_200_000_000_000_000  # 2024-06-01, in ns
INFLUX_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}
Row = tuple[str, frozenset[tuple[str, str]], int]


@pytest.fixture(scope="module")
def influx_url() -> str:
    """Give the local InfluxDB 1.x's URL, failing clearly if it is down."""
    try:
        httpx.get(f"{INFLUX_V1_URL}/ping", timeout=2)
    except httpx.HTTPError:
        pytest.fail(
            f"InfluxDB 1.x is not answering at {INFLUX_V1_URL}: run "
            "`scripts/services up`"
        )
    return INFLUX_V1_URL


def fresh_database(url: str) -> InfluxV1:
    """Create a database no other test uses; close() drops it."""
    database = f"test_points_{uuid.uuid4().hex[:10]}"
    httpx.post(f"{url}/query", params={"q": f'CREATE DATABASE "{database}"'})
    return InfluxV1(url, database)


def stored_rows(influx: InfluxV1) -> dict[Row, dict[str, object]]:
    """Read back every point of the database: (measurement, tags, time) -> fields."""
    rows: dict[Row, dict[str, object]] = {}
    for series in influx.query("SELECT *::field FROM /.*/ GROUP BY *"):
        tags = frozenset((k, v) for k, v in series.get("tags", {}).items() if v)
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            time_ns = row.pop("time")
            fields = {k: v for k, v in row.items() if v is not None}
            rows[(series["name"], tags, time_ns)] = fields
    return rows


def stored_types(influx: InfluxV1) -> dict[tuple[str, str], str]:
    """Return the type InfluxDB keeps for each (measurement, field key)."""
    return {
        (series["name"], key): kind
        for series in influx.query("SHOW FIELD KEYS")
        for key, kind in series["values"]
    }


def same_value(stored: object, expected: object) -> bool:
    """Tell whether a value read back as JSON is the value written."""
    if isinstance(expected, bool | str) or isinstance(stored, bool | str):
        return type(stored) is type(expected) and stored == expected
    # JSON gives 3 for the float 3.0, and 47828449043653150 for 4.782844904365315e16
    # (digits Python reads as an int); stored_types() checks the field's type.
    if isinstance(expected, float) and isinstance(stored, int):
        return float(stored) == expected
    return stored == expected


def batch_without_type_conflicts(batch: list[Point]) -> list[tuple[Point, str]]:
    """Encode a batch like the gateway does, leaving out refused points.

    Also left out: a point whose field key already has another type in the
    batch. In one measurement InfluxDB refuses it (not the encoder's business);
    across measurements a `FROM /.*/` query returns one type per field key and
    leaves the other measurement's values out.
    """
    kept: list[tuple[Point, str]] = []
    types: dict[str, type] = {}
    for index, point in enumerate(batch):
        point = Point(point.measurement, point.tags, point.fields, BASE_NS + index)
        refusal = expected_refusal(point)
        if refusal is not None:
            with pytest.raises(ValueError, match=refusal):
                encode_line(point)
            continue
        _, _, fields = stored_point(point)
        wanted = {key: type(value) for key, value in fields.items()}
        if any(types.get(k, kind) is not kind for k, kind in wanted.items()):
            continue
        types.update(wanted)
        kept.append((point, encode_line(point)))
    return kept


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batch=st.lists(points(st.just(0)), min_size=1, max_size=8))
def test_encode_line_round_trips_through_influxdb_v1(influx_url, batch):
    """Test that InfluxDB 1.x accepts each batch whole and stores what was promised."""
    control = Point("control", {"room": "probe"}, {"value": 1.0}, BASE_NS - 1)
    encoded = batch_without_type_conflicts(batch) + [(control, encode_line(control))]
    influx = fresh_database(influx_url)
    try:
        response = influx.write("\n".join(line for _, line in encoded) + "\n")
        rows = stored_rows(influx)
        types = stored_types(influx)
    finally:
        influx.close()

    assert response.status_code == 204, response.text
    expected: dict[Row, dict[str, object]] = {}
    for point, _ in encoded:
        measurement, tags, fields = stored_point(point)
        expected[(measurement, frozenset(tags.items()), point.time_ns)] = fields
        for key, value in fields.items():
            assert types[(measurement, key)] == INFLUX_TYPES[type(value)]
    assert rows.keys() == expected.keys()
    for row, fields in expected.items():
        assert rows[row].keys() == fields.keys(), row
        for key, value in fields.items():
            assert same_value(rows[row][key], value), (row, key, rows[row][key], value)


def test_encode_line_c16_batch_is_stored_whole_in_influxdb_v1(influx_url):
    """Test that C16's six inputs and a control point, in one request, are stored."""
    batch = [
        Point("temp", {"room": "Living Room"}, {"value": 21.5}, BASE_NS + 1),
        Point("temp", {"room": "Boiler, Main=A"}, {"value": 55.0}, BASE_NS + 2),
        Point("boiler temp,raw", {"room": "attic"}, {"value": 60.5}, BASE_NS + 3),
        Point(
            "status",
            {"room": "shade-2"},
            {
                "state": "partially open",
                "note": 'say "hi" C:\\temp\\',
                "water level": 3.0,
            },
            BASE_NS + 4,
        ),
        Point(
            "status",
            {"room": "shade-3"},
            {"state": "line1\nline2", "pos": 40.0},
            BASE_NS + 5,
        ),
        Point("temp", {"room": "C:\\"}, {"value": 19.0}, BASE_NS + 6),
        Point("control", {"room": "probe"}, {"value": 1.0}, BASE_NS + 7),
    ]
    influx = fresh_database(influx_url)
    try:
        response = influx.write("\n".join(encode_line(p) for p in batch) + "\n")
        temp = influx.rows("temp")
        status = influx.rows("status")
        rooms = influx.query('SHOW TAG VALUES FROM "temp" WITH KEY = "room"')
        raw = influx.rows("boiler temp,raw")
        control = influx.rows("control")
    finally:
        influx.close()

    assert response.status_code == 204, response.text
    assert [(r["room"], r["value"]) for r in temp] == [
        ("Living Room", 21.5),
        ("Boiler, Main=A", 55.0),
        ("C:", 19.0),
    ]
    assert sorted(value for _, value in rooms[0]["values"]) == [
        "Boiler, Main=A",
        "C:",
        "Living Room",
    ]
    assert [(r["room"], r["value"]) for r in raw] == [("attic", 60.5)]
    assert status[0] == {
        "time": BASE_NS + 4,
        "room": "shade-2",
        "state": "partially open",
        "note": 'say "hi" C:\\temp\\',
        "water level": 3.0,
        "pos": None,
    }
    # The newline was written as the two characters \n: InfluxDB stores them.
    assert status[1]["state"] == "line1\\nline2" and status[1]["pos"] == 40.0
    assert [(r["room"], r["value"]) for r in control] == [("probe", 1.0)]


@pytest.mark.parametrize(
    ("line", "status", "stored"),
    [
        # No line stores a tag value, measurement or field key ending in "\":
        # the backslash escapes the separator after it, doubled or not.
        (r"m,t=C:\ v=1 1", 400, None),
        (r"m,t=C:\\ v=1 1", 400, None),
        (r"m\ v=1 1", 400, None),
        # Tag values keep "\\" as two backslashes (no unescaping of "\\").
        (r"m,t=a\\b v=1 1", 204, ("m", {"t": r"a\\b"}, {"v": 1.0})),
        # Field keys unescape \" (tag values do not).
        (r"m a\"b=1 1", 204, ("m", {}, {'a"b': 1.0})),
        (r"m,t=a\"b v=1 1", 204, ("m", {"t": r"a\"b"}, {"v": 1.0})),
        # A line starting with # is a comment: accepted, nothing stored.
        ("#m v=1 1", 204, None),
        # Tabs and NULs at the start of a line or of the field set are skipped.
        ("\tm \tv=1 1", 204, ("m", {}, {"v": 1.0})),
        # A field "time" is dropped silently; a tag "time" refuses the point.
        ("m time=1,v=2 1", 204, ("m", {}, {"v": 2.0})),
        ("m,time=x v=1 1", 400, None),
        # A repeated field key with two types refuses the whole request.
        ('m a=1,a="x" 1\nok v=1 1', 400, None),
        # InfluxDB 1.x stores strings far over the documented 64 KiB.
        (f'm s="{"x" * 70_000}" 1', 204, ("m", {}, {"s": "x" * 70_000})),
    ],
)
def test_influxdb_v1_behaves_as_the_encoder_assumes(influx_url, line, status, stored):
    """Test that InfluxDB 1.x reads raw lines the way the sanitisation rules assume."""
    influx = fresh_database(influx_url)
    try:
        response = influx.write(line + "\n")
        rows = stored_rows(influx)
    finally:
        influx.close()

    assert response.status_code == status, response.text[:300]
    if stored is None:
        assert rows == {}
    else:
        measurement, tags, fields = stored
        assert rows == {(measurement, frozenset(tags.items()), 1): fields}


def test_influxdb_v1_hides_measurement_with_backslash_before_comma(influx_url):
    """Test that a measurement stored as a\\,b exists but no SELECT returns it."""
    influx = fresh_database(influx_url)
    try:
        response = influx.write(r"a\\\,b v=1 1" + "\n")
        measurements = influx.query("SHOW MEASUREMENTS")
        rows = stored_rows(influx)
    finally:
        influx.close()

    # Measurement names are unescaped twice: a\\\,b -> a\\,b -> a\,b.
    assert response.status_code == 204
    assert measurements[0]["values"] == [[r"a\,b"]]
    assert rows == {}


def test_encode_line_key_limit_matches_influxdb_v1(influx_url):
    """Test that InfluxDB 1.x stores a key right at MAX_KEY_BYTES, refuses one more."""
    value = "y" * (MAX_KEY_BYTES - len("m,t=") - 4 - len("v"))
    fits = encode_line(Point("m", {"t": value}, {"v": 1.0}, 1))
    influx = fresh_database(influx_url)
    try:
        accepted = influx.write(fits + "\n")
        refused = influx.write(fits.replace("m,t=", "m,t=y", 1) + "\n")
    finally:
        influx.close()

    assert accepted.status_code == 204, accepted.text[:300]
    assert refused.status_code == 400 and "max key length exceeded" in refused.text


@pytest.fixture(scope="module")
def victoria_url() -> str:
    """Give the local VictoriaMetrics' URL, failing clearly if it is down."""
    try:
        httpx.get(f"{VICTORIA_URL}/health", timeout=2)
    except httpx.HTTPError:
        pytest.fail(f"VictoriaMetrics is not answering at {VICTORIA_URL}")
    return VICTORIA_URL


def test_encode_line_tricky_names_reach_victoriametrics(victoria_url):
    """Test that VictoriaMetrics stores every sanitised point, names as InfluxDB."""
    batch_id = uuid.uuid4().hex[:10]
    now_ns = time.time_ns() - 60_000_000_000
    tricky = [
        ("temp", {"room": "Living Room"}, {"value": 21.5}),
        ("temp", {"room": "Boiler, Main=A"}, {"value": 55.0}),
        ("boiler temp,raw", {"room": "attic"}, {"value": 60.5}),
        ("status", {"room": "shade-2"}, {"water level": 3.0}),
        ("temp", {"room": "C:\\"}, {"value": 19.0}),
        ("temp", {"room": "a\\,b"}, {"value": 2.0}),
        ("temp", {"room": "a\\ b"}, {"value": 3.0}),
        ("temp", {"room": 'say "hi" \\x'}, {"value": 4.0}),
        ("Zürich 🌧", {"room": "line\nbreak"}, {"°C": 5.0}),
        ("m\\,x", {"room": "tab\there"}, {"k\\=v": 6.0, "\tlead": 7.0}),
    ]
    points = [Point(m, t | {"batch": batch_id}, f, now_ns) for m, t, f in tricky]
    # The line InfluxDB 1.x would store as room=a\,b exactly: VictoriaMetrics
    # reads \\ as one backslash, then the comma ends the tag, and it drops the
    # line while answering 204. That is why encode_line writes a,b instead.
    exact_for_v1 = rf"temp,batch={batch_id},room=a\\,b value=99.0 {now_ns}"
    body = "\n".join([*(encode_line(p) for p in points), exact_for_v1]) + "\n"
    # VictoriaMetrics names a series <measurement>_<field> and keeps numbers only.
    expected = set()
    for point in points:
        measurement, tags, fields = stored_point(point)
        for key, value in fields.items():
            if not isinstance(value, str):
                expected.add((f"{measurement}_{key}", frozenset(tags.items()), value))

    with httpx.Client(base_url=victoria_url, timeout=10) as client:
        response = client.post(
            "/api/v2/write",
            params={"bucket": "decor", "org": "decor", "precision": "ns"},
            content=body.encode(),
        )
        deadline = time.monotonic() + 15
        stored: set[tuple[str, frozenset[tuple[str, str]], float]] = set()
        while time.monotonic() < deadline and len(stored) < len(expected):
            time.sleep(0.3)
            client.get("/internal/force_flush")
            export = client.post(
                "/api/v1/export", data={"match[]": f'{{batch="{batch_id}"}}'}
            )
            stored = set()
            for text in export.text.splitlines():
                series = json.loads(text)
                labels = dict(series["metric"])
                name = labels.pop("__name__")
                labels.pop("db", None)
                stored.add((name, frozenset(labels.items()), series["values"][-1]))

    assert response.status_code == 204, response.text
    assert stored == expected

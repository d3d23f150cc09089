"""Sparkplug B through the real broker into InfluxDB 1.x, and rebirth requests back."""

from __future__ import annotations

import asyncio
import uuid

import gmqtt
import pytest

from gateway.decoding.sparkplug_b_pb2 import DataType, Payload
from tests.conftest import wait_until
from tests.decoding.test_sparkplug import C14_EXPECTED, C14_INPUTS

MS = 1_000_000


@pytest.fixture
def group(topic_prefix):
    """Give a Sparkplug group id no other test uses (C14's plant-a, made unique)."""
    return f"plant-a-{topic_prefix}"


@pytest.fixture
async def ncmd_listener(broker):
    """Give the NCMD messages a real client sees on spBv1.0/+/NCMD/+."""
    received: list[tuple[str, bytes, int]] = []
    subscribed = asyncio.Event()

    def on_message(client, topic, payload, qos, properties):
        received.append((topic, payload, qos))
        return 0

    client = gmqtt.Client(f"test-ncmd-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    await client.connect(broker.host, broker.port)
    client.subscribe("spBv1.0/+/NCMD/+", qos=0)
    await asyncio.wait_for(subscribed.wait(), timeout=5)
    yield received
    await client.disconnect()


def _config(gateway_config, influx_v1, group):
    return gateway_config(
        subscriptions=[
            {
                "topic": f"spBv1.0/{group}/#",
                "qos": 0,
                "format": "sparkplug_b",
                "measurement": "sparkplug",
            }
        ],
        influx={"database": influx_v1.database},
    )


def _expected_rows(group: str) -> list[dict]:
    """Return C14's expected points as InfluxDB rows, fields named by type."""
    rows = []
    for line in C14_EXPECTED.splitlines():
        head, field, time_ns = line.split(" ")
        tags = dict(pair.split("=") for pair in head.split(",")[1:])
        text = field.removeprefix("value=")
        row = {"value_bool": None, "value_float": None, "value_int": None}
        if text.endswith("i"):
            row["value_int"] = int(text[:-1])
        elif text in ("true", "false"):
            row["value_bool"] = text == "true"
        else:
            row["value_float"] = float(text)
        rows.append({"time": int(time_ns), **tags, "group": group, **row})
    return sorted(rows, key=lambda r: (r["time"], r["metric"]))


def _rebirth_requests(received, group: str) -> list[Payload]:
    topic = f"spBv1.0/{group}/NCMD/edge-01"
    return [Payload.FromString(p) for t, p, _ in received if t == topic]


async def test_sparkplug_gateway_stores_c14_in_influxdb_v1(
    gateway_config, running_gateway, publisher, influx_v1, group, ncmd_listener
):
    """Test that C14 through the broker stores its ten points, typed, and asks a
    rebirth on the broker for the unknown alias."""
    config = _config(gateway_config, influx_v1, group)
    async with running_gateway(config) as gateway:
        for topic, payload_hex in C14_INPUTS:
            topic = topic.replace("/plant-a/", f"/{group}/")
            publisher.publish(topic, bytes.fromhex(payload_hex), qos=0)
        rows = await influx_v1.wait_for_rows("sparkplug", 10)
        await wait_until(lambda: _rebirth_requests(ncmd_listener, group) != [])
        stats = gateway.stats

    assert sorted(rows, key=lambda r: (r["time"], r["metric"])) == _expected_rows(group)
    field_types = dict(influx_v1.query('SHOW FIELD KEYS FROM "sparkplug"')[0]["values"])
    assert field_types == {
        "value_bool": "boolean",
        "value_float": "float",
        "value_int": "integer",
    }
    (request,) = _rebirth_requests(ncmd_listener, group)
    (metric,) = request.metrics
    assert (metric.name, metric.datatype, metric.boolean_value) == (
        "Node Control/Rebirth",
        DataType.Boolean,
        True,
    )
    assert not request.HasField("seq")
    assert [qos for t, _, qos in ncmd_listener if group in t] == [0]
    # Our own NCMD comes back on spBv1.0/<group>/# and is ignored, not refused.
    assert stats.fields_rejected == {"unknown_alias": 1}
    assert stats.messages_rejected == {}


async def test_sparkplug_gateway_rebirth_request_recovers_unknown_device(
    gateway_config, running_gateway, publisher, influx_v1, group, ncmd_listener
):
    """Test that DDATA before any BIRTH asks a rebirth, and after the edge node
    answers with its BIRTHs the next DDATA is stored by name."""
    config = _config(gateway_config, influx_v1, group)
    ddata = Payload(timestamp=1_717_200_005_000, seq=2)
    ddata.metrics.add(alias=3, timestamp=1_717_200_005_000, int_value=2**32 - 12)
    nbirth = Payload(timestamp=1_717_200_006_000, seq=0)
    nbirth.metrics.add(name="bdSeq", datatype=DataType.UInt64, long_value=1)
    dbirth = Payload(timestamp=1_717_200_006_000, seq=1)
    dbirth.metrics.add(
        name="Hydraulic/Temp",
        alias=3,
        datatype=DataType.Int8,
        timestamp=1_717_200_006_000,
        int_value=2**32 - 11,
    )
    later = Payload(timestamp=1_717_200_007_000, seq=2)
    later.metrics.add(alias=3, timestamp=1_717_200_007_000, int_value=2**32 - 10)
    device_topic = "spBv1.0/{group}/{verb}/edge-01/press-07"

    async with running_gateway(config) as gateway:
        publisher.publish(
            device_topic.format(group=group, verb="DDATA"),
            ddata.SerializeToString(),
            qos=0,
        )
        assert await wait_until(lambda: _rebirth_requests(ncmd_listener, group) != [])
        # The edge node answers the rebirth request as the spec asks.
        publisher.publish(
            f"spBv1.0/{group}/NBIRTH/edge-01", nbirth.SerializeToString(), qos=0
        )
        for verb, payload in (("DBIRTH", dbirth), ("DDATA", later)):
            publisher.publish(
                device_topic.format(group=group, verb=verb),
                payload.SerializeToString(),
                qos=0,
            )
        rows = await influx_v1.wait_for_rows("sparkplug", 2)
        stats = gateway.stats

    assert rows == [
        {
            "time": 1_717_200_006_000 * MS,
            "group": group,
            "edge_node": "edge-01",
            "device": "press-07",
            "metric": "Hydraulic/Temp",
            "value_int": -11,
        },
        {
            "time": 1_717_200_007_000 * MS,
            "group": group,
            "edge_node": "edge-01",
            "device": "press-07",
            "metric": "Hydraulic/Temp",
            "value_int": -10,
        },
    ]
    assert len(_rebirth_requests(ncmd_listener, group)) == 1
    assert stats.fields_rejected == {"no_birth": 1}


def test_influxdb_v1_refuses_c14_literal_points_of_mixed_types(influx_v1):
    """Test that InfluxDB 1.x cannot store C14's points as written: one field
    "value" holding integers, floats and booleans in one measurement."""
    literal = C14_EXPECTED.splitlines()[:4]  # the DBIRTH: 35i, 182.5, 120034i, false

    one_by_one = [influx_v1.write(line) for line in literal]
    batch = influx_v1.write(
        "\n".join(line.replace("sparkplug", "batch", 1) for line in literal)
    )

    assert [r.status_code for r in one_by_one] == [204, 400, 204, 400]
    assert "field type conflict" in one_by_one[1].text
    assert "is type float, already exists as type integer" in one_by_one[1].text
    assert "is type boolean, already exists as type integer" in one_by_one[3].text
    stored = {row["metric"]: row["value"] for row in influx_v1.rows("sparkplug")}
    assert stored == {"Hydraulic/Temp": 35, "Cycle/Count": 120034}
    assert batch.status_code == 400
    assert "field type conflict" in batch.text

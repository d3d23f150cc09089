"""LoRaWAN network servers: TTS v3 and ChirpStack v4 events to points (C12, C13)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.decoding.base import FieldReject
from gateway.decoding.lorawan import (
    METADATA_TYPES,
    ChirpstackV4Decoder,
    TtsV3Decoder,
)
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import make_decoder
from gateway.decoding.values import FieldTyper
from gateway.errors import PayloadError
from gateway.points import Point, Unsigned, encode_line
from gateway.sources.mqtt import MqttMessage

TTS_TOPIC = "v3/farm-sensors@ttn/devices/soil-probe-04/up"
TTS_RX_NS = 1_713_432_600_000_000_000  # 2024-04-18T09:30:00Z
CS_TOPIC = (
    "application/3f5e2d1c-7b9a-4c8e-9d0f-112233445566/device/a84041000181c2d7/event/up"
)
CS_RX_NS = 1_727_057_100_000_000_000  # 2024-09-23T02:05:00Z
LOGGER = "gateway.decoding.lorawan"
TIME_WARNING = "uplink without time, using receive time"
NOT_AN_UPLINK = "not_an_uplink"
PYTHON_TYPES = {
    "integer": int,
    "float": float,
    "boolean": bool,
    "string": str,
}

# C12 input 1, exactly as in the case.
C12_INPUT_1 = (
    b'{"end_device_ids":{"device_id":"soil-probe-04","application_ids":{"application_'
    b'id":"farm-sensors"},"dev_eui":"70B3D57ED0000004","join_eui":"0000000000000000",'
    b'"dev_addr":"260B1234"},"correlation_ids":["as:up:01HVQ8Z6N4T6K2M9X0A1B2C3D4","r'
    b'pc:/ttn.lorawan.v3.AppAs/SimulateUplink:5f1c2e3d"],"received_at":"2024-04-18T0'
    b'9:12:33.481927365Z","uplink_message":{"session_key_id":"AY7xK2bQm9w3T1Z0pL4sVQ='
    b'=","f_port":2,"f_cnt":1187,"frm_payload":"AV8AfAFo","decoded_payload":{"soil_m'
    b'oisture":35.1,"soil_temp":12.4,"battery_v":3.61},"rx_metadata":[{"gateway_ids"'
    b':{"gateway_id":"gw-north","eui":"B827EBFFFE000001"},"time":"2024-04-18T09:12:33'
    b'.262Z","timestamp":2386912345,"rssi":-97,"channel_rssi":-97,"snr":6.25,"uplink'
    b'_token":"ChQKEgoGZ3ctbm9ydGgSCLgn6//+AAABEMnG8Y8JGgwI"},{"gateway_ids":{"gatewa'
    b'y_id":"gw-south","eui":"B827EBFFFE000002"},"timestamp":1167203311,"rssi":-112,'
    b'"channel_rssi":-112,"snr":-4.5,"uplink_token":"ChQKEgoGZ3ctc291dGgSCLgn6//+AAAC'
    b'EO+3xK0EGgwI"}],"settings":{"data_rate":{"lora":{"bandwidth":125000,"spreading_'
    b'factor":9,"coding_rate":"4/5"}},"frequency":"868300000","timestamp":2386912345}'
    b',"received_at":"2024-04-18T09:12:33.270155123Z","consumed_airtime":"0.185344s",'
    b'"network_ids":{"net_id":"000013","tenant_id":"ttn","cluster_id":"eu1"}}}'
)
C12_EXPECTED_1 = (
    "lorawan,application=farm-sensors,device=soil-probe-04,dev_eui=70B3D57ED0000004 "
    "soil_moisture=35.1,soil_temp=12.4,battery_v=3.61,f_port=2i,f_cnt=1187i,"
    "rssi=-97,snr=6.25,spreading_factor=9i,frequency=868300000i 1713431553481927365"
)
# C12 input 2 (MAC-only), exactly as in the case.
C12_INPUT_2 = (
    b'{"end_device_ids":{"device_id":"soil-probe-04","application_ids":{"application_'
    b'id":"farm-sensors"},"dev_eui":"70B3D57ED0000004","dev_addr":"260B1234"},"receiv'
    b'ed_at":"2024-04-18T09:27:33.000000001Z","uplink_message":{"f_cnt":1188,"rx_meta'
    b'data":[{"gateway_ids":{"gateway_id":"gw-north"},"rssi":-99,"channel_rssi":-99,"'
    b'snr":5.5}],"settings":{"data_rate":{"lora":{"bandwidth":125000,"spreading_facto'
    b'r":9,"coding_rate":"4/5"}},"frequency":"867100000"},"received_at":"2024-04-18T0'
    b'9:27:32.990000000Z"}}'
)
C12_EXPECTED_2 = (
    "lorawan,application=farm-sensors,device=soil-probe-04,dev_eui=70B3D57ED0000004 "
    "f_port=0i,f_cnt=1188i,rssi=-99,snr=5.5,spreading_factor=9i,frequency=867100000i "
    "1713432453000000001"
)
# C13 inputs 1 and 2, exactly as in the case.
C13_INPUT_1 = (
    b'{"deduplicationId":"0c9e5a1e-6f2b-4f9e-8a41-4b7e1d2c3a90","time":"2024-09-23T0'
    b'2:02:06.744554+00:00","deviceInfo":{"tenantId":"52f14cd4-aaaa-4abc-9d01-0a0b0c0'
    b'd0e0f","tenantName":"site-ops","applicationId":"3f5e2d1c-7b9a-4c8e-9d0f-1122334'
    b'45566","applicationName":"cold-rooms","deviceProfileId":"0b1d2e3f-bbbb-4c3d-8e9'
    b'f-123456789abc","deviceProfileName":"th-sensor","deviceName":"cold-room-2","dev'
    b'Eui":"a84041000181c2d7","tags":{}},"devAddr":"01a2b3c4","adr":true,"fPort":2,"d'
    b'ata":"CGQBkQ==","object":{"temperature":-18.4,"humidity":71,"door_open":false},'
    b'"rxInfo":[{"gatewayId":"7276ff00aa0b0c0d","uplinkId":31207,"time":"2024-09-23T0'
    b'2:02:06.744554+00:00","rssi":-88,"snr":7.5,"context":"AQIDBA==","metadata":{"re'
    b'gion_common_name":"EU868","region_config_id":"eu868"},"crcStatus":"CRC_OK"}],"t'
    b'xInfo":{"frequency":868100000,"modulation":{"lora":{"bandwidth":125000,"spreadi'
    b'ngFactor":12,"codeRate":"CR_4_5"}}}}'
)
C13_EXPECTED_1 = (
    "lorawan_cs,application=cold-rooms,device=cold-room-2,dev_eui=a84041000181c2d7 "
    "temperature=-18.4,humidity=71,door_open=false,f_cnt=0i,dr=0i,f_port=2i,"
    "rssi=-88,snr=7.5 1727056926744554000"
)
C13_INPUT_2 = (
    b'{"deduplicationId":"7a1b2c3d-1111-4c5d-8e9f-0a1b2c3d4e5f","time":"2024-09-23T0'
    b'2:03:06.907817+00:00","deviceInfo":{"tenantId":"52f14cd4-aaaa-4abc-9d01-0a0b0c0'
    b'd0e0f","tenantName":"site-ops","applicationId":"3f5e2d1c-7b9a-4c8e-9d0f-1122334'
    b'45566","applicationName":"cold-rooms","deviceProfileId":"0b1d2e3f-bbbb-4c3d-8e9'
    b'f-123456789abc","deviceProfileName":"th-sensor","deviceName":"cold-room-2","dev'
    b'Eui":"a84041000181c2d7","tags":{}},"devAddr":"01a2b3c4","adr":true,"dr":5,"fCnt'
    b'":1,"fPort":2,"data":"CGUBkg==","object":{"temperature":-18.3,"humidity":72,"do'
    b'or_open":true},"rxInfo":[{"gatewayId":"7276ff00aa0b0c0d","uplinkId":31590,"time'
    b'":null,"rssi":-90,"snr":6.0,"context":"AQIDBQ==","metadata":{"region_common_nam'
    b'e":"EU868"},"crcStatus":"CRC_OK"}],"txInfo":{"frequency":868300000,"modulation"'
    b':{"lora":{"bandwidth":125000,"spreadingFactor":7,"codeRate":"CR_4_5"}}}}'
)
C13_EXPECTED_2 = (
    "lorawan_cs,application=cold-rooms,device=cold-room-2,dev_eui=a84041000181c2d7 "
    "temperature=-18.3,humidity=72,door_open=true,f_cnt=1i,dr=5i,f_port=2i,"
    "rssi=-90,snr=6 1727056986907817000"
)
C13_EXPECTED_3 = (
    "lorawan_cs,application=cold-rooms,device=cold-room-2,dev_eui=a84041000181c2d7 "
    "f_cnt=2i,dr=5i,f_port=2i,rssi=-91,snr=5 <T_RX3>"
)


def c13_input_3() -> bytes:
    """Return C13 input 3: input 2 without object and time, fCnt 2, rssi -91."""
    document = orjson.loads(C13_INPUT_2)
    document["fCnt"] = 2
    document["deduplicationId"] = "9e8d7c6b-2222-4a3b-9c8d-7e6f5a4b3c2d"
    del document["object"], document["time"]
    document["rxInfo"][0]["rssi"] = -91
    document["rxInfo"][0]["snr"] = 5.0
    return orjson.dumps(document)


def parse_line(line: str, rx_ns: int = 0) -> Point:
    """Read a case's expected line (no escapes): `i` integers, bare floats."""
    head, field_text, time_text = line.split(" ")
    measurement, *tag_items = head.split(",")
    fields: dict[str, Any] = {}
    for item in field_text.split(","):
        key, text = item.split("=")
        if text.endswith("i"):
            fields[key] = int(text[:-1])
        elif text in ("true", "false"):
            fields[key] = text == "true"
        else:
            fields[key] = float(text)
    time_ns = rx_ns if time_text.startswith("<") else int(time_text)
    tags = dict(item.split("=") for item in tag_items)
    return Point(measurement, tags, fields, time_ns)


def assert_point(point: Point, expected: Point) -> None:
    """Assert a point equals the expected one, field types included."""
    assert point.measurement == expected.measurement
    assert point.tags == expected.tags
    assert point.fields == expected.fields
    assert {k: type(v) for k, v in point.fields.items()} == {
        k: type(v) for k, v in expected.fields.items()
    }
    assert point.time_ns == expected.time_ns
    encode_line(point)


def tts(payload: bytes | dict[str, Any], topic: str = TTS_TOPIC, **options: Any):
    """Decode with a fresh TTS v3 decoder."""
    return _decode(TtsV3Decoder(DecoderOptions(**options)), payload, topic, TTS_RX_NS)


def chirpstack(payload: bytes | dict[str, Any], topic: str = CS_TOPIC, **options: Any):
    """Decode with a fresh ChirpStack v4 decoder."""
    decoder = ChirpstackV4Decoder(DecoderOptions(**options))
    return _decode(decoder, payload, topic, CS_RX_NS)


def _decode(decoder, payload, topic, rx_ns):
    if isinstance(payload, dict):
        payload = orjson.dumps(payload)
    measurement = "lorawan" if isinstance(decoder, TtsV3Decoder) else "lorawan_cs"
    return decoder.decode(MqttMessage(topic, payload, 1, False, rx_ns), measurement, {})


def tts_doc(payload: bytes = C12_INPUT_1) -> dict[str, Any]:
    """Return a C12 input as a document to vary."""
    return orjson.loads(payload)


def cs_doc(payload: bytes = C13_INPUT_2) -> dict[str, Any]:
    """Return a C13 input as a document to vary."""
    return orjson.loads(payload)


def _time_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING
    ]


# --- The Things Stack v3 -----------------------------------------------------


def test_tts_v3_decoder_stores_case_c12_input_1_exactly():
    """Test that C12 input 1 gives the case's point: types, best gateway, ns time."""
    decoded = tts(C12_INPUT_1)

    [point] = decoded.points
    assert_point(point, parse_line(C12_EXPECTED_1))
    assert decoded.rejected_fields == []


def test_tts_v3_decoder_stores_case_c12_mac_only_uplink_exactly():
    """Test that C12 input 2 (no f_port, no decoded_payload) gives the case's point."""
    decoded = tts(C12_INPUT_2)

    [point] = decoded.points
    assert_point(point, parse_line(C12_EXPECTED_2))
    assert decoded.rejected_fields == []


def test_tts_v3_decoder_keeps_all_nine_fraction_digits_of_received_at():
    """Test that the time is the top-level received_at to the nanosecond."""
    point = tts(C12_INPUT_1).points[0]

    assert point.time_ns == 1_713_431_553_481_927_365
    assert point.time_ns % 1000 == 365


def test_tts_v3_decoder_without_received_at_uses_receive_time_not_gateway_time(
    caplog,
):
    """Test that a missing top-level received_at falls back to the receive time."""
    document = tts_doc()
    del document["received_at"]

    point = tts(document).points[0]

    assert point.time_ns == TTS_RX_NS
    [warning] = _time_warnings(caplog)
    assert TIME_WARNING in warning and "70B3D57ED0000004" in warning


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [("868300000", 868_300_000), (868300000, 868_300_000), ("923200000", 923_200_000)],
)
def test_tts_v3_decoder_stores_frequency_as_integer(frequency, expected):
    """Test that frequency, as JSON text or number, is always an integer field."""
    document = tts_doc()
    document["uplink_message"]["settings"]["frequency"] = frequency

    fields = tts(document).points[0].fields

    assert fields["frequency"] == expected and type(fields["frequency"]) is int


def test_tts_v3_decoder_leaves_out_unreadable_frequency_and_keeps_the_rest():
    """Test that a frequency that is no integer is rejected alone, never a string."""
    document = tts_doc()
    document["uplink_message"]["settings"]["frequency"] = "868.3 MHz"

    decoded = tts(document)

    assert "frequency" not in decoded.points[0].fields
    assert decoded.points[0].fields["f_cnt"] == 1187
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("frequency", "not_a_number")
    ]


def test_tts_v3_decoder_reads_omitted_zero_counters_as_zero():
    """Test that f_cnt and f_port left out by protobuf JSON are stored as 0i."""
    document = tts_doc()
    del document["uplink_message"]["f_cnt"], document["uplink_message"]["f_port"]

    fields = tts(document).points[0].fields

    assert (fields["f_cnt"], fields["f_port"]) == (0, 0)
    assert type(fields["f_cnt"]) is int and type(fields["f_port"]) is int


def test_tts_v3_decoder_reads_null_counters_as_zero():
    """Test that a null f_cnt reads as protobuf's default 0, not as a crash."""
    document = tts_doc()
    document["uplink_message"]["f_cnt"] = None

    decoded = tts(document)

    assert decoded.points[0].fields["f_cnt"] == 0
    assert decoded.rejected_fields == []


def test_tts_v3_decoder_picks_best_gateway_whatever_the_order():
    """Test that rssi and snr come from the gateway with the highest rssi."""
    document = tts_doc()
    document["uplink_message"]["rx_metadata"].reverse()

    fields = tts(document).points[0].fields

    assert (fields["rssi"], fields["snr"]) == (-97.0, 6.25)


def test_tts_v3_decoder_reads_omitted_snr_of_best_gateway_as_zero():
    """Test that an SNR of 0 dB, left out by protobuf JSON, is stored as 0.0."""
    document = tts_doc()
    del document["uplink_message"]["rx_metadata"][0]["snr"]

    fields = tts(document).points[0].fields

    assert fields["snr"] == 0.0 and type(fields["snr"]) is float


def test_tts_v3_decoder_without_gateways_stores_no_signal_fields():
    """Test that an uplink without rx_metadata has no rssi/snr but is stored."""
    document = tts_doc()
    del document["uplink_message"]["rx_metadata"]

    fields = tts(document).points[0].fields

    assert "rssi" not in fields and "snr" not in fields
    assert fields["soil_moisture"] == 35.1


def test_tts_v3_decoder_stores_decoded_numbers_as_floats_and_nested_joined():
    """Test that decoded integers are floats and nested keys are joined with _."""
    document = tts_doc()
    document["uplink_message"]["decoded_payload"] = {
        "count": 3,
        "probe": {"depth_cm": 20},
        "valve_open": True,
        "mode": "auto",
    }

    fields = tts(document).points[0].fields

    assert fields["count"] == 3.0 and type(fields["count"]) is float
    assert fields["probe_depth_cm"] == 20.0 and type(fields["probe_depth_cm"]) is float
    assert fields["valve_open"] is True and fields["mode"] == "auto"


def test_tts_v3_decoder_leaves_out_null_decoded_value_and_keeps_the_rest():
    """Test that a null in decoded_payload is rejected alone, the point stored."""
    document = tts_doc()
    document["uplink_message"]["decoded_payload"]["soil_temp"] = None

    decoded = tts(document)

    assert "soil_temp" not in decoded.points[0].fields
    assert decoded.rejected_fields == [
        FieldReject("soil_temp", "null_value", "value is null")
    ]


def test_tts_v3_decoder_keeps_metadata_name_for_the_network_value():
    """Test that a decoded 'rssi' is left out so the gateway's rssi keeps the name."""
    document = tts_doc()
    document["uplink_message"]["decoded_payload"]["rssi"] = -40

    decoded = tts(document)

    assert decoded.points[0].fields["rssi"] == -97.0
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("rssi", "metadata_name")
    ]


def test_tts_v3_decoder_leaves_out_decoded_time_key():
    """Test that a decoded 'time' is rejected: InfluxDB reserves it."""
    document = tts_doc()
    document["uplink_message"]["decoded_payload"]["time"] = 12.5

    decoded = tts(document)

    assert "time" not in decoded.points[0].fields
    assert [r.reason for r in decoded.rejected_fields] == ["reserved_key"]


def test_tts_v3_decoder_reports_decoded_payload_that_is_not_an_object():
    """Test that a decoded_payload list is rejected and the metadata still stored."""
    document = tts_doc()
    document["uplink_message"]["decoded_payload"] = [1, 2]

    decoded = tts(document)

    assert decoded.points[0].fields["f_cnt"] == 1187
    assert [r.reason for r in decoded.rejected_fields] == ["not_an_object"]


def test_tts_v3_decoder_stores_last_battery_percentage():
    """Test that the network's battery percentage is stored as a float."""
    document = tts_doc()
    document["uplink_message"]["last_battery_percentage"] = {
        "f_cnt": 1180,
        "value": 90,
        "received_at": "2024-04-18T08:00:00Z",
    }

    fields = tts(document).points[0].fields

    assert fields["battery_percentage"] == 90.0
    assert type(fields["battery_percentage"]) is float


def test_tts_v3_decoder_reads_omitted_battery_value_as_empty_battery():
    """Test that a battery percentage of 0, left out of the JSON, is stored as 0.0."""
    document = tts_doc()
    document["uplink_message"]["last_battery_percentage"] = {"f_cnt": 1180}

    assert tts(document).points[0].fields["battery_percentage"] == 0.0


def test_tts_v3_decoder_stores_requested_metadata():
    """Test that gateway count, airtime, bandwidth and gateway id are opt-in fields."""
    decoded = tts(
        C12_INPUT_1,
        typer=_typer({"gateway_count": "integer", "airtime_s": "float"}),
    )
    asked_by_include = tts(
        C12_INPUT_1, include=frozenset({"gateway_id", "bandwidth", "f_cnt"})
    )

    fields = decoded.points[0].fields
    assert fields["gateway_count"] == 2 and type(fields["gateway_count"]) is int
    assert fields["airtime_s"] == 0.185344
    assert asked_by_include.points[0].fields == {
        "gateway_id": "gw-north",
        "bandwidth": 125000,
        "f_cnt": 1187,
    }


def test_tts_v3_decoder_follows_declared_types():
    """Test that declared types override the default ones of metadata and values."""
    declared = {"rssi": "integer", "f_cnt": "unsigned", "soil_temp": "string"}

    fields = tts(C12_INPUT_1, typer=_typer(declared)).points[0].fields

    assert fields["rssi"] == -97 and type(fields["rssi"]) is int
    assert type(fields["f_cnt"]) is Unsigned and fields["f_cnt"] == 1187
    assert fields["soil_temp"] == "12.4"


def test_tts_v3_decoder_adds_payload_tags_over_default_tags():
    """Test that payload_tags add tags, and win over the format's own tags."""
    decoded = tts(
        C12_INPUT_1,
        payload_tags={
            "tenant": "uplink_message.network_ids.tenant_id",
            "device": "end_device_ids.dev_addr",
        },
    )

    assert decoded.points[0].tags == {
        "application": "farm-sensors",
        "device": "260B1234",
        "dev_eui": "70B3D57ED0000004",
        "tenant": "ttn",
    }


def test_tts_v3_decoder_route_tags_win_over_default_tags():
    """Test that the subscription's fixed and topic tags override device tags."""
    decoder = TtsV3Decoder(DecoderOptions())
    message = MqttMessage(TTS_TOPIC, C12_INPUT_1, 1, False, TTS_RX_NS)

    point = decoder.decode(message, "lorawan", {"application": "x", "site": "s"})

    assert point.points[0].tags["application"] == "x"
    assert point.points[0].tags["site"] == "s"


@pytest.mark.parametrize(
    ("timestamp_key", "expected_ns"),
    [
        ("received_at", 1_713_431_553_481_927_365),
        ("ts", 1_713_431_553_481_927_365),
        ("uplink_message.rx_metadata.0.time", 1_713_431_553_262_000_000),
        ("uplink_message.settings.time", 1_713_431_553_481_927_365),
        ("", TTS_RX_NS),
    ],
)
def test_tts_v3_decoder_time_follows_timestamp_key_where_present(
    timestamp_key, expected_ns
):
    """Test that timestamp_key overrides received_at only where the message has it."""
    point = tts(C12_INPUT_1, timestamp_key=timestamp_key).points[0]

    assert point.time_ns == expected_ns


def test_tts_v3_decoder_reading_time_in_decoded_payload_is_not_a_field():
    """Test that a device time chosen by timestamp_key is the time, not a field."""
    document = tts_doc()
    document["uplink_message"]["decoded_payload"]["ts"] = 1_713_431_500

    point = tts(document, timestamp_key="uplink_message.decoded_payload.ts").points[0]

    assert point.time_ns == 1_713_431_500_000_000_000
    assert "ts" not in point.fields


def test_tts_v3_decoder_refuses_implausible_received_at():
    """Test that a received_at far from the receive time is refused with a reason."""
    document = tts_doc()
    document["received_at"] = "2044-04-18T09:12:33Z"

    with pytest.raises(PayloadError) as caught:
        tts(document)

    assert caught.value.reason == "implausible_timestamp"


@pytest.mark.parametrize(
    ("topic_end", "kind"),
    [
        ("join", "join_accept"),
        ("down/queued", "downlink_queued"),
        ("down/sent", "downlink_sent"),
        ("down/ack", "downlink_ack"),
        ("down/nack", "downlink_nack"),
        ("down/failed", "downlink_failed"),
        ("service/data", "service_data"),
        ("location/solved", "location_solved"),
        ("up/normalized", "uplink_normalized"),
    ],
)
def test_tts_v3_decoder_refuses_other_message_types_as_not_an_uplink(topic_end, kind):
    """Test that join, downlink, service and location messages are not readings."""
    document = {
        "end_device_ids": tts_doc()["end_device_ids"],
        "received_at": "2024-04-18T09:12:33Z",
        kind: {"session_key_id": "AY7x", "f_port": 1},
    }

    with pytest.raises(PayloadError) as caught:
        tts(document, topic=f"v3/farm-sensors@ttn/devices/soil-probe-04/{topic_end}")

    assert caught.value.reason == "not_an_uplink"
    assert kind in caught.value.detail and "exclude_topics" in caught.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"uplink_message": [1]}', "not_an_object"),
        (b'{"app_id": "x", "dev_id": "y", "payload_fields": {"t": 1}}', NOT_AN_UPLINK),
    ],
)
def test_tts_v3_decoder_refuses_what_is_no_uplink_message(payload, reason):
    """Test that invalid JSON, non-objects and v2 messages are refused with a reason."""
    with pytest.raises(PayloadError) as caught:
        tts(payload)

    assert caught.value.reason == reason


# --- ChirpStack v4 -----------------------------------------------------------


def test_chirpstack_v4_decoder_stores_case_c13_input_1_exactly():
    """Test that the first uplink after join (no fCnt, no dr) gets f_cnt=0i, dr=0i."""
    decoded = chirpstack(C13_INPUT_1)

    [point] = decoded.points
    assert_point(point, parse_line(C13_EXPECTED_1))
    assert decoded.rejected_fields == []


def test_chirpstack_v4_decoder_stores_case_c13_input_2_with_null_gateway_time():
    """Test that rxInfo[0].time null neither crashes nor changes the point."""
    decoded = chirpstack(C13_INPUT_2)

    [point] = decoded.points
    assert_point(point, parse_line(C13_EXPECTED_2))
    assert decoded.rejected_fields == []


def test_chirpstack_v4_decoder_stores_case_c13_input_3_at_receive_time(caplog):
    """Test that no object and no time give link metadata at T_RX, one warning."""
    decoded = chirpstack(c13_input_3())

    [point] = decoded.points
    assert_point(point, parse_line(C13_EXPECTED_3, rx_ns=CS_RX_NS))
    [warning] = _time_warnings(caplog)
    assert TIME_WARNING in warning and "a84041000181c2d7" in warning


def test_chirpstack_v4_decoder_warns_once_per_device_about_missing_time(caplog):
    """Test that the missing-time warning is rate-limited per device."""
    decoder = ChirpstackV4Decoder(DecoderOptions())
    other = cs_doc(c13_input_3())
    other["deviceInfo"]["devEui"] = "a84041000181c2d8"
    payloads = [c13_input_3(), c13_input_3(), orjson.dumps(other), c13_input_3()]

    for payload in payloads:
        _decode(decoder, payload, CS_TOPIC, CS_RX_NS)

    warnings = _time_warnings(caplog)
    assert len(warnings) == 2
    assert "a84041000181c2d7" in warnings[0] and "a84041000181c2d8" in warnings[1]


def test_chirpstack_v4_decoder_keeps_field_types_across_case_inputs():
    """Test that f_cnt is an integer and rssi a float in every C13 point."""
    inputs = [C13_INPUT_1, C13_INPUT_2, c13_input_3()]

    points = [chirpstack(payload).points[0] for payload in inputs]

    for name in ("f_cnt", "dr", "f_port", "rssi", "snr"):
        assert {type(p.fields[name]) for p in points} == {
            PYTHON_TYPES[METADATA_TYPES[name]]
        }


def test_chirpstack_v4_decoder_reads_null_counters_as_zero():
    """Test that null fCnt, dr and fPort read as protobuf's default 0."""
    document = cs_doc()
    document.update({"fCnt": None, "dr": None, "fPort": None, "time": None})

    fields = chirpstack(document).points[0].fields

    assert (fields["f_cnt"], fields["dr"], fields["f_port"]) == (0, 0, 0)


def test_chirpstack_v4_decoder_picks_best_rx_info_by_rssi():
    """Test that rssi and snr come from the gateway that heard the uplink best."""
    document = cs_doc()
    document["rxInfo"] = [
        {"gatewayId": "far", "rssi": -118, "snr": -12.25, "time": None},
        {"gatewayId": "near", "rssi": -71, "time": None},
        {"gatewayId": "mid", "rssi": -95, "snr": 3.5},
    ]

    fields = chirpstack(document).points[0].fields
    with_id = chirpstack(document, typer=_typer({"gateway_id": "string"}))

    # snr 0 dB is left out of protobuf JSON: the best gateway's snr is 0.0.
    assert (fields["rssi"], fields["snr"]) == (-71.0, 0.0)
    assert with_id.points[0].fields["gateway_id"] == "near"


@pytest.mark.parametrize("rx_info", [[], None, [None], "gateway"])
def test_chirpstack_v4_decoder_without_usable_rx_info_stores_no_signal(rx_info):
    """Test that an empty, null or malformed rxInfo gives a point without rssi/snr."""
    document = cs_doc()
    document["rxInfo"] = rx_info

    decoded = chirpstack(document)

    assert "rssi" not in decoded.points[0].fields
    assert decoded.points[0].fields["f_cnt"] == 1


def test_chirpstack_v4_decoder_with_null_object_stores_link_metadata():
    """Test that a null object (codec failed) gives no decoded fields, no error."""
    document = cs_doc()
    document["object"] = None

    decoded = chirpstack(document)

    assert decoded.points[0].fields == {
        "f_cnt": 1,
        "dr": 5,
        "f_port": 2,
        "rssi": -90.0,
        "snr": 6.0,
    }
    assert decoded.rejected_fields == []


def test_chirpstack_v4_decoder_stores_requested_radio_metadata():
    """Test that spreading factor, frequency and gateway count are opt-in fields."""
    declared = {"spreading_factor": "integer", "frequency": "integer"}

    fields = (
        chirpstack(C13_INPUT_1, typer=_typer({**declared, "gateway_count": "integer"}))
        .points[0]
        .fields
    )

    assert (fields["spreading_factor"], fields["frequency"]) == (12, 868_100_000)
    assert fields["gateway_count"] == 1


def test_chirpstack_v4_decoder_stores_status_event_battery_and_margin():
    """Test that a status event stores battery percentage, margin and power source."""
    document = {
        "deduplicationId": "5d0c",
        "time": "2024-09-23T02:04:00.5+00:00",
        "deviceInfo": cs_doc()["deviceInfo"],
        "margin": 7,
        "batteryLevel": 87.4,
    }
    topic = CS_TOPIC.replace("/event/up", "/event/status")

    [point] = chirpstack(document, topic=topic).points

    assert point.fields == {
        "battery_percentage": 87.4,
        "margin": 7,
        "external_power_source": False,
    }
    assert type(point.fields["margin"]) is int
    assert point.time_ns == 1_727_057_040_500_000_000
    assert point.tags["dev_eui"] == "a84041000181c2d7"


@pytest.mark.parametrize(
    "flags", [{"externalPowerSource": True}, {"batteryLevelUnavailable": True}]
)
def test_chirpstack_v4_decoder_status_without_battery_level_stores_no_battery(
    flags,
):
    """Test that mains power or an unknown level stores no battery, not 0 %."""
    document = {"time": "2024-09-23T02:04:00Z", "deviceInfo": {"devEui": "a1"}}
    topic = CS_TOPIC.replace("/event/up", "/event/status")

    fields = chirpstack({**document, **flags}, topic=topic).points[0].fields

    assert "battery_percentage" not in fields
    assert fields["margin"] == 0
    assert fields["external_power_source"] is flags.get("externalPowerSource", False)


def test_chirpstack_v4_decoder_status_with_omitted_level_is_empty_battery():
    """Test that batteryLevel 0, left out by protobuf JSON, is stored as 0.0."""
    document = {"time": "2024-09-23T02:04:00Z", "deviceInfo": {"devEui": "a1"}}

    point = chirpstack(
        document, topic=CS_TOPIC.replace("/event/up", "/event/status")
    ).points[0]

    assert point.fields["battery_percentage"] == 0.0


@pytest.mark.parametrize(
    "event", ["join", "ack", "txack", "log", "location", "integration"]
)
def test_chirpstack_v4_decoder_refuses_other_events_as_not_an_uplink(event):
    """Test that join, ack, txack, log, location and integration events are refused."""
    document = {"time": "2024-09-23T02:04:00Z", "deviceInfo": cs_doc()["deviceInfo"]}

    with pytest.raises(PayloadError) as caught:
        chirpstack(document, topic=CS_TOPIC.replace("/event/up", f"/event/{event}"))

    assert caught.value.reason == "not_an_uplink"
    assert event in caught.value.detail


def test_chirpstack_v4_decoder_tells_events_by_keys_on_custom_topics():
    """Test that without /event/<type> in the topic, the keys tell the event."""
    status = {"time": "2024-09-23T02:04:00Z", "deviceInfo": {"devEui": "a1"}}

    uplink = chirpstack(C13_INPUT_2, topic="lorawan/cold-room-2").points[0]
    battery = chirpstack({**status, "margin": 3}, topic="lorawan/a1").points[0]

    assert uplink.fields["f_cnt"] == 1
    assert battery.fields["margin"] == 3
    with pytest.raises(PayloadError) as caught:
        chirpstack(status, topic="lorawan/a1")
    assert caught.value.reason == "not_an_uplink"


def test_chirpstack_v4_decoder_refuses_v3_event_without_device_info():
    """Test that a ChirpStack v3 uplink (no deviceInfo) is refused, not untagged."""
    v3 = {"applicationID": "1", "devEUI": "qEBBAAGBwtc=", "fCnt": 3, "object": {}}

    with pytest.raises(PayloadError) as caught:
        chirpstack(v3)

    assert caught.value.reason == "not_chirpstack_v4"


def test_registry_builds_lorawan_decoders_by_format_name():
    """Test that the formats tts_v3 and chirpstack_v4 build these decoders."""
    tts_decoder = make_decoder("tts_v3", DecoderOptions())
    cs_decoder = make_decoder("chirpstack_v4", DecoderOptions())

    assert isinstance(tts_decoder, TtsV3Decoder) and tts_decoder.name == "tts_v3"
    assert isinstance(cs_decoder, ChirpstackV4Decoder)
    assert cs_decoder.name == "chirpstack_v4"


# --- Types stay stable whatever the network server leaves out ----------------

_TTS_OPTIONAL = (
    ("uplink_message", "f_port"),
    ("uplink_message", "f_cnt"),
    ("uplink_message", "decoded_payload"),
    ("uplink_message", "rx_metadata"),
    ("uplink_message", "settings"),
    ("uplink_message", "consumed_airtime"),
    ("received_at",),
)
_CS_OPTIONAL = (("fCnt",), ("dr",), ("fPort",), ("object",), ("rxInfo",), ("time",))
_ALL_METADATA = dict(METADATA_TYPES)


@settings(max_examples=60, deadline=None)
@given(
    dropped=st.sets(st.sampled_from(_TTS_OPTIONAL)),
    nulled=st.sets(st.sampled_from(_TTS_OPTIONAL)),
    as_text=st.booleans(),
)
def test_tts_v3_decoder_keeps_one_type_per_field(dropped, nulled, as_text):
    """Test that every metadata field has its one type, whatever is omitted or null."""
    document = tts_doc()
    _vary(document, dropped, nulled)
    if as_text and isinstance(document["uplink_message"].get("f_cnt"), int):
        document["uplink_message"]["f_cnt"] = str(document["uplink_message"]["f_cnt"])

    decoded = tts(document, typer=_typer(_ALL_METADATA))

    _assert_metadata_types(decoded.points[0].fields)


@settings(max_examples=60, deadline=None)
@given(
    dropped=st.sets(st.sampled_from(_CS_OPTIONAL)),
    nulled=st.sets(st.sampled_from(_CS_OPTIONAL)),
    source=st.sampled_from([C13_INPUT_1, C13_INPUT_2]),
)
def test_chirpstack_v4_decoder_keeps_one_type_per_field(dropped, nulled, source):
    """Test that every metadata field has its one type, whatever is omitted or null."""
    document = cs_doc(source)
    _vary(document, dropped, nulled)

    decoded = chirpstack(document, typer=_typer(_ALL_METADATA))

    _assert_metadata_types(decoded.points[0].fields)
    assert {"f_cnt", "dr", "f_port"} <= set(decoded.points[0].fields)


def _vary(document: dict[str, Any], dropped: set, nulled: set) -> None:
    for path in dropped | nulled:
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if path in dropped:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = None


def _assert_metadata_types(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name in METADATA_TYPES:
            assert type(value) is PYTHON_TYPES[METADATA_TYPES[name]], name


def _typer(declared: dict[str, str]) -> FieldTyper:
    return FieldTyper(declared)

"""The Tasmota decoder: SENSOR and STATE objects, and their local reading times."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

import pytest

from gateway.app import build_routes
from gateway.config import GatewayConfig
from gateway.decoding import Route
from gateway.decoding.options import DecoderOptions
from gateway.decoding.tasmota import TasmotaDecoder
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

RX_NS = 1_721_000_000_000_000_000  # 2024-07-14T23:33:20Z, after both C04 inputs
C04_SUMMER = (
    b'{"Time":"2024-07-14T09:30:00","ENERGY":{"TotalStartTime":"2023-11-02T18:44:10",'
    b'"Total":12.345,"Yesterday":0.412,"Today":0.105,"Period":2,"Power":23,'
    b'"ApparentPower":31,"ReactivePower":20,"Factor":0.74,"Voltage":231,'
    b'"Current":0.134}}'
)
C04_WINTER = C04_SUMMER.replace(b"2024-07-14T09", b"2024-01-14T09").replace(
    b'"Power":23', b'"Power":25'
)
C04_INCLUDE = [
    "ENERGY_Power",
    "ENERGY_Voltage",
    "ENERGY_Current",
    "ENERGY_Total",
    "ENERGY_Factor",
]
C04_SUMMER_NS = 1_720_974_600_000_000_000  # 2024-07-14T16:30:00Z
C04_WINTER_NS = 1_705_253_400_000_000_000  # 2024-01-14T17:30:00Z
SUMMER_AS_UTC_NS = 1_720_949_400_000_000_000  # 2024-07-14T09:30:00Z: 7 h early
STATE = (
    b'{"Time":"2024-07-14T09:30:00","Uptime":"0T01:23:45","UptimeSec":5025,'
    b'"Heap":25,"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":1,'
    b'"POWER":"ON","Wifi":{"AP":1,"SSId":"city-iot","BSSId":"AA:BB:CC:DD:EE:FF",'
    b'"Channel":6,"Mode":"11n","RSSI":64,"Signal":-68,"LinkCount":1,'
    b'"Downtime":"0T00:00:03"}}'
)
LOS_ANGELES = {"timezone": "America/Los_Angeles"}
LA = ZoneInfo("America/Los_Angeles")


def _message(topic: str, payload: bytes, received_ns: int = RX_NS) -> MqttMessage:
    return MqttMessage(topic, payload, qos=1, retain=False, received_ns=received_ns)


def _route(decoding: dict | None = None, **subscription) -> Route:
    config = GatewayConfig.model_validate(
        {
            "decoding": decoding or {},
            "subscriptions": [
                {
                    "topic_template": "tele/{device}/SENSOR",
                    "format": "tasmota",
                    "measurement": "tasmota",
                    **subscription,
                }
            ],
        }
    )
    return build_routes(config)[0]


def _decode(topic: str, payload: bytes, **options):
    decoder = TasmotaDecoder(DecoderOptions(**options))
    return decoder.decode(_message(topic, payload), "tasmota", {})


def _c04_lines(route: Route, *payloads: bytes) -> list[str]:
    lines = []
    for payload in payloads:
        decoded = route.decode(_message("tele/plug-lab-3/SENSOR", payload))
        assert decoded.rejected_fields == []
        lines.extend(encode_line(point) for point in decoded.points)
    return lines


def test_tasmota_decoder_c04_reads_local_time_in_the_configured_zone():
    """Test that C04's summer and winter inputs give its expected points exactly."""
    route = _route(include=C04_INCLUDE, **LOS_ANGELES)

    lines = _c04_lines(route, C04_SUMMER, C04_WINTER)

    assert lines == [
        "tasmota,device=plug-lab-3 ENERGY_Total=12.345,ENERGY_Power=23.0,"
        f"ENERGY_Factor=0.74,ENERGY_Voltage=231.0,ENERGY_Current=0.134 {C04_SUMMER_NS}",
        "tasmota,device=plug-lab-3 ENERGY_Total=12.345,ENERGY_Power=25.0,"
        f"ENERGY_Factor=0.74,ENERGY_Voltage=231.0,ENERGY_Current=0.134 {C04_WINTER_NS}",
    ]
    assert str(SUMMER_AS_UTC_NS) not in lines[0]


def test_tasmota_decoder_c04_default_timezone_gives_the_same_points():
    """Test that [decoding] default_timezone reads C04 as a subscription zone does."""
    with_default = _route(
        decoding={"default_timezone": "America/Los_Angeles"}, include=C04_INCLUDE
    )
    with_own = _route(include=C04_INCLUDE, **LOS_ANGELES)

    assert _c04_lines(with_default, C04_SUMMER, C04_WINTER) == _c04_lines(
        with_own, C04_SUMMER, C04_WINTER
    )


def test_tasmota_decoder_c04_without_zone_stores_input_1_at_receive_time(caplog):
    """Test that C04's variant stores input 1 at T_RX with one warning, never UTC."""
    caplog.set_level(logging.WARNING, logger="gateway.decoding")
    route = _route(include=C04_INCLUDE)

    lines = _c04_lines(route, C04_SUMMER)

    assert lines == [
        "tasmota,device=plug-lab-3 ENERGY_Total=12.345,ENERGY_Power=23.0,"
        f"ENERGY_Factor=0.74,ENERGY_Voltage=231.0,ENERGY_Current=0.134 {RX_NS}"
    ]
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        "Tasmota device 'plug-lab-3' sends local time without a zone and no "
        "timezone is configured (Time '2024-07-14T09:30:00'); storing its readings "
        "at receive time"
    )


def test_tasmota_decoder_without_zone_warns_once_per_device(caplog):
    """Test that naive Time and no zone give receive time, one warning a device."""
    caplog.set_level(logging.WARNING, logger="gateway.decoding")
    route = _route(topic_template="tele/{device}/+")

    times = [
        route.decode(_message(topic, payload, RX_NS + i)).points[0].time_ns
        for i, (topic, payload) in enumerate(
            [
                ("tele/plug-lab-3/SENSOR", C04_SUMMER),
                ("tele/plug-lab-3/SENSOR", C04_WINTER),
                ("tele/plug-lab-3/STATE", STATE),
                ("tele/plug-lab-4/SENSOR", C04_SUMMER),
            ]
        )
    ]

    assert times == [RX_NS, RX_NS + 1, RX_NS + 2, RX_NS + 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'plug-lab-3'" in warnings[0] and "'plug-lab-4'" in warnings[1]
    assert "no timezone is configured" in warnings[0]


@pytest.mark.parametrize(
    ("time_json", "expected_ns"),
    [
        # SetOption52 adds the offset: it wins over the configured zone.
        (b'"Time":"2024-07-14T18:30:00+02:00"', C04_SUMMER_NS),
        # `Time 4`: local time with milliseconds.
        (b'"Time":"2024-07-14T09:30:00.123"', C04_SUMMER_NS + 123_000_000),
        # `Time 1`: local text and UTC epoch seconds; the epoch is exact.
        (b'"Time":"2024-07-14T09:30:00","Epoch":1720974600', C04_SUMMER_NS),
        # `Time 2`: UTC epoch seconds only.
        (b'"Time":1720974600', C04_SUMMER_NS),
        # An hour after the spring-forward gap: PDT already applies.
        (b'"Time":"2024-03-10T03:30:00"', 1_710_066_600_000_000_000),
    ],
)
def test_tasmota_decoder_reads_every_time_style(time_json, expected_ns):
    """Test that each Tasmota Time style gives the exact UTC time in ns."""
    payload = b"{" + time_json + b',"ANALOG":{"A0":512}}'

    decoded = _decode("tele/pump-2/SENSOR", payload, zone=LA)

    assert decoded.points[0].time_ns == expected_ns
    assert decoded.points[0].fields == {"ANALOG_A0": 512.0}


def test_tasmota_decoder_epoch_needs_no_zone(caplog):
    """Test that `Time 1` payloads are read exactly, with no zone and no warning."""
    caplog.set_level(logging.WARNING, logger="gateway.decoding")
    payload = b'{"Time":"2024-07-14T09:30:00","Epoch":1720974600,"ANALOG":{"A0":1}}'

    decoded = _decode("tele/pump-2/SENSOR", payload)

    assert decoded.points[0].time_ns == C04_SUMMER_NS
    assert "Epoch" not in decoded.points[0].fields
    assert caplog.records == []


def test_tasmota_decoder_unset_clock_uses_receive_time_with_one_warning(caplog):
    """Test that a 1970 Time (no NTP yet) is stored at receive time, not refused."""
    caplog.set_level(logging.WARNING, logger="gateway.decoding")
    decoder = TasmotaDecoder(DecoderOptions(zone=LA))
    payload = b'{"Time":"1970-01-01T00:00:42","ANALOG":{"A0":1}}'

    first = decoder.decode(_message("tele/pump-2/SENSOR", payload), "tasmota", {})
    again = decoder.decode(_message("tele/pump-2/SENSOR", payload), "tasmota", {})

    assert first.points[0].time_ns == again.points[0].time_ns == RX_NS
    [warning] = [r.getMessage() for r in caplog.records]
    assert "'pump-2' has not set its clock" in warning


def test_tasmota_decoder_keeps_state_metadata_a_user_expects():
    """Test that STATE keeps numbers, Wi-Fi and POWER text, and drops repeated text."""
    decoded = _decode("tele/plug-lab-3/STATE", STATE, zone=LA)

    point = decoded.points[0]
    assert point.tags == {"device": "plug-lab-3"}
    assert point.time_ns == C04_SUMMER_NS
    assert point.fields == {
        "UptimeSec": 5025.0,
        "Heap": 25.0,
        "SleepMode": "Dynamic",
        "Sleep": 50.0,
        "LoadAvg": 19.0,
        "MqttCount": 1.0,
        "POWER": "ON",
        "Wifi_AP": 1.0,
        "Wifi_SSId": "city-iot",
        "Wifi_BSSId": "AA:BB:CC:DD:EE:FF",
        "Wifi_Channel": 6.0,
        "Wifi_Mode": "11n",
        "Wifi_RSSI": 64.0,
        "Wifi_Signal": -68.0,
        "Wifi_LinkCount": 1.0,
    }
    assert decoded.rejected_fields == []


def test_tasmota_decoder_stores_declared_boolean_relays_as_booleans():
    """Test that POWER1/POWER2 declared boolean become true/false, not text."""
    payload = b'{"Time":"2024-07-14T09:30:00","POWER1":"ON","POWER2":"OFF"}'
    fields = {"POWER1": "boolean", "POWER2": "boolean"}

    decoded = _route(topic_template="tele/{device}/STATE", fields=fields).decode(
        _message("tele/strip-1/STATE", payload)
    )

    assert decoded.points[0].fields == {"POWER1": True, "POWER2": False}
    assert "POWER1=true,POWER2=false" in encode_line(decoded.points[0])


def test_tasmota_decoder_flattens_sensor_objects_and_drops_units():
    """Test that DS18B20 and AM2301 objects become fields and TempUnit is left out."""
    payload = (
        b'{"Time":"2024-07-14T09:30:00","DS18B20-1":{"Id":"01144A0CB2AA",'
        b'"Temperature":22.6},"DS18B20-2":{"Id":"3C01D607A1B2","Temperature":-3},'
        b'"AM2301":{"Temperature":22.5,"Humidity":55.3,"DewPoint":13.0},'
        b'"PressureUnit":"hPa","TempUnit":"C"}'
    )

    decoded = _decode("tele/cold-room/SENSOR", payload, zone=LA)

    assert decoded.points[0].fields == {
        "DS18B20-1_Id": "01144A0CB2AA",
        "DS18B20-1_Temperature": 22.6,
        "DS18B20-2_Id": "3C01D607A1B2",
        "DS18B20-2_Temperature": -3.0,
        "AM2301_Temperature": 22.5,
        "AM2301_Humidity": 55.3,
        "AM2301_DewPoint": 13.0,
    }


def test_tasmota_decoder_keeps_left_out_text_when_included():
    """Test that naming TotalStartTime or TempUnit in include keeps it."""
    payload = C04_SUMMER[:-1] + b',"TempUnit":"C"}'
    include = frozenset({"ENERGY_TotalStartTime", "TempUnit", "ENERGY_Power"})

    decoded = _decode("tele/plug-lab-3/SENSOR", payload, zone=LA, include=include)

    assert decoded.points[0].fields == {
        "ENERGY_TotalStartTime": "2023-11-02T18:44:10",
        "ENERGY_Power": 23.0,
        "TempUnit": "C",
    }


def test_tasmota_decoder_multi_channel_energy_and_unreadable_sensors():
    """Test that arrays become _<index> and null or nan readings are left out alone."""
    payload = (
        b'{"Time":"2024-07-14T09:30:00","ENERGY":{"Power":[23,0],"Voltage":231},'
        b'"DHT11":{"Temperature":null,"Humidity":nan},"ANALOG":{"A0":17}}'
    )

    decoded = _decode("tele/plug-2ch/SENSOR", payload, zone=LA)

    assert decoded.points[0].fields == {
        "ENERGY_Power_0": 23.0,
        "ENERGY_Power_1": 0.0,
        "ENERGY_Voltage": 231.0,
        "ANALOG_A0": 17.0,
    }
    assert [(r.field, r.reason) for r in decoded.rejected_fields] == [
        ("DHT11_Temperature", "null_value"),
        ("DHT11_Humidity", "non_finite"),
    ]
    assert "nan" not in encode_line(decoded.points[0]).lower()


def test_tasmota_decoder_unwraps_status_answers():
    """Test that stat/<device>/STATUS10 (StatusSNS) decodes as a SENSOR object."""
    payload = b'{"StatusSNS":{"Time":"2024-07-14T09:30:00","ENERGY":{"Power":23}}}'

    decoded = _decode("stat/plug-lab-3/STATUS10", payload, zone=LA)

    assert decoded.points[0].fields == {"ENERGY_Power": 23.0}
    assert decoded.points[0].tags == {"device": "plug-lab-3"}
    assert decoded.points[0].time_ns == C04_SUMMER_NS


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("tele/plug-lab-3/LWT", b"Online"),
        ("tele/plug-lab-3/LWT", b"Offline"),
        ("tele/plug-lab-3/INFO1", b'{"Info1":{"Module":"Sonoff Basic"}}'),
        ("stat/plug-lab-3/RESULT", b'{"POWER":"ON"}'),
        ("stat/plug-lab-3/POWER", b"ON"),
    ],
)
def test_tasmota_decoder_ignores_messages_that_are_not_telemetry(topic, payload):
    """Test that LWT, INFO and command echoes give no point and raise nothing."""
    decoded = _decode(topic, payload)

    assert decoded.points == [] and decoded.rejected_fields == []


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("tele/plug-lab-3/SENSOR", "plug-lab-3"),
        # A FullTopic changed from %prefix%/%topic%/ to tasmota/%topic%/%prefix%/
        ("tasmota/plug-lab-3/tele/SENSOR", "tasmota/plug-lab-3"),
    ],
)
def test_tasmota_decoder_names_the_device_from_the_topic(topic, device):
    """Test that without a captured device tag, the device is the topic's %topic%."""
    decoded = _decode(topic, b'{"ANALOG":{"A0":1}}')

    assert decoded.points[0].tags == {"device": device}


def test_tasmota_decoder_keeps_a_device_tag_the_template_captured():
    """Test that a device tag from the topic template is not replaced."""
    decoder = TasmotaDecoder(DecoderOptions())

    decoded = decoder.decode(
        _message("tele/plug-lab-3/SENSOR", b'{"ANALOG":{"A0":1}}'),
        "tasmota",
        {"device": "kitchen", "site": "depok"},
    )

    assert decoded.points[0].tags == {"device": "kitchen", "site": "depok"}


def test_tasmota_decoder_without_time_uses_receive_time():
    """Test that a payload without Time, or timestamp_key empty, is at receive time."""
    assert _decode("tele/a/SENSOR", b'{"A":{"B":1}}').points[0].time_ns == RX_NS
    decoded = _decode("tele/a/SENSOR", C04_SUMMER, zone=LA, timestamp_key="")
    assert decoded.points[0].time_ns == RX_NS


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"Time":"2024-07-14T09:30:00","TempUnit":"C"}', "no_fields"),
        (b'{"Time":"yesterday","ANALOG":{"A0":1}}', "bad_timestamp"),
        (b'{"Time":"2034-07-14T09:30:00","ANALOG":{"A0":1}}', "implausible_timestamp"),
    ],
)
def test_tasmota_decoder_refuses_unusable_messages(payload, reason):
    """Test that a message with nothing usable raises PayloadError with its reason."""
    with pytest.raises(PayloadError) as caught:
        _decode("tele/plug-lab-3/SENSOR", payload, zone=LA)

    assert caught.value.reason == reason
    assert caught.value.topic == "tele/plug-lab-3/SENSOR"

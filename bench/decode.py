"""How many messages per second does each payload format decode into points?

For every format in `gateway.decoding.registry.FORMATS`, the gateway's own
per-message work: `Route.decode` (topic template, decoder, subscription
options, with the route built by `gateway.app.build_routes` from a
`GatewayConfig`, as in production) and then `encode_line` of every point.
Payloads are the shapes of the tests and of ../shared/cases (C02, C03, C04,
C07, C12, C13, C14, C16, C18) and, for `json`, the simulated Depok fleet
under the reference subscription of config/gateway.toml. Every message has
its own values, time and device (a fleet of about `FLEET_SIZE`), built
afresh each round, so no parse or string hash is reused from an earlier one.

The baseline, measured in the same round on the same payloads: `orjson.loads`
of each payload; for `influx` (not JSON) `line_protocol_parser.parse_line`
of each line, a C parser; for `sparkplug_b` `Payload.FromString` (protobuf,
upb). It says what merely reading the bytes costs on this machine right now.
Sparkplug BIRTHs are sent before each round's timed DATA messages, untimed.
The `auto` format is measured on the `json` workload: detection + decoding.

Reported: the median over `--rounds` of messages/s, points/s and baseline
messages/s, and the median of each round's ratio decode/baseline (both rates
taken back to back, so a busy moment hits both). Formats are taken in a
rotated order each round.

    .venv/bin/python bench/decode.py --messages 10000 --rounds 5

Prints a Markdown table; writes bench/results/<YYYY-MM-DD>-decode.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import line_protocol_parser
import orjson

from devices import SimulationOptions, list_devices
from gateway.app import build_routes
from gateway.config import GatewayConfig
from gateway.decoding import Route
from gateway.decoding.registry import FORMATS
from gateway.decoding.sparkplug_b_pb2 import DataType, Payload
from gateway.errors import PayloadError
from gateway.points import encode_line
from gateway.sources.mqtt import MqttMessage

__all__ = ["WORKLOADS", "Workload", "main"]

logger = logging.getLogger(__name__)

START_S = 1_717_200_000  # 2024-06-01T00:00:00Z, first reading time of a round
RECEIVE_DELAY_NS = 2_000_000_000
FLEET_SIZE = 50
# Messages checked (untimed) before the rounds: each must give a point. They
# are numbered from CHECKED_FIRST, apart from every timed one.
CHECKED_MESSAGES = 300
CHECKED_FIRST = 10_000_000
LOS_ANGELES = ZoneInfo("America/Los_Angeles")

# Shapes from the tests and cases; each message loads one afresh and varies it.
C02_INPUT_2 = (
    b'{"state":"ON","linkquality":26,"power":9.7,"current":0.05,"voltage":230.8,'
    b'"energy":3.43,"update":{"state":"idle","installed_version":16909577},'
    b'"update_available":false,"last_seen":"2024-05-01T10:05:00+02:00"}'
)
C04_SENSOR = (
    b'{"Time":"2024-07-14T09:30:00","ENERGY":{"TotalStartTime":"2023-11-02T18:44:10",'
    b'"Total":12.345,"Yesterday":0.412,"Today":0.105,"Period":2,"Power":23,'
    b'"ApparentPower":31,"ReactivePower":20,"Factor":0.74,"Voltage":231,'
    b'"Current":0.134}}'
)
C07_STATUS = (
    b'{"id":0, "source":"init", "output":true, "apower":412.3, "voltage":229.1, '
    b'"freq":50.0, "current":1.802, "pf":0.98, "aenergy":{"total":98211.442,'
    b'"by_minute":[6247.2,6253.9,6240.3],"minute_ts":1700000040}, '
    b'"temperature":{"tC":60.4, "tF":140.7}}'
)
C07_B1 = (
    b'{"src":"shellyplus1pm-a1b2c3d4e5f6","dst":"pv-relay-1/events",'
    b'"method":"NotifyStatus","params":{"ts":1700000061.37,"switch:0":{"id":0,'
    b'"aenergy":{"by_minute":[6251.0,6247.2,6253.9],"minute_ts":1700000100,'
    b'"total":98217.690}}}}'
)
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
# C14's press: the metrics its DBIRTH declares, as (alias, name, datatype).
C14_METRICS = (
    (3, "Hydraulic/Temp", DataType.Int32),
    (4, "Hydraulic/Pressure", DataType.Double),
    (5, "Cycle/Count", DataType.Int64),
    (6, "Door/Open", DataType.Boolean),
)

MakeMessage = Callable[[int], tuple[str, bytes, int]]


@dataclass(frozen=True)
class Workload:
    """One format's subscription, its messages, and the baseline parser."""

    # The format, which names its subscription in SUBSCRIPTIONS_TOML.
    name: str
    # Message number n (distinct over all rounds) -> (topic, payload, time ns).
    make: MakeMessage
    baseline: Callable[[bytes], object] = orjson.loads
    baseline_name: str = "orjson.loads"
    # Sent untimed to each round's fresh route first (Sparkplug BIRTHs).
    prelude: Callable[[], list[MqttMessage]] = field(default=lambda: [])


@dataclass
class Run:
    """One timed round of one workload."""

    messages_per_s: float
    points_per_s: float
    baseline_per_s: float

    @property
    def ratio(self) -> float:
        """Return decode messages/s over baseline messages/s."""
        return self.messages_per_s / self.baseline_per_s


def message(topic: str, payload: bytes, time_ns: int) -> MqttMessage:
    """Return a message received shortly after its reading time."""
    return MqttMessage(topic, payload, 1, False, time_ns + RECEIVE_DELAY_NS)


def reading_s(n: int) -> int:
    """Return message n's reading time: one message a second from START_S."""
    return START_S + n


def iso_utc(at_s: int, fraction: str = "000") -> str:
    """Return epoch second `at_s` plus `.fraction` as ISO 8601 UTC text."""
    moment = datetime.datetime.fromtimestamp(at_s, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction}Z"


def wave(n: int, low: float, high: float, step: float = 0.01) -> float:
    """Return a value that changes with every message, within [low, high)."""
    return round(low + (n * step) % (high - low), 3)


# --- one message of each format ------------------------------------------------
FLEET = list_devices(SimulationOptions(devices_per_type=FLEET_SIZE // 3), START_S)


def json_fleet(n: int) -> tuple[str, bytes, int]:
    """Return a reading of the simulated Depok fleet, as its devices send it."""
    device = FLEET[n % len(FLEET)]
    at_s = reading_s(n)
    return device.topic, device.payload(at_s), at_s * 10**9


def bare_value(n: int) -> tuple[str, bytes, int]:
    """Return a room's bare number, named by its topic (C16)."""
    quantity, low, high = (("temp", 18, 32), ("humidity", 30, 90), ("co2", 400, 900))[
        n % 3
    ]
    topic = f"site/room-{n % FLEET_SIZE:03d}/{quantity}"
    return topic, f"{wave(n, low, high, 0.07)}".encode(), reading_s(n) * 10**9


def line_protocol(n: int) -> tuple[str, bytes, int]:
    """Return three lines forwarded by Telegraf, with a comment (C18 B)."""
    at_ns = reading_s(n) * 10**9
    idle = wave(n, 50, 99)
    payload = (
        f"# from telegraf\n"
        f"cpu,cpu=cpu-total usage_idle={idle},usage_user={round(99 - idle, 3)} "
        f"{at_ns}\n"
        f"disk,path=/var\\ lib free={10**9 - n}i,used_percent={wave(n, 40, 60)},"
        f"ro=false {at_ns}\n"
        f"mem used_percent={wave(n, 20, 80, 0.03)},available={2**33 - n}i {at_ns}\n"
    )
    return f"telegraf/edge-{n % FLEET_SIZE:02d}", payload.encode(), at_ns


def senml(n: int) -> tuple[str, bytes, int]:
    """Return an energy meter's SenML pack: 4 units, so 4 points."""
    at_s = reading_s(n)
    pack = [
        {"bn": f"urn:dev:mac:0024befffe80{n % FLEET_SIZE:04x}:", "bt": at_s},
        {"n": "power", "u": "W", "v": wave(n, 100, 900, 0.3)},
        {"n": "voltage", "u": "V", "v": wave(n, 220, 240)},
        {"n": "current", "u": "A", "v": wave(n, 0.5, 4.0, 0.003)},
        {"n": "energy", "u": "Wh", "v": 98211.5 + n, "s": 12 + n},
    ]
    return f"senml/em-{n % FLEET_SIZE:02d}", orjson.dumps(pack), at_s * 10**9


def tasmota(n: int) -> tuple[str, bytes, int]:
    """Return a plug's SENSOR report in Los Angeles local time (C04)."""
    at_s = reading_s(n)
    document = orjson.loads(C04_SENSOR)
    local = datetime.datetime.fromtimestamp(at_s, LOS_ANGELES)
    document["Time"] = local.strftime("%Y-%m-%dT%H:%M:%S")
    energy = document["ENERGY"]
    energy.update(Total=round(12.345 + n / 1000, 3), Power=20 + n % 40)
    energy.update(Voltage=225 + n % 10, Current=wave(n, 0.1, 0.3, 0.001))
    topic = f"tele/plug-{n % FLEET_SIZE:03d}/SENSOR"
    return topic, orjson.dumps(document), at_s * 10**9


def zigbee2mqtt(n: int) -> tuple[str, bytes, int]:
    """Return a plug's Zigbee2MQTT state object (C02 input 2)."""
    at_s = reading_s(n)
    document = orjson.loads(C02_INPUT_2)
    document.update(linkquality=20 + n % 200, power=wave(n, 5, 15, 0.1))
    document.update(current=wave(n, 0.02, 0.08, 0.001), voltage=wave(n, 225, 235))
    document.update(energy=round(3.43 + n / 1000, 3), last_seen=iso_utc(at_s))
    topic = f"zigbee2mqtt/plug-{n % FLEET_SIZE:02d}"
    return topic, orjson.dumps(document), at_s * 10**9


def shelly_status(n: int) -> tuple[str, bytes, int]:
    """Return a Shelly Gen2 switch status object (C07 A2)."""
    document = orjson.loads(C07_STATUS)
    document.update(apower=wave(n, 300, 500, 0.3), voltage=wave(n, 225, 235))
    document.update(current=wave(n, 1.3, 2.2, 0.001))
    document["aenergy"]["total"] = round(98211.442 + n / 10, 3)
    document["aenergy"]["by_minute"] = [6247.2 + n % 7, 6253.9, 6240.3 - n % 5]
    document["aenergy"]["minute_ts"] = reading_s(n) // 60 * 60
    topic = f"pv-relay-{n % FLEET_SIZE}/status/switch:0"
    return topic, orjson.dumps(document), reading_s(n) * 10**9


def shelly_rpc(n: int) -> tuple[str, bytes, int]:
    """Return a Shelly Gen2 NotifyStatus event (C07 B1)."""
    at_s = reading_s(n) + 0.37
    document = orjson.loads(C07_B1)
    device = f"pv-relay-{n % FLEET_SIZE}"
    document.update(src=f"shellyplus1pm-a1b2c3d4{n % FLEET_SIZE:04x}")
    document["dst"] = f"{device}/events"
    document["params"]["ts"] = at_s
    energy = document["params"]["switch:0"]["aenergy"]
    energy.update(total=round(98217.69 + n / 10, 3), minute_ts=int(at_s) // 60 * 60)
    energy["by_minute"] = [6251.0 + n % 9, 6247.2, 6253.9 - n % 4]
    return f"{device}/events/rpc", orjson.dumps(document), int(at_s * 10**9)


def esphome(n: int) -> tuple[str, bytes, int]:
    """Return an ESPHome sensor's plain-text state (C03)."""
    sensor, low, high = (
        ("power_factor", 0.5, 1.0),
        ("temperature", 18, 32),
        ("voltage", 220, 240),
    )[n % 3]
    topic = f"esphome-node-{n % FLEET_SIZE:02d}/sensor/{sensor}/state"
    return topic, f"{wave(n, low, high, 0.003)}".encode(), reading_s(n) * 10**9


def tts_v3(n: int) -> tuple[str, bytes, int]:
    """Return a The Things Stack v3 uplink, two gateways (C12 input 1)."""
    at_s = reading_s(n)
    document = orjson.loads(C12_INPUT_1)
    device = f"soil-probe-{n % FLEET_SIZE:02d}"
    document["end_device_ids"]["device_id"] = device
    document["end_device_ids"]["dev_eui"] = f"70B3D57ED00000{n % FLEET_SIZE:02X}"
    document["received_at"] = iso_utc(at_s, "481927365")
    uplink = document["uplink_message"]
    uplink["f_cnt"] = 1187 + n
    uplink["decoded_payload"] = {
        "soil_moisture": wave(n, 20, 45, 0.1),
        "soil_temp": wave(n, 8, 20, 0.05),
        "battery_v": wave(n, 3.3, 3.7, 0.001),
    }
    uplink["rx_metadata"][0]["rssi"] = -90 - n % 20
    uplink["received_at"] = iso_utc(at_s, "270155123")
    topic = f"v3/farm-sensors@ttn/devices/{device}/up"
    return topic, orjson.dumps(document), at_s * 10**9


def chirpstack_v4(n: int) -> tuple[str, bytes, int]:
    """Return a ChirpStack v4 uplink event (C13 input 2)."""
    at_s = reading_s(n)
    document = orjson.loads(C13_INPUT_2)
    eui = f"a84041000181{n % FLEET_SIZE:04x}"
    document["time"] = iso_utc(at_s, "907817").replace("Z", "+00:00")
    document["deviceInfo"].update(deviceName=f"cold-room-{n % FLEET_SIZE}", devEui=eui)
    document["fCnt"] = 1 + n
    document["object"] = {
        "temperature": wave(n, -20, -16, 0.01),
        "humidity": 60 + n % 30,
        "door_open": n % 11 == 0,
    }
    document["rxInfo"][0].update(rssi=-80 - n % 25, snr=wave(n, -5, 9, 0.5))
    application = document["deviceInfo"]["applicationId"]
    topic = f"application/{application}/device/{eui}/event/up"
    return topic, orjson.dumps(document), at_s * 10**9


def sparkplug_topic(verb: str, device: int | None = None) -> str:
    """Return a topic of C14's edge node, or of one of its presses."""
    topic = f"spBv1.0/plant-a/{verb}/edge-01"
    return topic if device is None else f"{topic}/press-{device:02d}"


def sparkplug_births() -> list[MqttMessage]:
    """Return the NBIRTH and every press's DBIRTH, as C14 declares them."""
    time_ns = START_S * 10**9
    node = Payload(timestamp=START_S * 1000, seq=0)
    node.metrics.add(name="bdSeq", datatype=DataType.Int64, long_value=0)
    node.metrics.add(
        name="Node Control/Rebirth", datatype=DataType.Boolean, boolean_value=False
    )
    births = [message(sparkplug_topic("NBIRTH"), node.SerializeToString(), time_ns)]
    for device in range(FLEET_SIZE):
        birth = Payload(timestamp=START_S * 1000, seq=1 + device % 255)
        for alias, name, datatype in C14_METRICS:
            metric = birth.metrics.add(name=name, alias=alias, datatype=datatype)
            metric.timestamp = START_S * 1000
            if datatype == DataType.Boolean:
                metric.boolean_value = False
            elif datatype == DataType.Double:
                metric.double_value = 182.5
            elif datatype == DataType.Int32:
                metric.int_value = 35
            else:
                metric.long_value = 120034
        topic = sparkplug_topic("DBIRTH", device)
        births.append(message(topic, birth.SerializeToString(), time_ns))
    return births


def sparkplug_data(n: int) -> tuple[str, bytes, int]:
    """Return a press's DDATA: three metrics by alias (C14)."""
    at_ms = reading_s(n) * 1000
    payload = Payload(timestamp=at_ms, seq=n % 256)
    # Int32 travels in the unsigned int_value: two's complement, as C14's -12.
    payload.metrics.add(alias=3, timestamp=at_ms, int_value=(n % 80 - 20) & 0xFFFFFFFF)
    payload.metrics.add(alias=4, timestamp=at_ms, double_value=wave(n, 170, 190))
    payload.metrics.add(alias=5, timestamp=at_ms, long_value=120034 + n)
    topic = sparkplug_topic("DDATA", n % FLEET_SIZE)
    return topic, payload.SerializeToString(), at_ms * 10**6


def parse_lines(payload: bytes) -> object:
    """Parse every line of a line-protocol payload with the C parser."""
    return [
        line_protocol_parser.parse_line(line)
        for line in payload.decode().splitlines()
        if line and not line.startswith("#")
    ]


# The subscriptions, as an operator writes them in config/gateway.toml (the
# cases' illustrative configs mapped onto our keys); `auto` reads the json
# workload.
SUBSCRIPTIONS_TOML = """
[[subscriptions]]
format = "json"
topic_template = "city/{agency}/{device_type}/{device_id}/telemetry"
measurement = "{device_type}"
timestamp_key = "ts"

[[subscriptions]]
format = "auto"
topic_template = "city/{agency}/{device_type}/{device_id}/telemetry"
measurement = "{device_type}"
timestamp_key = "ts"

[[subscriptions]]
format = "value"
topic_template = "site/{room}/{quantity}"
measurement = "{quantity}"
tags = {site = "depok"}

[[subscriptions]]
format = "influx"
topic_template = "telegraf/{host}"
tags = {site = "depok"}

[[subscriptions]]
format = "senml"
topic_template = "senml/{device}"
measurement = "energy"

[[subscriptions]]
format = "tasmota"
topic_template = "tele/{device}/SENSOR"
measurement = "tasmota"
timezone = "America/Los_Angeles"
include = ["ENERGY_Power", "ENERGY_Voltage", "ENERGY_Current", "ENERGY_Total",
           "ENERGY_Factor"]

[[subscriptions]]
format = "zigbee2mqtt"
topic = "zigbee2mqtt/+"
exclude_topics = ["zigbee2mqtt/bridge/#"]
topic_template = "zigbee2mqtt/{device}"
measurement = "zigbee"
timestamp_key = "last_seen"

[[subscriptions]]
format = "shelly"
topic_template = "{device}/status/{component}"
measurement = "shelly"

[[subscriptions]]
format = "shelly_rpc"
topic_template = "{device}/events/rpc"
measurement = "shelly"
timestamp_key = "params.ts"

[[subscriptions]]
format = "esphome"
topic = "+/sensor/+/state"
topic_template = "{node}/+/{sensor}/state"
measurement = "esphome"

[[subscriptions]]
format = "tts_v3"
topic = "v3/+/devices/+/up"
measurement = "lorawan"
timestamp_key = "received_at"
[subscriptions.fields]
f_port = "integer"
f_cnt = "integer"
rssi = "float"
snr = "float"
spreading_factor = "integer"
frequency = "integer"

[[subscriptions]]
format = "chirpstack_v4"
topic = "application/+/device/+/event/up"
measurement = "lorawan_cs"
timestamp_key = "time"
[subscriptions.fields]
f_cnt = "integer"
dr = "integer"
f_port = "integer"
rssi = "float"
snr = "float"

[[subscriptions]]
format = "sparkplug_b"
topic = "spBv1.0/plant-a/#"
qos = 0
measurement = "sparkplug"
"""
SUBSCRIPTIONS = {
    sub["format"]: sub for sub in tomllib.loads(SUBSCRIPTIONS_TOML)["subscriptions"]
}
WORKLOADS = [
    Workload("json", json_fleet),
    Workload("value", bare_value),
    Workload(
        "influx",
        line_protocol,
        parse_lines,
        "line_protocol_parser.parse_line per line",
    ),
    Workload("senml", senml),
    Workload("tasmota", tasmota),
    Workload("zigbee2mqtt", zigbee2mqtt),
    Workload("shelly", shelly_status),
    Workload("shelly_rpc", shelly_rpc),
    Workload("esphome", esphome),
    Workload("tts_v3", tts_v3),
    Workload("chirpstack_v4", chirpstack_v4),
    Workload(
        "sparkplug_b",
        sparkplug_data,
        Payload.FromString,
        "Payload.FromString (protobuf upb)",
        sparkplug_births,
    ),
    Workload("auto", json_fleet),
]


# --- measuring -----------------------------------------------------------------
def route_for(workload: Workload) -> Route:
    """Return a fresh route for the workload, its BIRTHs (if any) already seen."""
    subscription = SUBSCRIPTIONS[workload.name]
    [route] = build_routes(
        GatewayConfig.model_validate({"subscriptions": [subscription]})
    )
    for birth in workload.prelude():
        route.decode(birth)
    return route


def messages_of(workload: Workload, first: int, count: int) -> list[MqttMessage]:
    """Return messages first .. first + count - 1, built afresh."""
    return [message(*workload.make(n)) for n in range(first, first + count)]


def decode_all(route: Route, messages: list[MqttMessage]) -> int:
    """Decode and encode every message as the gateway does; return the points."""
    points = 0
    for item in messages:
        lines = [encode_line(point) for point in route.decode(item).points]
        points += len(lines)
    return points


def parse_all(parse: Callable[[bytes], object], messages: list[MqttMessage]) -> None:
    """Parse every payload with the baseline parser."""
    for item in messages:
        parse(item.payload)


def check(workload: Workload) -> dict[str, float]:
    """Decode some messages untimed; stop if one gives no point or is refused."""
    route = route_for(workload)
    points = rejected = 0
    for item in messages_of(workload, CHECKED_FIRST, CHECKED_MESSAGES):
        try:
            decoded = route.decode(item)
        except PayloadError as exc:
            raise SystemExit(f"{workload.name}: {item.topic} refused: {exc}") from None
        if not decoded.points:
            raise SystemExit(f"{workload.name}: {item.topic} gave no point")
        points += len(decoded.points)
        rejected += len(decoded.rejected_fields)
        for point in decoded.points:
            encode_line(point)
    return {
        "points_per_message": points / CHECKED_MESSAGES,
        "rejected_fields_per_message": rejected / CHECKED_MESSAGES,
    }


def run_once(workload: Workload, first: int, count: int) -> Run:
    """Time the baseline, then the decoder, on the same fresh messages."""
    messages = messages_of(workload, first, count)
    route = route_for(workload)
    start = time.perf_counter()
    parse_all(workload.baseline, messages)
    baseline_s = time.perf_counter() - start
    start = time.perf_counter()
    points = decode_all(route, messages)
    decode_s = time.perf_counter() - start
    return Run(count / decode_s, points / decode_s, count / baseline_s)


def summarise(workload: Workload, runs: list[Run]) -> dict[str, Any]:
    """Return the medians of one workload's rounds, and every round's rates."""
    rate = statistics.median(r.messages_per_s for r in runs)
    return {
        "format": workload.name,
        "messages_per_s": round(rate),
        "points_per_s": round(statistics.median(r.points_per_s for r in runs)),
        "baseline_per_s": round(statistics.median(r.baseline_per_s for r in runs)),
        "ratio_to_baseline": round(statistics.median(r.ratio for r in runs), 4),
        "us_per_message": round(1e6 / rate, 2),
        "baseline": workload.baseline_name,
        "rates": [round(r.messages_per_s) for r in runs],
        "baseline_rates": [round(r.baseline_per_s) for r in runs],
    }


def print_table(summary: list[dict[str, Any]]) -> None:
    """Print one Markdown row per format."""
    print("| format | messages/s | points/s | baseline/s | ratio | µs/message |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in summary:
        print(
            f"| {row['format']} | {row['messages_per_s']:,} | "
            f"{row['points_per_s']:,} | {row['baseline_per_s']:,} | "
            f"{row['ratio_to_baseline']:.3f}x | {row['us_per_message']:.1f} |"
        )


def auto_overhead(runs: dict[str, list[Run]]) -> dict[str, float]:
    """Compare auto with json on the same workload, round by round."""
    pairs = list(zip(runs.get("auto", []), runs.get("json", []), strict=False))
    if not pairs:
        return {}
    return {
        "auto_over_json_rate": round(
            statistics.median(a.messages_per_s / j.messages_per_s for a, j in pairs), 4
        ),
        "extra_us_per_message": round(
            statistics.median(
                1e6 / a.messages_per_s - 1e6 / j.messages_per_s for a, j in pairs
            ),
            2,
        ),
    }


def write_results(document: dict[str, Any], suffix: str) -> Path:
    """Write the run to bench/results/<date>-decode<suffix>.json; return its path."""
    name = f"{datetime.date.today()}-decode{suffix}.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    return out


def measure(workloads: list[Workload], count: int, rounds: int) -> dict[str, list[Run]]:
    """Run every workload once per round, in an order rotated each round."""
    runs: dict[str, list[Run]] = {w.name: [] for w in workloads}
    for round_index in range(rounds):
        shift = round_index % len(workloads)
        for workload in workloads[shift:] + workloads[:shift]:
            first = round_index * count
            runs[workload.name].append(run_once(workload, first, count))
    return runs


def report(
    args: argparse.Namespace, summary: list[dict[str, Any]], auto: dict[str, float]
) -> None:
    """Print the heading, the table, the baselines and auto's overhead."""
    print(
        f"Python {platform.python_version()}, orjson {version('orjson')}, protobuf "
        f"{version('protobuf')}, {os.cpu_count()} CPUs, {args.messages} messages x "
        f"{args.rounds} rounds per format (medians; ratio = decode/baseline "
        "messages/s, median of each round's ratio)\n"
    )
    print_table(summary)
    print(
        "\nbaseline: orjson.loads of each payload; influx: "
        "line_protocol_parser.parse_line of each line; sparkplug_b: "
        "Payload.FromString."
    )
    if auto:
        print(
            f"auto (json payload): {auto['auto_over_json_rate']:.3f}x the rate of "
            f"json, {auto['extra_us_per_message']:+.1f} µs/message for detection"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="per format/round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--formats", default="", help="comma-separated formats (default: all, auto)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    missing = set(FORMATS) - {w.name for w in WORKLOADS}
    if missing:
        raise SystemExit(f"no workload for format(s): {', '.join(sorted(missing))}")
    chosen = set(filter(None, args.formats.split(","))) or set(SUBSCRIPTIONS)
    workloads = [w for w in WORKLOADS if w.name in chosen]

    load_before, started = os.getloadavg(), time.perf_counter()
    checked = {w.name: check(w) for w in workloads}
    runs = measure(workloads, args.messages, args.rounds)
    summary = [{**summarise(w, runs[w.name]), **checked[w.name]} for w in workloads]
    auto = auto_overhead(runs)
    report(args, summary, auto)

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        # Others using the CPUs show here; the ratios are what to compare.
        "loadavg_before_after": [load_before, os.getloadavg()],
        "elapsed_s": round(time.perf_counter() - started, 1),
        **{pkg: version(pkg) for pkg in ("orjson", "protobuf", "line-protocol-parser")},
    }
    out = write_results(
        {
            "config": vars(args) | {"fleet_size": FLEET_SIZE},
            "environment": env,
            "summary": summary,
            "auto_vs_json": auto,
        },
        # A run of some formats must not replace the day's full run.
        "" if len(workloads) == len(WORKLOADS) else "-" + "+".join(sorted(chosen)),
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""Decode LoRaWAN uplinks from The Things Stack v3 and ChirpStack v4 into points.

Both network servers publish one JSON document per event. An uplink becomes one
point: the fields the payload formatter (TTS ``decoded_payload``) or codec
(ChirpStack ``object``) decoded, plus the link metadata a LoRaWAN user checks
first, with the device named in tags. A message without decoded values (a
MAC-only uplink, a codec that failed) still gives a point with its link
metadata: the frame counter and signal say the device is alive.

Fields and their types. A field keeps one type for its whole life (InfluxDB
refuses a float into an integer field), so every value is typed here, never
left to whatever the JSON happens to hold:

- decoded values: numbers are floats, booleans and strings kept, nested keys
  joined with ``_`` (as the ``json`` format does); a null, NaN or infinity is
  left out and reported. A decoded key that is also a stored metadata name is
  left out (reason ``metadata_name``): the network's value keeps the name.
- metadata stored by default:

  ================== ======= ==================================================
  field              type    from (TTS v3 / ChirpStack v4)
  ================== ======= ==================================================
  f_port             integer ``f_port`` / ``fPort``; absent means 0
  f_cnt              integer ``f_cnt`` / ``fCnt``; absent means 0
  dr                 integer ChirpStack only: ``dr``; absent means 0
  rssi               float   best gateway (highest rssi); absent means 0
  snr                float   best gateway; absent on a LoRa uplink means 0
  spreading_factor   integer TTS only: ``settings.data_rate.lora``
  frequency          integer TTS only: ``settings.frequency`` (a JSON string)
  battery_percentage float   TTS ``last_battery_percentage.value``, when sent
  ================== ======= ==================================================

  Protobuf JSON leaves out zero values, so an absent counter, port or data
  rate is 0, not missing (the first uplink after a join has no ``fCnt``), and
  a JSON null reads as absent. Without any gateway entry there is no rssi/snr.
- metadata stored on request, by naming it in the subscription's ``fields``
  (with its type) or ``include``: ``gateway_count`` (integer: how many
  gateways heard the uplink), ``gateway_id`` (string: the best one),
  ``bandwidth`` (integer, Hz), ``airtime_s`` (float, TTS
  ``consumed_airtime``), and for ChirpStack ``spreading_factor`` and
  ``frequency``. They are off by default so that the default point is the one
  of cases C12 and C13; adding a field later is harmless, removing one is not.
- the subscription's ``fields`` declarations override every type above (e.g.
  ``rssi = "integer"`` to match an older database), and ``include`` keeps only
  the fields it names.

Tags: ``application``, ``device`` and ``dev_eui`` (TTS ``end_device_ids``;
ChirpStack ``deviceInfo.applicationName``, ``deviceName``, ``devEui``), with
their exact text. The subscription's fixed and topic tags override them, and
its ``payload_tags`` override those (e.g. ``tenant =
"uplink_message.network_ids.tenant_id"``, or a ChirpStack device tag
``"deviceInfo.tags.building"``).

Time: the network server's own time of the event: the top-level
``received_at`` (TTS, all nine fraction digits kept) or ``time``
(ChirpStack), never a gateway's clock. The subscription's ``timestamp_key``
overrides it when the message has a value there (e.g.
``uplink_message.settings.time`` for a GPS gateway's time, or a time the
device sent in its decoded payload, which is then not stored as a field); the
default key ``ts`` is never present, so the network's time applies. An empty
``timestamp_key`` means the receive time. A message with no time at all is
stored at its receive time with one warning per device a minute.

Other events. The Things Stack publishes other message types on sibling
topics (``/join``, ``/down/*``, ``/service/data``, ``/location/solved``,
``/up/normalized``): they carry no readings and are refused with reason
``not_an_uplink``, so a too-wide topic filter shows in the counters; list
such topics in ``exclude_topics`` to skip them quietly. ChirpStack's ``status``
event (the device's answer to DevStatusReq) is stored: ``battery_percentage``
(float, left out when the device is on external power or cannot measure it),
``margin`` (integer, dB) and ``external_power_source`` (boolean), in the same
measurement and tags as the uplinks. Its ``join``, ``ack``, ``txack``,
``log``, ``location`` and ``integration`` events are refused as
``not_an_uplink``. Simulated TTS uplinks (``"simulated": true``) are stored
like real ones: an operator sends them to test this very path.

ChirpStack must publish JSON (its MQTT integration's ``json = true``, the
default); protobuf payloads are refused as ``invalid_json``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import (
    FieldTyper,
    flatten,
    get_path,
    load_json_object,
)
from gateway.errors import PayloadError
from gateway.logutil import RateLimitedLogger
from gateway.points import FieldValue, Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["METADATA_TYPES", "ChirpstackV4Decoder", "TtsV3Decoder"]

logger = logging.getLogger(__name__)

TIME_WARNING_INTERVAL_S = 60.0
NOT_AN_UPLINK = "not_an_uplink"
RESERVED_FIELD_KEY = "time"
# Every metadata field either format can store, with its default type.
METADATA_TYPES: dict[str, str] = {
    "f_port": "integer",
    "f_cnt": "integer",
    "dr": "integer",
    "rssi": "float",
    "snr": "float",
    "spreading_factor": "integer",
    "frequency": "integer",
    "bandwidth": "integer",
    "battery_percentage": "float",
    "margin": "integer",
    "external_power_source": "boolean",
    "gateway_count": "integer",
    "gateway_id": "string",
    "airtime_s": "float",
}
TTS_UPLINK_FIELDS = frozenset(
    {
        "f_port",
        "f_cnt",
        "rssi",
        "snr",
        "spreading_factor",
        "frequency",
        "battery_percentage",
    }
)
CHIRPSTACK_UPLINK_FIELDS = frozenset({"f_cnt", "dr", "f_port", "rssi", "snr"})
CHIRPSTACK_STATUS_FIELDS = frozenset(
    {"battery_percentage", "margin", "external_power_source"}
)
# TTS ApplicationUp carries exactly one of these besides uplink_message.
_TTS_OTHER_MESSAGES = (
    "join_accept",
    "downlink_ack",
    "downlink_nack",
    "downlink_sent",
    "downlink_failed",
    "downlink_queued",
    "downlink_queue_invalidated",
    "location_solved",
    "service_data",
    "uplink_normalized",
)
_CHIRPSTACK_UPLINK_KEYS = ("rxInfo", "txInfo", "object", "fCnt", "fPort", "dr")
_CHIRPSTACK_STATUS_KEYS = (
    "batteryLevel",
    "margin",
    "externalPowerSource",
    "batteryLevelUnavailable",
)


@dataclass(frozen=True, slots=True)
class _Event:
    """One network-server event, read into tags, decoded values and metadata.

    `defaults` names the metadata stored without being asked for.
    """

    kind: str
    tags: dict[str, str]
    decoded: Any
    metadata: dict[str, Any]
    defaults: frozenset[str]


class _NetworkServerDecoder:
    """What both formats share: typing, tags, time and the point itself."""

    name = ""
    network = ""
    time_key = ""
    decoded_path = ""

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()
        declared = {n: self._options.typer.declared(n) for n in METADATA_TYPES}
        self._metadata_typer = FieldTyper(
            {name: declared[name] or kind for name, kind in METADATA_TYPES.items()}
        )
        # Naming an optional metadata field in `fields` or `include` asks for it.
        self._requested = frozenset(
            name
            for name in METADATA_TYPES
            if declared[name] or name in self._options.include
        )
        self._time_warnings = RateLimitedLogger(logger, TIME_WARNING_INTERVAL_S)

    def _load(self, message: MqttMessage) -> dict[str, Any]:
        return load_json_object(
            message.payload, message.topic, f"a {self.network} JSON object"
        )

    def _point(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        document: dict[str, Any],
        *,
        event: _Event,
    ) -> Decoded:
        """Build the one point of an event, or raise PayloadError."""
        result = Decoded()
        rejects = result.rejected_fields
        fields = self._decoded_fields(event.decoded, rejects)
        self._add_metadata(fields, event, rejects)
        if RESERVED_FIELD_KEY in fields:
            # InfluxDB keeps "time" for the timestamp and drops such a field.
            del fields[RESERVED_FIELD_KEY]
            rejects.append(
                FieldReject(
                    RESERVED_FIELD_KEY,
                    "reserved_key",
                    "InfluxDB reserves 'time' for the timestamp",
                )
            )
        if not fields:
            raise PayloadError(
                "no_fields", "no storable value in the message", topic=message.topic
            )

        all_tags = {**event.tags, **tags, **self._options.tags_from(document)}
        time_ns = self._time(document, message, event)
        result.points.append(Point(measurement, all_tags, fields, time_ns))
        return result

    def _decoded_fields(
        self, decoded: Any, rejects: list[FieldReject]
    ) -> dict[str, FieldValue]:
        if decoded is None:
            return {}
        if not isinstance(decoded, dict):
            rejects.append(
                FieldReject(
                    self.decoded_path,
                    "not_an_object",
                    f"decoded values are a {type(decoded).__name__}, expected an "
                    "object",
                )
            )
            return {}
        time_field = self._decoded_time_field()
        items = (
            (name, raw) for name, raw in flatten(decoded, rejects) if name != time_field
        )
        return self._options.typed_fields(items, rejects)

    def _decoded_time_field(self) -> str | None:
        # A reading time inside the decoded values is the point's time, not a field.
        prefix = self.decoded_path + "."
        key = self._options.timestamp_key
        if key.startswith(prefix):
            return key[len(prefix) :].replace(".", "_")
        return None

    def _add_metadata(
        self, fields: dict[str, FieldValue], event: _Event, rejects: list[FieldReject]
    ) -> None:
        include = self._options.include
        for name, raw in event.metadata.items():
            if raw is None or not (name in event.defaults or name in self._requested):
                continue
            if include and name not in include:
                continue
            if name in fields:
                del fields[name]
                rejects.append(
                    FieldReject(
                        name,
                        "metadata_name",
                        f"the decoded {name!r} is left out: the network's {name} "
                        "is stored under that name; rename it in the decoder",
                    )
                )
            value = self._metadata_typer.convert(name, raw)
            if isinstance(value, FieldReject):
                rejects.append(value)
            else:
                fields[name] = value

    def _time(
        self, document: dict[str, Any], message: MqttMessage, event: _Event
    ) -> int:
        key = self._options.timestamp_key
        if not key:
            return message.received_ns
        raw = get_path(document, key)
        if raw is None:
            raw = document.get(self.time_key)
        if raw is None:
            device = event.tags.get("dev_eui") or event.tags.get("device") or ""
            self._time_warnings.warning(
                device or message.topic,
                "%s %s without time, using receive time (device %r on %r)",
                self.network,
                event.kind,
                device,
                message.topic,
            )
            return message.received_ns
        return self._options.read_time(raw, message)


class TtsV3Decoder(_NetworkServerDecoder):
    """Turn The Things Stack v3 uplink messages into one point each."""

    name = "tts_v3"
    network = "The Things Stack v3"
    time_key = "received_at"
    decoded_path = "uplink_message.decoded_payload"

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one uplink message into a point, or raise PayloadError."""
        document = self._load(message)
        uplink = document.get("uplink_message")
        if uplink is None:
            raise PayloadError(
                NOT_AN_UPLINK, _tts_refusal(document), topic=message.topic
            )
        if not isinstance(uplink, dict):
            raise PayloadError(
                "not_an_object",
                f"uplink_message is a {type(uplink).__name__}, expected an object",
                topic=message.topic,
            )
        event = _Event(
            "uplink",
            _text_tags(
                document,
                application="end_device_ids.application_ids.application_id",
                device="end_device_ids.device_id",
                dev_eui="end_device_ids.dev_eui",
            ),
            uplink.get("decoded_payload"),
            _tts_metadata(uplink),
            TTS_UPLINK_FIELDS,
        )
        return self._point(message, measurement, tags, document, event=event)


class ChirpstackV4Decoder(_NetworkServerDecoder):
    """Turn ChirpStack v4 uplink and status events into one point each."""

    name = "chirpstack_v4"
    network = "ChirpStack v4"
    time_key = "time"
    decoded_path = "object"

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one uplink or status event into a point, or raise PayloadError."""
        document = self._load(message)
        kind = _chirpstack_event(message.topic, document)
        if kind not in ("up", "status"):
            raise PayloadError(
                NOT_AN_UPLINK,
                f"a ChirpStack {kind} event carries no readings; subscribe to "
                ".../event/up (and .../event/status), or list its topic in "
                "exclude_topics",
                topic=message.topic,
            )
        if not isinstance(document.get("deviceInfo"), dict):
            raise PayloadError(
                "not_chirpstack_v4",
                "no deviceInfo object, which every ChirpStack v4 event has "
                "(ChirpStack v3 events are not supported)",
                topic=message.topic,
            )
        device_tags = _text_tags(
            document,
            application="deviceInfo.applicationName",
            device="deviceInfo.deviceName",
            dev_eui="deviceInfo.devEui",
        )
        if kind == "status":
            event = _Event(
                "status event",
                device_tags,
                None,
                _chirpstack_status(document),
                CHIRPSTACK_STATUS_FIELDS,
            )
        else:
            event = _Event(
                "uplink",
                device_tags,
                document.get("object"),
                _chirpstack_metadata(document),
                CHIRPSTACK_UPLINK_FIELDS,
            )
        return self._point(message, measurement, tags, document, event=event)


def _tts_metadata(uplink: dict[str, Any]) -> dict[str, Any]:
    settings = _object(uplink.get("settings"))
    data_rate = _object(settings.get("data_rate"))
    lora = _object(data_rate.get("lora"))
    gateways = list(_objects(uplink.get("rx_metadata")))
    metadata: dict[str, Any] = {
        "f_port": _or(uplink.get("f_port"), 0),
        "f_cnt": _or(uplink.get("f_cnt"), 0),
        "spreading_factor": lora.get("spreading_factor"),
        "bandwidth": lora.get("bandwidth"),
        "frequency": settings.get("frequency"),
        "gateway_count": len(gateways),
        "airtime_s": _duration_s(uplink.get("consumed_airtime")),
        **_link_quality(gateways, "lora" in data_rate, _tts_gateway_id),
    }
    battery = uplink.get("last_battery_percentage")
    if isinstance(battery, dict):
        # Protobuf JSON leaves out a zero: an empty battery reads as no value.
        metadata["battery_percentage"] = _or(battery.get("value"), 0.0)
    return metadata


def _chirpstack_metadata(document: dict[str, Any]) -> dict[str, Any]:
    tx_info = _object(document.get("txInfo"))
    modulation = _object(tx_info.get("modulation"))
    lora = _object(modulation.get("lora"))
    gateways = list(_objects(document.get("rxInfo")))
    return {
        "f_cnt": _or(document.get("fCnt"), 0),
        "dr": _or(document.get("dr"), 0),
        "f_port": _or(document.get("fPort"), 0),
        "spreading_factor": lora.get("spreadingFactor"),
        "bandwidth": lora.get("bandwidth"),
        "frequency": tx_info.get("frequency"),
        "gateway_count": len(gateways),
        **_link_quality(gateways, "lora" in modulation, _chirpstack_gateway_id),
    }


def _chirpstack_status(document: dict[str, Any]) -> dict[str, Any]:
    external = document.get("externalPowerSource") is True
    unavailable = document.get("batteryLevelUnavailable") is True
    metadata: dict[str, Any] = {
        "margin": _or(document.get("margin"), 0),
        "external_power_source": _or(document.get("externalPowerSource"), False),
    }
    # On mains power, or unable to measure, the device reports no level at all:
    # storing the protobuf default 0 would read as an empty battery.
    if not (external or unavailable):
        metadata["battery_percentage"] = _or(document.get("batteryLevel"), 0.0)
    return metadata


def _link_quality(
    gateways: list[dict[str, Any]],
    is_lora: bool,
    gateway_id: Callable[[dict[str, Any]], Any],
) -> dict[str, Any]:
    """Return rssi, snr and id of the gateway that heard the uplink best."""
    if not gateways:
        return {}
    # max() keeps the first of equals, so ties go to the first gateway listed.
    best = max(gateways, key=_rssi_rank)
    snr = best.get("snr")
    if snr is None and is_lora:
        snr = 0.0
    return {
        "rssi": _or(best.get("rssi"), 0.0),
        "snr": snr,
        "gateway_id": gateway_id(best),
    }


def _rssi_rank(gateway: dict[str, Any]) -> float:
    raw = _or(gateway.get("rssi"), 0.0)
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return -math.inf
    try:
        rank = float(raw)
    except ValueError:
        return -math.inf
    return rank if math.isfinite(rank) else -math.inf


def _tts_gateway_id(gateway: dict[str, Any]) -> Any:
    return get_path(gateway, "gateway_ids.gateway_id")


def _chirpstack_gateway_id(gateway: dict[str, Any]) -> Any:
    return gateway.get("gatewayId")


def _chirpstack_event(topic: str, document: dict[str, Any]) -> str:
    """Name a ChirpStack event from its topic (.../event/<type>) or its keys."""
    levels = topic.split("/")
    if len(levels) >= 2 and levels[-2] == "event" and levels[-1]:
        return levels[-1]
    if any(key in document for key in _CHIRPSTACK_STATUS_KEYS):
        return "status"
    if any(key in document for key in _CHIRPSTACK_UPLINK_KEYS):
        return "up"
    return "unrecognised"


def _tts_refusal(document: dict[str, Any]) -> str:
    for kind in _TTS_OTHER_MESSAGES:
        if kind in document:
            return (
                f"a The Things Stack {kind} message carries no readings; "
                "subscribe to v3/+/devices/+/up, or list its topic in exclude_topics"
            )
    return (
        "no uplink_message in the message (The Things Network v2 messages are "
        "not supported)"
    )


def _text_tags(document: dict[str, Any], **paths: str) -> dict[str, str]:
    tags = {}
    for tag, path in paths.items():
        value = get_path(document, path)
        if isinstance(value, str) and value:
            tags[tag] = value
    return tags


def _duration_s(raw: Any) -> Any:
    # Protobuf JSON writes a Duration as seconds text with an "s": "0.185344s".
    if isinstance(raw, str) and raw.endswith("s"):
        return raw[:-1]
    return raw


def _or(value: Any, default: Any) -> Any:
    # Protobuf JSON leaves out zero values, and reads null as the default too.
    return default if value is None else value


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    items: Iterable[Any] = value if isinstance(value, list) else ()
    return (item for item in items if isinstance(item, dict))

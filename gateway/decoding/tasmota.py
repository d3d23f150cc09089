"""Decode Tasmota telemetry: the SENSOR and STATE objects a device sends.

Tasmota publishes ``tele/<device>/SENSOR`` (sensor readings, energy meter)
and ``tele/<device>/STATE`` (uptime, heap, relays, Wi-Fi) every TelePeriod.
Each becomes one point; nested keys are joined with ``_`` (``ENERGY_Power``,
``DS18B20-1_Temperature``, ``Wifi_RSSI``). The last topic level names the
kind of message: other kinds (``LWT``, ``INFO1``, ``RESULT``...) are device
liveness, boot information or command echoes, not telemetry, and produce no
point and no error.

What is kept, and why:

- Numbers are floats as in every JSON format, so a field never changes type.
- Relay states ``"POWER": "ON"`` stay the text Tasmota sends, as Zigbee2MQTT
  states do: JSON text keeps its type. Declare ``fields = {POWER = "boolean"}``
  (or ``POWER1``...) to store true/false instead; custom StateText words then
  fail visibly instead of mixing types.
- Text that only repeats a number sent beside it or names a unit is left out:
  ``Uptime`` (``UptimeSec`` carries it), ``Wifi.Downtime``,
  ``ENERGY.TotalStartTime`` and the ``...Unit`` keys (``TempUnit``). Naming
  one in ``include`` keeps it. Other text (``Wifi_SSId``, ``Wifi_BSSId``, a
  DS18B20 ``Id``) is kept: it says which access point or probe a reading
  came from.

The reading time is the ``Time`` key, in the device's local time without a
zone unless SetOption52 adds the offset; ``timezone`` (or ``[decoding]
default_timezone``) names the zone, and the zone database gives the offset in
force on that date. ``Epoch`` (``Time 1``) and a numeric ``Time`` (``Time 2``)
are UTC epoch seconds and need no zone. Without a zone, or while a device's
clock is unset (Tasmota then counts from 1970), readings are stored at receive
time with one warning per device.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from gateway.decoding.base import Decoded
from gateway.decoding.options import DecoderOptions
from gateway.decoding.timestamps import NaiveTimestamp, parse_timestamp
from gateway.decoding.values import KEY_SEPARATOR, get_path, load_json
from gateway.errors import PayloadError
from gateway.sources.mqtt import MqttMessage

__all__ = ["TasmotaDecoder"]

logger = logging.getLogger(__name__)

# Kinds of message (the last topic level) that carry readings. STATUS8/10
# answer `Status 8/10` with a SENSOR object, STATUS11 `Status 11` with STATE.
TELEMETRY_KINDS = frozenset(
    {"SENSOR", "STATE", "UPTIME", "STATUS8", "STATUS10", "STATUS11"}
)
STATUS_WRAPPERS = ("StatusSNS", "StatusSTS")
# Topic levels that are Tasmota's %prefix%, not part of the device's name.
PREFIX_LEVELS = frozenset({"tele", "stat"})
DEVICE_TAG = "device"
TIME_KEY = "Time"
EPOCH_KEY = "Epoch"
# The subscription default; it names no Tasmota key, so "ts" means Tasmota's own.
DEFAULT_TIMESTAMP_KEY = "ts"
TOP_LEVEL_TEXT = frozenset({"Uptime"})
NESTED_TEXT = (("ENERGY", "TotalStartTime"), ("Wifi", "Downtime"))
UNIT_SUFFIX = "Unit"
# Tasmota treats a clock before 2016-01-01 as never set (see its `Time` command).
CLOCK_SET_AFTER_NS = 1_451_602_800 * 1_000_000_000
MAX_WARNED_DEVICES = 10_000


class TasmotaDecoder:
    """Turn a Tasmota SENSOR or STATE object into one point, at its ``Time``."""

    name = "tasmota"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()
        key = self._options.timestamp_key
        self._time_key = TIME_KEY if key == DEFAULT_TIMESTAMP_KEY else key
        # The point is built at receive time and then given the time read here.
        self._at_receive_time = dataclasses.replace(self._options, timestamp_key="")
        self._warned: set[tuple[str, str]] = set()

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one message into a point, or raise PayloadError."""
        kind = message.topic.rsplit("/", 1)[-1]
        if kind not in TELEMETRY_KINDS:
            logger.debug("Not Tasmota telemetry (%s), nothing stored", message.topic)
            return Decoded()
        document = _unwrapped(load_json(message.payload, message.topic))
        if not isinstance(document, dict):
            raise PayloadError(
                "not_an_object",
                f"expected a Tasmota {kind} object, got {type(document).__name__}",
                topic=message.topic,
            )

        all_tags = dict(tags)
        if DEVICE_TAG not in all_tags:
            device = _device_from_topic(message.topic)
            if device:
                all_tags[DEVICE_TAG] = device
        time_ns = self._reading_time(
            document, message, all_tags.get(DEVICE_TAG, message.topic)
        )

        decoded = self._at_receive_time.object_point(
            self._readings(document), message, measurement, all_tags
        )
        decoded.points = [
            dataclasses.replace(point, time_ns=time_ns) for point in decoded.points
        ]
        return decoded

    def _reading_time(
        self, document: dict[str, Any], message: MqttMessage, device: str
    ) -> int:
        if not self._time_key:
            return message.received_ns
        raw = get_path(document, self._time_key)
        epoch = document.get(EPOCH_KEY)
        if self._time_key == TIME_KEY and _is_number(epoch):
            # `Time 1` sends local text and UTC epoch seconds: the epoch needs no zone.
            raw = epoch
        if raw is None:
            return message.received_ns
        problem = self._unusable_clock(raw)
        if problem:
            self._warn_once(device, problem, raw)
            return message.received_ns
        return self._options.read_time(raw, message)

    def _unusable_clock(self, raw: Any) -> str:
        """Say why a time cannot be trusted as the reading time, or return ''."""
        try:
            time_ns = parse_timestamp(
                raw, self._options.timestamp_unit, self._options.zone
            )
        except NaiveTimestamp:
            return "sends local time without a zone and no timezone is configured"
        except ValueError:
            return ""  # read_time refuses it with the reason
        if time_ns < CLOCK_SET_AFTER_NS:
            return "has not set its clock"
        return ""

    def _warn_once(self, device: str, problem: str, raw: Any) -> None:
        key = (device, problem)
        if key in self._warned:
            return
        if len(self._warned) >= MAX_WARNED_DEVICES:
            self._warned.clear()
        self._warned.add(key)
        logger.warning(
            "Tasmota device %r %s (%s %r); storing its readings at receive time",
            device,
            problem,
            self._time_key,
            raw,
        )

    def _readings(self, document: dict[str, Any]) -> dict[str, Any]:
        """Return the document without its time and the text kept out of fields."""
        include = self._options.include
        time_keys = {TIME_KEY, EPOCH_KEY, self._time_key}
        readings = {
            key: value
            for key, value in document.items()
            if key not in time_keys
            and (key in include or not _is_repeated_text(key, value))
        }
        for parent, child in NESTED_TEXT:
            nested = readings.get(parent)
            name = f"{parent}{KEY_SEPARATOR}{child}"
            if isinstance(nested, dict) and child in nested and name not in include:
                readings[parent] = {k: v for k, v in nested.items() if k != child}
        return readings


def _unwrapped(document: Any) -> Any:
    """Return the SENSOR or STATE object inside a STATUS10/STATUS11 answer."""
    if isinstance(document, dict) and len(document) == 1:
        for wrapper in STATUS_WRAPPERS:
            inner = document.get(wrapper)
            if isinstance(inner, dict):
                return inner
    return document


def _device_from_topic(topic: str) -> str:
    """Return the device's topic: the levels other than %prefix% and the kind."""
    levels = topic.split("/")[:-1]
    return "/".join(level for level in levels if level not in PREFIX_LEVELS)


def _is_repeated_text(key: str, value: Any) -> bool:
    return key in TOP_LEVEL_TEXT or (
        key.endswith(UNIT_SUFFIX) and isinstance(value, str)
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

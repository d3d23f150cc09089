"""Decode Zigbee2MQTT device messages: one JSON object of device state each.

Zigbee2MQTT publishes a device's state on ``<base>/<friendly name>``, where
the friendly name may itself hold ``/`` (``zigbee2mqtt/garden/sensor-1``).
Each message becomes one point: nested keys are joined with ``_``
(``update_state``), ``null`` (a reading the device does not have now) is left
out quietly, booleans and text keep their type (``state="ON"``), numbers are
floats; ``linkquality`` and ``battery`` are fields like any other.

Topics that are not device state produce no point and no error: the bridge's
own topics (``<base>/bridge/...``), availability (``.../availability``,
``"online"`` or ``{"state": "online"}``: device liveness, not a reading) and
commands other clients send (``.../set``, ``.../get``, ``.../set/<attr>``).
Excluding ``<base>/bridge/#`` with ``exclude_topics`` also counts them.

Without a topic template capturing ``device``, the device tag is everything
after the base topic, which is taken to be the first level (Zigbee2MQTT's
default, ``zigbee2mqtt``).

``last_seen`` is the time Zigbee2MQTT last heard the device, i.e. this
message's time: with ``timestamp_key = "last_seen"`` it becomes the point's
time (ISO-8601 with offset, or epoch ms); it is never stored as a field
unless named in ``include``.
"""

from __future__ import annotations

import logging

from gateway.decoding.base import Decoded
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import load_json_object
from gateway.sources.mqtt import MqttMessage

__all__ = ["Zigbee2MqttDecoder"]

logger = logging.getLogger(__name__)

DEVICE_TAG = "device"
BRIDGE_LEVEL = "bridge"
AVAILABILITY_LEVEL = "availability"
COMMAND_LEVELS = frozenset({"set", "get"})
LAST_SEEN_KEY = "last_seen"


class Zigbee2MqttDecoder:
    """Turn a Zigbee2MQTT device state object into one point."""

    name = "zigbee2mqtt"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()
        self._skip = () if LAST_SEEN_KEY in self._options.include else (LAST_SEEN_KEY,)

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one device message into a point, or raise PayloadError."""
        levels = message.topic.split("/")
        not_state = _not_device_state(levels)
        if not_state:
            # Known limitation: messages that are not telemetry are counted only
            # in messages_received, not apart, so a dashboard cannot tell them
            # from messages that produced points until the app counts them.
            logger.debug(
                "Zigbee2MQTT %s on %r, nothing stored", not_state, message.topic
            )
            return Decoded()
        document = load_json_object(
            message.payload, message.topic, "a JSON object of device state"
        )

        all_tags = dict(tags)
        # Known limitation: the base topic is taken to be one level. With a base
        # topic such as "home/zigbee2mqtt" and no template, the device tag keeps
        # "zigbee2mqtt/" in front and bridge topics are not recognised (exclude
        # them with exclude_topics); a template cannot capture a friendly name
        # holding "/" either.
        if DEVICE_TAG not in all_tags and len(levels) > 1:
            all_tags[DEVICE_TAG] = "/".join(levels[1:])
        return self._options.object_point(
            document, message, measurement, all_tags, skip=self._skip
        )


def _not_device_state(levels: list[str]) -> str:
    """Name what a topic carries if it is not a device's state, else ''."""
    if len(levels) > 1 and levels[1] == BRIDGE_LEVEL:
        return "bridge message"
    if levels[-1] == AVAILABILITY_LEVEL:
        return "availability"
    # Zigbee2MQTT reads <name>/set, <name>/<endpoint>/get and <name>/set/<attr>
    # as commands to the device; it never publishes state there.
    if levels[-1] in COMMAND_LEVELS or (
        len(levels) > 2 and levels[-2] in COMMAND_LEVELS
    ):
        return "command"
    return ""

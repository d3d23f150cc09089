"""Decode Shelly Gen2 component status: status topics and NotifyStatus events.

A Gen2 device publishes each component's full status on
``<device>/status/<component>`` (``shelly``) and changes as JSON-RPC
notifications on ``<device>/events/rpc`` (``shelly_rpc``). Either way a
component's status becomes one point tagged ``component`` (``switch:0``,
``wifi``); nested keys are joined with ``_`` and array elements become
``_<index>`` (``aenergy_by_minute_0``); numbers are floats.

A NotifyStatus carries only what changed, so its point holds only the keys
present: nothing missing is filled in. Its ``params.ts`` (epoch seconds with
a fraction) is the time of every point, exact to the nanosecond; the default
``timestamp_key = "ts"`` and ``"params.ts"`` both name it. The ``time`` key
of ``sys`` is the device's wall clock as "HH:MM", not a reading, and is left
out.

NotifyEvent (button pushes and other events) writes nothing and is no error;
neither do ``<device>/online`` (liveness), ``<device>/rpc`` and
``<device>/command`` (requests to the device) or ``<device>/debug/log``.
``shelly`` hands ``<device>/events/rpc`` to ``shelly_rpc``, so one
subscription to ``<device>/#`` reads both.

Unless the topic template captures them, the ``device`` tag is the topic
before ``/status/`` or ``/events/rpc`` and ``component`` the level after
``status``.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.decoding.base import Decoded, FieldReject
from gateway.decoding.options import DecoderOptions
from gateway.decoding.values import flatten, get_path, load_json, load_json_object
from gateway.errors import PayloadError
from gateway.points import Point
from gateway.sources.mqtt import MqttMessage

__all__ = ["ShellyRpcDecoder", "ShellyStatusDecoder"]

logger = logging.getLogger(__name__)

DEVICE_TAG = "device"
COMPONENT_TAG = "component"
STATUS_LEVEL = "status"
# Last topic level -> what a device's other topics carry instead of status.
NOT_STATUS_LEVELS = {
    "online": "liveness",
    "rpc": "RPC request",
    "command": "command",
    "log": "debug log",
}
EVENTS_SUFFIX = "/events/rpc"
STATUS_METHODS = frozenset({"NotifyStatus", "NotifyFullStatus"})
EVENT_METHODS = frozenset({"NotifyEvent"})
PARAMS_TIME_KEY = "ts"
# sys.time is the device's local wall clock ("10:15"), not a reading.
CLOCK_KEYS = ("time",)


class ShellyStatusDecoder:
    """Turn one ``<device>/status/<component>`` object into one point."""

    name = "shelly"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()
        # A subscription to <device>/# also brings the device's notifications.
        self._notifications = ShellyRpcDecoder(self._options)

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one component status into a point, or raise PayloadError."""
        if message.topic.endswith(EVENTS_SUFFIX):
            return self._notifications.decode(message, measurement, tags, field)
        levels = message.topic.split("/")
        not_status = NOT_STATUS_LEVELS.get(levels[-1])
        if not_status:
            logger.debug("Shelly %s on %r, nothing stored", not_status, message.topic)
            return Decoded()
        document = load_json_object(
            message.payload, message.topic, "a component status object"
        )
        return self._options.object_point(
            document,
            message,
            measurement,
            {**_tags_from_status_topic(levels), **tags},
            skip=CLOCK_KEYS,
        )


class ShellyRpcDecoder:
    """Turn a NotifyStatus notification into one point per component."""

    name = "shelly_rpc"

    def __init__(self, options: DecoderOptions | None = None) -> None:
        self._options = options or DecoderOptions()

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode one notification into points, or raise PayloadError."""
        params = self._status_params(message)
        if params is None:
            return Decoded()
        time_ns = self._options.read_time(self._raw_time(params), message)

        result = Decoded()
        base_tags = dict(tags)
        if DEVICE_TAG not in base_tags and message.topic.endswith(EVENTS_SUFFIX):
            device = message.topic.removesuffix(EVENTS_SUFFIX)
            if device:
                base_tags[DEVICE_TAG] = device
        for component, status in params.items():
            if component == PARAMS_TIME_KEY:
                continue
            if not isinstance(status, dict):
                result.rejected_fields.append(
                    FieldReject(
                        component,
                        "not_a_component",
                        f"expected a component status object, got {status!r:.64}",
                    )
                )
                continue
            point = self._component_point(
                component, status, measurement, base_tags, time_ns, result
            )
            if point is not None:
                result.points.append(point)

        if not result.points and result.rejected_fields:
            reasons = sorted({r.reason for r in result.rejected_fields})
            raise PayloadError(
                "no_fields",
                f"no storable value in the notification ({', '.join(reasons)})",
                topic=message.topic,
            )
        return result

    def _status_params(self, message: MqttMessage) -> dict[str, Any] | None:
        """Return the params of a status notification, or None for an event."""
        document = load_json(message.payload, message.topic)
        method = document.get("method") if isinstance(document, dict) else None
        if not isinstance(method, str):
            raise PayloadError(
                "not_a_notification",
                "expected a JSON-RPC notification object with a method",
                topic=message.topic,
            )
        if method in EVENT_METHODS:
            # Events (button pushes, scripts) are not status: no point, no error.
            logger.debug("Shelly %s on %r, nothing stored", method, message.topic)
            return None
        if method not in STATUS_METHODS:
            raise PayloadError(
                "unsupported_method",
                f"method {method[:64]!r} is not one of "
                f"{', '.join(sorted(STATUS_METHODS | EVENT_METHODS))}",
                topic=message.topic,
            )
        params = document.get("params")
        if not isinstance(params, dict):
            raise PayloadError(
                "not_a_notification",
                f"{method} params must be an object, got {type(params).__name__}",
                topic=message.topic,
            )
        return params

    def _raw_time(self, params: dict[str, Any]) -> Any:
        """Return the notification time: the key is read inside params."""
        key = self._options.timestamp_key
        if not key:
            return None
        return get_path(params, key.removeprefix("params."))

    def _component_point(
        self,
        component: str,
        status: dict[str, Any],
        measurement: str,
        tags: dict[str, str],
        time_ns: int,
        result: Decoded,
    ) -> Point | None:
        """Return the point of one component's (partial) status, if any value."""
        readings = {k: v for k, v in status.items() if k not in CLOCK_KEYS}
        rejects = result.rejected_fields
        fields = self._options.typed_fields(flatten(readings, rejects), rejects)
        if not fields:
            # An empty change ("sys": {"available_updates": {}}) is no error.
            return None
        point_tags = {
            **tags,
            COMPONENT_TAG: component,
            **self._options.tags_from(status),
        }
        return Point(measurement, point_tags, fields, time_ns)


def _tags_from_status_topic(levels: list[str]) -> dict[str, str]:
    """Return device and component from ``<device>/status/<component>``."""
    if len(levels) < 3 or levels[-2] != STATUS_LEVEL:
        return {}
    tags = {COMPONENT_TAG: levels[-1]}
    device = "/".join(levels[:-2])
    if device:
        tags[DEVICE_TAG] = device
    return tags

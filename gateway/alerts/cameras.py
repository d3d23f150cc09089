"""Camera alerts from the CCTV sampler's retained statuses on MQTT.

The sampler (`decor cctv run`, another part of the gateway) publishes each
camera's status, retained, on `decor/cameras/<camera>/status`:
`{"camera": ..., "state": "online" | "offline" | ..., "reason": ...,
"frozen": bool, "covered": bool, "blurred": bool, ...}`. Reading that topic
keeps the two parts apart: an offline camera raises a `camera:offline`
alert, a frozen, covered or blurred picture a `camera:tampered` alert, and
each resolves when its status clears. A status told again (the retained one
after a reconnect) changes nothing.
"""

from __future__ import annotations

import logging
import time

import orjson

from gateway.alerts.engine import AlertChange, camera_change
from gateway.sources import MqttMessage

__all__ = ["TAMPER_CONDITIONS", "camera_changes"]

logger = logging.getLogger(__name__)

TAMPER_CONDITIONS = ("frozen", "covered", "blurred")
# States of the sampler that say nothing yet about the camera.
UNDECIDED_STATES = ("starting",)
MAX_LOGGED_PAYLOAD_BYTES = 200


def camera_changes(message: MqttMessage) -> list[AlertChange]:
    """Return the alert changes one camera status says; [] if it says none."""
    try:
        status = orjson.loads(message.payload)
    except orjson.JSONDecodeError:
        status = None
    if not isinstance(status, dict) or not isinstance(status.get("camera"), str):
        logger.warning(
            "Ignored a camera status on %r that is not a JSON object with a camera "
            "id: %r",
            message.topic,
            message.payload[:MAX_LOGGED_PAYLOAD_BYTES],
        )
        return []
    camera, state = status["camera"], str(status.get("state", ""))
    if state in UNDECIDED_STATES or not state:
        return []
    now_ns = time.time_ns()
    offline = state == "offline"
    reason = str(status.get("reason", ""))
    tampered = [c for c in TAMPER_CONDITIONS if status.get(c) is True]
    return [
        camera_change(
            camera,
            "offline",
            offline,
            now_ns,
            f"camera offline ({reason})" if reason else "camera offline",
        ),
        camera_change(
            camera,
            "tampered",
            bool(tampered) and not offline,
            now_ns,
            f"picture {', '.join(tampered)}",
        ),
    ]

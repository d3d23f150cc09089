"""Alerts: rules from device profiles, judged as readings arrive, kept and notified."""

from gateway.alerts.cameras import camera_changes
from gateway.alerts.engine import AlertChange, AlertEngine, camera_change
from gateway.alerts.notify import Destination, Notification, Notifier, Outbox
from gateway.alerts.rules import (
    DeviceTypeRules,
    load_profile_tables,
    parse_rules,
    rules_by_device_type,
)
from gateway.alerts.service import AlertService, webhook_body
from gateway.alerts.store import AlertDetail, AlertEventOut, AlertOut, AlertStore

__all__ = [
    "AlertChange",
    "AlertDetail",
    "AlertEngine",
    "AlertEventOut",
    "AlertOut",
    "AlertService",
    "AlertStore",
    "Destination",
    "DeviceTypeRules",
    "Notification",
    "Notifier",
    "Outbox",
    "camera_change",
    "camera_changes",
    "load_profile_tables",
    "parse_rules",
    "rules_by_device_type",
    "webhook_body",
]

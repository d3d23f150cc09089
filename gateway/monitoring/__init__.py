"""What a running gateway shows its supervisors: /metrics, /healthz, /readyz."""

from gateway.monitoring.health import Check, Readiness, readiness
from gateway.monitoring.metrics import GatewayCollector, GatewayMetrics
from gateway.monitoring.server import MonitoringServer

__all__ = [
    "Check",
    "GatewayCollector",
    "GatewayMetrics",
    "MonitoringServer",
    "Readiness",
    "readiness",
]

"""The gateway's own metrics in the Prometheus text format.

Counters already kept for the console (`GatewayStats`, the dead-letter store,
the spool) are read when Prometheus scrapes, so the hot path pays nothing for
them. Only the write histograms are fed as they happen, once per request.

Other parts of the gateway (cameras, alerts) add their own metrics through
`GatewayMetrics.add_collector`: one collector object each, read at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["PREFIX", "GatewayCollector", "GatewayMetrics"]

PREFIX = "decor"
# A batch is at most influx.batch_size points (5,000 by default); replayed
# spool segments and shutdown flushes can be larger.
BATCH_POINTS_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 50_000)
WRITE_SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class GatewayMetrics:
    """One gateway's metric registry: its own collector plus those others add."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.write_points = Histogram(
            f"{PREFIX}_write_batch_points",
            "Points in each write request InfluxDB stored",
            buckets=BATCH_POINTS_BUCKETS,
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            f"{PREFIX}_write_duration_seconds",
            "Time from sending a write request to InfluxDB's answer, for "
            "requests it stored",
            buckets=WRITE_SECONDS_BUCKETS,
            registry=self.registry,
        )

    def observe_write(self, points: int, seconds: float) -> None:
        """Record one stored write request: its size in points and its duration."""
        self.write_points.observe(points)
        self.write_seconds.observe(seconds)

    def add_collector(self, collector: Collector) -> None:
        """Register a collector whose `collect()` yields metrics at each scrape.

        The seam for parts built elsewhere (cameras by state, sample latency,
        alerts by state): name metrics `decor_<noun>_<unit>`, counters ending
        in `_total`. Raises ValueError if a metric name is already taken.
        """
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class GatewayCollector:
    """Read the running gateway's counters into metric families at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterable[Metric]:
        """Yield the current value of every gateway metric."""
        yield from self._readings()
        yield from self._writes()
        yield from self._spool()
        yield from self._dead_letters()
        yield from self._connections()

    def _readings(self) -> Iterable[Metric]:
        stats = self._gateway.stats
        yield _counter(
            "mqtt_messages_received", "MQTT messages received", stats.messages_received
        )
        yield _counter(
            "mqtt_messages_ignored",
            "MQTT messages deliberately not stored, by reason: excluded topic, "
            "second copy of an overlapping subscription, not telemetry",
            {
                "excluded": stats.messages_excluded,
                "duplicate": stats.messages_duplicate,
                "not_telemetry": stats.messages_not_telemetry,
            },
            "reason",
        )
        yield _counter(
            "mqtt_messages_rejected",
            "MQTT messages refused whole, by reason (each kept as a dead letter)",
            stats.messages_rejected,
            "reason",
        )
        yield _counter(
            "fields_rejected",
            "Single values left out of otherwise stored messages, by reason",
            stats.fields_rejected,
            "reason",
        )
        yield _counter(
            "readings_flagged",
            "Readings stored with a quality flag, by check",
            stats.readings_flagged,
            "check",
        )
        yield _counter(
            "retained_readings_skipped",
            "Points of retained messages without their own time, not stored",
            stats.retained_skipped,
        )
        yield _counter("points_decoded", "Points decoded", stats.points_decoded)

    def _writes(self) -> Iterable[Metric]:
        stats = self._gateway.stats
        config = self._gateway.config.influx
        yield _counter("points_stored", "Points InfluxDB stored", stats.points_written)
        yield _counter(
            "points_rejected",
            "Points InfluxDB refused or that could not be written, by reason "
            "(each kept as a dead letter)",
            stats.points_rejected,
            "reason",
        )
        yield _counter(
            "write_requests", "Write requests sent to InfluxDB", stats.write_requests
        )
        yield _counter(
            "write_failures",
            "Write requests that failed for now (unreachable, timeout, 5xx) and "
            "were retried or spooled",
            stats.write_failures,
        )
        yield _gauge(
            "buffered_points", "Points waiting in memory", stats.points_buffered
        )
        yield _gauge(
            "buffer_capacity_points",
            "Points held in memory before MQTT acknowledgements stop",
            config.max_buffered_points,
        )

    def _spool(self) -> Iterable[Metric]:
        gateway = self._gateway
        stats = gateway.stats
        spool = gateway.writer.spool
        # Read from the spool itself: the counters copy it only now and then.
        yield _gauge(
            "spool_points",
            "Points waiting in the on-disk spool",
            spool.points if spool is not None else 0,
        )
        yield _gauge(
            "spool_bytes",
            "Bytes the on-disk spool holds",
            spool.size_bytes if spool is not None else 0,
        )
        yield _gauge(
            "spool_capacity_bytes",
            "Largest size of the on-disk spool (0: spool off)",
            spool.max_bytes if spool is not None else 0,
        )
        yield _gauge(
            "spool_oldest_point_age_seconds",
            "Age of the oldest batch in the spool (0 when empty)",
            spool.oldest_age_s() if spool is not None else 0.0,
        )
        yield _counter(
            "points_spooled", "Points ever written to the spool", stats.points_spooled
        )
        yield _counter(
            "points_replayed",
            "Points replayed from the spool into InfluxDB",
            stats.points_replayed,
        )

    def _dead_letters(self) -> Iterable[Metric]:
        store = self._gateway.dead_letters
        yield _counter(
            "dead_letters",
            "Dead letters kept, by reason",
            store.entries_by_reason,
            "reason",
        )
        yield _counter(
            "dead_letters_lost",
            "Dead letters that could not be written to disk",
            store.entries_lost,
        )
        yield _counter(
            "dead_letters_deleted_unreplayed",
            "Dead letters deleted by rotation before anyone replayed them",
            store.entries_deleted_unreplayed,
        )

    def _connections(self) -> Iterable[Metric]:
        gateway = self._gateway
        writer = gateway.writer
        sink_up = writer.ready.is_set() and writer.sink_down_since is None
        yield _gauge(
            "mqtt_connected",
            "1 while connected to the MQTT broker",
            int(gateway.subscriber.connected.is_set()),
        )
        yield _gauge("influx_up", "1 while InfluxDB takes writes", int(sink_up))
        down_since = writer.sink_down_since
        yield _gauge(
            "influx_down_seconds",
            "How long InfluxDB has failed to take writes (0 while it does)",
            time.monotonic() - down_since if down_since is not None else 0.0,
        )
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info", "The gateway's version", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


def _counter(
    name: str,
    documentation: str,
    value: int | Mapping[str, int],
    label: str = "",
) -> CounterMetricFamily:
    """Build a counter family; a mapping gives one sample per label value."""
    if not isinstance(value, Mapping):
        return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
    family = CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=[label])
    for key, count in sorted(value.items()):
        family.add_metric([key], count)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)

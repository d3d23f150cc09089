"""Where points go: InfluxDB through its v1 or v2 write API, batched."""

from gateway.sinks.auto import AutoSink, make_sink
from gateway.sinks.base import Sink, classify_rejection
from gateway.sinks.batcher import BatchWriter
from gateway.sinks.influx_v1 import InfluxV1Sink
from gateway.sinks.influx_v2 import InfluxV2Sink

__all__ = [
    "AutoSink",
    "BatchWriter",
    "InfluxV1Sink",
    "InfluxV2Sink",
    "Sink",
    "classify_rejection",
    "make_sink",
]

"""Decoding: payloads to points, one adapter per payload format."""

from gateway.decoding.base import Decoded, Decoder, FieldReject, Route
from gateway.decoding.json_readings import JsonDecoder
from gateway.decoding.topics import TopicTemplate

__all__ = [
    "Decoded",
    "Decoder",
    "FieldReject",
    "JsonDecoder",
    "Route",
    "TopicTemplate",
]

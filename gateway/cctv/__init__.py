"""CCTV: sample frames from cameras, keep snapshots, report each camera's health.

Video work runs in worker processes (gateway.cctv.worker); the process that
starts them (gateway.cctv.service) stores snapshots, writes points and
publishes state changes. This package imports no video library itself, so
the configuration can name camera URLs without loading OpenCV or FFmpeg.
"""

from gateway.cctv.mjpeg import MjpegParser
from gateway.cctv.urls import redact_text, redact_url, source_kind

__all__ = ["MjpegParser", "redact_text", "redact_url", "source_kind"]

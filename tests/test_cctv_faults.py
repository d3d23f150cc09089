"""Every fault of the issue at once, served for real over RTSP and HTTP: each
camera reported in the right state within two sampling intervals, while the
healthy cameras beside it keep their pace.

| camera | served by | fault | expected |
| --- | --- | --- | --- |
| rtsp-1080p | RTSP (GStreamer) | none, 1920x1080 H.264 | online, 1920x1080 |
| rtsp-black | RTSP | black frames | online, covered |
| rtsp-frozen | RTSP | picture held after 4 s | online, then frozen |
| rtsp-corrupt | RTSP | random bytes in the H.264 | online throughout |
| rtsp-stops | RTSP | the stream ends after 6 s | offline (ended) |
| mjpeg-stops | ffmpeg's HTTP server, MJPEG | ends after 6 s | offline (ended) |
| http-hung | TCP listener | accepts, never answers | offline (timeout) |
| http-corrupt | HTTP JPEG | bytes that are not a JPEG | offline (corrupt) |
| ref | local file | none | online, one sample per interval |
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from gateway.cctv.health import HealthEvent
from tests.cctv_support import (
    CLIP,
    CameraHttp,
    FfmpegMjpeg,
    RtspServer,
    SilentListener,
    make_corrupt_h264,
    make_h264,
)
from tests.test_cctv_service import RecordingService, running, wait_for

INTERVAL_S = 2.0
# Worker process start-up (imports of PyAV and OpenCV) before the first sample.
START_UP_S = 3.0
# Scheduling noise on a shared two-core machine.
MARGIN_S = 1.0


class EventRecordingService(RecordingService):
    """The real service, noting each state change and when it was announced."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[tuple[float, HealthEvent]] = []

    def _announce(self, health, events):
        now = time.monotonic()
        self.events.extend((now, event) for event in events)
        super()._announce(health, events)

    def first(self, camera: str, event: str) -> tuple[float, HealthEvent] | None:
        for seen_at, happened in self.events:
            if happened.camera == camera and happened.event == event:
                return seen_at, happened
        return None


@pytest.fixture(scope="module")
def faulty_media(tmp_path_factory) -> dict[str, Path]:
    """Give the clip as 1080p, black, frozen after 4 s, corrupt, and 6 s long."""
    folder = tmp_path_factory.mktemp("faults")
    return {
        "1080p": make_h264(folder / "1080p.mp4", size="1920x1080", seconds=40),
        "black": make_h264(
            folder / "black.mp4", seconds=40, extra_filter="eq=brightness=-1"
        ),
        "frozen": make_h264(
            folder / "frozen.mp4",
            seconds=4,
            extra_filter="tpad=stop_mode=clone:stop_duration=36",
        ),
        "corrupt": make_corrupt_h264(folder / "corrupt.mp4", seconds=40),
        "short": make_h264(folder / "short.mp4", seconds=6),
    }


async def test_every_fault_is_reported_in_time_and_spares_the_others(
    tmp_path, faulty_media
):
    """Test that each faulty camera is in its right state within two intervals
    of the fault, and the healthy ones keep one sample per interval."""
    mounts = {name: path for name, path in faulty_media.items()}
    with (
        RtspServer(mounts) as rtsp,
        CameraHttp() as http,
        SilentListener() as hung,
        FfmpegMjpeg(seconds=6) as mjpeg,
    ):
        cameras = [
            {"id": "rtsp-1080p", "url": rtsp.url("1080p")},
            {"id": "rtsp-black", "url": rtsp.url("black")},
            {"id": "rtsp-frozen", "url": rtsp.url("frozen")},
            {"id": "rtsp-corrupt", "url": rtsp.url("corrupt")},
            {"id": "rtsp-stops", "url": rtsp.url("short")},
            {"id": "mjpeg-stops", "url": mjpeg.url()},
            {"id": "http-hung", "url": f"http://127.0.0.1:{hung.port}/snapshot.jpg"},
            {"id": "http-corrupt", "url": http.url("/corrupt.jpg")},
            {"id": "ref", "url": str(CLIP)},
        ]
        for camera in cameras:
            camera["interval_s"] = INTERVAL_S
        async with running(
            tmp_path, cameras, service_class=EventRecordingService, frozen_samples=2
        ) as service:
            # Long enough for the 6 s streams to end and the freeze to show.
            await asyncio.sleep(18)
            assert await wait_for(lambda: service.first("rtsp-frozen", "frozen"), 4)

    t0 = service.t0
    health = service.health
    two_intervals = 2 * INTERVAL_S + MARGIN_S

    # Healthy, 1080p: online from its first keyframe, full size reported.
    online = service.first("rtsp-1080p", "online")
    assert online and online[0] - t0 <= START_UP_S + two_intervals
    assert health["rtsp-1080p"].resolution == "1920x1080"
    assert health["rtsp-1080p"].state == "online"
    assert service.first("rtsp-1080p", "offline") is None

    # Black frames: covered from the first sample on, and online.
    covered = service.first("rtsp-black", "covered")
    assert covered and covered[0] - t0 <= START_UP_S + two_intervals
    assert health["rtsp-black"].conditions["covered"]
    assert not health["rtsp-black"].conditions["frozen"]

    # Frozen tail: the picture stops changing 4 s into the stream.
    first_frame = service.good("rtsp-frozen")[0]
    frozen = service.first("rtsp-frozen", "frozen")
    assert frozen and frozen[0] - (first_frame + 4) <= two_intervals
    assert not any(
        event.camera == "rtsp-frozen" and event.event == "frozen"
        for seen_at, event in service.events
        if seen_at < first_frame + 4
    )

    # Corrupt bytes: damaged slices are dropped, the keyframes still decode.
    assert service.first("rtsp-corrupt", "offline") is None
    assert len(service.good("rtsp-corrupt")) >= 6

    # Streams that end: offline within two intervals of their last frame.
    for camera in ("rtsp-stops", "mjpeg-stops"):
        offline = service.first(camera, "offline")
        assert offline is not None, camera
        assert offline[1].reason == "ended", (camera, offline)
        last_good = max(t for t in service.good(camera) if t < offline[0])
        assert offline[0] - last_good <= two_intervals, camera
    # ffmpeg's server is gone after its stream: reconnects are refused.
    assert health["mjpeg-stops"].state == "offline"
    assert health["mjpeg-stops"].errors["refused"] >= 1

    # Accepts and never answers: offline within two intervals, for a timeout.
    hung_offline = service.first("http-hung", "offline")
    assert hung_offline and hung_offline[0] - t0 <= START_UP_S + two_intervals
    assert health["http-hung"].reason == "timeout"
    assert {kind for _, kind in service.failed("http-hung")} == {"timeout"}

    # Bytes that are not a JPEG: offline, for corrupt data.
    corrupt_offline = service.first("http-corrupt", "offline")
    assert corrupt_offline and corrupt_offline[0] - t0 <= START_UP_S + two_intervals
    assert health["http-corrupt"].reason == "corrupt"

    # The healthy cameras kept one sample per interval the whole time.
    for camera in ("ref", "rtsp-1080p"):
        good = service.good(camera)
        gaps = [b - a for a, b in itertools.pairwise(good)]
        assert len(good) >= 8, camera
        assert all(gap <= INTERVAL_S + MARGIN_S for gap in gaps), (camera, gaps)

    # And each one has its snapshot on disk.
    for camera in ("rtsp-1080p", "rtsp-black", "rtsp-frozen", "rtsp-corrupt", "ref"):
        assert (tmp_path / "snapshots" / camera / "latest.jpg").stat().st_size > 1000

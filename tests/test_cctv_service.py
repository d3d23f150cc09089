"""The sampler with real worker processes: RTSP over TCP and UDP, open timeouts
and isolation (C24), cameras going down and stalling, credentials kept out of logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from pathlib import Path

import pytest

from gateway.cctv.service import CctvService
from gateway.cctv.worker import SampleResult
from gateway.config import CameraConfig, CctvConfig
from tests.cctv_support import (
    CLIP,
    CameraHttp,
    RtspServer,
    SilentListener,
    free_port,
    make_h264,
)


class RecordingService(CctvService):
    """The real service, noting when each result arrived."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[float, SampleResult]] = []

    async def _handle(self, result: SampleResult) -> None:
        self.seen.append((time.monotonic(), result))
        await super()._handle(result)

    def good(self, camera: str) -> list[float]:
        return [t for t, r in self.seen if r.camera == camera and r.ok]

    def failed(self, camera: str) -> list[tuple[float, str]]:
        return [
            (t, r.error_kind) for t, r in self.seen if r.camera == camera and not r.ok
        ]


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    cameras: list[dict],
    log_level: str = "info",
    service_class: type[RecordingService] = RecordingService,
    **cctv: object,
):
    settings = {
        "snapshot_dir": tmp_path / "snapshots",
        "open_timeout_s": 2.0,
        "read_timeout_s": 1.0,
        "stall_timeout_s": 2.0,
        "retry_min_s": 0.5,
        "retry_max_s": 4.0,
        **cctv,
    }
    service = service_class(
        CctvConfig(**settings),
        [CameraConfig(**camera) for camera in cameras],
        log_level=log_level,
    )
    task = asyncio.create_task(service.run())
    await service.started.wait()
    service.t0 = time.monotonic()
    try:
        yield service
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def small_h264(tmp_path_factory) -> Path:
    """Give 40 s of the clip as 320x240 H.264, a keyframe every 2 s."""
    return make_h264(tmp_path_factory.mktemp("media") / "small.mp4", seconds=40)


async def test_service_samples_rtsp_over_tcp_and_udp(tmp_path, small_h264):
    """Test that RTSP cameras over TCP and over UDP give frames at their interval."""
    with RtspServer({"cam": small_h264}) as server:
        cameras = [
            {"id": "tcp", "url": server.url("cam"), "interval_s": 1.0},
            {
                "id": "udp",
                "url": server.url("cam"),
                "interval_s": 1.0,
                "rtsp_transport": "udp",
            },
        ]
        async with running(tmp_path, cameras) as service:
            assert await wait_for(
                lambda: len(service.good("tcp")) >= 3 and len(service.good("udp")) >= 3,
                12,
            )

    for camera in ("tcp", "udp"):
        status = service.health[camera].status()
        assert status["state"] == "online"
        assert status["resolution"] == "320x240"
        assert (tmp_path / "snapshots" / camera / "latest.jpg").stat().st_size > 1000


async def test_service_isolates_hung_and_refused_cameras(tmp_path):
    """Test C24: hung and refused cameras fail fast; the others keep their pace."""
    refused_port = free_port()
    with SilentListener() as hung:
        cameras = [
            {
                "id": "cam-hung",
                "url": f"rtsp://127.0.0.1:{hung.port}/stream1",
                "interval_s": 1,
            },
            {
                "id": "cam-refused",
                "url": f"rtsp://127.0.0.1:{refused_port}/stream1",
                "interval_s": 1,
            },
            {"id": "cam-ref", "url": str(CLIP), "interval_s": 1},
        ]
        async with running(tmp_path, cameras) as service:
            await asyncio.sleep(9)
            threads = _thread_count(service.worker_pids()[0])

    hung_failures = service.failed("cam-hung")
    refused_failures = service.failed("cam-refused")
    assert hung_failures and {kind for _, kind in hung_failures} == {"timeout"}
    assert refused_failures and {kind for _, kind in refused_failures} == {"refused"}
    # Each open attempt ends within the 2 s open timeout (+ margin): the first
    # failure is known within 2 s + worker start, the refusal at once.
    assert hung_failures[0][0] - service.t0 < 2 + 2
    assert refused_failures[0][0] - service.t0 < 1 + 2
    # Backoff grows between attempts (0.5, 1, 2, 4 s capped, jittered).
    refused_times = [t for t, _ in refused_failures]
    gaps = [b - a for a, b in itertools.pairwise(refused_times)]
    assert len(gaps) >= 2 and gaps[-1] > gaps[0]
    # The reference camera kept one sample per second throughout.
    good = service.good("cam-ref")
    intervals = [b - a for a, b in itertools.pairwise(good)]
    assert len(good) >= 7
    assert all(0.7 <= gap <= 1.3 for gap in intervals), intervals
    states = {camera: h.state for camera, h in service.health.items()}
    assert states == {
        "cam-hung": "offline",
        "cam-refused": "offline",
        "cam-ref": "online",
    }
    assert service.health["cam-hung"].reason == "timeout"
    # Threads stay bounded: the worker's own few plus one per camera.
    assert threads <= 6 + 2 * len(cameras)


async def test_service_marks_camera_offline_within_two_intervals_and_back(
    tmp_path, small_h264
):
    """Test that a camera whose server dies is offline within two intervals, and
    online again on its first good frame once the server is back."""
    server = RtspServer({"cam": small_h264}).start()
    cameras = [
        {"id": "cam", "url": server.url("cam"), "interval_s": 1.0},
        {"id": "other", "url": str(CLIP), "interval_s": 1.0},
    ]
    try:
        async with running(tmp_path, cameras) as service:
            health = service.health["cam"]
            assert await wait_for(lambda: health.state == "online", 8)
            server.stop()
            stopped = time.monotonic()
            assert await wait_for(lambda: health.state == "offline", 4)
            assert time.monotonic() - stopped <= 2 * 1.0 + 0.5

            server = RtspServer({"cam": small_h264}, port=server.port).start()
            restarted = time.monotonic()
            assert await wait_for(lambda: health.state == "online", 10)
            back_s = time.monotonic() - restarted
            await asyncio.sleep(1.5)  # one more sample of the other camera
    finally:
        server.stop()

    # Within the longest backoff (4 s) plus connecting.
    assert back_s < 4 + 3
    # The other camera kept its pace while this one was down and back.
    good = [t for t in service.good("other") if t >= stopped - 1]
    gaps = [b - a for a, b in itertools.pairwise(good)]
    assert len(good) >= 3
    assert all(gap <= 1.5 for gap in gaps), gaps


async def test_service_reports_a_frozen_rtsp_server_as_stalled(tmp_path, small_h264):
    """Test that a server that stops sending, connection open, is stalled in time."""
    with RtspServer({"cam": small_h264}) as server:
        cameras = [{"id": "cam", "url": server.url("cam"), "interval_s": 1.0}]
        async with running(tmp_path, cameras) as service:
            health = service.health["cam"]
            assert await wait_for(lambda: health.state == "online", 8)
            server.pause()
            paused = time.monotonic()
            try:
                assert await wait_for(lambda: health.state == "offline", 5)
                offline_after_s = time.monotonic() - paused
                assert await wait_for(lambda: service.failed("cam"), 5)
            finally:
                server.resume()

    assert offline_after_s <= 2 * 1.0 + 0.5
    assert service.failed("cam")[0][1] == "stalled"


async def test_service_never_logs_camera_credentials(tmp_path, caplog, capfd):
    """Test that passwords in camera URLs reach neither our logs nor FFmpeg's."""
    secret = "s3cr3t-Pw"
    caplog.set_level(logging.DEBUG)
    with CameraHttp() as http, SilentListener() as hung:
        cameras = [
            {
                "id": "rtsp-refused",
                "url": f"rtsp://admin:{secret}@127.0.0.1:{free_port()}/x",
            },
            {
                "id": "rtsp-hung",
                "url": f"rtsp://admin:{secret}@127.0.0.1:{hung.port}/x",
            },
            {
                "id": "http-404",
                "url": f"http://admin:{secret}@127.0.0.1:{http.port}/nope",
            },
        ]
        for camera in cameras:
            camera["interval_s"] = 1.0
        async with running(tmp_path, cameras, log_level="debug") as service:
            await asyncio.sleep(4)

    out, err = capfd.readouterr()
    kinds = {r.camera: r.error_kind for _, r in service.seen}
    assert kinds == {
        "rtsp-refused": "refused",
        "rtsp-hung": "timeout",
        "http-404": "not_found",
    }
    assert "***@127.0.0.1" in err + caplog.text
    assert secret not in caplog.text
    assert secret not in out + err
    assert all(secret not in r.error_detail for _, r in service.seen)
    assert all(secret not in repr(camera) for camera in service.cameras.values())


def _thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


async def test_service_burst_raises_the_rate_then_returns_to_the_policy(tmp_path):
    """Test that a burst samples faster for its duration, then at the plan again."""
    cameras = [{"id": "site-cam", "url": str(CLIP), "interval_s": 3.0}]
    async with running(tmp_path, cameras) as service:
        assert await wait_for(lambda: len(service.good("site-cam")) >= 1, 8)
        service.burst("site-cam", 0.5, 3.0)
        burst_began = time.monotonic()
        await asyncio.sleep(3.0 + 7.0)

    good = service.good("site-cam")
    during = [t for t in good if burst_began <= t <= burst_began + 3.0]
    after = [t for t in good if t > burst_began + 3.5]
    assert len(during) >= 4, during  # every 0.5 s instead of every 3 s
    gaps_after = [b - a for a, b in itertools.pairwise(after)]
    assert gaps_after and all(2.5 <= gap <= 3.5 for gap in gaps_after), gaps_after
    assert service.health["site-cam"].state == "online"


async def test_service_connecting_for_each_sample_reports_a_dead_server(
    tmp_path, small_h264
):
    """Test that a camera opened for each sample gives its frames, and is offline
    within two intervals once its server is gone."""
    server = RtspServer({"cam": small_h264}).start()
    cameras = [
        {
            "id": "per-sample",
            "url": server.url("cam"),
            "interval_s": 1.5,
            "reconnect_each_sample": True,
        }
    ]
    try:
        async with running(tmp_path, cameras) as service:
            health = service.health["per-sample"]
            assert await wait_for(lambda: len(service.good("per-sample")) >= 3, 10)
            server.stop()
            stopped = time.monotonic()
            assert await wait_for(lambda: health.state == "offline", 5)
            offline_after_s = time.monotonic() - stopped
    finally:
        server.stop()

    assert offline_after_s <= 2 * 1.5 + 0.5
    assert health.reason in ("refused", "no_frame")
    assert health.resolution == "320x240"
    gaps = list(itertools.pairwise(service.good("per-sample")))
    assert all(1.0 <= b - a <= 2.2 for a, b in gaps), gaps

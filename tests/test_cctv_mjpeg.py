"""HTTP cameras: MJPEG boundary styles (C27), stalled streams (C25), JPEG URLs."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from gateway.cctv.mjpeg import MjpegParser, boundary_of
from gateway.cctv.sources import CameraError, SourceSettings, make_source
from gateway.cctv.worker import CameraPlan, CameraThread, SampleResult
from tests.cctv_support import CameraHttp, numbered_jpeg, read_number


@pytest.fixture
def camera_http():
    """Give a running HTTP camera server."""
    with CameraHttp() as server:
        yield server


def _all_frames(url: str) -> tuple[list[int], list[tuple[int, int]], str]:
    source = make_source(
        SourceSettings(url, open_timeout_s=2, read_timeout_s=2, stall_timeout_s=3),
        threading.BoundedSemaphore(1),
    )
    source.open()
    numbers, sizes = [], []
    try:
        while True:
            frame = source.poll(True)
            numbers.append(read_number(frame.image))
            sizes.append((frame.width, frame.height))
    except CameraError as exc:
        ending = exc.kind
    finally:
        source.close()
    return numbers, sizes, ending


@pytest.mark.parametrize("style", ["/v1", "/v2", "/v3", "/v4", "/v5"])
def test_mjpeg_source_reads_every_frame_of_each_boundary_style(camera_http, style):
    """Test that each camera boundary style gives frames 1-10, first and last kept."""
    numbers, sizes, ending = _all_frames(camera_http.url(style))

    assert numbers == list(range(1, 11))
    assert set(sizes) == {(320, 240)}
    assert ending == "ended"


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_mjpeg_parser_splits_parts_across_any_chunking(chunk):
    """Test that parts split across reads at any byte are still found whole."""
    jpegs = [numbered_jpeg(n) for n in (1, 2, 3)]
    body = b"".join(
        b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n"
        for jpeg in jpegs
    )
    parser = MjpegParser("multipart/x-mixed-replace; boundary=frame")

    found = []
    for start in range(0, len(body), chunk):
        found += parser.feed(body[start : start + chunk])
    found += parser.finish()

    assert found == jpegs


def test_mjpeg_parser_drops_truncated_last_part_and_counts_it():
    """Test that a last part cut short is counted, never passed on as a frame."""
    jpeg = numbered_jpeg(1)
    parser = MjpegParser("multipart/x-mixed-replace; boundary=frame")

    found = parser.feed(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg[:-200])
    found += parser.finish()

    assert found == []
    assert parser.truncated_parts == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("multipart/x-mixed-replace; boundary=frame", "frame"),
        ("multipart/x-mixed-replace;boundary=--myboundary", "myboundary"),
        ('multipart/x-mixed-replace; boundary="a b"', "a b"),
        ("multipart/x-mixed-replace", None),
    ],
)
def test_boundary_of_strips_dashes_and_quotes(header, expected):
    """Test that the boundary is read with or without dashes and quotes."""
    assert boundary_of(header) == expected


def test_http_jpeg_source_takes_a_snapshot_per_sample(camera_http):
    """Test that a JPEG snapshot URL gives the picture, fetched afresh each time."""
    source = make_source(
        SourceSettings(camera_http.url("/snapshot.jpg")), threading.BoundedSemaphore(1)
    )
    source.open()
    first = source.poll(True)
    time.sleep(0.6)
    second = source.poll(True)
    source.close()

    assert read_number(first.image) == read_number(second.image) == 7
    assert camera_http.connections == 2


def test_http_jpeg_source_reports_corrupt_bytes(camera_http):
    """Test that bytes that are not a JPEG are reported as corrupt."""
    source = make_source(
        SourceSettings(camera_http.url("/corrupt.jpg")), threading.BoundedSemaphore(1)
    )
    source.open()
    with pytest.raises(CameraError) as caught:
        source.poll(True)

    assert caught.value.kind == "corrupt"


def test_http_source_names_missing_path_not_found(camera_http):
    """Test that a 404 is reported as not_found, not as a generic error."""
    source = make_source(
        SourceSettings(camera_http.url("/nope")), threading.BoundedSemaphore(1)
    )
    with pytest.raises(CameraError) as caught:
        source.open()

    assert caught.value.kind == "not_found"


def test_camera_thread_reports_stall_and_resumes_with_new_frames_only(camera_http):
    """Test C25: a silent open stream is stalled in time, then reconnects.

    Timings are C25's scaled down: frames for 2 s, then silence with the
    connection open; the server serves again (from 1000) after 5 s.
    """
    results: list[tuple[float, SampleResult]] = []
    plan = CameraPlan(
        "cam-stall",
        SourceSettings(
            camera_http.url("/stall"),
            open_timeout_s=2,
            read_timeout_s=1.0,
            stall_timeout_s=1.5,
        ),
        interval_s=0.5,
        retry_min_s=0.5,
        retry_max_s=2,
    )
    thread = CameraThread(
        plan,
        threading.BoundedSemaphore(1),
        lambda r: results.append((time.monotonic(), r)) or True,
    )
    started = time.monotonic()
    camera_http.resume_at = started + 5.0
    thread.start()
    try:
        deadline = started + 15
        while time.monotonic() < deadline:
            numbers = [_number(r) for _, r in results if r.ok]
            if (
                any(n >= 1000 for n in numbers)
                and len([n for n in numbers if n >= 1000]) >= 3
            ):
                break
            time.sleep(0.1)
    finally:
        thread.stop()
        thread.join(5)

    good = [(t - started, _number(r)) for t, r in results if r.ok]
    failures = [(t - started, r.error_kind) for t, r in results if not r.ok]
    last_old = max(t for t, n in good if n < 1000)
    assert 2 <= len([n for _, n in good if n < 1000]) <= 6
    # Stalled within read timeout + margin of the last frame (C25: stall + 3 s).
    assert failures and failures[0][1] == "stalled"
    assert failures[0][0] - last_old < 1.5 + 3
    # Back once the server serves again, within back-off + 5 s.
    first_new = min(t for t, n in good if n >= 1000)
    assert first_new - 5.0 < 2 + 5
    # No old frame again: numbers only go up.
    numbers = [n for _, n in good]
    assert numbers == sorted(set(numbers))
    assert not thread.is_alive()


def _number(result: SampleResult) -> int:
    image = cv2.imdecode(np.frombuffer(result.jpeg, np.uint8), cv2.IMREAD_COLOR)
    return read_number(image)

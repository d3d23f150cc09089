"""Frame analysis on real footage: covered, frozen, blurred, people; privacy
masks in stored snapshots; retention; the snapshot HTTP API end to end."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from gateway.cctv.analysis import AnalysisSettings, FrameAnalyzer
from gateway.cctv.runner import run_cctv
from gateway.cctv.sources import SourceSettings, make_source
from gateway.cctv.store import SnapshotStore
from gateway.config import GatewayConfig
from tests.cctv_support import CLIP, free_port, make_h264


def _facts_over(path: Path, seconds: list[float], **settings):
    """Analyse the frames at the given positions of a file, in order."""
    analyzer = FrameAnalyzer(AnalysisSettings(**settings))
    source = make_source(SourceSettings(str(path)), threading.BoundedSemaphore(1))
    source.open()
    facts = []
    for position in seconds:
        source._started = time.monotonic() - position  # look at that moment
        facts.append(analyzer.analyse(source.poll(True).image))
    source.close()
    return facts


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Give variants of the clip: normal, black, frozen tail, blurred, corrupt."""
    folder = tmp_path_factory.mktemp("analysis")
    normal = make_h264(folder / "normal.mp4", seconds=12)
    black = make_h264(folder / "black.mp4", seconds=6, extra_filter="eq=brightness=-1")
    frozen = folder / "frozen.mp4"
    # 3 s of the clip, then its last frame held for 9 s.
    make_h264(frozen, seconds=3, extra_filter="tpad=stop_mode=clone:stop_duration=9")
    blurred = make_h264(folder / "blurred.mp4", seconds=6, extra_filter="boxblur=12:2")
    corrupt = folder / "corrupt.mp4"
    data = bytearray(normal.read_bytes())
    rng = np.random.default_rng(7)
    for offset in range(len(data) // 4, len(data) * 3 // 4, 20_000):
        data[offset : offset + 400] = rng.integers(
            0, 256, 400, dtype=np.uint8
        ).tobytes()
    corrupt.write_bytes(bytes(data))
    return {"normal": normal, "black": black, "frozen": frozen, "blurred": blurred,
            "corrupt": corrupt}  # fmt: skip


def test_analysis_of_normal_footage_is_healthy_with_motion(media):
    """Test that the real clip is neither covered, blurred nor frozen, and moves."""
    facts = _facts_over(media["normal"], [1, 2, 3, 4])

    assert not any(f.covered or f.blurred or f.frozen for f in facts)
    assert all(f.motion is not None and f.motion > 1 for f in facts[1:])
    assert all(60 < f.brightness < 200 for f in facts)


def test_analysis_reports_black_lens_as_covered(media):
    """Test that black frames are covered, and not also blurred or frozen."""
    facts = _facts_over(media["black"], [1, 2, 3, 4])

    assert all(f.covered for f in facts)
    assert not any(f.blurred or f.frozen for f in facts)


def test_analysis_reports_frozen_tail_after_n_samples(media):
    """Test that a held picture is frozen from the third sample that repeats it."""
    facts = _facts_over(media["frozen"], [1, 2, 4, 5, 6, 7], frozen_samples=3)

    assert [f.frozen for f in facts] == [False, False, False, False, True, True]


def test_analysis_reports_blur(media):
    """Test that a defocused picture is blurred; the sharp one is not."""
    blurred = _facts_over(media["blurred"], [1, 2])
    sharp = _facts_over(media["normal"], [1, 2])

    assert all(f.blurred for f in blurred)
    assert min(f.sharpness for f in sharp) > 5 * max(f.sharpness for f in blurred)


def test_analysis_counts_people_with_hog():
    """Test that OpenCV's HOG detector finds the people walking in the clip."""
    facts = _facts_over(CLIP, [5, 20, 40], people=True)

    assert max(f.people for f in facts) >= 1


def test_file_source_survives_corrupt_bytes(media):
    """Test that damaged stretches of a file give frames or a corrupt error, not a crash."""
    from gateway.cctv.sources import CameraError

    source = make_source(
        SourceSettings(str(media["corrupt"])), threading.BoundedSemaphore(1)
    )
    source.open()
    outcomes = []
    for position in range(1, 12):
        source._started = time.monotonic() - position
        try:
            outcomes.append(source.poll(True).width)
        except CameraError as exc:
            outcomes.append(exc.kind)
    source.close()

    assert set(outcomes) <= {320, "corrupt"}
    assert outcomes.count(320) >= 3


def test_snapshot_store_retention_by_age_and_by_size(tmp_path):
    """Test that retention deletes the too-old first, then the oldest past the size."""
    store = SnapshotStore(tmp_path, max_age_s=60, max_bytes=1_100_000)
    now = time.time_ns()
    jpeg = b"\xff\xd8" + b"x" * 200_000 + b"\xff\xd9"
    old = store.save("cam", now - 120 * 10**9, jpeg, b"t", keep=True)
    kept = [
        store.save("cam", now - (50 - i) * 10**9, jpeg, b"t", keep=True)
        for i in range(6)
    ]

    deleted = store.enforce_retention(now)

    assert deleted == 2  # the one past 60 s, then the oldest past 1.1 MB
    assert not old.exists() and not kept[0].exists()
    assert all(path.exists() for path in kept[1:])
    assert store.total_bytes == 5 * len(jpeg)
    assert (tmp_path / "cam" / "latest.jpg").exists()
    # A restarted store finds what is on disk and keeps enforcing.
    again = SnapshotStore(tmp_path, max_age_s=60, max_bytes=400_000)
    again.load()
    assert again.enforce_retention(now) == 4
    assert len(list(tmp_path.glob("cam/*/*.jpg"))) == 1


async def test_cctv_run_masks_snapshots_and_serves_them_over_http(
    tmp_path, influx_v1, broker
):
    """Test the whole path: masked snapshots on disk, points in InfluxDB, HTTP API."""
    port = free_port()
    mask = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]
    config = GatewayConfig.model_validate(
        {
            "subscriptions": [{"topic": "unused/#"}],
            "mqtt": {"host": broker.host, "port": broker.port},
            "influx": {"url": influx_v1.url, "database": influx_v1.database},
            "dead_letters": {"path": str(tmp_path / "dead.jsonl")},
            "cctv": {
                "snapshot_dir": str(tmp_path / "snaps"),
                "status_topic_prefix": "",
            },
            "cameras": [
                {
                    "id": "masked",
                    "url": str(CLIP),
                    "interval_s": 1,
                    "privacy_masks": [mask],
                },
                {"id": "plain", "url": str(CLIP), "interval_s": 1},
                {"id": "ondemand", "url": str(CLIP), "interval_s": 0},
            ],
        }
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(run_cctv(config, stop, http_port=port))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        snapshot = await _get_when_ready(client, "/cameras/masked/snapshot.jpg")
        thumbnail = await client.get("/cameras/masked/thumbnail.jpg")
        missing = await client.get("/cameras/nope/snapshot.jpg")
        before = await client.get("/cameras/ondemand/snapshot.jpg")
        sampled = await client.post("/cameras/ondemand/sample")
        after = await client.get("/cameras/ondemand/snapshot.jpg")
        burst = await client.post(
            "/cameras/plain/burst", params={"interval_s": 0.5, "duration_s": 2}
        )
        listing = (await client.get("/cameras")).json()
    rows = await influx_v1.wait_for_rows("camera_frame", 4)
    health = influx_v1.rows("camera_health")
    stop.set()
    await runner

    image = cv2.imdecode(
        np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_GRAYSCALE
    )
    height, width = image.shape
    assert image[: height // 2 - 4, : width // 2 - 4].max() < 10  # masked: black
    assert image[height // 2 + 4 :, width // 2 + 4 :].mean() > 50  # the rest: the scene
    stored = sorted((tmp_path / "snaps" / "masked").glob("*/*.jpg"))
    assert stored
    on_disk = cv2.imread(str(stored[0]), cv2.IMREAD_GRAYSCALE)
    assert on_disk[: height // 2 - 4, : width // 2 - 4].max() < 10
    assert snapshot.headers["content-type"] == "image/jpeg"
    assert thumbnail.status_code == 200
    assert cv2.imdecode(np.frombuffer(thumbnail.content, np.uint8), 0).shape[1] == 320
    assert missing.status_code == 404
    assert before.status_code == 404 and sampled.status_code == 200
    assert sampled.json()["ok"] is True and after.status_code == 200
    assert burst.status_code == 202
    assert {c["camera"]: c["state"] for c in listing}["masked"] == "online"
    assert {row["camera"] for row in rows} >= {"masked", "plain"}
    assert all(row["brightness"] is not None and row["sharpness"] > 0 for row in rows)
    assert any(row["online"] is True and row["width"] == 768 for row in health)


async def _get_when_ready(client: httpx.AsyncClient, path: str) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:
        try:
            response = await client.get(path)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)

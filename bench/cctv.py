"""How many cameras one core can sample at one frame per 10 s, and at what memory.

The clip in ../shared/data/cctv is encoded as 1080p H.264 (10 fps, 4 Mbit/s,
a keyframe every 2 s, no B-frames, like most cameras) and served over RTSP
(TCP) by GStreamer's RTSP server on loopback. A live camera is joined at a
random point of its keyframe interval, so on average half an interval passes
before the first keyframe; the served stream therefore starts with 1 s of
frames before its first keyframe, and every connection waits that long. (The
first packet the gateway gets is that keyframe: the wait costs time here, not
the CPU of receiving 1 s of stream, about 5 ms at 4 Mbit/s on a real camera.)

The same streams are sampled, one way after another in the same round, each
in a fresh child process whose CPU time (all threads) and memory are measured:

- keyframes: a held connection whose keyframes are decoded only when a sample
  is due (gateway.cctv.sources.RtspStream);
- reconnect: connect, decode the first keyframe, disconnect, for each sample
  (gateway.cctv.sources.RtspSnapshot);
- naive (the baseline): cv2.VideoCapture(url).read() in a loop, every frame
  decoded, one kept every 10 s.

The gateway's ways include everything a worker does per sample (scaling to
1280 pixels wide, analysis, JPEG and thumbnail encoding). CPU per sample is
the process's CPU time over the samples it delivered; cameras per core =
10 s / CPU per sample. The RTSP server runs on the same machine and is not
counted. Half the cameras start first, the other half midway; memory per
camera is the growth of resident memory between the two, per camera added.

    .venv/bin/python bench/cctv.py [--cameras 8] [--naive-cameras 2]
                                   [--seconds 40] [--rounds 1]

Prints a Markdown table; writes bench/results/<YYYY-MM-DD>-cctv.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cctv_support import CLIP, RtspServer, ffmpeg  # noqa: E402

INTERVAL_S = 10.0
FPS = 10
KEYFRAME_EVERY = 20  # frames: 2 s
# Frames before the first keyframe: half a keyframe interval, the average wait
# of a client joining a live camera.
LEAD_IN_FRAMES = KEYFRAME_EVERY // 2
RESULTS = Path(__file__).resolve().parent / "results"
WAYS = ("keyframes", "reconnect", "naive")


def make_clip(folder: Path, seconds: float) -> Path:
    """Encode the clip as 1080p H.264 that starts 1 s before a keyframe."""
    raw = folder / "vtest-1080p.h264"
    ffmpeg(
        "-stream_loop", "-1", "-t", str(seconds), "-i", str(CLIP),
        "-vf", f"scale=1920:1080,fps={FPS}",
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "0",
        "-g", str(KEYFRAME_EVERY), "-keyint_min", str(KEYFRAME_EVERY),
        "-sc_threshold", "0", "-x264-params", "slices=1", "-pix_fmt", "yuv420p",
        "-b:v", "4M", "-maxrate", "4M", "-bufsize", "8M", "-an",
        "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(raw),
    )  # fmt: skip
    cut = folder / "vtest-1080p-cut.h264"
    cut.write_bytes(
        _drop_first_frames(raw.read_bytes(), KEYFRAME_EVERY - LEAD_IN_FRAMES)
    )
    path = folder / "vtest-1080p.mp4"
    ffmpeg(
        "-fflags", "+genpts", "-r", str(FPS), "-i", str(cut), "-c", "copy", str(path)
    )
    return path


def _drop_first_frames(stream: bytes, frames: int) -> bytes:
    """Drop the first frames of an Annex B H.264 stream, keeping its parameter sets."""
    starts = []
    index = stream.find(b"\x00\x00\x01")
    while index != -1:
        starts.append(index + 3)
        index = stream.find(b"\x00\x00\x01", index + 3)
    kept = bytearray()
    seen_frames = 0
    for number, start in enumerate(starts):
        end = starts[number + 1] - 3 if number + 1 < len(starts) else len(stream)
        unit = stream[start:end].rstrip(b"\x00")
        nal_type = unit[0] & 0x1F
        is_slice = nal_type in (1, 5)
        if is_slice:
            seen_frames += 1  # one slice per frame (slices=1)
        if not is_slice and nal_type in (7, 8) or seen_frames > frames:
            kept += b"\x00\x00\x00\x01" + unit
    return bytes(kept)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _run_in_halves(
    threads: list[threading.Thread], seconds: float
) -> tuple[float, float, float]:
    """Run half the cameras, then all; return CPU s, wall s and kB per camera.

    Memory per camera is the growth of resident memory from half the cameras
    to all of them, so that what a process allocates once (libraries' tables,
    thread pools) is not counted as the cameras'.
    """
    half = len(threads) // 2
    started_cpu, started = time.process_time(), time.monotonic()
    for thread in threads[:half]:
        thread.start()
    time.sleep(seconds / 2)
    rss_half = _rss_kb()
    for thread in threads[half:]:
        thread.start()
    time.sleep(seconds / 2)
    rss_all = _rss_kb()
    cpu_s = time.process_time() - started_cpu
    wall_s = time.monotonic() - started
    return cpu_s, wall_s, (rss_all - rss_half) / max(1, len(threads) - half)


def _run_gateway_way(
    urls: list[str], seconds: float, reconnect: bool, out: Any
) -> None:
    import av.logging

    from gateway.cctv.sources import SourceSettings
    from gateway.cctv.worker import CameraPlan, CameraThread

    av.logging.set_level(None)
    samples: list[Any] = []
    slots = threading.BoundedSemaphore(1)
    plans = [
        CameraPlan(
            f"cam{i}",
            SourceSettings(url, max_width=1280, reconnect_each_sample=reconnect),
            INTERVAL_S,
        )
        for i, url in enumerate(urls)
    ]
    threads = [
        CameraThread(p, slots, lambda r: samples.append(r) or True) for p in plans
    ]
    cpu_s, wall_s, per_camera_kb = _run_in_halves(threads, seconds)
    # Only the samples delivered within the measured CPU time count.
    measured = list(samples)
    for thread in threads:
        thread.stop()
    for thread in threads:
        thread.join(5)
    good = [s for s in measured if s.ok]
    out.put(
        {
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "samples": len(good),
            "failures": len(measured) - len(good),
            "failure_kinds": sorted(
                {f"{s.error_kind}: {s.error_detail}" for s in measured if not s.ok}
            ),
            "rss_per_camera_mb": per_camera_kb / 1024,
            "decode_ms": 1000 * statistics.fmean(s.decode_s for s in good)
            if good
            else 0,
        }
    )


def _run_naive(urls: list[str], seconds: float, out: Any) -> None:
    import cv2

    kept: list[int] = []
    stop = threading.Event()

    def read_loop(url: str) -> None:
        capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        next_keep = time.monotonic()
        while not stop.is_set():
            ok, frame = capture.read()
            if not ok:
                break
            if time.monotonic() >= next_keep:
                kept.append(cv2.imencode(".jpg", frame)[1].size)
                next_keep += INTERVAL_S
        capture.release()

    threads = [threading.Thread(target=read_loop, args=(url,)) for url in urls]
    cpu_s, wall_s, per_camera_kb = _run_in_halves(threads, seconds)
    measured = len(kept)
    stop.set()
    for thread in threads:
        thread.join(10)
    out.put(
        {
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "samples": measured,
            "failures": 0,
            "rss_per_camera_mb": per_camera_kb / 1024,
            "decode_ms": 0.0,
        }
    )


def measure(target: Any, *args: Any) -> dict[str, float]:
    """Run one way of sampling in a fresh process and return its figures."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=target, args=(*args, out))
    process.start()
    result: dict[str, float] = out.get(timeout=600)
    process.join(30)
    cpu_per_sample_s = result["cpu_s"] / max(1, result["samples"])
    result["cpu_per_sample_ms"] = 1000 * cpu_per_sample_s
    result["cameras_per_core"] = (
        INTERVAL_S / cpu_per_sample_s if result["samples"] else 0
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cameras", type=int, default=8, help="cameras per gateway way"
    )
    parser.add_argument("--naive-cameras", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=40.0, help="measured per way")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    load_before = os.getloadavg()
    began = time.monotonic()

    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        print("Encoding the clip as 1080p H.264 (keyframe every 2 s) ...", flush=True)
        clip = make_clip(Path(folder), args.seconds + 20)
        with RtspServer({"cam": clip}) as server:
            url = server.url("cam")
            for number in range(args.rounds):
                print(f"Round {number + 1}/{args.rounds} ...", flush=True)
                gateway_urls = [url] * args.cameras
                rounds.append(
                    {
                        "keyframes": measure(
                            _run_gateway_way, gateway_urls, args.seconds, False
                        ),
                        "reconnect": measure(
                            _run_gateway_way, gateway_urls, args.seconds, True
                        ),
                        "naive": measure(
                            _run_naive, [url] * args.naive_cameras, args.seconds
                        ),
                    }
                )

    counts = {"keyframes": args.cameras, "reconnect": args.cameras,
              "naive": args.naive_cameras}  # fmt: skip
    summary = {way: _median(rounds, way) for way in WAYS}
    naive_per_core = summary["naive"]["cameras_per_core"] or float("nan")
    print(
        f"\n1080p H.264 over RTSP/TCP (4 Mbit/s, keyframe every 2 s), one sample "
        f"per {INTERVAL_S:.0f} s per camera, {args.seconds:.0f} s per way, "
        f"median of {args.rounds} round(s)\n"
    )
    print("| way | cameras | samples | failures | CPU ms/sample | cameras/core "
          "| vs naive | MB/camera | decode ms |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for way in WAYS:
        figures = summary[way]
        print(
            f"| {way} | {counts[way]} | {figures['samples']:.0f} "
            f"| {figures['failures']:.0f} | {figures['cpu_per_sample_ms']:.1f} "
            f"| {figures['cameras_per_core']:.0f} "
            f"| {figures['cameras_per_core'] / naive_per_core:.1f}x "
            f"| {figures['rss_per_camera_mb']:.1f} | {figures['decode_ms']:.1f} |"
        )

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.date.today().isoformat()}-cctv.json"
    report = {
        "config": {**vars(args), "interval_s": INTERVAL_S, "fps": FPS,
                   "keyframe_every": KEYFRAME_EVERY, "lead_in_frames": LEAD_IN_FRAMES},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_before_after": [load_before, os.getloadavg()],
            "elapsed_s": round(time.monotonic() - began, 1),
            "av": version("av"),
            "opencv-python-headless": version("opencv-python-headless"),
        },
        "summary": summary,
        "rounds": rounds,
    }  # fmt: skip
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nWrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
    )


def _median(rounds: list[dict[str, dict[str, Any]]], way: str) -> dict[str, Any]:
    figures = rounds[0][way]
    median: dict[str, Any] = {
        key: statistics.median(r[way][key] for r in rounds)
        for key, value in figures.items()
        if isinstance(value, (int, float))
    }
    median["failure_kinds"] = sorted(
        {k for r in rounds for k in r[way].get("failure_kinds", [])}
    )
    return median


if __name__ == "__main__":
    main()

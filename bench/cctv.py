"""How many cameras one core can sample at one frame per 10 s, and at what memory.

The clip in ../shared/data/cctv is encoded as 1080p H.264 (10 fps, a keyframe
every 2 s, no B-frames, like most cameras) and served over RTSP (TCP) by
GStreamer's RTSP server on loopback. The same streams are then sampled, one
way after another in the same run, each in a fresh child process whose CPU
time and memory are measured:

- keyframes: the gateway's way, a held connection whose keyframes are
  decoded only when a sample is due (gateway.cctv.sources.RtspStream);
- reconnect: connect, decode the first keyframe, disconnect, per sample
  (gateway.cctv.sources.RtspSnapshot);
- naive: cv2.VideoCapture(url).read() in a loop, every frame decoded,
  one kept every 10 s (the baseline).

cameras per core = cameras × seconds / CPU seconds spent. The sampling part
(masking, analysis, JPEG encoding of the sample) is included for the gateway's
ways. The RTSP server runs on the same machine and is not counted.

    .venv/bin/python bench/cctv.py [--cameras 8] [--naive-cameras 3] [--seconds 40]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cctv_support import CLIP, RtspServer, ffmpeg  # noqa: E402

INTERVAL_S = 10.0


def make_clip(folder: Path, seconds: float) -> Path:
    """Encode the clip as 1080p H.264, 10 fps, a keyframe every 2 s."""
    path = folder / "vtest-1080p.mp4"
    ffmpeg(
        "-t", str(seconds), "-i", str(CLIP), "-vf", "scale=1920:1080",
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", "20",
        "-keyint_min", "20", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-b:v", "4M", "-an", str(path),
    )  # fmt: skip
    return path


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _run_gateway_way(urls: list[str], seconds: float, reconnect: bool, out) -> None:
    from gateway.cctv.sources import SourceSettings
    from gateway.cctv.worker import CameraPlan, CameraThread

    samples = []
    slots = threading.BoundedSemaphore(1)
    plans = [
        CameraPlan(
            f"cam{i}",
            SourceSettings(url, max_width=1280, reconnect_each_sample=reconnect),
            INTERVAL_S,
        )
        for i, url in enumerate(urls)
    ]
    base_rss = _rss_kb()
    started_cpu, started = time.process_time(), time.monotonic()
    threads = [CameraThread(p, slots, lambda r: samples.append(r) or True) for p in plans]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    rss = _rss_kb()
    for thread in threads:
        thread.stop()
    cpu_s = time.process_time() - started_cpu
    wall_s = time.monotonic() - started
    for thread in threads:
        thread.join(5)
    good = [s for s in samples if s.ok]
    out.put(
        {
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "samples": len(good),
            "failures": len(samples) - len(good),
            "rss_per_camera_mb": (rss - base_rss) / 1024 / len(urls),
            "decode_ms": 1000 * sum(s.decode_s for s in good) / max(1, len(good)),
        }
    )


def _run_naive(urls: list[str], seconds: float, out) -> None:
    import cv2

    kept = []
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

    base_rss = _rss_kb()
    started_cpu, started = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=read_loop, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    rss = _rss_kb()
    stop.set()
    cpu_s = time.process_time() - started_cpu
    wall_s = time.monotonic() - started
    for thread in threads:
        thread.join(10)
    out.put(
        {
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "samples": len(kept),
            "failures": 0,
            "rss_per_camera_mb": (rss - base_rss) / 1024 / len(urls),
            "decode_ms": float("nan"),
        }
    )


def measure(target, *args) -> dict:
    """Run one way of sampling in a fresh process and return its figures."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=target, args=(*args, out))
    process.start()
    result = out.get(timeout=600)
    process.join(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--naive-cameras", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        print("Encoding the clip as 1080p H.264 (keyframe every 2 s) ...", flush=True)
        clip = make_clip(Path(folder), args.seconds + 20)
        with RtspServer({"cam": clip}) as server:
            url = server.url("cam")
            results = {
                "keyframes": measure(_run_gateway_way, [url] * args.cameras, args.seconds, False),
                "reconnect": measure(_run_gateway_way, [url] * args.cameras, args.seconds, True),
                "naive": measure(_run_naive, [url] * args.naive_cameras, args.seconds),
            }
    counts = {"keyframes": args.cameras, "reconnect": args.cameras, "naive": args.naive_cameras}
    print(f"\n1080p H.264 over RTSP/TCP, one sample per {INTERVAL_S:.0f} s per camera, "
          f"{args.seconds:.0f} s measured per way\n")  # fmt: skip
    print(f"{'way':<10} {'cameras':>7} {'samples':>7} {'fail':>4} {'CPU s':>7} "
          f"{'cams/core':>9} {'MB/cam':>7} {'decode ms':>9}")  # fmt: skip
    per_core = {}
    for way, figures in results.items():
        cameras = counts[way]
        per_core[way] = cameras * figures["wall_s"] / max(figures["cpu_s"], 1e-9)
        print(
            f"{way:<10} {cameras:>7} {figures['samples']:>7} {figures['failures']:>4} "
            f"{figures['cpu_s']:>7.2f} {per_core[way]:>9.0f} "
            f"{figures['rss_per_camera_mb']:>7.1f} {figures['decode_ms']:>9.1f}"
        )
    print(
        f"\nkeyframes vs naive: {per_core['keyframes'] / per_core['naive']:.0f}x the "
        f"cameras per core; reconnect vs naive: "
        f"{per_core['reconnect'] / per_core['naive']:.0f}x"
    )


if __name__ == "__main__":
    main()

"""Camera fixtures for the CCTV tests and bench: real media and real servers.

Media are made at test time with ffmpeg from the surveillance clip in
../shared/data/cctv. Servers run on loopback: GStreamer's RTSP server
(tests/cctv_rtsp_server.py; ffmpeg itself cannot serve RTSP to a client),
ffmpeg's own HTTP server sending MJPEG, an HTTP server for JPEG and MJPEG in
the styles real cameras use, and a TCP listener that accepts and never answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
CLIP = (REPO.parent / "shared" / "data" / "cctv" / "vtest.avi").resolve()
RTSP_SERVER = Path(__file__).resolve().parent / "cctv_rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
# Frame numbers are drawn as a row of black/white blocks (and as text).
BITS = 12
BLOCK = 20


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly, failing with its message."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def make_h264(
    path: Path,
    *,
    size: str = "320x240",
    seconds: float = 30,
    gop: int = 20,
    extra_filter: str = "",
    start_s: float = 0,
) -> Path:
    """Encode part of the clip as H.264 in MP4 (10 fps, a keyframe every `gop`)."""
    width, height = size.split("x")
    video_filter = f"scale={width}:{height}" + (
        f",{extra_filter}" if extra_filter else ""
    )
    ffmpeg(
        "-ss", str(start_s), "-t", str(seconds), "-i", str(CLIP),
        "-vf", video_filter, "-c:v", "libx264", "-preset", "ultrafast",
        "-bf", "0", "-g", str(gop), "-keyint_min", str(gop),
        "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-an", str(path),
    )  # fmt: skip
    return path


def make_corrupt_h264(path: Path, *, seconds: float = 30, seed: int = 7) -> Path:
    """Encode part of the clip as 320x240 H.264 with random bytes over its middle.

    The damage is done to the raw H.264 stream (300 bytes every 15 kB of the
    middle three fifths), which is then put into MP4 as it is, so a server
    sends the damaged slices exactly as a faulty camera or link would.
    """
    raw = path.with_suffix(".h264")
    ffmpeg(
        "-t", str(seconds), "-i", str(CLIP), "-vf", "scale=320:240",
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "20",
        "-keyint_min", "20", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-an",
        "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(raw),
    )  # fmt: skip
    data = bytearray(raw.read_bytes())
    rng = np.random.default_rng(seed)
    for offset in range(len(data) // 5, len(data) * 4 // 5, 15_000):
        data[offset : offset + 300] = rng.integers(
            0, 256, 300, dtype=np.uint8
        ).tobytes()
    raw.write_bytes(bytes(data))
    ffmpeg("-fflags", "+genpts", "-r", "10", "-i", str(raw), "-c", "copy", str(path))
    raw.unlink()
    return path


def numbered_jpeg(number: int, width: int = 320, height: int = 240) -> bytes:
    """Return a JPEG of a clip-like frame that carries its number, readably."""
    image = np.full((height, width, 3), 90, np.uint8)
    cv2.circle(
        image, (width // 2, height // 2 + 30), 40 + number % 20, (30, 160, 200), -1
    )
    for bit in range(BITS):
        value = 255 if number >> bit & 1 else 0
        image[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
    cv2.putText(
        image, str(number), (10, 200), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3
    )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(data)


def read_number(image: np.ndarray) -> int:
    """Return the number a numbered_jpeg frame carries."""
    number = 0
    for bit in range(BITS):
        block = image[4 : BLOCK - 4, bit * BLOCK + 4 : (bit + 1) * BLOCK - 4]
        if block.mean() > 128:
            number |= 1 << bit
    return number


class CameraHttp:
    """An HTTP camera server: JPEG snapshots and MJPEG in several styles.

    Paths:
    - /v1 .. /v4: C27's boundary styles, 10 numbered frames, then close.
    - /snapshot.jpg: one JPEG; /corrupt.jpg: bytes that are not a JPEG.
    - /stall: C25: frames at 5 fps for `stall_after_s`, then silence with the
      connection open (later connections get silence too); connections made
      after `resume_at` (monotonic) get a normal stream numbered from 1000.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.stall_after_s = 2.0
        self.resume_at = float("inf")
        self.frames_per_s = 5.0
        self.connections = 0
        self.snapshot = numbered_jpeg(7)
        self._stalled = False
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.connections += 1
                with contextlib.suppress(OSError):
                    server._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> CameraHttp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        out = handler.wfile
        if path in ("/snapshot.jpg", "/corrupt.jpg"):
            body = self.snapshot if path == "/snapshot.jpg" else b"\xff\xd8garbage" * 50
            handler.send_response(200)
            handler.send_header("Content-Type", "image/jpeg")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            out.write(body)
            return
        if path == "/stall":
            self._serve_stall(handler)
            return
        styles = {
            "/v1": ("boundary=frame", b"--frame\r\n", True, False),
            "/v2": ("boundary=--myboundary", b"--myboundary\r\n", True, False),
            "/v3": (
                "boundary=e8b8c539-047d-4777-a985-fbba6edff11e",
                b"--e8b8c539-047d-4777-a985-fbba6edff11e\r\n",
                True,
                True,
            ),
            "/v4": ("boundary=frame", b"--frame\r\n", False, False),
            "/v5": ('boundary="quoted"', b"--quoted\n", True, False),
        }
        if path not in styles:
            handler.send_error(404)
            return
        parameter, delimiter, with_length, trailing = styles[path]
        separator = ";" if path == "/v3" else "; "
        handler.send_response(200)
        handler.send_header(
            "Content-Type", f"multipart/x-mixed-replace{separator}{parameter}"
        )
        handler.end_headers()
        for number in range(1, 11):
            jpeg = numbered_jpeg(number)
            headers = b"Content-Type: image/jpeg\r\n"
            if with_length:
                headers += f"Content-Length: {len(jpeg)}\r\n".encode()
            if path == "/v5":
                headers = headers.replace(b"\r\n", b"\n")
            blank = b"\n" if path == "/v5" else b"\r\n"
            if trailing:
                # Tasmota style: no delimiter before the first part, one after each.
                out.write(headers + b"\r\n" + jpeg + b"\r\n" + delimiter)
            else:
                out.write(delimiter + headers + blank + jpeg + b"\r\n")
            out.flush()

    def _serve_stall(self, handler: BaseHTTPRequestHandler) -> None:
        resumed = time.monotonic() >= self.resume_at
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        number = 1000 if resumed else 1
        started = time.monotonic()
        while not self._stop.is_set():
            if not resumed and (
                self._stalled or time.monotonic() - started > self.stall_after_s
            ):
                # A stuck camera: this and later connections get nothing.
                self._stalled = True
                # Stall: keep the connection open, send nothing.
                self._stop.wait(600)
                return
            jpeg = numbered_jpeg(number)
            handler.wfile.write(
                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(jpeg)).encode()
                + b"\r\n\r\n"
                + jpeg
                + b"\r\n"
            )
            handler.wfile.flush()
            number += 1
            time.sleep(1 / self.frames_per_s)


class SilentListener:
    """A TCP listener that accepts connections and never sends a byte (C24 F1)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", self.port))
        self._socket.listen(64)
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> SilentListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
        for connection in self._accepted:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._accepted.append(connection)


class FfmpegMjpeg:
    """ffmpeg serving the clip once as an HTTP MJPEG stream, then exiting.

    ffmpeg's own HTTP server takes one client; the stream plays in real time
    for `seconds` and ends, like a camera that stops; after that the port is
    closed (connections are refused).
    """

    def __init__(self, seconds: float, size: str = "320x240") -> None:
        self.port = free_port()
        self.seconds = seconds
        self.size = size
        self.process: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def __enter__(self) -> FfmpegMjpeg:
        width, height = self.size.split("x")
        self.process = subprocess.Popen(
            [
                "ffmpeg",
                "-v",
                "error",
                "-re",
                "-t",
                str(self.seconds),
                "-i",
                str(CLIP),
                "-vf",
                f"scale={width}:{height}",
                "-q:v",
                "5",
                "-f",
                "mpjpeg",
                "-content_type",
                "multipart/x-mixed-replace;boundary=ffmpeg",
                "-listen",
                "1",
                self.url(),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Wait for the listening socket without connecting: a connection
        # would be ffmpeg's one client.
        deadline = time.monotonic() + 10
        while not _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


class RtspServer:
    """GStreamer's RTSP server on a free port, serving H.264 files by name."""

    def __init__(self, mounts: dict[str, Path], port: int | None = None) -> None:
        self.port = port or free_port()
        self.mounts = mounts
        self.process: subprocess.Popen[str] | None = None

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> RtspServer:
        args = [f"{name}={path}" for name, path in self.mounts.items()]
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            rest = self.process.stdout.read()
            self.stop()
            raise AssertionError(f"RTSP server did not start: {line}{rest}")
        # Nothing more is read: the server prints nothing after "ready".
        self.process.stdout.close()
        return self

    def pause(self) -> None:
        """Freeze the server: connections stay open, nothing more is sent."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    """Tell whether a TCP socket listens on the port (from /proc, no connecting)."""
    listen_state = "0A"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == listen_state and int(local.rpartition(":")[2], 16) == port:
            return True
    return False


@contextlib.contextmanager
def rtsp_server(mounts: dict[str, Path]) -> Iterator[RtspServer]:
    """Run an RTSP server for the duration of a with-block."""
    server = RtspServer(mounts).start()
    try:
        yield server
    finally:
        server.stop()

"""Camera sources: RTSP, HTTP JPEG and MJPEG, local files; one frame when asked.

Every source decodes only what a sample needs:

- RTSP (PyAV): packets are read as they arrive, but handed to the decoder
  only from the first keyframe after a sample is due, with the decoder told
  to skip everything but keyframes. Cameras sampled faster than their
  keyframes come decode every frame instead (`continuous`). For long
  intervals the camera can instead be opened for each sample and closed
  after it (connect-grab-disconnect, `RtspSnapshot`).
- MJPEG: parts are split from the byte stream, and only a due one is decoded.
- HTTP JPEG: one GET per sample.
- Local files loop in real time, like a live camera: the frame shown is the
  one at the wall-clock position in the clip.

Every open and every read has a timeout that is enforced: PyAV checks its
deadline from FFmpeg's interrupt callback while it waits on the network, and
HTTP reads have socket timeouts. A stream that stays connected but sends no
usable frame is `stalled` after `stall_timeout_s`.
"""

from __future__ import annotations

import errno
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import av
import av.error
import cv2
import httpx
import numpy as np

from gateway.cctv.mjpeg import MjpegParser
from gateway.cctv.urls import file_path, redact_text, source_kind
from gateway.errors import GatewayError

__all__ = [
    "CameraError",
    "ErrorKind",
    "Frame",
    "FrameSource",
    "SourceSettings",
    "make_source",
]

ErrorKind = Literal[
    "timeout",
    "refused",
    "unreachable",
    "not_found",
    "unauthorized",
    "stalled",
    "ended",
    "corrupt",
    "error",
]
# Bytes read from an HTTP MJPEG stream at a time.
HTTP_CHUNK_BYTES = 64 * 1024
# An HTTP JPEG answer opened longer ago than this is fetched again, seconds.
FRESH_JPEG_S = 0.5
# Largest single JPEG accepted over HTTP.
MAX_JPEG_BYTES = 16 << 20
# FFmpeg's probing of a stream before the first frame, in µs and bytes. The
# least it allows: cameras name their codec in the SDP, and the decoder finds
# the rest in the first keyframe. Probing a second longer cost twice the CPU
# of a sample per connect (bench/cctv.py).
PROBE_DURATION_US = 0
PROBE_BYTES = 32
# While FFmpeg probes a new connection it decodes a frame, only to learn what
# the SDP and the parameter sets already say; told to skip every frame, it
# opens a 1080p H.264 camera for 6 ms of CPU instead of 45 (bench/cctv.py).
PROBE_STREAM_OPTIONS = {"skip_frame": "all"}


class CameraError(GatewayError):
    """A camera could not give a frame; `kind` is one of ErrorKind."""

    def __init__(self, kind: ErrorKind, detail: str, *, camera: str = "") -> None:
        self.kind = kind
        self.detail = detail
        self.camera = camera
        super().__init__(f"{kind}: {detail}")


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded image (BGR, at most max_width wide) and when it was taken."""

    image: np.ndarray[Any, np.dtype[np.uint8]]
    width: int  # as the camera sent it
    height: int
    time_ns: int
    decode_s: float


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What a source needs to know: where, how, and how long to wait."""

    url: str
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    stall_timeout_s: float = 8.0
    max_width: int = 1280
    # Open for each sample and close after it (RTSP only).
    reconnect_each_sample: bool = False


class FrameSource(Protocol):
    """One camera's stream, opened and read by one thread."""

    # True: frames keep arriving and poll() must be called continuously.
    live: bool

    def open(self) -> None:
        """Connect; raise CameraError within the open timeout if it cannot."""

    def poll(self, want: bool, continuous: bool = False) -> Frame | None:
        """Read on; return a frame if one is wanted and ready, else None."""

    def close(self) -> None:
        """Disconnect; never raises."""


def make_source(settings: SourceSettings, decode_slots: threading.Semaphore) -> Any:
    """Return the source for a camera URL (not yet opened)."""
    kind = source_kind(settings.url)
    if kind == "rtsp":
        if settings.reconnect_each_sample:
            return RtspSnapshot(settings, decode_slots)
        return RtspStream(settings, decode_slots)
    if kind == "http":
        return HttpSource(settings, decode_slots)
    return LoopingFile(settings, decode_slots)


class RtspStream:
    """A live RTSP stream held open, its keyframes decoded when a sample is due."""

    live = True

    def __init__(
        self,
        settings: SourceSettings,
        decode_slots: threading.Semaphore,
        first_keyframe_only: bool = False,
    ):
        self._settings = settings
        self._slots = decode_slots
        self._first_keyframe_only = first_keyframe_only
        self._container: Any = None
        self._stream: Any = None
        self._packets: Any = None
        self._feeding = False
        self._last_keyframe_s: float | None = None
        # Seconds between keyframes, once two have been seen.
        self.keyframe_interval_s: float | None = None

    def open(self) -> None:
        """Connect and read the stream's parameters, within the open timeout."""
        settings = self._settings
        options = {
            "rtsp_transport": settings.rtsp_transport,
            # FFmpeg's own socket timeout, µs, also bounds UDP waits; a little
            # longer than ours, so that our deadline (which names the phase)
            # normally fires first.
            "timeout": str(
                int((max(settings.open_timeout_s, settings.read_timeout_s) + 1) * 1e6)
            ),
            "analyzeduration": str(PROBE_DURATION_US),
            "probesize": str(PROBE_BYTES),
            "fpsprobesize": "0",
        }
        self._feeding = False
        self._last_keyframe_s = None
        self._container = _av_open(
            settings, options, probe_options=PROBE_STREAM_OPTIONS
        )
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self.close()
            raise CameraError("corrupt", "the stream has no video track") from None
        # One decoding thread: frame threads add a frame of delay each, and
        # hundreds of cameras would start hundreds of them.
        self._stream.codec_context.thread_count = 1
        if self._first_keyframe_only:
            # No later frame is predicted from this one, so the deblocking
            # filter only smooths its block edges: without it the picture
            # differs by under one grey level (PSNR over 50 dB on the clip at
            # 4 Mbit/s), and decoding costs about a tenth less.
            self._stream.codec_context.options = {"skip_loop_filter": "all"}
        self._packets = self._container.demux(self._stream)

    def poll(self, want: bool, continuous: bool = False) -> Frame | None:
        """Read one packet; decode it only if a sample needs it."""
        packet = _next_packet(self._packets, self._settings)
        if packet.is_keyframe and packet.pts is not None and packet.time_base:
            packet_s = float(packet.pts * packet.time_base)
            if self._last_keyframe_s is not None:
                spacing_s = packet_s - self._last_keyframe_s
                if spacing_s > 0:
                    self.keyframe_interval_s = spacing_s
            self._last_keyframe_s = packet_s
        if not continuous and not want:
            self._feeding = False
            return None
        if not self._feeding:
            if not continuous and not packet.is_keyframe:
                return None
            self._feeding = True
        context = self._stream.codec_context
        context.skip_frame = "DEFAULT" if continuous else "NONKEY"
        with self._slots:
            started = time.perf_counter()
            try:
                frames = context.decode(packet)
            except av.error.InvalidDataError:
                # A damaged packet: the next keyframe starts afresh.
                self._feeding = False
                return None
            if not frames or not want:
                return None
            self._feeding = False
            return _to_frame(frames[-1], self._settings.max_width, started)

    def close(self) -> None:
        """Close the connection."""
        container, self._container = self._container, None
        self._packets = None
        if container is not None:
            try:
                container.close()
            except (av.error.FFmpegError, OSError):
                pass


class RtspSnapshot:
    """An RTSP camera opened for each sample: connect, take a keyframe, close."""

    live = False

    def __init__(self, settings: SourceSettings, decode_slots: threading.Semaphore):
        self._settings = settings
        self._stream = RtspStream(settings, decode_slots, first_keyframe_only=True)

    def open(self) -> None:
        """Nothing to do until a sample is due."""

    def poll(self, want: bool, continuous: bool = False) -> Frame:
        """Connect, wait for the first keyframe, decode it and disconnect."""
        deadline = time.monotonic() + self._settings.stall_timeout_s
        self._stream.open()
        try:
            while True:
                frame = self._stream.poll(want=True)
                if frame is not None:
                    return frame
                if time.monotonic() > deadline:
                    raise CameraError(
                        "stalled",
                        f"no keyframe within {self._settings.stall_timeout_s} s "
                        "of connecting",
                    )
        finally:
            self._stream.close()

    def close(self) -> None:
        """Close the connection if a sample left it open."""
        self._stream.close()


class LoopingFile:
    """A local video file played in a loop at real time, like a live camera."""

    live = False

    def __init__(self, settings: SourceSettings, decode_slots: threading.Semaphore):
        self._settings = settings
        self._slots = decode_slots
        self._container: Any = None
        self._stream: Any = None
        self._duration_s = 0.0
        self._started = time.monotonic()

    def open(self) -> None:
        """Open the file and learn its length."""
        path = file_path(self._settings.url)
        if not path.is_file():
            raise CameraError("not_found", f"no video file at {path}")
        self._container = _av_open(self._settings, {}, str(path))
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self.close()
            raise CameraError("corrupt", f"{path} has no video track") from None
        self._stream.codec_context.thread_count = 1
        duration = self._stream.duration
        if duration is not None and self._stream.time_base is not None:
            self._duration_s = float(duration * self._stream.time_base)
        elif self._container.duration:
            self._duration_s = self._container.duration / av.time_base
        if self._duration_s <= 0:
            self.close()
            raise CameraError("corrupt", f"{path} has no duration to loop over")

    def poll(self, want: bool = True, continuous: bool = False) -> Frame:
        """Decode the frame at the current wall-clock position in the loop."""
        position_s = (time.monotonic() - self._started) % self._duration_s
        stream = self._stream
        with self._slots:
            started = time.perf_counter()
            try:
                target = int(position_s / stream.time_base)
                self._container.seek(target, stream=stream, backward=True)
                last = None
                for packet in self._container.demux(stream):
                    for frame in _decode_skipping_damage(stream, packet):
                        last = frame
                        if frame.time is None or frame.time >= position_s - 0.05:
                            return _to_frame(frame, self._settings.max_width, started)
                if last is not None:
                    return _to_frame(last, self._settings.max_width, started)
            except av.error.FFmpegError as exc:
                raise _camera_error(exc, self._settings, opened=True) from None
        raise CameraError("corrupt", f"no decodable frame near {position_s:.1f} s")

    def close(self) -> None:
        """Close the file."""
        container, self._container = self._container, None
        if container is not None:
            container.close()


class HttpSource:
    """An HTTP camera: a JPEG per GET, or an MJPEG stream read continuously.

    Which one is decided by the answer's Content-Type, at each connect.
    """

    def __init__(self, settings: SourceSettings, decode_slots: threading.Semaphore):
        self._settings = settings
        self._slots = decode_slots
        self._client: httpx.Client | None = None
        self._response: httpx.Response | None = None
        self._chunks: Any = None
        self._parser: MjpegParser | None = None
        self._ready: list[bytes] = []
        self._last_frame_at = 0.0
        self._opened_at = 0.0
        self.live = False

    def open(self) -> None:
        """Send the GET and look at what kind of answer comes back."""
        settings = self._settings
        timeout = httpx.Timeout(
            settings.read_timeout_s, connect=settings.open_timeout_s
        )
        # Credentials go in the auth header, never in the URL a library logs.
        url, auth = _split_credentials(settings.url)
        self._client = httpx.Client(timeout=timeout, follow_redirects=True, auth=auth)
        try:
            request = self._client.build_request("GET", url)
            self._response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            self.close()
            raise _http_error(exc, settings, opened=False) from None
        status = self._response.status_code
        if status != 200:
            self.close()
            kind: ErrorKind = "error"
            if status in (401, 403):
                kind = "unauthorized"
            elif status == 404:
                kind = "not_found"
            raise CameraError(kind, f"HTTP {status} from {_safe(settings)}")
        content_type = self._response.headers.get("content-type", "")
        self.live = content_type.lower().startswith("multipart/")
        self._ready = []
        self._last_frame_at = self._opened_at = time.monotonic()
        if self.live:
            self._parser = MjpegParser(content_type, MAX_JPEG_BYTES)
            self._chunks = self._response.iter_raw()

    def poll(self, want: bool = True, continuous: bool = False) -> Frame | None:
        """Return the due frame: the newest MJPEG part, or a fresh JPEG by GET."""
        if not self.live:
            if time.monotonic() - self._opened_at > FRESH_JPEG_S:
                self.close()  # fetched a while ago: the picture may be old
            if self._response is None:
                self.open()
            if self.live:  # the camera switched to a stream
                return self.poll(want, continuous)
            try:
                return self._decode(self._read_whole_body())
            finally:
                self.close()
        image = self._next_part()
        if not want:
            return None
        return self._decode(image)

    def close(self) -> None:
        """Close the response and the connection."""
        response, self._response = self._response, None
        client, self._client = self._client, None
        self._chunks = None
        for closable in (response, client):
            if closable is not None:
                try:
                    closable.close()
                except (httpx.HTTPError, OSError):
                    pass

    def _read_whole_body(self) -> bytes:
        assert self._response is not None
        body = bytearray()
        try:
            for chunk in self._response.iter_raw(HTTP_CHUNK_BYTES):
                body += chunk
                if len(body) > MAX_JPEG_BYTES:
                    raise CameraError("corrupt", f"JPEG over {MAX_JPEG_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise _http_error(exc, self._settings, opened=True) from None
        return bytes(body)

    def _next_part(self) -> bytes:
        """Return the next whole JPEG of the stream, waiting at most the stall time."""
        assert self._parser is not None
        settings = self._settings
        while not self._ready:
            if time.monotonic() - self._last_frame_at > settings.stall_timeout_s:
                raise CameraError(
                    "stalled",
                    f"no whole JPEG for {settings.stall_timeout_s} s from "
                    f"{_safe(settings)} while connected",
                )
            try:
                chunk = next(self._chunks, None)
            except httpx.HTTPError as exc:
                raise _http_error(exc, settings, opened=True) from None
            except ValueError as exc:
                raise CameraError("corrupt", str(exc)) from None
            if chunk is None:
                self._ready.extend(self._parser.finish())
                if not self._ready:
                    raise CameraError("ended", f"{_safe(settings)} closed the stream")
                break
            self._ready.extend(self._parser.feed(chunk))
        self._last_frame_at = time.monotonic()
        return self._ready.pop(0)

    def _decode(self, jpeg: bytes) -> Frame:
        with self._slots:
            started = time.perf_counter()
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise CameraError(
                    "corrupt", f"{len(jpeg)} bytes that do not decode as a JPEG"
                )
            height, width = image.shape[:2]
            image = _fit_width(image, self._settings.max_width)
        return Frame(
            image, width, height, time.time_ns(), time.perf_counter() - started
        )


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=host)), auth


def _av_open(
    settings: SourceSettings,
    options: dict[str, str],
    url: str = "",
    probe_options: dict[str, str] | None = None,
) -> Any:
    started = time.monotonic()
    try:
        return av.open(
            url or settings.url,
            options=options,
            # PyAV takes one dict per stream; its stub says list[str].
            stream_options=[probe_options] if probe_options else None,  # type: ignore[list-item]
            timeout=(settings.open_timeout_s, settings.read_timeout_s),
        )
    except av.error.FFmpegError as exc:
        error = _camera_error(exc, settings, opened=False)
        waited_s = time.monotonic() - started
        if error.kind in ("corrupt", "error", "ended") and waited_s >= min(
            settings.open_timeout_s, settings.read_timeout_s
        ):
            # A server that accepts and never answers ends in whatever error
            # the protocol's own timeout gives; it is a timeout all the same.
            error = CameraError(
                "timeout", f"no answer in {waited_s:.1f} s: {error.detail}"
            )
        raise error from None


def _next_packet(packets: Any, settings: SourceSettings) -> Any:
    try:
        packet = next(packets)
    except StopIteration:
        raise CameraError("ended", f"{_safe(settings)} ended the stream") from None
    except av.error.FFmpegError as exc:
        raise _camera_error(exc, settings, opened=True) from None
    if packet.size == 0:
        # PyAV's flush packet: the demuxer reached the end.
        raise CameraError("ended", f"{_safe(settings)} ended the stream")
    return packet


def _decode_skipping_damage(stream: Any, packet: Any) -> list[Any]:
    try:
        return list(stream.codec_context.decode(packet))
    except av.error.InvalidDataError:
        return []


def _to_frame(frame: Any, max_width: int, started: float) -> Frame:
    width, height = frame.width, frame.height
    if max_width and width > max_width:
        scaled_height = max(2, round(height * max_width / width / 2) * 2)
        # Area averaging: as good as the default for shrinking, at a quarter
        # of its CPU (bench/cctv.py).
        image = frame.to_ndarray(
            format="bgr24",
            width=max_width,
            height=scaled_height,
            interpolation="AREA",
        )
    else:
        image = frame.to_ndarray(format="bgr24")
    return Frame(image, width, height, time.time_ns(), time.perf_counter() - started)


def _fit_width(
    image: np.ndarray[Any, np.dtype[np.uint8]], max_width: int
) -> np.ndarray[Any, np.dtype[np.uint8]]:
    height, width = image.shape[:2]
    if not max_width or width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _safe(settings: SourceSettings) -> str:
    return redact_text(settings.url, settings.url)


def _camera_error(
    exc: av.error.FFmpegError, settings: SourceSettings, *, opened: bool
) -> CameraError:
    """Name why FFmpeg failed, as an error kind and a message without secrets."""
    kind: ErrorKind = "error"
    code = getattr(exc, "errno", None)
    if isinstance(exc, (av.error.ExitError, av.error.TimeoutError)) or code in (
        errno.ETIMEDOUT,
        errno.EAGAIN,
    ):
        # The interrupt callback fired: a read after the stream was open
        # waited too long, which is a stall; before, the open timed out.
        kind = "stalled" if opened else "timeout"
    elif isinstance(exc, av.error.ConnectionRefusedError):
        kind = "refused"
    elif code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        kind = "unreachable"
    elif isinstance(exc, (av.error.HTTPNotFoundError, av.error.FileNotFoundError)):
        kind = "not_found"
    elif isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
        kind = "unauthorized"
    elif isinstance(exc, (av.error.InvalidDataError, av.error.EOFError)):
        kind = "corrupt" if not opened else "ended"
    elif isinstance(exc, (av.error.ConnectionResetError, av.error.BrokenPipeError)):
        kind = "ended"
    detail = redact_text(f"{exc.strerror or exc} ({_safe(settings)})", settings.url)
    return CameraError(kind, detail)


def _http_error(
    exc: httpx.HTTPError, settings: SourceSettings, *, opened: bool
) -> CameraError:
    kind: ErrorKind = "error"
    if isinstance(exc, httpx.TimeoutException):
        kind = "stalled" if opened else "timeout"
    elif isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        kind = "refused" if "refused" in text else "unreachable"
    elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        kind = "ended" if opened else "error"
    detail = redact_text(f"{exc} ({_safe(settings)})", settings.url)
    return CameraError(kind, detail)

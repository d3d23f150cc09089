"""The video worker process: one thread per camera, sampling on its schedule.

A worker is a separate process, so decoding never holds the GIL of the
process that talks to MQTT and InfluxDB. Inside it each camera has a thread
(`camera[<id>].sample`) that connects, samples when due, masks, measures and
encodes the frame, and puts the result on a queue for the parent. A camera
that fails is retried with capped, jittered backoff; the thread never ends
while the worker runs. Decoding and encoding share a bounded number of slots
(`max_concurrent_decodes`), so many cameras due at once queue for the CPU
instead of thrashing it.

Every open and read is bounded by its own timeout. As a last resort, a camera
call that is still blocked well past all of them (a library ignoring its
timeout) makes the worker exit; the parent starts a new one, and its cameras
reconnect.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue as ProcessQueue
from typing import Any

from gateway.cctv.analysis import (
    AnalysisSettings,
    FrameAnalyzer,
    FrameFacts,
    apply_masks,
    encode_jpeg,
    fit_width,
)
from gateway.cctv.sources import CameraError, Frame, SourceSettings, make_source

__all__ = ["CameraPlan", "CameraThread", "SampleResult", "run_worker"]

logger = logging.getLogger(__name__)

# How often the worker checks its commands, its parent and its cameras, s.
CHECK_INTERVAL_S = 0.5
# A call blocked this long past its own timeouts means the library hangs.
HANG_MARGIN_S = 15.0
# How long a camera waits for room on the result queue before skipping.
RESULT_PUT_TIMEOUT_S = 1.0
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class CameraPlan:
    """Everything a worker needs to sample one camera (picklable)."""

    camera: str
    source: SourceSettings
    interval_s: float  # 0: on demand only
    masks: tuple[tuple[tuple[float, float], ...], ...] = ()
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    jpeg_quality: int = 85
    thumbnail_width: int = 320
    retry_min_s: float = 2.0
    retry_max_s: float = 30.0
    burst_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class SampleResult:
    """One sample attempt: a masked, encoded frame and its facts, or an error."""

    camera: str
    time_ns: int
    ok: bool
    error_kind: str = ""
    error_detail: str = ""
    latency_s: float = 0.0  # from the sample being due to the frame in hand
    decode_s: float = 0.0
    width: int = 0
    height: int = 0
    jpeg: bytes = b""
    thumbnail: bytes = b""
    facts: FrameFacts | None = None
    requested: bool = False  # asked for on demand
    skipped_before: int = 0  # results dropped because the queue was full


class CameraThread(threading.Thread):
    """Sample one camera for as long as the worker runs."""

    def __init__(
        self,
        plan: CameraPlan,
        decode_slots: threading.Semaphore,
        emit: Callable[[SampleResult], bool],
    ) -> None:
        super().__init__(name=f"camera[{plan.camera}].sample", daemon=True)
        self.plan = plan
        self._slots = decode_slots
        self._emit = emit
        self._source: Any = make_source(plan.source, decode_slots)
        self._analyzer = FrameAnalyzer(plan.analysis)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._is_open = False
        self._opened_at = 0.0
        self._backoff_s = plan.retry_min_s
        self._retry_at = 0.0
        self._due = time.monotonic() if plan.interval_s > 0 else math.inf
        self._burst_until = 0.0
        self._burst_interval_s = plan.burst_interval_s
        self._requested = False
        self._failing_since: float | None = None
        self._skipped = 0
        # When the camera call in progress started (None: no call).
        self.busy_since: float | None = None

    def stop(self) -> None:
        """Ask the thread to end after its current call."""
        self._stopping.set()
        self._wake.set()

    def request_sample(self) -> None:
        """Take a sample now, whatever the schedule."""
        self._requested = True
        self._due = min(self._due, time.monotonic())
        self._wake.set()

    def burst(self, interval_s: float, duration_s: float) -> None:
        """Sample every `interval_s` for `duration_s`, then return to the plan."""
        self._burst_interval_s = interval_s
        self._burst_until = time.monotonic() + duration_s
        self._due = min(self._due, time.monotonic())
        self._wake.set()

    def run(self) -> None:
        """Sample until stopped; an unexpected error restarts the loop."""
        while not self._stopping.is_set():
            try:
                self._loop()
            except Exception:
                logger.exception(
                    "Camera %s: unexpected error; restarting its sampling",
                    self.plan.camera,
                )
                self._close()
                self._stopping.wait(self.plan.retry_max_s * random.uniform(0.5, 1))
        self._close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._is_open:
                start_at = self._retry_at
                if self._interval_s() == 0:
                    start_at = max(start_at, self._due)
                if not self._wait_until(start_at):
                    continue
                try:
                    self._call(self._source.open)
                except CameraError as exc:
                    self._failed(exc)
                    continue
                self._is_open = True
                self._opened_at = time.monotonic()
            try:
                frame = self._next_frame()
            except CameraError as exc:
                self._close()
                self._failed(exc)
                continue
            if frame is not None:
                self._deliver(frame)
                if self._source.live and self._interval_s() == 0:
                    self._close()  # on demand only: no need to stay connected

    def _next_frame(self) -> Frame | None:
        source = self._source
        if not source.live:
            if not self._wait_until(self._due):
                return None
            frame: Frame | None = self._call(source.poll, True)
            return frame
        now = time.monotonic()
        want = now >= self._due
        frame = self._call(source.poll, want, self._continuous())
        if want and frame is None:
            # Connected, a sample due, and still no frame: a stall.
            stall_s = self.plan.source.stall_timeout_s
            if time.monotonic() - max(self._due, self._opened_at) > stall_s:
                raise CameraError(
                    "stalled", f"no usable frame for {stall_s} s while connected"
                )
        return frame

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        self.busy_since = time.monotonic()
        try:
            return function(*args)
        finally:
            self.busy_since = None

    def _deliver(self, frame: Frame) -> None:
        plan = self.plan
        due = self._due
        latency_s = max(0.0, time.monotonic() - due) if math.isfinite(due) else 0.0
        with self._slots:
            image = apply_masks(frame.image, plan.masks)
            facts = self._analyzer.analyse(image)
            jpeg = encode_jpeg(image, plan.jpeg_quality)
            thumbnail = encode_jpeg(fit_width(image, plan.thumbnail_width), 80)
        requested, self._requested = self._requested, False
        self._put(
            SampleResult(
                camera=plan.camera,
                time_ns=frame.time_ns,
                ok=True,
                latency_s=latency_s,
                decode_s=frame.decode_s,
                width=frame.width,
                height=frame.height,
                jpeg=jpeg,
                thumbnail=thumbnail,
                facts=facts,
                requested=requested,
            )
        )
        if self._failing_since is not None:
            logger.info(
                "Camera %s is back after %.0f s",
                plan.camera,
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
        self._backoff_s = plan.retry_min_s
        self._schedule_next(due)

    def _schedule_next(self, due: float) -> None:
        interval_s = self._interval_s()
        now = time.monotonic()
        if interval_s == 0:
            self._due = now if self._requested else math.inf
            return
        # Keep the cadence; after a late sample, take the next one at once.
        self._due = max(due + interval_s, now) if math.isfinite(due) else now

    def _failed(self, exc: CameraError) -> None:
        plan = self.plan
        now = time.monotonic()
        self._analyzer.reset()
        requested, self._requested = self._requested, False
        self._put(
            SampleResult(
                camera=plan.camera,
                time_ns=time.time_ns(),
                ok=False,
                error_kind=exc.kind,
                error_detail=exc.detail,
                requested=requested,
            )
        )
        if self._failing_since is None:
            self._failing_since = now
            logger.warning("Camera %s failed: %s", plan.camera, exc)
        else:
            logger.debug("Camera %s failed again: %s", plan.camera, exc)
        delay_s = self._backoff_s * random.uniform(0.75, 1.0)
        self._backoff_s = min(self._backoff_s * 2, plan.retry_max_s)
        self._retry_at = now + delay_s
        # Sample as soon as the camera is back: it comes online on that frame.
        if math.isfinite(self._due) or self._interval_s() > 0:
            self._due = self._retry_at

    def _put(self, result: SampleResult) -> None:
        if self._skipped:
            result = _with_skipped(result, self._skipped)
        if self._emit(result):
            self._skipped = 0
        else:
            self._skipped += 1

    def _interval_s(self) -> float:
        interval_s = self.plan.interval_s
        if time.monotonic() < self._burst_until:
            if interval_s == 0:
                return self._burst_interval_s
            return min(interval_s, self._burst_interval_s)
        return interval_s

    def _continuous(self) -> bool:
        """Tell whether to decode every frame: samples come faster than keyframes."""
        keyframe_s = getattr(self._source, "keyframe_interval_s", None)
        return keyframe_s is not None and self._interval_s() < keyframe_s * 0.9

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until the deadline; False if woken early (re-plan) or stopping."""
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._wake.wait(min(remaining, CHECK_INTERVAL_S * 2)):
                self._wake.clear()
                return False
        return False

    def _close(self) -> None:
        self._is_open = False
        self._source.close()


def run_worker(
    plans: list[CameraPlan],
    commands: ProcessQueue[tuple[Any, ...]],
    results: ProcessQueue[SampleResult | tuple[Any, ...]],
    max_concurrent_decodes: int,
    log_level: str = "info",
) -> None:
    """Run a worker process: start its camera threads and obey the parent."""
    # The parent handles Ctrl-C and tells us to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    # httpx and httpcore log every request line; cameras are polled often.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _silence_ffmpeg()
    parent = os.getppid()
    slots = threading.BoundedSemaphore(max_concurrent_decodes)

    def emit(result: SampleResult) -> bool:
        try:
            results.put(result, timeout=RESULT_PUT_TIMEOUT_S)
        except queue.Full:
            return False
        return True

    threads = {plan.camera: CameraThread(plan, slots, emit) for plan in plans}
    for thread in threads.values():
        thread.start()
    while True:
        try:
            command = commands.get(timeout=CHECK_INTERVAL_S)
        except queue.Empty:
            command = None
        if command is not None and command[0] == "stop":
            break
        if command is not None:
            _obey(threads, command)
        if os.getppid() != parent:
            break  # the parent is gone: nobody reads our results
        hung = _hung_camera(threads)
        if hung is not None:
            logger.error(
                "Camera %s: a call has been blocked past every timeout; restarting "
                "this worker and its %d cameras",
                hung,
                len(threads),
            )
            results.put(("hung", hung))
            os._exit(3)
    for thread in threads.values():
        thread.stop()
    for thread in threads.values():
        thread.join(timeout=2.0)


def _obey(threads: dict[str, CameraThread], command: tuple[Any, ...]) -> None:
    kind, camera, *args = command
    thread = threads.get(camera)
    if thread is None:
        return
    if kind == "sample":
        thread.request_sample()
    elif kind == "burst":
        thread.burst(float(args[0]), float(args[1]))


def _hung_camera(threads: dict[str, CameraThread]) -> str | None:
    now = time.monotonic()
    for camera, thread in threads.items():
        settings = thread.plan.source
        limit_s = (
            settings.open_timeout_s
            + settings.read_timeout_s
            + settings.stall_timeout_s
            + HANG_MARGIN_S
        )
        busy_since = thread.busy_since
        if busy_since is not None and now - busy_since > limit_s:
            return camera
    return None


def _silence_ffmpeg() -> None:
    # FFmpeg's own log lines quote camera URLs, credentials included, and
    # repeat for every damaged packet; errors reach us as exceptions instead.
    import av.logging

    av.logging.set_level(None)


def _with_skipped(result: SampleResult, skipped: int) -> SampleResult:
    from dataclasses import replace

    return replace(result, skipped_before=skipped)

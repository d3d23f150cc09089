"""Run the camera sampler: worker processes, snapshots, points and statuses.

This process does no video work. It starts the worker processes (cameras
spread over them), takes their results, and for each one stores the
snapshot, writes a health point and a frame point, and publishes state
changes. A worker that dies is started again with its cameras.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.cctv.analysis import AnalysisSettings
from gateway.cctv.health import CameraHealth, HealthEvent
from gateway.cctv.publish import StatusPublisher
from gateway.cctv.sources import SourceSettings
from gateway.cctv.store import SnapshotStore
from gateway.cctv.urls import source_kind
from gateway.cctv.worker import CameraPlan, SampleResult, run_worker
from gateway.config import CameraConfig, CctvConfig
from gateway.points import encode_line
from gateway.sinks import BatchWriter

__all__ = ["CctvService", "CctvStats", "plan_camera"]

logger = logging.getLogger(__name__)

WATCHDOG_INTERVAL_S = 0.25
RETENTION_INTERVAL_S = 30.0
# Results waiting between a worker and this process, per worker.
MAX_QUEUED_RESULTS = 64
STOP_TIMEOUT_S = 5.0


@dataclass
class CctvStats:
    """Counters of the sampler, shown by the console and the HTTP API."""

    samples: int = 0
    failures: int = 0
    skipped: int = 0
    snapshots: int = 0
    worker_restarts: int = 0
    store_errors: int = 0
    by_camera: dict[str, int] = field(default_factory=dict)


def plan_camera(camera: CameraConfig, cctv: CctvConfig) -> CameraPlan:
    """Return what a worker needs to sample one configured camera."""
    interval_s = camera.sample_interval_s
    reconnect = camera.reconnect_each_sample
    if reconnect is None:
        reconnect = source_kind(camera.url) == "rtsp" and (
            interval_s >= cctv.reconnect_above_s
        )
    return CameraPlan(
        camera=camera.id,
        source=SourceSettings(
            url=camera.url,
            rtsp_transport=camera.rtsp_transport,
            open_timeout_s=cctv.open_timeout_s,
            read_timeout_s=cctv.read_timeout_s,
            stall_timeout_s=cctv.stall_timeout_s,
            max_width=cctv.snapshot_max_width,
            reconnect_each_sample=reconnect,
        ),
        interval_s=interval_s,
        masks=tuple(tuple(polygon) for polygon in camera.privacy_masks),
        analysis=AnalysisSettings(
            frozen_motion=cctv.frozen_motion,
            frozen_samples=cctv.frozen_samples,
            dark_brightness=cctv.dark_brightness,
            uniform_contrast=cctv.uniform_contrast,
            blur_sharpness=cctv.blur_sharpness,
            people=camera.people,
        ),
        jpeg_quality=cctv.jpeg_quality,
        thumbnail_width=cctv.thumbnail_width,
        retry_min_s=cctv.retry_min_s,
        retry_max_s=cctv.retry_max_s,
        burst_interval_s=cctv.burst_interval_s,
    )


class _Worker:
    """One worker process and its queues."""

    def __init__(self, index: int, plans: list[CameraPlan]) -> None:
        self.index = index
        self.plans = plans
        self.process: Any = None
        self.commands: Any = None
        self.results: Any = None

    def start(self, max_concurrent_decodes: int, log_level: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.commands = context.Queue()
        self.results = context.Queue(maxsize=MAX_QUEUED_RESULTS)
        self.process = context.Process(
            target=run_worker,
            args=(
                self.plans,
                self.commands,
                self.results,
                max_concurrent_decodes,
                log_level,
            ),
            name=f"cctv-worker-{self.index}",
            daemon=True,
        )
        self.process.start()


class CctvService:
    """Sample the configured cameras until cancelled."""

    def __init__(
        self,
        cctv: CctvConfig,
        cameras: list[CameraConfig],
        *,
        writer: BatchWriter | None = None,
        publisher: StatusPublisher | None = None,
        log_level: str = "info",
    ) -> None:
        self.config = cctv
        self.cameras = {camera.id: camera for camera in cameras}
        self.writer = writer
        self.publisher = publisher
        self.store = SnapshotStore(
            cctv.snapshot_dir, cctv.retention_max_age_s, cctv.retention_max_bytes
        )
        self.stats = CctvStats()
        self.health = {
            camera.id: CameraHealth(camera.id, camera.sample_interval_s, camera.site)
            for camera in cameras
        }
        plans = [plan_camera(camera, cctv) for camera in cameras]
        self._workers = [
            _Worker(index, plans[index :: cctv.workers])
            for index in range(min(cctv.workers, len(plans)))
        ]
        self._worker_of = {
            plan.camera: worker for worker in self._workers for plan in worker.plans
        }
        self._log_level = log_level
        self._inbox: asyncio.Queue[SampleResult | tuple[Any, ...]] = asyncio.Queue(
            maxsize=MAX_QUEUED_RESULTS
        )
        self._waiters: dict[str, list[asyncio.Future[SampleResult]]] = {}
        self._bursts: dict[str, tuple[float, float]] = {}
        self._stopping = threading.Event()
        self.started = asyncio.Event()

    async def run(self) -> None:
        """Start the workers and handle their results until cancelled."""
        await asyncio.to_thread(self.store.load)
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            worker.start(self.config.max_concurrent_decodes, self._log_level)
        readers = [
            threading.Thread(
                target=self._read_results,
                args=(worker, loop),
                name=f"cctv-worker-{worker.index}.results",
                daemon=True,
            )
            for worker in self._workers
        ]
        for reader in readers:
            reader.start()
        logger.info(
            "Sampling %d cameras in %d worker processes",
            len(self.cameras),
            len(self._workers),
        )
        self.started.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._handle_results(), name="cctv.results")
                tasks.create_task(self._watch(), name="cctv.watchdog")
                tasks.create_task(self._keep_retention(), name="cctv.retention")
        finally:
            self._stopping.set()
            await asyncio.to_thread(self._stop_workers)

    def worker_pids(self) -> list[int]:
        """Return the process ids of the running workers."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def statuses(self) -> list[dict[str, Any]]:
        """Return every camera's status."""
        return [health.status() for health in self.health.values()]

    async def sample_now(self, camera: str, timeout_s: float) -> SampleResult:
        """Take a sample of one camera now and return it (TimeoutError if late)."""
        future: asyncio.Future[SampleResult] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.setdefault(camera, []).append(future)
        self._command(("sample", camera))
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            waiters = self._waiters.get(camera, [])
            if future in waiters:
                waiters.remove(future)

    def burst(
        self, camera: str, interval_s: float | None, duration_s: float | None
    ) -> None:
        """Raise a camera's sampling rate for a while (an incident at its site)."""
        interval_s = interval_s or self.config.burst_interval_s
        duration_s = duration_s or self.config.burst_duration_s
        self._bursts[camera] = (interval_s, time.monotonic() + duration_s)
        self._command(("burst", camera, interval_s, duration_s))
        logger.info(
            "Camera %s: sampling every %.1f s for %.0f s",
            camera,
            interval_s,
            duration_s,
        )

    def _command(self, command: tuple[Any, ...]) -> None:
        worker = self._worker_of.get(command[1])
        if worker is None:
            raise KeyError(command[1])
        worker.commands.put(command)

    def _read_results(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        """Move one worker's results to the event loop (runs in a thread)."""
        while not self._stopping.is_set():
            try:
                result = worker.results.get(timeout=WATCHDOG_INTERVAL_S)
            except queue.Empty:
                continue
            except (OSError, EOFError, ValueError):
                time.sleep(WATCHDOG_INTERVAL_S)  # the worker is being replaced
                continue
            try:
                asyncio.run_coroutine_threadsafe(self._inbox.put(result), loop).result()
            except RuntimeError:
                return  # the loop is closed

    async def _handle_results(self) -> None:
        while True:
            result = await self._inbox.get()
            if isinstance(result, tuple):
                continue  # a worker's note that it is restarting; the watchdog acts
            await self._handle(result)

    async def _handle(self, result: SampleResult) -> None:
        health = self.health.get(result.camera)
        if health is None:
            return
        self.stats.skipped += result.skipped_before
        if result.ok:
            self.stats.samples += 1
            await self._store(result)
        else:
            self.stats.failures += 1
        events = health.note(result)
        await self._write(health, result)
        self._announce(health, events)
        for future in self._waiters.pop(result.camera, []):
            if not future.done():
                future.set_result(result)

    async def _store(self, result: SampleResult) -> None:
        try:
            await asyncio.to_thread(
                self.store.save,
                result.camera,
                result.time_ns,
                result.jpeg,
                result.thumbnail,
                self.config.store_every_sample,
            )
            self.stats.snapshots += 1
        except OSError as exc:
            self.stats.store_errors += 1
            logger.error(
                "Cannot store a snapshot of camera %s under %s: %s",
                result.camera,
                self.store.root,
                exc.strerror or exc,
            )

    async def _write(self, health: CameraHealth, result: SampleResult) -> None:
        if self.writer is None:
            return
        points = [health.health_point(result, self.config.health_measurement)]
        frame = health.frame_point(result, self.config.frame_measurement)
        if frame is not None:
            points.append(frame)
        await self.writer.add([encode_line(point) for point in points])

    def _announce(self, health: CameraHealth, events: list[HealthEvent]) -> None:
        if not events:
            return
        status = health.status()
        for event in events:
            level = logging.WARNING if event.event == "offline" else logging.INFO
            logger.log(
                level,
                "Camera %s is %s%s",
                event.camera,
                event.event,
                f" ({event.reason})" if event.reason else "",
            )
            if self.publisher is not None:
                self.publisher.event(event, status)
        if self.publisher is not None:
            self.publisher.status(health.camera, status)

    async def _watch(self) -> None:
        """Mark silent cameras offline and restart dead workers."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for camera, health in self.health.items():
                interval_s = health.interval_s
                burst = self._bursts.get(camera)
                if burst is not None and now < burst[1]:
                    interval_s = min(interval_s or burst[0], burst[0])
                self._announce(health, health.check_silence(interval_s))
            for worker in self._workers:
                if worker.process is not None and not worker.process.is_alive():
                    await self._restart(worker)

    async def _restart(self, worker: _Worker) -> None:
        code = worker.process.exitcode
        logger.error(
            "Camera worker %d exited (code %s); starting it again for cameras %s",
            worker.index,
            code,
            ", ".join(plan.camera for plan in worker.plans),
        )
        self.stats.worker_restarts += 1
        worker.start(self.config.max_concurrent_decodes, self._log_level)

    async def _keep_retention(self) -> None:
        while True:
            deleted = await asyncio.to_thread(
                self.store.enforce_retention, time.time_ns()
            )
            if deleted:
                logger.debug("Deleted %d old snapshots", deleted)
            await asyncio.sleep(RETENTION_INTERVAL_S)

    def _stop_workers(self) -> None:
        for worker in self._workers:
            if worker.process is not None and worker.process.is_alive():
                worker.commands.put(("stop",))
        for worker in self._workers:
            if worker.process is None:
                continue
            worker.process.join(STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(STOP_TIMEOUT_S)

"""Keep snapshots on disk: <camera>/<date>/<time>.jpg, plus the latest and a thumbnail.

Snapshots reach this module already masked and encoded (the worker blacks
out privacy masks before encoding), so nothing unmasked is ever written.
Files are written under a temporary name and renamed, so a reader (the HTTP
API, Grafana) never sees half a JPEG.

Retention deletes snapshots older than a maximum age and, past a total size,
the oldest first. The store keeps an index of its files in memory, built by
one walk at start-up, so that retention never walks the tree again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["SnapshotStore"]

logger = logging.getLogger(__name__)

LATEST_NAME = "latest.jpg"
THUMBNAIL_NAME = "thumbnail.jpg"


class SnapshotStore:
    """Write snapshots and delete them again by age and total size."""

    def __init__(self, root: Path, max_age_s: float, max_bytes: int) -> None:
        self.root = root
        self._max_age_ns = int(max_age_s * 1e9)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        # (time_ns, path, size) of each dated snapshot, oldest first.
        self._index: deque[tuple[int, Path, int]] = deque()
        self.total_bytes = 0
        self.snapshots_written = 0
        self.snapshots_deleted = 0

    def load(self) -> None:
        """Index the snapshots already on disk (call once, before saving)."""
        found: list[tuple[int, Path, int]] = []
        if self.root.is_dir():
            for path in self.root.glob("*/*/*.jpg"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime_ns, path, stat.st_size))
        found.sort()
        with self._lock:
            self._index = deque(found)
            self.total_bytes = sum(size for _, _, size in found)
        if found:
            logger.info(
                "Found %d snapshots (%.1f MB) under %s",
                len(found),
                self.total_bytes / 1e6,
                self.root,
            )

    def save(
        self, camera: str, time_ns: int, jpeg: bytes, thumbnail: bytes, keep: bool
    ) -> Path | None:
        """Write the latest snapshot and thumbnail; keep a dated copy if asked."""
        folder = self.root / camera
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / LATEST_NAME, jpeg)
        _write_atomically(folder / THUMBNAIL_NAME, thumbnail)
        if not keep:
            return None
        taken = datetime.fromtimestamp(time_ns / 1e9, UTC)
        day = folder / taken.strftime("%Y-%m-%d")
        day.mkdir(exist_ok=True)
        path = day / f"{taken.strftime('%H-%M-%S')}.{taken.microsecond // 1000:03d}.jpg"
        _write_atomically(path, jpeg)
        os.utime(path, ns=(time_ns, time_ns))
        with self._lock:
            self._index.append((time_ns, path, len(jpeg)))
            self.total_bytes += len(jpeg)
            self.snapshots_written += 1
        return path

    def latest(self, camera: str) -> Path | None:
        """Return the camera's latest snapshot, if there is one."""
        path = self.root / camera / LATEST_NAME
        return path if path.is_file() else None

    def thumbnail(self, camera: str) -> Path | None:
        """Return the thumbnail of the camera's latest snapshot, if any."""
        path = self.root / camera / THUMBNAIL_NAME
        return path if path.is_file() else None

    def enforce_retention(self, now_ns: int) -> int:
        """Delete snapshots past the age or size limit; return how many."""
        oldest_kept_ns = now_ns - self._max_age_ns
        doomed: list[Path] = []
        with self._lock:
            while self._index and (
                self._index[0][0] < oldest_kept_ns or self.total_bytes > self._max_bytes
            ):
                _, path, size = self._index.popleft()
                self.total_bytes -= size
                doomed.append(path)
        for path in doomed:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            _remove_if_empty(path.parent)
        self.snapshots_deleted += len(doomed)
        if doomed:
            logger.debug("Retention deleted %d snapshots", len(doomed))
        return len(doomed)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or already gone

"""Measure a sampled frame: brightness, sharpness, motion, frozen, covered, people.

All measures are taken on a small grey copy of the frame, ANALYSIS_WIDTH
pixels wide, so that they compare across cameras of any resolution and cost
little. Privacy masks are applied before anything is measured or encoded, so
a masked region never reaches the disk, the thumbnail or the people count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "AnalysisSettings",
    "FrameAnalyzer",
    "FrameFacts",
    "apply_masks",
    "encode_jpeg",
    "fit_width",
]

ANALYSIS_WIDTH = 320
# HOG's people detector looks for people at least 64×128 pixels; frames are
# scaled to this width first, which finds people a few metres from a camera.
PEOPLE_WIDTH = 640
# A HOG detection weaker than this is not counted as a person.
MIN_PERSON_WEIGHT = 0.3

Image = np.ndarray[Any, np.dtype[np.uint8]]
Polygon = Sequence[Sequence[float]]


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    """Thresholds that turn measures into states; see the cctv config section."""

    frozen_motion: float = 0.5
    frozen_samples: int = 3
    dark_brightness: float = 16.0
    uniform_contrast: float = 6.0
    blur_sharpness: float = 40.0
    people: bool = False


@dataclass(frozen=True, slots=True)
class FrameFacts:
    """What one frame showed; motion is None for a camera's first frame."""

    brightness: float  # mean grey level, 0-255
    contrast: float  # standard deviation of the grey levels
    sharpness: float  # variance of the Laplacian: low means blurred
    motion: float | None  # mean absolute grey difference to the previous sample
    frozen: bool
    covered: bool
    blurred: bool
    people: int | None


class FrameAnalyzer:
    """Measure one camera's frames, remembering the previous one for motion."""

    def __init__(self, settings: AnalysisSettings) -> None:
        self._settings = settings
        self._previous: Image | None = None
        self._unchanged = 0
        self._hog: Any = None
        if settings.people:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def reset(self) -> None:
        """Forget the previous frame (after a reconnect, motion starts over)."""
        self._previous = None
        self._unchanged = 0

    def analyse(self, image: Image) -> FrameFacts:
        """Measure a (masked) BGR frame."""
        settings = self._settings
        grey = cv2.cvtColor(fit_width(image, ANALYSIS_WIDTH), cv2.COLOR_BGR2GRAY)
        mean, deviation = cv2.meanStdDev(grey)
        brightness, contrast = float(mean[0][0]), float(deviation[0][0])
        sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
        motion = None
        # Compared smoothed: a still picture re-encoded by the camera differs
        # from itself by compression noise, which smoothing mostly removes.
        smooth = cv2.GaussianBlur(grey, (5, 5), 0)
        if self._previous is not None and self._previous.shape == smooth.shape:
            motion = float(cv2.absdiff(smooth, self._previous).mean())
        self._previous = smooth
        if motion is not None and motion < settings.frozen_motion:
            self._unchanged += 1
        else:
            self._unchanged = 0
        # A covered or black lens shows a dark or a flat picture; a flat
        # picture is never also reported as blurred or frozen.
        covered = (
            brightness < settings.dark_brightness
            or contrast < settings.uniform_contrast
        )
        return FrameFacts(
            brightness=brightness,
            contrast=contrast,
            sharpness=sharpness,
            motion=motion,
            frozen=not covered and self._unchanged >= settings.frozen_samples - 1,
            covered=covered,
            blurred=not covered and sharpness < settings.blur_sharpness,
            people=self._count_people(image) if self._hog is not None else None,
        )

    def _count_people(self, image: Image) -> int:
        scaled = fit_width(image, PEOPLE_WIDTH)
        _, weights = self._hog.detectMultiScale(
            scaled, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        return int(sum(1 for weight in np.ravel(weights) if weight > MIN_PERSON_WEIGHT))


def apply_masks(image: Image, polygons: Sequence[Polygon]) -> Image:
    """Black out each polygon (corners as fractions of width and height), in place."""
    if not polygons:
        return image
    height, width = image.shape[:2]
    scale = np.array([width, height], dtype=np.float64)
    shapes = [
        np.round(np.asarray(polygon, dtype=np.float64) * scale).astype(np.int32)
        for polygon in polygons
    ]
    cv2.fillPoly(image, shapes, (0, 0, 0))
    return image


def fit_width(image: Image, width: int) -> Image:
    """Return the image scaled down to `width` pixels wide (never up)."""
    height, current = image.shape[:2]
    if current <= width:
        return image
    size = (width, max(1, round(height * width / current)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(image: Image, quality: int) -> bytes:
    """Encode a BGR image as JPEG; raise ValueError if OpenCV cannot."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return bytes(data)

"""Depok's weather for the simulators: daily cycles, a storm, the rivers' response."""

from __future__ import annotations

import math

__all__ = [
    "daily_cycle",
    "hydrograph",
    "local_hour",
    "rain_shape",
    "rain_since_start_mm",
    "rush_hours",
    "sunlight",
]

WIB_OFFSET_S = 7 * 3600.0  # Depok keeps Western Indonesia Time, UTC+7
DAY_H = 24.0
MORNING_RUSH_H, MORNING_RUSH_WIDTH_H = 7.5, 1.5
EVENING_RUSH_H, EVENING_RUSH_WIDTH_H = 18.0, 2.0
SUNRISE_H = 6.0


def local_hour(at_s: float) -> float:
    """Return the hour of day in Depok (0 to 24) at epoch time `at_s`."""
    return ((at_s + WIB_OFFSET_S) / 3600.0) % DAY_H


def daily_cycle(at_s: float, peak_hour: float) -> float:
    """Return a value between -1 and 1 that peaks once a day at `peak_hour`."""
    return math.cos(2 * math.pi * (local_hour(at_s) - peak_hour) / DAY_H)


def rush_hours(at_s: float) -> float:
    """Return road traffic between 0 and about 1, highest at the rush hours."""
    hour = local_hour(at_s)
    morning = math.exp(-(((hour - MORNING_RUSH_H) / MORNING_RUSH_WIDTH_H) ** 2))
    evening = math.exp(-(((hour - EVENING_RUSH_H) / EVENING_RUSH_WIDTH_H) ** 2))
    return morning + evening


def sunlight(at_s: float) -> float:
    """Return sunlight between 0 and 1; Depok's days are 12 hours all year."""
    return max(0.0, math.sin(2 * math.pi * (local_hour(at_s) - SUNRISE_H) / DAY_H))


def rain_shape(since_s: float, rain_s: float) -> float:
    """Return rain intensity as a fraction of the peak: a smooth burst of `rain_s`."""
    if not 0.0 <= since_s <= rain_s:
        return 0.0
    return math.sin(math.pi * since_s / rain_s) ** 2


def rain_since_start_mm(peak_mm_h: float, since_s: float, rain_s: float) -> float:
    """Return the rain fallen since the storm began: the integral of `rain_shape`."""
    t = min(max(since_s, 0.0), rain_s)
    wave = rain_s / (4 * math.pi) * math.sin(2 * math.pi * t / rain_s)
    return peak_mm_h / 3600.0 * (t / 2 - wave)


def hydrograph(since_s: float, time_to_peak_s: float) -> float:
    """Return the response to a burst of rain: rises, peaks at 1, recedes slowly."""
    if since_s <= 0.0:
        return 0.0
    x = since_s / time_to_peak_s
    return x * math.exp(1.0 - x)

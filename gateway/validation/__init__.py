"""Validation: judge readings against device profiles before they are stored."""

from gateway.validation.profiles import load_quality_profiles
from gateway.validation.quality import (
    DEVICE_TIME_FIELD,
    FLAG_BITS,
    FLAGS_SUFFIX,
    QUALITY_FIELD,
    CheckResult,
    LateReadingTime,
    QualityChecker,
)

__all__ = [
    "DEVICE_TIME_FIELD",
    "FLAGS_SUFFIX",
    "FLAG_BITS",
    "QUALITY_FIELD",
    "CheckResult",
    "LateReadingTime",
    "QualityChecker",
    "load_quality_profiles",
]

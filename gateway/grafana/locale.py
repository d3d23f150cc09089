"""Words operators read on the dashboards, in Bahasa Indonesia and English."""

from __future__ import annotations

from typing import Literal

__all__ = ["Locale", "Words"]

Locale = Literal["id", "en"]

# Text of each message by locale; {names} are filled in by Words.text().
_MESSAGES: dict[str, dict[Locale, str]] = {
    "city_folder": {"en": "DeCOR city", "id": "DeCOR kota"},
    "overview": {"en": "City overview", "id": "Ikhtisar kota"},
    "device_detail": {"en": "Device detail", "id": "Detail perangkat"},
    "cctv_wall": {"en": "CCTV wall", "id": "Dinding CCTV"},
    "gateway_health": {"en": "Gateway health", "id": "Kesehatan gateway"},
    "profile_dashboard": {"en": "{profile}: {agency}", "id": "{profile}: {agency}"},
    "online": {
        "en": "{profile} online ({agency}, of {count} registered)",
        "id": "{profile} daring ({agency}, dari {count} terdaftar)",
    },
    "latest": {"en": "Latest {field}", "id": "{field} terakhir"},
    "active_alerts": {"en": "Active alerts", "id": "Peringatan aktif"},
    "map": {"en": "Sensors and cameras", "id": "Sensor dan kamera"},
    "map_state": {
        "en": "Readings in the last {window}",
        "id": "Pembacaan dalam {window} terakhir",
    },
    "points_per_minute": {
        "en": "Points stored per minute, by profile",
        "id": "Titik tersimpan per menit, per profil",
    },
    "flagged": {
        "en": "Flagged readings per minute, by profile",
        "id": "Pembacaan bertanda per menit, per profil",
    },
    "last_report": {
        "en": "Last report per device",
        "id": "Laporan terakhir per perangkat",
    },
    "not_written": {
        "en": "Rejects by reason, spool size, write latency",
        "id": "Penolakan per alasan, ukuran spool, latensi tulis",
    },
    "not_written_text": {
        "en": "The gateway does not write its own counters (rejects by reason, "
        "spool size, write latency) to InfluxDB yet. Read them with "
        "`decor run`'s summary line and `decor deadletter list`.",
        "id": "Gateway belum menulis penghitungnya sendiri (penolakan per "
        "alasan, ukuran spool, latensi tulis) ke InfluxDB. Lihat baris "
        "ringkasan `decor run` dan `decor deadletter list`.",
    },
    "camera": {"en": "Camera {camera}", "id": "Kamera {camera}"},
    "camera_health": {
        "en": "Camera health (latest)",
        "id": "Kesehatan kamera (terakhir)",
    },
    "camera_latency": {"en": "Stream latency", "id": "Latensi aliran"},
    "variable_agency": {"en": "Agency", "id": "Instansi"},
    "variable_site": {"en": "Site", "id": "Lokasi"},
    "variable_device": {"en": "Device", "id": "Perangkat"},
    "rule": {
        "en": "{field} {level}: {profile} ({agency})",
        "id": "{field} {level}: {profile} ({agency})",
    },
    "rule_summary": {
        "en": "{field} of {{ $labels.device_id }} is {{ $values.B }} {unit}: {level}",
        "id": "{field} {{ $labels.device_id }} {{ $values.B }} {unit}: {level}",
    },
}

_PROFILES: dict[str, dict[Locale, str]] = {
    "river_gauge": {"en": "River gauges", "id": "Pos duga air"},
    "rain_gauge": {"en": "Rain gauges", "id": "Penakar hujan"},
    "air_quality": {"en": "Air-quality stations", "id": "Stasiun kualitas udara"},
}

_FIELDS: dict[str, dict[Locale, str]] = {
    "water_level_cm": {"en": "Water level", "id": "Tinggi muka air"},
    "flow_m3s": {"en": "Discharge", "id": "Debit"},
    "battery_voltage_v": {"en": "Battery", "id": "Baterai"},
    "rssi_dbm": {"en": "Signal strength", "id": "Kekuatan sinyal"},
    "rain_mm": {"en": "Rain", "id": "Curah hujan"},
    "rain_rate_mm_h": {"en": "Rain intensity", "id": "Intensitas hujan"},
    "pm25_ugm3": {"en": "PM2.5", "id": "PM2.5"},
    "pm10_ugm3": {"en": "PM10", "id": "PM10"},
    "co_ppm": {"en": "Carbon monoxide", "id": "Karbon monoksida"},
    "temperature_c": {"en": "Temperature", "id": "Suhu"},
    "humidity_pct": {"en": "Humidity", "id": "Kelembapan"},
}

# Alert level names of the shipped profiles. The Indonesian words are the
# agencies' own (BPBD water-level status, KLHK ISPU, BMKG rain classes).
_LEVELS: dict[str, dict[Locale, str]] = {
    "normal": {"en": "Normal", "id": "Normal"},
    "waspada": {"en": "Watch (Waspada)", "id": "Waspada"},
    "siaga": {"en": "Warning (Siaga)", "id": "Siaga"},
    "awas": {"en": "Danger (Awas)", "id": "Awas"},
    "baik": {"en": "Good", "id": "Baik"},
    "sedang": {"en": "Moderate", "id": "Sedang"},
    "tidak_sehat": {"en": "Unhealthy", "id": "Tidak sehat"},
    "sangat_tidak_sehat": {"en": "Very unhealthy", "id": "Sangat tidak sehat"},
    "berbahaya": {"en": "Hazardous", "id": "Berbahaya"},
    "tidak_hujan": {"en": "No rain", "id": "Tidak hujan"},
    "sangat_ringan": {"en": "Very light", "id": "Sangat ringan"},
    "ringan": {"en": "Light", "id": "Ringan"},
    "lebat": {"en": "Heavy", "id": "Lebat"},
    "sangat_lebat": {"en": "Very heavy", "id": "Sangat lebat"},
}

# Profile units as Grafana unit ids. Grafana has no centimetre, mm/h or
# m3/s-in-Indonesian unit, so those are suffixes in the operators' words.
_UNITS: dict[str, dict[Locale, str]] = {
    "cm": {"en": "suffix: cm", "id": "suffix: cm"},
    "m3/s": {"en": "flowcms", "id": "suffix: m³/detik"},
    "V": {"en": "volt", "id": "volt"},
    "dBm": {"en": "dBm", "id": "dBm"},
    "mm": {"en": "lengthmm", "id": "lengthmm"},
    "mm/h": {"en": "suffix: mm/h", "id": "suffix: mm/jam"},
    "ug/m3": {"en": "conµgm3", "id": "conµgm3"},
    "ppm": {"en": "ppm", "id": "ppm"},
    "degC": {"en": "celsius", "id": "celsius"},
    "%": {"en": "humidity", "id": "humidity"},
}


class Words:
    """Dashboard text in one locale, with readable fallbacks for unknown names."""

    def __init__(self, locale: Locale) -> None:
        self.locale: Locale = locale

    def text(self, key: str, **values: object) -> str:
        """Return message `key` in this locale with `values` filled in."""
        template = _MESSAGES[key][self.locale]
        for name, value in values.items():
            template = template.replace("{" + name + "}", str(value))
        return template

    def profile(self, device_type: str) -> str:
        """Return a profile's plural name, e.g. "River gauges"."""
        return _named(_PROFILES, device_type, self.locale)

    def field(self, field: str) -> str:
        """Return a field's name, e.g. "Water level"."""
        return _named(_FIELDS, field, self.locale)

    def level(self, level: str) -> str:
        """Return an alert level's name, e.g. "Waspada"."""
        return _named(_LEVELS, level, self.locale)

    def unit(self, unit: str) -> str:
        """Return the Grafana unit id for a profile unit (a suffix if unknown)."""
        known = _UNITS.get(unit)
        return known[self.locale] if known else f"suffix: {unit}"


def _named(table: dict[str, dict[Locale, str]], name: str, locale: Locale) -> str:
    # A name no table knows (a site's own profile) is shown as written, readable.
    known = table.get(name)
    return known[locale] if known else name.replace("_", " ").capitalize()

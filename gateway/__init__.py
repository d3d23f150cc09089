"""DeCOR Gateway: city sensor and CCTV telemetry from MQTT into InfluxDB."""

__version__ = "0.1.0"
__all__ = ["__version__"]

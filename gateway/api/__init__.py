"""The registry's HTTP API (FastAPI), with token authentication by role."""

from gateway.api.app import create_app, create_app_from_config

__all__ = ["create_app", "create_app_from_config"]

"""A small Python client for the SafeShrink REST API (standard library only).

Usage:

    from safeshrink_client import Client
    api = Client("http://127.0.0.1:8000", username="engineer", password="...")
    artifact = api.register_artifact("my-model", "/models/my-model")
"""

from .client import ApiError, Client

__all__ = ["ApiError", "Client"]

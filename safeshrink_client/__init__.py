"""A small Python client for the SafeShrink REST API (standard library only).

Usage:

    from safeshrink_client import Client
    api = Client("http://127.0.0.1:8000", username="engineer", password="...")
    artifact = api.register_artifact("my-model", "/models/my-model")
    artifact = api.upload_folder("./my-model", "my-model")   # from this machine, resumable

Command line: `python -m safeshrink_client upload ./my-model --name my-model` (see --help).
"""

from .client import ApiError, Client
from .uploads import UploadRefused

__all__ = ["ApiError", "Client", "UploadRefused"]

"""The `safeshrink` command line (standard library only): upload a model folder to a SafeShrink server.

python -m safeshrink_client upload ./my-model --name "my model" --url https://safeshrink.example
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import TextIO

from .client import UPLOAD_CHUNK_BYTES, ApiError, Client
from .uploads import UploadRefused

DESCRIPTION = """Work with a SafeShrink server from the command line.

The server and credentials come from the options or the environment: SAFESHRINK_URL (default
http://127.0.0.1:8000), SAFESHRINK_TOKEN (an API token: POST /api/auth/token/, or your profile), or
SAFESHRINK_USERNAME and SAFESHRINK_PASSWORD (asked for when missing)."""

UPLOAD_HELP = """Upload a model folder (a Hugging Face folder with config.json) as a SafeShrink artifact.

Every file is hashed first; the folder's manifest digest is the artifact's digest to be. If an upload of
the same folder under the same name is open on the server (an earlier run was interrupted), it is resumed:
only the bytes the server does not hold are sent. Chunks carry their offset and sha256 and are checked on
arrival; finishing checks every whole file, then stores the folder. Symbolic links are refused.
Prints the artifact as JSON on stdout; progress goes to stderr."""


class ProgressBar:
    """One line on `stream`, redrawn at most `hz` times a second: stage, bar, percent, bytes, rate."""

    def __init__(self, stream: TextIO, width: int = 30, hz: float = 10.0):
        self.stream, self.width, self.interval = stream, width, 1.0 / hz
        self.stage, self.started, self.drawn_at = "", 0.0, 0.0

    def __call__(self, event: dict) -> None:
        now = time.monotonic()
        new_stage = event["stage"] != self.stage
        if new_stage:
            if self.stage:
                self.stream.write("\n")
            self.stage, self.started, self.drawn_at = event["stage"], now, 0.0
        if not new_stage and event["done"] < event["total"] and now - self.drawn_at < self.interval:
            return
        self.drawn_at = now
        total = max(event["total"], 1)
        share = min(event["done"] / total, 1.0)
        filled = int(share * self.width)
        rate = event["done"] / max(now - self.started, 1e-6) if event["stage"] in ("hashing", "uploading") else 0
        line = (
            f"\r{event['stage']:<9} [{'#' * filled}{'.' * (self.width - filled)}] {100 * share:5.1f}% "
            f"{_size(event['done'])} / {_size(event['total'])}"
        )
        if rate:
            line += f"  {_size(rate)}/s"
        self.stream.write(line.ljust(80))
        if event["stage"] == "done":
            self.stream.write("\n")
        self.stream.flush()


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safeshrink", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("SAFESHRINK_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("SAFESHRINK_TOKEN"), help="API token")
    parser.add_argument("--username", default=os.environ.get("SAFESHRINK_USERNAME"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation (default 60)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    upload = commands.add_parser(
        "upload",
        help="upload a model folder as an artifact (resumable)",
        description=UPLOAD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upload.add_argument("folder", help="the model folder (with config.json)")
    upload.add_argument("--name", required=True, help="the artifact's name")
    upload.add_argument("--parent", type=int, help="id of the artifact this one derives from")
    upload.add_argument(
        "--chunk-mib",
        type=int,
        default=UPLOAD_CHUNK_BYTES // (1 << 20),
        help="MiB per chunk (default %(default)s; the server may accept less)",
    )
    upload.add_argument("--retries", type=int, default=5, help="resume this many times after a dropped connection")
    upload.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _client(args) -> Client:
    if args.token:
        return Client(args.url, token=args.token, timeout=args.timeout)
    if not args.username:
        raise SystemExit("safeshrink: give --token (or SAFESHRINK_TOKEN), or --username (or SAFESHRINK_USERNAME)")
    password = os.environ.get("SAFESHRINK_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    return Client(args.url, username=args.username, password=password, timeout=args.timeout)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = _client(args)
        if args.command == "upload":
            artifact = client.upload_folder(
                args.folder,
                args.name,
                on_progress=None if args.quiet else ProgressBar(sys.stderr),
                parent=args.parent,
                chunk_bytes=args.chunk_mib << 20,
                retries=args.retries,
            )
            json.dump(artifact, sys.stdout, indent=2)
            sys.stdout.write("\n")
    except ApiError as exc:
        details = "".join(
            f"\n  {field}: {'; '.join(map(str, v)) if isinstance(v, list) else v}" for field, v in exc.details.items()
        )
        print(f"\nsafeshrink: refused ({exc.status} {exc.code}): {exc.message}{details}", file=sys.stderr)
        return 1
    except (UploadRefused, OSError) as exc:
        print(f"\nsafeshrink: {exc}", file=sys.stderr)
        return 1
    return 0

"""Canonical JSON (sorted keys, no insignificant whitespace, UTF-8), as in the audit ledger.

Kept here (and not imported from the Django `ledger` app) so that `trust` stays importable without
Django; the definition is the same as `ledger.canonical.canonical_json`.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(value: Any) -> bytes:
    return canonical_json(value).encode("utf-8")

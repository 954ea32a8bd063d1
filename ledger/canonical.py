"""Canonical JSON and digests for the ledger: a re-export of `trust.canonical`, the one definition.

Kept so that the apps above import their digests from the ledger (the layer that records them);
there is no second implementation here.
"""

from trust.canonical import canonical_json, digest, sha256_hex

__all__ = ["canonical_json", "digest", "sha256_hex"]

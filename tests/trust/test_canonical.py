"""One canonical JSON (trust.canonical): the bytes every earlier caller produced are unchanged."""

import hashlib
import json
import math

import pytest

from trust import canonical


def _compression_engine_before(value) -> bytes:
    """compression.engine.common.canonical_json as it was before issue 11 (NaN allowed, bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _floats(value) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for item in value.values() for f in _floats(item)]
    if isinstance(value, list | tuple):
        return [f for item in value for f in _floats(item)]
    return []


def test_ledger_canonical_is_a_re_export_not_a_copy():
    from ledger import canonical as ledger_canonical

    assert ledger_canonical.canonical_json is canonical.canonical_json
    assert ledger_canonical.digest is canonical.digest
    assert ledger_canonical.sha256_hex is canonical.sha256_hex


def test_canonical_form_sorted_compact_utf8_and_digest():
    value = {"b": [1, 2.5, None, True], "a": {"é": "ü ☃", "z": -0}}
    assert canonical.canonical_json(value) == '{"a":{"z":0,"é":"ü ☃"},"b":[1,2.5,null,true]}'
    assert canonical.canonical_bytes(value) == canonical.canonical_json(value).encode("utf-8")
    assert canonical.digest(value) == hashlib.sha256(canonical.canonical_bytes(value)).hexdigest()
    assert canonical.sha256_hex("x") == canonical.sha256_hex(b"x") == hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_not_written_as_invalid_json(bad):
    with pytest.raises(ValueError):
        canonical.canonical_bytes({"x": bad})
    assert _compression_engine_before({"x": bad}) in (b'{"x":NaN}', b'{"x":Infinity}', b'{"x":-Infinity}')


def test_every_recipe_the_compression_engine_writes_has_the_same_bytes_as_before():
    """The engine wrote recipe.json with its own encoder, which allowed NaN. Every recipe it produces is
    built from strings, booleans and integers, so none can hold NaN, and the bytes (hence the
    manifest digests recorded so far) are unchanged."""
    pytest.importorskip("torch")
    from compression.engine.prune import structured_prune_recipe
    from compression.engine.quantize import _dynamic_int8_recipe, _int8_weight_only_recipe

    recipes = [
        _dynamic_int8_recipe({}),
        _dynamic_int8_recipe({"quantize_embeddings": True}),
        _int8_weight_only_recipe("0.13.0"),
        structured_prune_recipe([[0, 2], [1]], [[0, 1, 5], [3]]),
        structured_prune_recipe([], []),
    ]
    for recipe in recipes:
        assert _floats(recipe) == []
        assert canonical.canonical_bytes(recipe) == _compression_engine_before(recipe)
    assert canonical.canonical_bytes(recipes[0]) == (
        b'{"dtype":"qint8","format":"torch-quantized","method":"dynamic_int8","modules":["Linear"]}'
    )


def test_engine_digests_keep_their_values():
    from compression.engine.manifest import entries_digest
    from compression.engine.types import CompressionData

    entries = [("config.json", "ab" * 32, 12), ("ünï/vocab.txt", "cd" * 32, 0)]
    rows = [{"path": p, "sha256": s, "size": n} for p, s, n in entries]
    assert entries_digest(entries) == hashlib.sha256(_compression_engine_before(rows)).hexdigest()
    data = CompressionData(train=[("é ☃", 1)], calibration=[("c", 0)])
    payload = {"calibration": [["c", 0]], "heldout_adversarial": [], "stress": [], "train": [["é ☃", 1]]}
    assert data.digest() == hashlib.sha256(_compression_engine_before(payload)).hexdigest()

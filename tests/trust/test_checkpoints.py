import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trust import checkpoint_sign, checkpoint_verify, key_id, merkle_root

HEAD = hashlib.sha256(b"head").hexdigest()
AT = datetime(2026, 11, 5, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


def test_sign_verify(key):
    cp = checkpoint_sign(42, HEAD, AT, key)
    assert cp["seq"] == 42 and cp["head_hash"] == HEAD and cp["key_id"] == key_id(key)
    assert cp["at"] == "2026-11-05T12:00:00.123456Z"
    assert checkpoint_verify(cp, key.public_key())


def test_signed_body_is_canonical_json(key):
    cp = checkpoint_sign(7, HEAD, AT, key)
    body = (
        f'{{"at":"2026-11-05T12:00:00.123456Z","head_hash":"{HEAD}","key_id":"{key_id(key)}","seq":7,'
        '"type":"safeshrink.ledger.checkpoint/v1"}'
    ).encode()
    key.public_key().verify(base64.b64decode(cp["signature"]), body)  # raises if not


def test_time_normalised_to_utc(key):
    cet = timezone(timedelta(hours=1))
    cp = checkpoint_sign(1, HEAD, datetime(2026, 11, 5, 13, 0, tzinfo=cet), key)
    assert cp["at"] == "2026-11-05T12:00:00.000000Z"
    assert checkpoint_sign(1, HEAD, "2026-11-05T12:00:00Z", key)["at"] == "2026-11-05T12:00:00.000000Z"
    assert checkpoint_verify(checkpoint_sign(1, HEAD, None, key), key.public_key())
    with pytest.raises(ValueError):
        checkpoint_sign(1, HEAD, datetime(2026, 11, 5, 12, 0), key)  # naive
    with pytest.raises(ValueError):
        checkpoint_sign(-1, HEAD, AT, key)
    with pytest.raises(ValueError):
        checkpoint_sign(1, "not-a-hash", AT, key)


@pytest.mark.parametrize(
    "field,value",
    [
        ("seq", 43),
        ("head_hash", hashlib.sha256(b"other").hexdigest()),
        ("at", "2026-11-05T12:00:01.123456Z"),
        ("type", "something.else/v1"),
        ("key_id", "0" * 64),
        ("signature", base64.b64encode(b"\x00" * 64).decode()),
        ("signature", "!!!"),
        ("seq", "42"),
        ("seq", True),
    ],
)
def test_tampered_field_fails(key, field, value):
    cp = checkpoint_sign(42, HEAD, AT, key)
    cp[field] = value
    assert not checkpoint_verify(cp, key.public_key())


def test_wrong_key_and_malformed(key):
    cp = checkpoint_sign(42, HEAD, AT, key)
    assert not checkpoint_verify(cp, Ed25519PrivateKey.generate().public_key())
    assert not checkpoint_verify({**cp, "extra": 1}, key.public_key())
    assert not checkpoint_verify({k: v for k, v in cp.items() if k != "signature"}, key.public_key())
    assert not checkpoint_verify("garbage", key.public_key())
    assert not checkpoint_verify(None, key.public_key())


# ----------------------------------------------------------------------------- Merkle (RFC 6962)


def _leaf(hex_):
    return hashlib.sha256(b"\x00" + bytes.fromhex(hex_)).digest()


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_merkle_root_hand_computed():
    a, b, c, d, e = (hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c", b"d", b"e"))
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root([a]) == _leaf(a).hex()
    assert merkle_root([a, b]) == _node(_leaf(a), _leaf(b)).hex()
    # n=3 splits at k=2: ((a b) c)
    assert merkle_root([a, b, c]) == _node(_node(_leaf(a), _leaf(b)), _leaf(c)).hex()
    assert merkle_root([a, b, c, d]) == _node(_node(_leaf(a), _leaf(b)), _node(_leaf(c), _leaf(d))).hex()
    # n=5 splits at k=4: (((a b)(c d)) e), not ((a b)(c d e)) and no duplication of e
    assert (
        merkle_root([a, b, c, d, e])
        == _node(_node(_node(_leaf(a), _leaf(b)), _node(_leaf(c), _leaf(d))), _leaf(e)).hex()
    )
    assert merkle_root([b, a]) != merkle_root([a, b])


def test_merkle_root_rfc6962_vectors():
    # The Certificate Transparency reference test vectors (leaf inputs as hex).
    leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    for n, root in enumerate(roots, start=1):
        assert merkle_root(leaves[:n]) == root, n


def test_merkle_root_rejects_non_hex():
    with pytest.raises(ValueError):
        merkle_root(["zz"])

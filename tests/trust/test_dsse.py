import base64
import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trust import (
    INTOTO_PAYLOAD_TYPE,
    SignatureInvalid,
    dsse_sign,
    dsse_sign_json,
    dsse_verify,
    dsse_verify_json,
    key_id,
)
from trust.dsse import pae


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keys(key):
    return {key_id(key): key.public_key()}


STATEMENT = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "model-int8.safetensors", "digest": {"sha256": "ab" * 32}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {
            "buildType": "https://safeshrink.example/quantize/v1",
            "externalParameters": {"dtype": "qint8"},
        }
    },
}


def test_pae_matches_spec_example():
    # The example from the DSSE protocol document.
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sign_verify_round_trip(key, keys):
    env = dsse_sign(b'{"a": 1}', INTOTO_PAYLOAD_TYPE, key)
    assert set(env) == {"payloadType", "payload", "signatures"}
    assert env["payloadType"] == INTOTO_PAYLOAD_TYPE
    assert base64.b64decode(env["payload"]) == b'{"a": 1}'
    assert env["signatures"][0]["keyid"] == key_id(key)
    json.dumps(env)  # JSON-ready
    assert dsse_verify(env, keys) == b'{"a": 1}'
    assert dsse_verify(json.loads(json.dumps(env)), keys, payload_type=INTOTO_PAYLOAD_TYPE) == b'{"a": 1}'


def test_json_statement_round_trip(key, keys):
    env = dsse_sign_json(STATEMENT, key)
    assert dsse_verify_json(env, keys) == STATEMENT
    # canonical JSON: sorted keys, no whitespace
    assert base64.b64decode(env["payload"]).startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":')


def test_verify_with_cryptography_only(key):
    """The snippet in trust/VERIFYING.md: independent verification with `cryptography` alone."""
    env = dsse_sign_json(STATEMENT, key)
    public_key = key.public_key()

    body = base64.b64decode(env["payload"])
    ptype = env["payloadType"].encode()
    message = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    public_key.verify(base64.b64decode(env["signatures"][0]["sig"]), message)  # raises if invalid
    assert json.loads(body) == STATEMENT


def _reason(env, keys, **kw):
    with pytest.raises(SignatureInvalid) as info:
        dsse_verify(env, keys, **kw)
    assert info.value.reason == str(info.value)
    return info.value.reason


def test_payload_byte_changed(key, keys):
    env = dsse_sign(b"release R-42 approved", "text/plain", key)
    body = bytearray(base64.b64decode(env["payload"]))
    body[8] ^= 0x01
    env["payload"] = base64.b64encode(bytes(body)).decode()
    assert "does not verify" in _reason(env, keys)


def test_payload_type_changed(key, keys):
    env = dsse_sign(b"x", "text/plain", key)
    env["payloadType"] = "application/json"
    assert "does not verify" in _reason(env, keys)
    env = dsse_sign(b"x", "text/plain", key)
    assert "expected" in _reason(env, keys, payload_type=INTOTO_PAYLOAD_TYPE)


def test_wrong_key(key, keys):
    other = Ed25519PrivateKey.generate()
    env = dsse_sign(b"x", "text/plain", other)
    assert "unknown key" in _reason(env, keys)
    # A forger who copies our key id still fails.
    env["signatures"][0]["keyid"] = key_id(key)
    assert "does not verify" in _reason(env, keys)
    # Without a key id every known key is tried.
    env["signatures"][0]["keyid"] = ""
    assert "any known key" in _reason(env, keys)


def test_missing_or_malformed_signatures(key, keys):
    env = dsse_sign(b"x", "text/plain", key)
    for broken, expected in [
        ({**env, "signatures": []}, "no signatures"),
        ({k: v for k, v in env.items() if k != "signatures"}, "no 'signatures'"),
        ({k: v for k, v in env.items() if k != "payload"}, "no 'payload'"),
        ({**env, "payload": "not base64!"}, "not base64"),
        ({**env, "signatures": [{"keyid": key_id(key)}]}, "malformed"),
        ({**env, "signatures": [{"keyid": key_id(key), "sig": "@@@"}]}, "not base64"),
        ("not an envelope", "not a JSON object"),
    ]:
        assert expected in _reason(broken, keys)
    assert "no public keys" in _reason(env, {})


def test_one_good_signature_among_several_suffices(key, keys):
    other = Ed25519PrivateKey.generate()
    env = dsse_sign(b"x", "text/plain", other)
    good = dsse_sign(b"x", "text/plain", key)
    both = copy.deepcopy(env)
    both["signatures"].append(good["signatures"][0])
    assert dsse_verify(both, keys) == b"x"


def test_urlsafe_base64_accepted(key, keys):
    env = dsse_sign(b"\xfb\xff" * 20, "application/octet-stream", key)
    env["payload"] = base64.urlsafe_b64encode(base64.b64decode(env["payload"])).decode().rstrip("=")
    assert dsse_verify(env, keys) == b"\xfb\xff" * 20

"""The two canonical encodings of an event, written out by hand: the bytes the chain hashes and the bytes
the writer signs. They equal `canonical_json(event_fields(...))` and `signed_message(...)` byte for byte
(tests/ledger/test_ledger.py checks both on awkward text) and cost several times less, which matters
on the write path (every append signs, the sealer checks every signature and hashes every event) and
in verification (a million events)."""

from json.encoder import encode_basestring

from .models import EVENT_SIGNATURE_TYPE

_quote = encode_basestring  # JSON string literal, non-ASCII kept as is (ensure_ascii=False)
_TYPE = _quote(EVENT_SIGNATURE_TYPE)
# Quoted forms of the few values that repeat across events (usernames, roles, actions, object types).
_QUOTED: dict[str, str] = {}
_QUOTED_MAX = 4096


def _quote_repeated(value: str) -> str:
    quoted = _QUOTED.get(value)
    if quoted is None:
        quoted = _quote(value)
        if len(_QUOTED) < _QUOTED_MAX:
            _QUOTED[value] = quoted
    return quoted


def fast_canonical(
    seq, occurred_iso, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, state_digest
) -> str:
    """canonical_json(event_fields(...)): keys already in sorted order."""
    return (
        f'{{"action":{_quote_repeated(action)},"actor_id":{"null" if actor_id is None else actor_id},'
        f'"actor_role":{_quote_repeated(actor_role)},"actor_username":{_quote_repeated(actor_username)},'
        f'"object_id":{_quote(object_id)},"object_type":{_quote_repeated(object_type)},'
        f'"occurred_at":{_quote(occurred_iso)},"payload_json":{_quote(payload_json)},"seq":{seq},'
        f'"state_digest":{_quote(state_digest)}}}'
    )


def fast_signed_message(
    occurred_iso, actor_id, actor_username, actor_role, action, object_type, object_id, payload_json, state_digest
) -> bytes:
    """signed_message(event_fields(...)): every hashed field but `seq`, with the type tag, as UTF-8."""
    return (
        f'{{"action":{_quote_repeated(action)},"actor_id":{"null" if actor_id is None else actor_id},'
        f'"actor_role":{_quote_repeated(actor_role)},"actor_username":{_quote_repeated(actor_username)},'
        f'"object_id":{_quote(object_id)},"object_type":{_quote_repeated(object_type)},'
        f'"occurred_at":{_quote(occurred_iso)},"payload_json":{_quote(payload_json)},'
        f'"state_digest":{_quote(state_digest)},"type":{_TYPE}}}'
    ).encode()

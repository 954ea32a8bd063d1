"""trust.resumable_sha256: a sha256 whose state is saved as bytes and resumed elsewhere gives hashlib's digest;
a state that is not one it wrote, or not for the bytes expected, is refused."""

import hashlib
import os
import random

import pytest

from trust import resumable_sha256
from trust.resumable_sha256 import BadState, ResumableSha256, Unavailable

pytestmark = pytest.mark.skipif(not resumable_sha256.available(), reason="no libcrypto with SHA256_Init here")


@pytest.mark.parametrize("seed", range(5))
def test_saved_and_resumed_at_any_split_it_is_hashlibs_sha256(seed):
    rng = random.Random(seed)
    data = os.urandom(rng.randrange(0, 300_000))
    cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 6)))
    hasher, start = ResumableSha256(), 0
    for cut in [*cuts, len(data)]:
        hasher.update(data[start:cut])
        state = hasher.state()  # as saved in a database row, resumed by another process
        hasher = ResumableSha256.resume(state, hashed=cut)
        assert hasher.hashed == cut
        start = cut
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_bytes_bytearray_and_memoryview_hash_alike_and_hexdigest_does_not_end_it():
    data = os.urandom(10_000)
    hasher = ResumableSha256()
    hasher.update(data[:10])
    hasher.update(bytearray(data[10:5000]))
    hasher.update(memoryview(data)[5000:9000])
    hasher.update(b"")
    assert hasher.hexdigest() == hashlib.sha256(data[:9000]).hexdigest()
    hasher.update(data[9000:])  # the digest was taken from a copy: the hash goes on
    assert hasher.hexdigest() == hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_state_for_other_bytes_or_not_written_here_is_refused():
    hasher = ResumableSha256()
    hasher.update(b"x" * 1000)
    state = hasher.state()
    with pytest.raises(BadState, match="covers 1000 bytes"):
        ResumableSha256.resume(state, hashed=999)
    for bad in (b"", state[:-1], state + b"\0", b"X" + state[1:]):
        with pytest.raises(BadState):
            ResumableSha256.resume(bad, hashed=1000)
    assert ResumableSha256.resume(state, hashed=1000).hexdigest() == hashlib.sha256(b"x" * 1000).hexdigest()


def test_without_libcrypto_it_says_so(monkeypatch):
    monkeypatch.setattr(resumable_sha256, "_library", lambda: None)
    assert not resumable_sha256.available()
    with pytest.raises(Unavailable):
        ResumableSha256()

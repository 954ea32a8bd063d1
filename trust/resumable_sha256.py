"""A sha256 whose state can be saved as bytes and resumed later, in another process (standard library only).

Python's hashlib cannot export a hash's intermediate state, so a file received in pieces by different
processes (one chunk per HTTP request, each to whichever gunicorn worker takes it) would have to be read
and hashed again whole once its last byte arrived. OpenSSL's low-level SHA256_Init/Update/Final work on a
plain SHA256_CTX struct owned by the caller, so its bytes are the whole state: save them after a chunk,
load them for the next one. They are deprecated in OpenSSL 3 but still exported by libcrypto (the same
library hashlib uses, with the same SHA-NI/AVX2 code), and reached here through ctypes, which releases
the GIL while they run.

`available()` says whether this machine's libcrypto has them; when it has not, `ResumableSha256` raises
`Unavailable` and a caller hashes the whole file at the end instead. A saved state is checked when it is
loaded: its size, a format tag, and the byte count OpenSSL keeps inside it (`hashed`), which a caller
compares with the bytes it believes were hashed; anything else is refused (`BadState`), never guessed at.

What a saved state proves, and what it does not: that the bytes passed to `update` (the bytes written,
as they were written) hash to the digest. It says nothing about a file changed on disk afterwards: a
caller that stores the file must still check the bytes it stores (the artifact store re-hashes a folder
as it installs it, and verifies it again before use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from functools import cache

CTX_BYTES = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit words)
TAG = b"sha256-ctx-v1:"  # what a saved state starts with (a different layout would change it)
_NL_OFFSET = 32  # Nl, Nh: the bit count hashed so far, low and high 32 bits


class Unavailable(RuntimeError):
    """This machine's libcrypto does not export SHA256_Init/Update/Final."""


class BadState(ValueError):
    """A saved state that is not one this module wrote, or not for the bytes the caller expects."""


@cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        functions = (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final)
    except (OSError, AttributeError):
        return None
    for function in functions:
        function.restype = ctypes.c_int
    lib.SHA256_Init.argtypes = [ctypes.c_void_p]
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


def available() -> bool:
    """Whether resumable hashing works here (libcrypto found, with the low-level sha256 functions)."""
    return _library() is not None


class ResumableSha256:
    """sha256 over bytes passed to `update`, whose `state()` can be saved and resumed with `resume`."""

    def __init__(self) -> None:
        lib = _library()
        if lib is None:
            raise Unavailable("libcrypto with SHA256_Init/Update/Final was not found")
        self._lib = lib
        self._ctx = ctypes.create_string_buffer(CTX_BYTES)
        if lib.SHA256_Init(self._ctx) != 1:
            raise Unavailable("SHA256_Init failed")

    @classmethod
    def resume(cls, state: bytes, *, hashed: int) -> ResumableSha256:
        """The hash after the `hashed` bytes whose state() was saved. BadState unless `state` is one this
        module wrote after exactly `hashed` bytes."""
        if len(state) != len(TAG) + CTX_BYTES or not state.startswith(TAG):
            raise BadState("not a saved sha256 state")
        ctx = state[len(TAG) :]
        low, high = struct.unpack_from("=II", ctx, _NL_OFFSET)
        if ((high << 32) | low) != hashed * 8:
            raise BadState(f"the state covers {((high << 32) | low) // 8} bytes, not {hashed}")
        hasher = cls()
        ctypes.memmove(hasher._ctx, ctx, CTX_BYTES)
        return hasher

    @property
    def hashed(self) -> int:
        """Bytes hashed so far (as OpenSSL counts them)."""
        low, high = struct.unpack_from("=II", self._ctx.raw, _NL_OFFSET)
        return ((high << 32) | low) // 8

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytes):  # ctypes passes a bytes object's own buffer, without a copy
            address: object = data
            size = len(data)
        else:
            view = memoryview(data).cast("B")
            size = view.nbytes
            if view.readonly:
                address = view.tobytes()
            else:
                address = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(view))) if size else None
        if size and self._lib.SHA256_Update(self._ctx, address, size) != 1:
            raise RuntimeError("SHA256_Update failed")

    def state(self) -> bytes:
        """The state to save: resume(state, hashed=self.hashed) continues from here."""
        return TAG + self._ctx.raw

    def hexdigest(self) -> str:
        """The digest of the bytes so far (the hash itself can still be updated or saved)."""
        ctx = ctypes.create_string_buffer(self._ctx.raw, CTX_BYTES)
        out = ctypes.create_string_buffer(32)
        if self._lib.SHA256_Final(out, ctx) != 1:
            raise RuntimeError("SHA256_Final failed")
        return out.raw.hex()

"""Authenticated encryption: AES-256-GCM through pyca `cryptography` (OpenSSL underneath).

Why AES-256-GCM (bench/bench_crypto.py, bench/RESULTS-crypto.md): on this machine (AES-NI) it seals a
4 MiB block 2.1x as fast as ChaCha20-Poly1305 and a 1 MB index 2.7x as fast. Without AES
instructions it is 12x slower than ChaCha20 -- but still ~220 MB/s, which is under 1 % of the time
archiverd spends encoding the same segment, so neither choice comes near the 5 % budget; the
standard, hardware-accelerated cipher wins. Both take 96-bit nonces, and both fail badly when a
nonce repeats under one key (GCM also leaks its authentication key), so nonces never repeat by
construction: every segment has its own random data key, records within it take counter nonces
(`counter_nonce`), and the few master-key wraps take random nonces (a handful per segment, far
below GCM's 2**32 random-nonce bound). AES-GCM-SIV (misuse-resistant) measured 15x slower here.

Neither cipher commits to its key, so a wrong key is caught before decryption, by key id
(keyring.key_id), and a tag failure under the right key means damage or tampering (CryptoError, exit
4) -- never a wrong document.
"""
from __future__ import annotations

import os

from ..errors import CryptoError

# `cryptography` is imported by the functions that use it: 7 MB of RSS that a daemon archiving
# without encryption does not carry.

ALGORITHM = "AES-256-GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16  # what sealing adds to every plaintext


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"an {ALGORITHM} key is {KEY_BYTES} bytes, not {len(key)}")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"an {ALGORITHM} nonce is {NONCE_BYTES} bytes, not {len(nonce)}")


def seal(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """Ciphertext followed by its 16-byte tag; `aad` is authenticated, not stored."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _check(key, nonce)
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def open_(key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes, where: str | None = None) -> bytes:
    """The plaintext, or CryptoError if anything sealed (ciphertext, nonce, aad) was changed."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _check(key, nonce)
    if len(ciphertext) < TAG_BYTES:
        raise CryptoError(f"sealed data is {len(ciphertext)} bytes, shorter than its tag: damaged", where)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise CryptoError("authentication failed: the data was damaged or tampered with", where) from None


def random_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def counter_nonce(domain: int, counter: int) -> bytes:
    """A nonce unique by construction under one key: 4 bytes of `domain` (which kind of record: one
    number per kind, never shared) and 8 bytes of `counter` (its position), big-endian."""
    if not 0 <= domain < 1 << 32 or not 0 <= counter < 1 << 64:
        raise ValueError(f"nonce domain {domain} or counter {counter} out of range")
    return domain.to_bytes(4, "big") + counter.to_bytes(8, "big")


def subkey(key: bytes, purpose: str) -> bytes:
    """An independent 32-byte key for one purpose (HKDF-SHA256), so that records of different kinds
    never share a key and nonce space, and a digest key never doubles as a cipher key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(key) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes, not {len(key)}")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=b"archiverd:" + purpose.encode()).derive(key)

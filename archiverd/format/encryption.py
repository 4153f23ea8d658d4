"""Encrypted segments (format version 3): what is sealed, under which key, and how a reader gets at
the key.

A version 3 segment is a version 2 segment whose content is sealed with AES-256-GCM under keys
derived from the segment's own random data key (crypto/envelope.py wraps it under the master key;
the wrapped key is kept in `part-N.key.json` and in the `SHDR` record). Sealed:

* each `BLCK` body after its block number: one GCM message over the block's SHA-256 and codec body
  (one tag per block). Random access still works: GCM is counter mode underneath, so any byte range
  of a block decrypts on its own (`decrypt_range`); what such a partial read yields is then checked
  against digests in the sealed index (a document's SHA-256, a block head's SHA-256, a vector
  section's SHA-256/128), so a changed byte is caught either way;
* the `SEND` content digest: an HMAC of the documents' SHA-256 instead of the SHA-256 itself;
* the private part of the index (`_id`s, checksums, dates, indexed fields, positions): one GCM
  message of its zstd-compressed JSON; the public part (sizes, the video's SHA-256, format
  parameters) is what `check` needs without the key;
* the vector sidecar, whole.

The parity is computed over the sealed stream and reveals nothing more. Subkeys (HKDF, crypto/aead)
keep the purposes apart; block nonces are counters (the block number), the index's and sidecar's are
random (each is written a handful of times per data key at most).

Keys reach the format code through `use_keyring` (the CLI and daemon set the configured key file) and
the segment's key file (in an object store: its key objects, store/objects.py `Store.key_copies`) or
`SHDR` copy (`segment_keys`); a segment's keys are cached by its id.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from ..crypto import aead, envelope
from ..crypto.keyring import Keyring, MasterKey
from ..errors import EncryptionKeyError, SegmentError

VERSION = 3  # the format version of an encrypted segment
DOMAIN_BLOCK = 1
SIDECAR_MAGIC = b"ARVE"
SIDECAR_HEAD = struct.Struct(">4sB12s")  # magic, version 1, nonce
SECTION_DIGEST_BYTES = 16
MAX_INDEX_PLAIN = 256 << 20


@dataclass(frozen=True)
class SegmentKeys:
    """The keys of one segment, derived from its data key."""

    segment_id: bytes
    block: bytes
    index: bytes
    sidecar: bytes
    content: bytes

    @classmethod
    def derive(cls, data_key: bytes, segment_id: bytes) -> SegmentKeys:
        return cls(segment_id, *(aead.subkey(data_key, purpose) for purpose in ("block", "index", "sidecar", "content")))


def _block_aad(keys: SegmentKeys, number: int) -> bytes:
    return b"archiverd block\x00" + keys.segment_id + number.to_bytes(4, "big")


def _block_nonce(number: int) -> bytes:
    return aead.counter_nonce(DOMAIN_BLOCK, number)


def seal_block(keys: SegmentKeys, number: int, plaintext: bytes) -> bytes:
    """The sealed body of block `number` (ciphertext, then the 16-byte tag)."""
    return aead.seal(keys.block, _block_nonce(number), _block_aad(keys, number), plaintext)


def open_block(keys: SegmentKeys, number: int, sealed: bytes | memoryview, where: str | None = None) -> bytes:
    """The plaintext of a sealed block body; CryptoError if any byte of it changed."""
    return aead.open_(keys.block, _block_nonce(number), _block_aad(keys, number), bytes(sealed), where)


def decrypt_range(keys: SegmentKeys, number: int, offset: int, data: bytes) -> bytes:
    """Bytes [offset, offset + len(data)) of block `number`'s plaintext, from the same bytes of its
    ciphertext, without the tag (GCM encrypts byte i with counter block nonce || 2 + i div 16).
    Unauthenticated: the caller checks the result against a digest from the sealed index."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # (see crypto/aead.py)

    counter = _block_nonce(number) + (2 + offset // 16).to_bytes(4, "big")
    decryptor = Cipher(algorithms.AES(keys.block), modes.CTR(counter)).decryptor()
    skip = offset % 16
    return (decryptor.update(bytes(skip) + bytes(data)) + decryptor.finalize())[skip:]


def section_digest(plaintext: bytes | memoryview) -> str:
    """The digest the sealed index keeps of a vector section (checks a section read on its own)."""
    return hashlib.sha256(plaintext).digest()[:SECTION_DIGEST_BYTES].hex()


def content_digest(keys: SegmentKeys, sha256: bytes) -> bytes:
    """What `SEND` carries in place of the documents' SHA-256."""
    return hmac.new(keys.content, sha256, hashlib.sha256).digest()


# --- the index ------------------------------------------------------------------------------------

PUBLIC = ("format", "format_version", "segment_id", "created_at", "documents", "frames", "data_frames",
          "stream_bytes", "parity", "video", "qr", "encryption", "repaired_from")


def seal_index(keys: SegmentKeys, idx: dict[str, Any]) -> dict[str, Any]:
    """The index as written for an encrypted segment: its public keys, and `sealed` (base64 of
    nonce || GCM of the zstd-compressed JSON of every other key)."""
    private = {k: v for k, v in idx.items() if k not in PUBLIC}
    plain = zstandard.ZstdCompressor(level=9).compress(json.dumps(private, sort_keys=True).encode())
    nonce = aead.random_nonce()
    sealed = aead.seal(keys.index, nonce, b"archiverd index\x00" + keys.segment_id, plain)
    return {k: idx[k] for k in PUBLIC if k in idx} | {"sealed": base64.b64encode(nonce + sealed).decode()}


def open_index(keys: SegmentKeys, public: dict[str, Any], where: str) -> dict[str, Any]:
    """The whole index from its written form; CryptoError if it was changed."""
    try:
        blob = base64.b64decode(public["sealed"], validate=True)
    except (ValueError, TypeError):
        raise SegmentError("sealed index is not base64", where) from None
    if len(blob) < aead.NONCE_BYTES + aead.TAG_BYTES:
        raise SegmentError("sealed index is cut short", where)
    plain = aead.open_(keys.index, blob[:aead.NONCE_BYTES], b"archiverd index\x00" + keys.segment_id,
                       blob[aead.NONCE_BYTES:], where)
    try:
        private = json.loads(zstandard.ZstdDecompressor().decompress(plain, max_output_size=MAX_INDEX_PLAIN))
    except (zstandard.ZstdError, ValueError, RecursionError):
        raise SegmentError("sealed index does not decode", where) from None
    if not isinstance(private, dict) or set(private) & set(public):
        raise SegmentError("sealed index is malformed", where)
    return {k: v for k, v in public.items() if k != "sealed"} | private


# --- the sidecar ----------------------------------------------------------------------------------

def seal_sidecar(keys: SegmentKeys, data: bytes) -> bytes:
    nonce = aead.random_nonce()
    head = SIDECAR_HEAD.pack(SIDECAR_MAGIC, 1, nonce)
    return head + aead.seal(keys.sidecar, nonce, head + keys.segment_id, data)


def open_sidecar(keys: SegmentKeys, data: bytes, where: str) -> bytes:
    if len(data) < SIDECAR_HEAD.size + aead.TAG_BYTES or data[:4] != SIDECAR_MAGIC or data[4] != 1:
        raise SegmentError("not an encrypted vector sidecar", where)
    head = data[:SIDECAR_HEAD.size]
    return aead.open_(keys.sidecar, head[5:], head + keys.segment_id, data[SIDECAR_HEAD.size:], where)


def is_sealed_sidecar(data: bytes) -> bool:
    return data[:4] == SIDECAR_MAGIC


# --- where the keys come from ---------------------------------------------------------------------

_lock = threading.Lock()
_provider: Callable[[], Keyring | None] | None = None
_keyring: Keyring | None = None
_loaded = False
_cache: dict[str, SegmentKeys] = {}


def use_keyring(provider: Callable[[], Keyring | None] | Keyring | None) -> None:
    """Set where master keys come from: a keyring, or a function that loads one when an encrypted
    segment is first met (so that commands on plain archives never read a key file)."""
    global _provider, _keyring, _loaded
    with _lock:
        _cache.clear()
        if provider is None or isinstance(provider, Keyring):
            _provider, _keyring, _loaded = None, provider, True
        else:
            _provider, _keyring, _loaded = provider, None, False


def keyring() -> Keyring:
    """The configured keyring; EncryptionKeyError when there is none."""
    global _keyring, _loaded
    with _lock:
        if not _loaded:
            _keyring, _loaded = (_provider() if _provider is not None else None), True
        ring = _keyring
    if ring is None:
        raise EncryptionKeyError("this segment is encrypted: set ARCHIVERD_ENCRYPTION_KEY_FILE (or --config) to "
                                 "the key file it was sealed with")
    return ring


def current() -> Keyring | None:
    """The configured keyring, or None when encryption is off."""
    try:
        return keyring()
    except EncryptionKeyError:
        if _loaded and _keyring is None:
            return None
        raise


def catalog_key() -> tuple[str, bytes | None]:
    """How the catalog keeps `_id`s and field values: ("plain", None) without encryption, else as
    HMAC-SHA256 under a key derived from the keyring's digest key (named, so that a catalog kept
    under another scheme is rebuilt rather than misread)."""
    ring = current()
    if ring is None:
        return "plain", None
    kid, key = ring.id_digest_key()
    return f"hmac-sha256:{kid}", aead.subkey(key, "catalog")


def new_segment(master: MasterKey, segment_id: bytes) -> tuple[SegmentKeys, dict[str, str]]:
    """Keys for a segment being written, and its data key wrapped under `master`."""
    data_key = envelope.new_data_key()
    keys = SegmentKeys.derive(data_key, segment_id)
    with _lock:
        _cache[segment_id.hex()] = keys
    return keys, envelope.wrap(master, data_key, segment_id.hex())


def segment_keys(video: Path, segment_id: str, header_copy: Callable[[], dict[str, Any] | None] | None = None,
                 problems: list[str] | None = None, copies: Iterable[envelope.KeyCopy] | None = None) -> SegmentKeys:
    """The keys of the segment `segment_id` stored as `video`: from its key file (or, in an object
    store, `copies`: the store's key objects of the segment), else from the copy of the wrapped data
    key in its `SHDR` record (`header_copy`, read only when needed)."""
    with _lock:
        cached = _cache.get(segment_id)
    if cached is not None:
        return cached
    try:
        raw_id = bytes.fromhex(segment_id)
    except ValueError:
        raise SegmentError(f"segment id {segment_id!r} is not hex", str(video)) from None
    data_key = envelope.keys_for_segment(video, keyring(), header_copy, segment_id, problems, copies)
    keys = SegmentKeys.derive(data_key, raw_id)
    with _lock:
        _cache[segment_id] = keys
    return keys


def cached_keys(segment_id: str, where: str) -> SegmentKeys:
    """The keys of a segment whose index or header was opened in this process."""
    with _lock:
        keys = _cache.get(segment_id)
    if keys is None:
        raise EncryptionKeyError(f"{where}: the segment is encrypted and its key was not opened")
    return keys


def keys_of(idx: dict[str, Any], where: str) -> SegmentKeys | None:
    """The keys of the segment an opened index describes (None for a plain segment)."""
    return cached_keys(idx["segment_id"], where) if idx.get("format_version", 0) >= VERSION else None


def header_wrapped(header: dict[str, Any] | None) -> dict[str, Any] | None:
    """The wrapped data key an `SHDR` record carries, if any."""
    enc = header.get("encryption") if isinstance(header, dict) else None
    wrapped = enc.get("wrapped") if isinstance(enc, dict) else None
    return wrapped if isinstance(wrapped, dict) else None


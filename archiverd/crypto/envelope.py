"""Envelope encryption: a random data key per segment, wrapped by the master key.

Each segment's records are sealed under its own data key (`new_data_key`), so a nonce can only ever
repeat inside one segment, and a rotation of the master key re-wraps 60 bytes per segment instead of
re-encoding any video. The wrapped data key is kept twice:

* in the segment key file `part-NNNN.key.json` beside the video -- derived and replaceable: `key
  rotate` replaces it atomically with the same data key wrapped by the new master key;
* in the video's header, under the master key that was active at the seal -- never changed.

`keys_for_segment` tries the key file first, then the header copy. A wrapped key is a JSON object:

    {"alg": "AES-256-GCM", "key_id": "k-<16 hex>", "segment_id": "<the segment's id, or ''>",
     "nonce": "<24 hex>", "ciphertext": "<96 hex: 32 key bytes + 16 tag bytes>"}

sealed with the master key `key_id` under a random nonce, with the associated data
"archiverd data key\\0" + alg + "\\0" + key_id + "\\0" + segment_id (UTF-8): a wrapped key moved to
another segment, or relabelled with another key id, fails to open. The key file is

    {"format": "archiverd-segment-key", "version": 1, "wrapped": {...}}

written with the archive's file mode (the wrapped key is useless without the master key).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import aead
from .keyring import Keyring, MasterKey
from ..errors import EncryptionKeyError, SegmentError
from ..store import durable

FORMAT = "archiverd-segment-key"
VERSION = 1
SUFFIX = ".key.json"
MAX_KEY_FILE_BYTES = 4096
_FIELDS = ("alg", "key_id", "segment_id", "nonce", "ciphertext")


def new_data_key() -> bytes:
    return os.urandom(aead.KEY_BYTES)


def _aad(alg: str, kid: str, segment_id: str) -> bytes:
    return b"archiverd data key\x00" + f"{alg}\x00{kid}\x00{segment_id}".encode()


def wrap(master: MasterKey, data_key: bytes, segment_id: str = "") -> dict[str, str]:
    """`data_key` sealed under `master`, bound to `segment_id`; JSON-safe."""
    if len(data_key) != aead.KEY_BYTES:
        raise ValueError(f"a data key is {aead.KEY_BYTES} bytes, not {len(data_key)}")
    nonce = aead.random_nonce()
    sealed = aead.seal(master.key, nonce, _aad(aead.ALGORITHM, master.id, segment_id), data_key)
    return {"alg": aead.ALGORITHM, "key_id": master.id, "segment_id": segment_id, "nonce": nonce.hex(),
            "ciphertext": sealed.hex()}


def unwrap(keyring: Keyring, wrapped: dict[str, Any], where: str | None = None) -> bytes:
    """The data key. EncryptionKeyError (exit 3) if the keyring lacks the master key it names;
    CryptoError (exit 4) if it was changed; SegmentError if it is malformed."""
    if not (isinstance(wrapped, dict) and all(isinstance(wrapped.get(f), str) for f in _FIELDS)):
        raise SegmentError("wrapped data key is malformed", where)
    if wrapped["alg"] != aead.ALGORITHM:
        raise SegmentError(f"wrapped data key uses {wrapped['alg']!r}, which this archiverd cannot open", where)
    try:
        nonce, sealed = bytes.fromhex(wrapped["nonce"]), bytes.fromhex(wrapped["ciphertext"])
    except ValueError:
        raise SegmentError("wrapped data key is malformed (not hex)", where) from None
    if len(nonce) != aead.NONCE_BYTES:
        raise SegmentError("wrapped data key is malformed (nonce size)", where)
    master = keyring.get(wrapped["key_id"])
    data_key = aead.open_(master.key, nonce, _aad(wrapped["alg"], master.id, wrapped["segment_id"]), sealed, where)
    if len(data_key) != aead.KEY_BYTES:
        raise SegmentError("wrapped data key has the wrong size", where)
    return data_key


def path_for(video: Path) -> Path:
    """part-0001.mkv (and its repaired copy part-0001.repaired.mkv) -> part-0001.key.json"""
    stem = video.name.rsplit(".", 1)[0].removesuffix(".repaired")
    return video.with_name(stem + SUFFIX)


def dumps(wrapped: dict[str, str]) -> bytes:
    return (json.dumps({"format": FORMAT, "version": VERSION, "wrapped": wrapped}, indent=1) + "\n").encode()


def parse(data: bytes, where: str) -> dict[str, Any]:
    """The wrapped key in a segment key file's bytes; SegmentError if it is not one."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise SegmentError("segment key file is not JSON", where) from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise SegmentError("not an archiverd segment key file", where)
    if body.get("version") != VERSION:
        raise SegmentError(f"unsupported segment key file version {body.get('version')!r}", where)
    wrapped = body.get("wrapped")
    if not (isinstance(wrapped, dict) and all(isinstance(wrapped.get(f), str) for f in _FIELDS)):
        raise SegmentError("segment key file holds a malformed wrapped key", where)
    return wrapped


def read_file(path: Path) -> dict[str, Any]:
    return parse(durable.read_bounded(path, MAX_KEY_FILE_BYTES, "segment key file"), str(path))


def write(video: Path, wrapped: dict[str, str]) -> Path:
    """Create the segment's key file (exclusive, synced) at the seal."""
    path = path_for(video)
    durable.write_new(path, dumps(wrapped))
    return path


def replace(path: Path, wrapped: dict[str, str]) -> None:
    """Replace a segment key file atomically (rotate), keeping its owner."""
    durable.replace_synced(path, dumps(wrapped), keep_owner=True)


def keys_for_segment(video: Path, keyring: Keyring, header: Callable[[], dict[str, Any] | None] | None = None,
                     segment_id: str | None = None, problems: list[str] | None = None) -> bytes:
    """The data key of the segment `video`: from its key file, else from the copy in the video's
    header (`header()` returns that wrapped key, or None if the video has none). With `segment_id`,
    a wrapped key bound to another segment is refused. When the key file fails and the header copy
    serves, the key file's problem is appended to `problems` (for `check`). If both fail, the
    header copy's error is raised (or the key file's, when there is no header copy)."""
    def open_one(wrapped: dict[str, Any], where: str) -> bytes:
        if segment_id is not None and wrapped.get("segment_id") != segment_id:
            raise SegmentError(f"wrapped data key belongs to segment {wrapped.get('segment_id')!r}, "
                               f"not {segment_id!r}", where)
        return unwrap(keyring, wrapped, where)

    key_path = path_for(video)
    try:
        return open_one(read_file(key_path), str(key_path))
    except (SegmentError, EncryptionKeyError) as exc:
        first = exc
    copy = header() if header is not None else None
    if copy is None:
        raise first
    data_key = open_one(copy, f"{video} (header copy of the data key)")
    if problems is not None:
        problems.append(f"{first}; the copy in the video's header was used")
    return data_key

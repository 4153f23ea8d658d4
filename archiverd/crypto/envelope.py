"""Envelope encryption: a random data key per segment, wrapped by the master key.

Each segment's records are sealed under its own data key (`new_data_key`), so a nonce can only ever
repeat inside one segment, and a rotation of the master key re-wraps 60 bytes per segment instead of
re-encoding any video. The wrapped data key is kept twice:

* in the segment key file `part-NNNN.key.json` beside the video -- derived and replaceable: `key
  rotate` replaces it atomically with the same data key wrapped by the new master key;
* in the video's header, under the master key that was active at the seal -- never changed.

In an object store, where nothing is ever overwritten, `key rotate` cannot replace the key file: it
adds a copy beside it instead, `part-NNNN.key.<key id>.json` (`rotated_name`), the same data key
wrapped under the new master key (docs/ARCHITECTURE.md, "Key rotation in an object store").

`keys_for_segment` tries the key files first (the seal's, then the rotated copies), then the header
copy. A wrapped key is a JSON object:

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
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import aead
from .keyring import Keyring, MasterKey
from ..errors import ArchiverdError, EncryptionKeyError, SegmentError
from ..store import durable

FORMAT = "archiverd-segment-key"
VERSION = 1
SUFFIX = ".key.json"
MAX_KEY_FILE_BYTES = 4096
_FIELDS = ("alg", "key_id", "segment_id", "nonce", "ciphertext")
_ROTATED = re.compile(r"\.key\.(k-[0-9a-f]{16})\.json$")

# one stored copy of a segment's wrapped data key: where it is, and how to read it (SegmentError if it cannot be)
KeyCopy = tuple[str, Callable[[], dict[str, Any]]]


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


def rotated_name(key_file: str, kid: str) -> str:
    """The name of a rotated copy of a key file in an object store: part-0001.key.json ->
    part-0001.key.<kid>.json (a new name per master key: a sealed object is never replaced)."""
    return key_file.removesuffix(SUFFIX) + f".key.{kid}.json"


def rotated_key_id(name: str) -> str | None:
    """The master key id a rotated copy's name carries (None: not a rotated copy)."""
    m = _ROTATED.search(name)
    return m.group(1) if m else None


def local_copies(video: Path) -> list[KeyCopy]:
    """The key file of a segment in the archive directory (replaced in place by `key rotate`)."""
    path = path_for(video)
    return [(str(path), lambda: read_file(path))]


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
                     segment_id: str | None = None, problems: list[str] | None = None,
                     copies: Iterable[KeyCopy] | None = None) -> bytes:
    """The data key of the segment `video`: from its key files (`copies`, tried in order and read
    only as needed; by default the key file beside the video), else from the copy in the video's
    header (`header()` returns that wrapped key, or None if the video has none). With `segment_id`,
    a wrapped key bound to another segment is refused. When a damaged key file is passed over for
    another copy, its problem is appended to `problems` (for `check`); a key file wrapped by a key
    this keyring lacks is passed over silently when another copy opens. If every copy fails, the
    header copy's error is raised (or the first key file's, when there is no header copy)."""
    def open_one(wrapped: dict[str, Any], where: str) -> bytes:
        if segment_id is not None and wrapped.get("segment_id") != segment_id:
            raise SegmentError(f"wrapped data key belongs to segment {wrapped.get('segment_id')!r}, "
                               f"not {segment_id!r}", where)
        return unwrap(keyring, wrapped, where)

    failures: list[ArchiverdError] = []
    for where, load in (local_copies(video) if copies is None else copies):
        try:
            data_key = open_one(load(), where)
        except (SegmentError, EncryptionKeyError) as exc:
            failures.append(exc)
            continue
        if problems is not None:
            problems.extend(f"{exc}; another copy of the data key was used" for exc in failures
                            if not isinstance(exc, EncryptionKeyError))
        return data_key
    first = failures[0] if failures else SegmentError("segment key file is missing", str(path_for(video)))
    copy = header() if header is not None else None
    if copy is None:
        raise first
    data_key = open_one(copy, f"{video} (header copy of the data key)")
    if problems is not None:
        problems.append(f"{first}; the copy in the video's header was used")
    return data_key

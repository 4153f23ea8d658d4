"""The audit log: what archiverd removed (prune, erase) and which holds were placed, by whom and why.

`archiverd-audit.jsonl` in the collection's archive directory: one JSON object per line, appended
and fsynced before the act it records (a line names what is about to be removed; a later line says
it was), mode 0600, never rewritten or truncated by archiverd. A line torn by a crash is left as it
is and ended, so the next record starts on its own line; `read` skips and counts such lines.

Every record has `at` (UTC), `event`, and `who` (user, uid, sudo_user when set, host, pid, command).
No record holds document content or an `_id`: documents are named by `id_digest` --
"hmac-sha256:<key id>:<hex>" (HMAC-SHA256 of the `_id`'s identity key under a key derived by HKDF
from the master key it names -- the oldest, when the digest was made -- when encryption is on: nobody without the key can test a guessed `_id`), or
"sha256:<hex>" (plain SHA-256 of the identity key, when encryption is off: an unencrypted archive
names its `_id`s in its indexes anyway, but small or guessable `_id`s -- numbers, short strings --
can be confirmed from a plain digest by trying them).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import pwd
import socket
from pathlib import Path
from typing import Any

from . import durable
from ..crypto.keyring import Keyring
from ..errors import EncryptionKeyError

FILE_NAME = "archiverd-audit.jsonl"
PLAIN = "sha256"
KEYED = "hmac-sha256"


def path_for(collection_dir: Path) -> Path:
    return collection_dir / FILE_NAME


def who(command: str) -> dict[str, Any]:
    """Who acts: the effective user (and the person behind sudo), host and process."""
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    out: dict[str, Any] = {"user": user, "uid": uid, "host": socket.gethostname(), "pid": os.getpid(),
                           "command": command}
    if os.environ.get("SUDO_USER"):
        out["sudo_user"] = os.environ["SUDO_USER"]
    return out


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def append(collection_dir: Path, event: str, who: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Append one record and sync it; returns the record."""
    record = {"at": now_iso(), "event": event, **fields, "who": who}
    durable.ensure_dir(collection_dir)
    durable.append_synced(path_for(collection_dir), (json.dumps(record, sort_keys=True) + "\n").encode())
    return record


def read(collection_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, number of unreadable lines -- torn by a crash or damaged)."""
    try:
        text = path_for(collection_dir).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], 0
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def digest_scheme(ring: Keyring | None) -> str:
    """The scheme new digests use: keyed by the oldest master key when encryption is on."""
    return PLAIN if ring is None else f"{KEYED}:{ring.id_digest_key()[0]}"


def id_digest(identity_key: str, scheme: str, ring: Keyring | None) -> str:
    """"<scheme>:<hex>" for an `_id`'s identity key (format/identity.py: equal exactly when MongoDB
    deems two `_id`s the same). EncryptionKeyError if a keyed scheme's key is not at hand."""
    data = identity_key.encode()
    if scheme == PLAIN:
        return f"{PLAIN}:{hashlib.sha256(data).hexdigest()}"
    kind, _, kid = scheme.partition(":")
    if kind != KEYED:
        raise ValueError(f"unknown digest scheme {scheme!r}")
    if ring is None:
        raise EncryptionKeyError(f"a digest was made with master key {kid}, and encryption is off here: set "
                                 "ARCHIVERD_ENCRYPTION_KEY_FILE to the key file that holds it")
    return f"{scheme}:{hmac.new(ring.id_digest_key(kid)[1], data, hashlib.sha256).hexdigest()}"


def scheme_of(digest: str) -> str:
    """The scheme part of a digest made by `id_digest`."""
    return digest.rsplit(":", 1)[0]

"""The master key file (`ARCHIVERD_ENCRYPTION_KEY_FILE`): every master key, old and new, and when
they were backed up.

A JSON object, mode 0600 (refused when group or others may read or write it, as ssh refuses an
unprotected private key), never overwritten by `key init` or `key import` (exclusive create; a
damaged file must be moved aside by a person), replaced atomically by `key rotate` and when an
export is recorded (same owner and group, so root running `archiverd key ...` does not lock the
service out):

    {"format": "archiverd-keyring", "version": 1,
     "keys": [{"id": "k-<16 hex>", "key": "<64 hex>", "created_at": "<ISO 8601 UTC>",
               "state": "active" | "previous" | "retired", "retired_at": "<ISO>" | null}, ...],
     "rotation": null | {"from": "k-...", "to": "k-...", "started_at": "<ISO>"},
     "exports": [{"at": "<ISO>", "kind": "file" | "paper" | "import", "key_ids": [...], "to": "..."}],
     "checksum": "sha256:<hex of the canonical JSON of everything else>"}

Keys are listed oldest first; exactly one is `active` (new segments are wrapped with it). A key id is
a one-way function of the key (SHA-256 of a label and the key, 64 bits shown): a segment names the
key that wrapped its data key, so a wrong key file is told apart from damage before any decryption
(docs: crypto/aead.py). Keys are never removed: a rotation makes the old key `previous` until every
segment key file is re-wrapped, then `retired`; retired keys stay to open the copy of each data key
kept in the video's header under its original key.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import aead
from ..config import Config
from ..errors import EncryptionKeyError, StorageError
from ..store import durable

FORMAT = "archiverd-keyring"
VERSION = 1
KEY_FILE_MODE = 0o600
ACTIVE, PREVIOUS, RETIRED = "active", "previous", "retired"
STATES = (ACTIVE, PREVIOUS, RETIRED)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_id(key: bytes) -> str:
    """The public name of a key: 'k-' and 16 hex digits of SHA-256("archiverd key id\\0" + key)."""
    return "k-" + hashlib.sha256(b"archiverd key id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class MasterKey:
    id: str
    key: bytes = field(repr=False)
    created_at: str
    state: str = ACTIVE
    retired_at: str | None = None

    @classmethod
    def generate(cls) -> MasterKey:
        key = os.urandom(aead.KEY_BYTES)
        return cls(key_id(key), key, now_iso())

    @classmethod
    def from_key(cls, key: bytes, created_at: str, state: str) -> MasterKey:
        return cls(key_id(key), key, created_at, state)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key.hex(), "created_at": self.created_at, "state": self.state,
                "retired_at": self.retired_at}


@dataclass
class Keyring:
    keys: list[MasterKey]
    path: Path | None = None
    rotation: dict[str, Any] | None = None
    exports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> MasterKey:
        return next(k for k in self.keys if k.state == ACTIVE)

    def get(self, kid: str) -> MasterKey:
        for k in self.keys:
            if k.id == kid:
                return k
        held = ", ".join(k.id for k in self.keys)
        raise EncryptionKeyError(f"sealed with key {kid}, which the key file {self.path or ''} does not hold "
                                 f"(it holds {held}): the wrong key file? `archiverd key import` adds a key "
                                 "from its export")

    def unexported(self) -> list[str]:
        """Ids of keys no export or import has ever covered."""
        covered = {kid for e in self.exports for kid in e.get("key_ids", [])}
        return [k.id for k in self.keys if k.id not in covered]

    def id_digest_key(self, kid: str | None = None) -> tuple[str, bytes]:
        """(key id, key) for keyed digests of document ids (audit log, holds): new digests use the
        oldest key; a digest names its key, and no rotation removes one, so it matches for good."""
        master = self.keys[0] if kid is None else self.get(kid)
        return master.id, aead.subkey(master.key, "id-digest")

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT, "version": VERSION, "keys": [k.as_json() for k in self.keys],
                "rotation": self.rotation, "exports": self.exports}
        body["checksum"] = _checksum(body)
        return (json.dumps(body, indent=1) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, path: Path | None = None) -> Keyring:
        where = f"key file {path}" if path else "key data"

        def damaged(why: str) -> EncryptionKeyError:
            return EncryptionKeyError(f"{where} is damaged ({why}): restore it from its export with "
                                      "`archiverd key import` (move the damaged file aside first)")

        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise damaged("not JSON") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise EncryptionKeyError(f"{where} is not an archiverd key file")
        if body.get("version") != VERSION:
            raise EncryptionKeyError(f"{where} has version {body.get('version')!r}; this archiverd reads "
                                     f"version {VERSION}")
        checksum = body.pop("checksum", None)
        if checksum != _checksum(body):
            raise damaged("checksum mismatch")
        keys = []
        for entry in body.get("keys") or []:
            try:
                key = bytes.fromhex(entry["key"])
                mk = MasterKey(entry["id"], key, str(entry["created_at"]), entry["state"], entry.get("retired_at"))
            except (KeyError, TypeError, ValueError):
                raise damaged("a malformed key entry") from None
            if len(key) != aead.KEY_BYTES or key_id(key) != mk.id or mk.state not in STATES:
                raise damaged(f"key entry {mk.id!r} does not match its id, size or state")
            keys.append(mk)
        if [k.state for k in keys].count(ACTIVE) != 1 or len({k.id for k in keys}) != len(keys):
            raise damaged("it must hold distinct keys, exactly one of them active")
        exports = body.get("exports") or []
        rotation = body.get("rotation")
        if not isinstance(exports, list) or not (rotation is None or isinstance(rotation, dict)):
            raise damaged("malformed exports or rotation")
        return cls(keys, path, rotation, exports)


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def load(path: Path) -> Keyring:
    """Read and check the key file; EncryptionKeyError (exit 3) says what is wrong and what to do."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise EncryptionKeyError(f"key file {path} does not exist: create one with `archiverd key init`, or "
                                 "restore it with `archiverd key import`") from None
    except OSError as exc:
        raise EncryptionKeyError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EncryptionKeyError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise EncryptionKeyError(f"key file {path} is accessible by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                                 f"a master key must be readable by its owner only: chmod 600 {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncryptionKeyError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    return Keyring.from_bytes(data, path)


def create(path: Path, ring: Keyring) -> None:
    """Write a new key file; never replaces an existing one."""
    if path.exists() or path.is_symlink():
        raise EncryptionKeyError(f"key file {path} already exists; archiverd never overwrites a key file "
                                 "(move it aside yourself if you really mean to)")
    ring.path = path
    try:
        durable.write_new(path, ring.to_bytes(), mode=KEY_FILE_MODE)
    except StorageError as exc:
        raise EncryptionKeyError(f"cannot create key file {path}: {exc}") from None


def save(ring: Keyring) -> None:
    """Replace the key file atomically (temp -> fsync -> rename -> fsync dir), same owner."""
    assert ring.path is not None
    durable.replace_synced(ring.path, ring.to_bytes(), mode=KEY_FILE_MODE, keep_owner=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the key file (rotate, export records, import)."""
    if not path.parent.is_dir():
        raise EncryptionKeyError(f"directory {path.parent} of the key file does not exist")
    with durable.exclusive_lock(path.with_name(f".{path.name}.lock"), KEY_FILE_MODE):
        yield


def key_file(cfg: Config) -> Path:
    """The configured key file; ConfigError when encryption is off."""
    if cfg.encryption_key_file is None:
        raise EncryptionKeyError("encryption is off: set ARCHIVERD_ENCRYPTION_KEY_FILE to the key file "
                                 "(`archiverd key init` creates it)")
    return cfg.encryption_key_file


def from_config(cfg: Config) -> Keyring | None:
    """The keyring when encryption is on, None when it is off."""
    return None if cfg.encryption_key_file is None else load(cfg.encryption_key_file)


def record_export(path: Path, kind: str, key_ids: list[str], to: str) -> None:
    """Note in the key file that these keys were exported (or imported from an export)."""
    with locked(path):
        ring = load(path)
        ring.exports.append({"at": now_iso(), "kind": kind, "key_ids": key_ids, "to": to})
        save(ring)


def export_warning(cfg: Config) -> str | None:
    """What `status` must say about the key, or None: encryption off, or every key exported and no
    rotation unfinished."""
    if cfg.encryption_key_file is None:
        return None
    try:
        ring = load(cfg.encryption_key_file)
    except EncryptionKeyError as exc:
        return str(exc)
    problems = []
    if cfg.archive_dir in cfg.encryption_key_file.parents:
        problems.append(f"the key file lies inside the archive directory it protects ({cfg.archive_dir}): "
                        "keep it elsewhere")
    missing = ring.unexported()
    if missing:
        problems.append(f"key {', '.join(missing)} has never been exported; losing the key file loses the "
                        "archive: run `archiverd key export --paper FILE` and keep the page safe")
    if ring.rotation:
        problems.append(f"the rotation to key {ring.rotation.get('to')} is unfinished: run `archiverd key "
                        "rotate` again to finish it")
    return "; ".join(problems) or None


def replace_states(ring: Keyring, old: str, new: str, *, retired_at: str | None = None) -> None:
    """Every key in state `old` goes to state `new`."""
    ring.keys = [dataclasses.replace(k, state=new, retired_at=retired_at if new == RETIRED else k.retired_at)
                 if k.state == old else k for k in ring.keys]


def import_keys(path: Path, keys: list[MasterKey], source: str) -> list[str]:
    """Put exported keys into the key file at `path`: create it if it does not exist, else add only
    the keys it lacks (an existing key is never changed or removed, and its active key stays
    active; an added key that was active elsewhere becomes `retired`). Returns the ids added; the
    import counts as an export of them (they came from one)."""
    if not keys or [k.state for k in keys].count(ACTIVE) != 1:
        raise EncryptionKeyError("an import needs a complete export: distinct keys, exactly one active")
    record = {"at": now_iso(), "kind": "import", "key_ids": [k.id for k in keys], "to": source}
    with locked(path):
        if not (path.exists() or path.is_symlink()):
            create(path, Keyring(list(keys), exports=[record]))
            return [k.id for k in keys]
        ring = load(path)
        held = {k.id for k in ring.keys}
        fresh = [dataclasses.replace(k, state=RETIRED) if k.state == ACTIVE else k for k in keys if k.id not in held]
        ring.keys.extend(fresh)
        ring.exports.append(record)
        save(ring)
    return [k.id for k in fresh]

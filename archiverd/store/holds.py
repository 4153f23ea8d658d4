"""Legal holds: what `prune` and `erase` must not remove, whatever retention or a person asks.

`archiverd-holds.json` in the collection's archive directory, mode 0600, changed only under an
exclusive lock (`.archiverd-holds.lock`) by a read-modify-write and an atomic replace, like the
state file; adding a hold first waits for a running prune or erase (their lock), which read the
holds when they began:

    {"format": "archiverd-holds", "version": 1, "next_id": 3,
     "holds": [{"id": 1, "kind": "days", "from": "2025-01-01", "to": "2025-03-31",
                "reason": "...", "created_at": "<ISO>", "by": {who}},
               {"id": 2, "kind": "document", "digests": ["sha256:<hex>", ...], "reason": "...", ...}]}

A `days` hold covers every segment of the days from..to (inclusive, UTC days as in the layout):
`prune` removes none of them and `erase` rewrites none of them (it refuses an erase with a copy
there: the rewrite would remove the held file). A
`document` hold covers one `_id`, named by digests only (store/audit.py: `id_digest`), one per
value the typed `_id` may mean (`24 hex digits` is an ObjectId or a string: both are held); it
blocks `erase` of that document and `prune` of every segment that holds it. A missing file is no
holds; a damaged one stops prune and erase (it might have held something).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import audit, durable, layout
from ..crypto.keyring import Keyring
from ..errors import ConfigError, StorageError

FILE_NAME = "archiverd-holds.json"
FORMAT = "archiverd-holds"
VERSION = 1
DAYS, DOCUMENT = "days", "document"
# held by prune and erase for their whole run (one removal at a time), and taken by `add`: a hold
# is in place only once no removal that looked at the holds before it can still remove a file
REMOVALS_LOCK = ".archiverd-prune.lock"


@dataclass(frozen=True)
class Hold:
    id: int
    kind: str
    reason: str
    created_at: str
    by: dict[str, Any]
    first: str | None = None  # days: "YYYY-MM-DD", inclusive
    last: str | None = None
    digests: list[str] = field(default_factory=list)  # document: one per value the `_id` may mean

    def as_json(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "reason": self.reason, "created_at": self.created_at, "by": self.by}
        return out | ({"from": self.first, "to": self.last} if self.kind == DAYS else {"digests": self.digests})

    def describe(self) -> str:
        what = (f"days {self.first} to {self.last}" if self.kind == DAYS
                else f"document {self.digests[0].rsplit(':', 1)[1][:12]}…")
        return f"hold {self.id} ({what}: {self.reason})"

    def covers_day(self, day: dt.date) -> bool:
        return self.kind == DAYS and self.first <= day.isoformat() <= self.last  # type: ignore[operator]


def parse_day(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a day as YYYY-MM-DD, not {text!r}") from None


class Holds:
    def __init__(self, collection_dir: Path) -> None:
        self.collection_dir = collection_dir
        self.path = collection_dir / FILE_NAME

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": FORMAT, "version": VERSION, "next_id": 1, "holds": []}
        except OSError as exc:
            raise StorageError(f"cannot read holds file {self.path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise self._damaged(str(exc)) from None
        if not (isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("holds"), list)
                and isinstance(data.get("next_id"), int)):
            raise self._damaged("not an archiverd holds file")
        if data.get("version") != VERSION:
            raise self._damaged(f"version {data.get('version')!r}, this archiverd reads {VERSION}")
        return data

    def _damaged(self, why: str) -> StorageError:
        return StorageError(f"holds file {self.path} is damaged ({why}): prune and erase refuse to run until it is "
                            "restored (it may have held something)")

    def list(self) -> list[Hold]:
        return [self._hold(h) for h in self._read()["holds"]]

    def _hold(self, h: Any) -> Hold:
        try:
            hold = Hold(int(h["id"]), h["kind"], str(h["reason"]), str(h["created_at"]), dict(h["by"]),
                        h.get("from"), h.get("to"), list(h.get("digests", [])))
        except (KeyError, TypeError, ValueError):
            raise self._damaged(f"malformed hold {h!r:.80}") from None
        if hold.kind not in (DAYS, DOCUMENT) or (hold.kind == DOCUMENT and not hold.digests) \
                or (hold.kind == DAYS and not (isinstance(hold.first, str) and isinstance(hold.last, str))):
            raise self._damaged(f"malformed hold {h!r:.80}")
        return hold

    def _change(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        durable.ensure_dir(self.collection_dir)
        with durable.exclusive_lock(self.collection_dir / ".archiverd-holds.lock"):
            data = self._read()
            result = change(data)
            durable.replace_synced(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
            return result

    def _add(self, hold_fields: dict[str, Any], who: dict[str, Any]) -> Hold:
        def add(data: dict[str, Any]) -> Hold:
            hold = Hold(id=data["next_id"], created_at=audit.now_iso(), by=who, **hold_fields)
            data["next_id"] += 1
            data["holds"].append(hold.as_json())
            return hold
        durable.ensure_dir(self.collection_dir)
        with durable.exclusive_lock(self.collection_dir / REMOVALS_LOCK):  # waits for a running prune or erase
            hold = self._change(add)
        audit.append(self.collection_dir, "hold.add", who, hold=_without_by(hold))
        return hold

    def add_days(self, first: dt.date, last: dt.date, reason: str, who: dict[str, Any]) -> Hold:
        if last < first:
            raise ConfigError(f"--to {last} is before --from {first}")
        return self._add({"kind": DAYS, "reason": _reason(reason), "first": first.isoformat(),
                          "last": last.isoformat()}, who)

    def add_document(self, identity_keys: list[str], reason: str, who: dict[str, Any], ring: Keyring | None) -> Hold:
        """A hold on the `_id` that `identity_keys` (format/identity.py) may name."""
        scheme = audit.digest_scheme(ring)
        digests = [audit.id_digest(k, scheme, ring) for k in identity_keys]
        return self._add({"kind": DOCUMENT, "reason": _reason(reason), "digests": digests}, who)

    def remove(self, hold_id: int, reason: str, who: dict[str, Any]) -> Hold:
        reason = _reason(reason)

        def remove(data: dict[str, Any]) -> Hold:
            for i, h in enumerate(data["holds"]):
                if h.get("id") == hold_id:
                    return self._hold(data["holds"].pop(i))
            raise ConfigError(f"there is no hold {hold_id} (see `archiverd hold list`)")
        removed = self._change(remove)
        audit.append(self.collection_dir, "hold.remove", who, hold=_without_by(removed), reason=reason)
        return removed


def days_holding(hold_list: list[Hold], segment: str) -> list[Hold]:
    """The day holds covering the day of this segment (a path relative to the collection); none for
    a segment in `out-of-range/`, which has no day (prune never removes it either)."""
    try:
        day = dt.date.fromisoformat(layout.day_of(segment))
    except ValueError:
        return []
    return [h for h in hold_list if h.covers_day(day)]


def _without_by(hold: Hold) -> dict[str, Any]:
    """A hold for the audit log, whose record names who acted already."""
    return {k: v for k, v in hold.as_json().items() if k != "by"}


def _matches(hold: Hold, identity_key: str, ring: Keyring | None) -> bool:
    return any(audit.id_digest(identity_key, audit.scheme_of(d), ring) == d for d in hold.digests)


def matching(holds: list[Hold], identity_key: str, ring: Keyring | None) -> list[Hold]:
    """Which of these document holds cover the `_id` with this identity key."""
    return [h for h in holds if h.kind == DOCUMENT and _matches(h, identity_key, ring)]


def _reason(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        raise ConfigError("--reason must say why (it goes to the audit log)")
    return text

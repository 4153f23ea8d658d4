"""The daemon's small persistent state for one collection (`archiverd-state.json` beside its segments).

It holds the change-stream resume token, the segments whose deletes may be unfinished (the intent
journal that crash recovery reads), each process's delete session, and what `status` reports: last
seal, last cycle, last error, segments set aside. Every change is a read-modify-write of just that
key under an exclusive lock (`.archiverd-state.lock`), written atomically: an instance paused for
minutes and resumed cannot overwrite what another instance recorded meanwhile.

Several processes share one state file (and, across hosts, the file system's locks: NFSv4, CephFS
and local file systems provide them). The journal is one list: each entry names its segment and the
process that wrote it, so a process removes only its own entries, and the holder of a day's lease
recovers every entry of that day, whoever wrote it (the writer has lost the day: it died, or paused
past its lease). Delete sessions are recorded per process. A missing file is an empty state.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import faults
from ..errors import StorageError
from ..store import durable


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except OSError as exc:
            raise StorageError(f"cannot read state file {self.path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise StorageError(f"state file {self.path} is damaged ({exc}); move it aside to start afresh") from None
        if not isinstance(data, dict):
            raise StorageError(f"state file {self.path} is damaged (not a JSON object); move it aside")
        data.setdefault("pending", [])
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        durable.ensure_dir(self.path.parent)
        with durable.exclusive_lock(self.path.with_name(".archiverd-state.lock")):
            yield

    def _change(self, what: str, change: Callable[[dict[str, Any]], None]) -> None:
        with self._locked():
            self.data = self._read()
            change(self.data)
            faults.hit(f"state-save:{what}")
            durable.replace_synced(self.path, (json.dumps(self.data, indent=1, sort_keys=True) + "\n").encode())

    def update(self, **values: Any) -> None:
        """Set whole keys (last writer wins: for what `status` reports)."""
        self._change(",".join(sorted(values)), lambda data: data.update(values))

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def reload(self) -> None:
        self.data = self._read()

    @property
    def pending(self) -> list[str]:
        """Segments (paths relative to the collection directory) sealed or being sealed whose
        deletes have not been confirmed, by any process."""
        return list(dict.fromkeys(segment for segment, _ in self.journal()))

    def journal(self) -> list[tuple[str, str | None]]:
        """The intent journal as (segment, owner) pairs; owner None for an entry written before
        entries named their process."""
        return [(e, None) if isinstance(e, str) else (e["segment"], e.get("owner")) for e in self.data["pending"]]

    def add_pending(self, relpath: str, owner: str | None = None) -> None:
        entry: str | dict[str, str] = relpath if owner is None else {"segment": relpath, "owner": owner}

        def add(data: dict[str, Any]) -> None:
            if entry not in data["pending"]:
                data["pending"].append(entry)
        self._change("pending", add)

    def remove_pending(self, relpath: str, owner: str | None = None) -> None:
        """Drop `owner`'s entry for the segment, or (owner None) every entry for it: its deletes
        are confirmed, whoever journaled it."""
        def keep(entry: str | dict[str, str]) -> bool:
            segment, by = (entry, None) if isinstance(entry, str) else (entry["segment"], entry.get("owner"))
            return segment != relpath or (owner is not None and by != owner)
        self._change("pending", lambda data: data.update(pending=[e for e in data["pending"] if keep(e)]))

    def set_aside(self, relpath: str, info: dict[str, Any]) -> None:
        """Record a segment set aside (nothing is ever deleted against it), keeping every other."""
        def add(data: dict[str, Any]) -> None:
            data["set_aside"] = {**(data.get("set_aside") or {}), relpath: info}
        self._change("set_aside", add)

    def sessions(self) -> dict[str, Any]:
        """Each process's delete session id (JSON), by owner; the one a single-instance version
        recorded under `delete_session` included."""
        legacy = self.data.get("delete_session") or {}
        return {**({legacy["owner"]: legacy["id"]} if legacy.get("owner") else {}),
                **(self.data.get("delete_sessions") or {})}

    def record_session(self, owner: str, session_id: Any) -> None:
        def add(data: dict[str, Any]) -> None:
            data["delete_sessions"] = {**(data.get("delete_sessions") or {}), owner: session_id}
        self._change("delete_sessions", add)

    def forget_session(self, owner: str) -> None:
        def drop(data: dict[str, Any]) -> None:
            data["delete_sessions"] = {k: v for k, v in (data.get("delete_sessions") or {}).items() if k != owner}
            if (data.get("delete_session") or {}).get("owner") == owner:
                data["delete_session"] = None
        self._change("delete_sessions", drop)

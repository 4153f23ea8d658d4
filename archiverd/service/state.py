"""The daemon's small persistent state for one collection (`archiverd-state.json` beside its segments).

It holds the change-stream resume token, the segments whose deletes may be unfinished (the intent
journal that crash recovery reads), and what `status` reports: last seal, last cycle, last error,
segments set aside. Every change is a read-modify-write of just that key under an exclusive lock
(`.archiverd-state.lock`), written atomically: an instance paused for minutes and resumed cannot
overwrite what another instance recorded meanwhile. A missing file is an empty state.
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
        self._change(",".join(sorted(values)), lambda data: data.update(values))

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def reload(self) -> None:
        self.data = self._read()

    @property
    def pending(self) -> list[str]:
        """Segments (paths relative to the collection directory) sealed or being sealed whose
        deletes have not been confirmed."""
        return list(self.data["pending"])

    def add_pending(self, relpath: str) -> None:
        def add(data: dict[str, Any]) -> None:
            if relpath not in data["pending"]:
                data["pending"].append(relpath)
        self._change("pending", add)

    def remove_pending(self, relpath: str) -> None:
        self._change("pending", lambda data: data.update(pending=[p for p in data["pending"] if p != relpath]))

"""The daemon's small persistent state for one collection (`archiverd-state.json` beside its segments).

It holds the change-stream resume token, the segments whose deletes may be unfinished (the intent
journal that crash recovery reads), and what `status` reports: last seal, last cycle, last error.
Written atomically on every change; a missing file is an empty state.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..store import durable
from .. import faults
from ..errors import StorageError


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}
        except OSError as exc:
            raise StorageError(f"cannot read state file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise StorageError(f"state file {path} is damaged ({exc}); move it aside to start afresh") from None
        self.data.setdefault("pending", [])

    def save(self, what: str = "pending") -> None:
        durable.ensure_dir(self.path.parent)
        faults.hit(f"state-save:{what}")
        durable.replace_synced(self.path, (json.dumps(self.data, indent=1, sort_keys=True) + "\n").encode())

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.save(",".join(sorted(values)))

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def pending(self) -> list[str]:
        """Segments (paths relative to the collection directory) sealed or being sealed whose
        deletes have not been confirmed."""
        return list(self.data["pending"])

    def add_pending(self, relpath: str) -> None:
        if relpath not in self.data["pending"]:
            self.data["pending"].append(relpath)
        self.save()

    def remove_pending(self, relpath: str) -> None:
        self.data["pending"] = [p for p in self.data["pending"] if p != relpath]
        self.save()

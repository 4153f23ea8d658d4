"""Error classes with stable process exit codes (scripts and systemd units rely on these numbers).

| code | class            | meaning                                                        |
|------|------------------|----------------------------------------------------------------|
| 0    | --               | success                                                        |
| 1    | --               | finished with warnings (something was kept back; see the log)  |
| 2    | ArchiverdError   | any other error                                                |
| 2    | WorkerError      | a worker process of the CPU stages died (killed, out of        |
|      |                  | memory): the segment in progress is abandoned                  |
| 3    | ConfigError      | bad configuration or command-line arguments; a database or     |
|      |                  | collection that does not exist                                 |
| 3    | QueryError       | a filter, projection, sort or `_id` argument that is not valid |
| 3    | EncryptionKey-   | no key file, a damaged or unprotected one, or not the key a    |
|      | Error            | segment was sealed with (the wrong key)                        |
| 4    | SegmentError     | a segment or its index is missing, foreign, damaged or differs |
| 4    | CryptoError      | authentication failed under the right key: damage or tampering |
| 5    | StorageError     | the archive or log directory cannot be written (missing,       |
|      |                  | read-only, full, ...)                                          |
| 6    | DatabaseError    | MongoDB unreachable, refused, or answered with an error        |
| 7    | RemovalRefused   | `prune` or `erase` could not remove every version of an object |
|      |                  | from the object store (no permission to delete versions, an    |
|      |                  | object lock): what it removes is not gone; nothing claims so   |

README.md has the same table with examples; keep both complete.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_WARNING = 1


class ArchiverdError(Exception):
    """Base class: a clear, user-facing message and an exit code."""

    exit_code = 2


class WorkerError(ArchiverdError):
    """A worker process died while the segment in progress needed it; nothing of that segment is
    published or deleted, and the next segment starts new workers."""


class ConfigError(ArchiverdError):
    exit_code = 3


class QueryError(ConfigError):
    """A find filter, projection, sort or `_id` argument MongoDB would reject (or archiverd does not support)."""


class SegmentError(ArchiverdError):
    """A segment cannot be trusted; `where` names the file and position when known."""

    exit_code = 4

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class StorageError(ArchiverdError):
    exit_code = 5


class DatabaseError(ArchiverdError):
    exit_code = 6


class RemovalRefused(StorageError):
    """The object store refused to remove a version of an object that `prune` or `erase` removes
    (credentials without s3:DeleteObjectVersion or s3:ListBucketVersions, an object lock): its bytes
    may still be readable there, so the removal is not reported done (its audit record stays
    unended; a rerun with credentials that may delete versions finishes it)."""

    exit_code = 7


class EncryptionKeyError(ConfigError):
    """Encryption needs a key that is not at hand: no key file, a damaged or unprotected one, or a
    segment sealed under a key id the key file does not hold (the wrong key file)."""


class CryptoError(SegmentError):
    """Authentication failed under the right key: the ciphertext, its nonce or its associated data
    changed since it was sealed (damage or tampering). Never decoded into a wrong document."""

"""archiverd: moves expired MongoDB documents into verified, lossless QR-video segments.

The public names are imported when first used (PEP 562), not with the package: a worker process
(format/workers.py) imports only the format modules its tasks need, not the query layer, the store
and their dependencies (~20 MB and ~0.2 s of start-up per worker).
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import ArchiverdError, ConfigError, DatabaseError, SegmentError, StorageError

if TYPE_CHECKING:
    from .api import decode_video_to_experiences, encode_experiences_to_video
    from .format.reader import ScanReport, SegmentReader, verify_video
    from .format.writer import SegmentWriter, write_segment
    from .query.archive import Archive, Scored

__version__ = "0.2.0"
_LAZY = {
    "decode_video_to_experiences": ".api", "encode_experiences_to_video": ".api",
    "ScanReport": ".format.reader", "SegmentReader": ".format.reader", "verify_video": ".format.reader",
    "SegmentWriter": ".format.writer", "write_segment": ".format.writer",
    "Archive": ".query.archive", "Scored": ".query.archive",
}
__all__ = [
    "Archive", "ArchiverdError", "Scored", "ConfigError", "DatabaseError", "SegmentError", "StorageError", "ScanReport",
    "SegmentReader", "SegmentWriter", "decode_video_to_experiences", "encode_experiences_to_video",
    "verify_video", "write_segment",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

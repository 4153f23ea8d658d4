"""archiverd: moves expired MongoDB documents into verified, lossless QR-video segments."""
from .api import decode_video_to_experiences, encode_experiences_to_video
from .errors import ArchiverdError, ConfigError, DatabaseError, SegmentError, StorageError
from .format.reader import ScanReport, SegmentReader, verify_video
from .format.writer import SegmentWriter, write_segment
from .query.archive import Archive, Scored

__version__ = "0.2.0"
__all__ = [
    "Archive", "ArchiverdError", "Scored", "ConfigError", "DatabaseError", "SegmentError", "StorageError", "ScanReport",
    "SegmentReader", "SegmentWriter", "decode_video_to_experiences", "encode_experiences_to_video",
    "verify_video", "write_segment",
]

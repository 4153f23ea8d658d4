"""archiverd: moves expired MongoDB documents into verified, lossless QR-video segments."""
from .api import decode_video_to_experiences, encode_experiences_to_video
from .errors import ArchiverdError, ConfigError, DatabaseError, SegmentError, StorageError
from .format.segment import SegmentReader, SegmentWriter, VerifyReport, verify_video, write_segment

__version__ = "0.1.0"
__all__ = [
    "ArchiverdError", "ConfigError", "DatabaseError", "SegmentError", "StorageError", "SegmentReader",
    "SegmentWriter", "VerifyReport", "decode_video_to_experiences", "encode_experiences_to_video",
    "verify_video", "write_segment",
]

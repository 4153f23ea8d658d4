"""The in-memory API the first user asked for: a list of documents <-> the bytes of one video."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable


from .format.documents import decoded
from .format.reader import stream_documents
from .format.video import BytesSource
from .format.writer import SegmentWriter


def encode_experiences_to_video(experiences: Iterable[Any]) -> bytes:
    """Encode documents (dicts, RawBSONDocuments or BSON bytes) into one FFV1/Matroska video.

    The video is self-describing: `decode_video_to_experiences` needs nothing else (the daemon also
    writes a sidecar index for random access). It carries Reed–Solomon parity frames, so it still
    decodes after a few damaged frames.
    """
    with tempfile.TemporaryDirectory(prefix="archiverd-") as tmp:
        with SegmentWriter(Path(tmp) / "segment.mkv", vectors=False) as writer:
            for doc in experiences:
                writer.append(doc)
            writer.finish()
            return writer.video_bytes()


def decode_video_to_experiences(data: bytes) -> list[dict[str, Any]]:
    """Decode a video made by `encode_experiences_to_video` into documents, in the same order.

    Damage within what the parity repairs is repaired; anything more raises SegmentError naming
    the frames and blocks that are lost. A document holding a string that is not valid UTF-8 (MongoDB
    keeps what a client sent) cannot become a dict of str: ArchiverdError names it, and
    `archiverd.SegmentReader` gives its exact bytes.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected the video as bytes, got {type(data).__name__}")
    return [decoded(raw, f"document {n}") for n, raw in enumerate(stream_documents(BytesSource(bytes(data)), "video"))]

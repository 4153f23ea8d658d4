"""The in-memory API the first user asked for: a list of documents <-> the bytes of one video."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import bson

from .format.segment import DECODE_OPTIONS, SegmentWriter, stream_documents


def encode_experiences_to_video(experiences: Iterable[Any]) -> bytes:
    """Encode documents (dicts, RawBSONDocuments or BSON bytes) into one FFV1/Matroska video.

    The video is self-describing: `decode_video_to_experiences` needs nothing else. (The daemon also
    writes a sidecar index for random access; see `archiverd.segment`.)
    """
    with tempfile.TemporaryDirectory(prefix="archiverd-") as tmp:
        writer = SegmentWriter(Path(tmp) / "segment.mkv")
        with writer:
            for doc in experiences:
                writer.append(doc)
            writer.finish()
        return writer.tmp.read_bytes()


def decode_video_to_experiences(data: bytes) -> list[dict[str, Any]]:
    """Decode a video made by `encode_experiences_to_video` into documents, in the same order.

    Raises SegmentError (naming the frame or block) if the video is not complete and intact.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected the video as bytes, got {type(data).__name__}")
    with tempfile.TemporaryDirectory(prefix="archiverd-") as tmp:
        path = Path(tmp) / "segment.mkv"
        path.write_bytes(data)
        return [bson.decode(raw, DECODE_OPTIONS) for raw in stream_documents(path)]

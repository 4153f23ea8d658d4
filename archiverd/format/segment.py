"""A segment: one video of QR frames plus its sidecar index. Writing, sealing, reading, verifying.

Where a document goes (docs/ARCHITECTURE.md has the picture):
append() -> block (blockcodec) -> record stream (records) -> frames (frame, qr) -> video (video)
seal(): finish video -> fsync -> decode it all back and compare -> index -> fsync -> publish video,
then index (the commit point) -> fsync directory.
No MongoDB here: the daemon hands in BSON bytes and gets back a sealed, verified segment.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

from . import blockcodec, bsonpack, frame, index, qr, records, video
from ..store import durable
from .. import faults
from ..errors import SegmentError

DEFAULT_BLOCK_BYTES = 4 << 20
MAX_DOCUMENT_BYTES = 16 << 20  # MongoDB's limit
_CHUNK_FRAMES = 8 * video.GOP  # unit of parallel decoding, a whole number of GOPs
_MAX_LISTED = 50
# Dates come back timezone-aware in UTC; dates outside Python's range come back as DatetimeMS.
DECODE_OPTIONS: CodecOptions = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def to_bson(document: Any) -> bytes:
    """The exact BSON bytes of a document given as bytes, RawBSONDocument or mapping."""
    if isinstance(document, RawBSONDocument):
        raw = bytes(document.raw)
    elif isinstance(document, (bytes, bytearray, memoryview)):
        raw = bytes(document)
    elif isinstance(document, Mapping):
        try:
            raw = bson.encode(document)
        except (bson.errors.InvalidDocument, TypeError, OverflowError) as exc:
            raise ValueError(f"document cannot be encoded as BSON: {exc}") from None
    else:
        raise TypeError(f"expected a dict, RawBSONDocument or BSON bytes, got {type(document).__name__}")
    if len(raw) < 5 or int.from_bytes(raw[:4], "little") != len(raw) or raw[-1] != 0:
        raise ValueError("not a BSON document (length prefix or terminator is wrong)")
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"document of {len(raw)} bytes exceeds MongoDB's {MAX_DOCUMENT_BYTES}-byte limit")
    return raw


def document_id(raw: bytes) -> Any:
    """The `_id` of a BSON document as canonical Extended JSON, or None if it has none."""
    element = bsonpack.top_level_element(raw, b"_id")
    if element is None:
        return None
    return index.id_json(bson.decode(element, DECODE_OPTIONS)["_id"])


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class SegmentWriter:
    """Streams documents into a new segment with bounded memory (one block at a time).

    Frames are written to `.<name>.tmp` beside `path`; nothing appears under the final names until
    `seal()`. Use as a context manager so that an exception removes the temporary file.
    """

    def __init__(self, path: Path, *, source: Mapping[str, Any] | None = None,
                 block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.segment_id = os.urandom(8)
        self.created_at = _utc_now()
        self.source = dict(source) if source else None
        self._block_target = block_bytes
        self._block: list[bytes] = []
        self._block_size = 0
        self._blocks: list[dict[str, Any]] = []
        self._docs: list[dict[str, Any]] = []
        self._digest = hashlib.sha256()
        self._out = bytearray()
        self._stream_length = 0
        self._seq = 0
        self._closed = False
        self._video = video.VideoWriter(self.tmp)
        header = {"format_version": index.FORMAT_VERSION, "segment_id": self.segment_id.hex(),
                  "created_at": self.created_at, "source": self.source}
        self._emit(records.pack(records.HEADER, json.dumps(header, sort_keys=True).encode()))

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()

    @property
    def documents(self) -> int:
        return len(self._docs)

    def append(self, document: Any, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add one document; `meta` (JSON values) is stored with its index entry."""
        raw = to_bson(document)
        entry: dict[str, Any] = {"_id": document_id(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                                 "bytes": len(raw), "block": len(self._blocks)}
        if meta:
            entry.update(meta)
        self._docs.append(entry)
        self._digest.update(raw)
        self._block.append(raw)
        self._block_size += len(raw)
        if self._block_size >= self._block_target:
            self._flush_block()
        return entry

    def _flush_block(self) -> None:
        if not self._block:
            return
        number = len(self._blocks)
        record = records.pack(records.BLOCK, records.BLOCK_NUMBER.pack(number) + blockcodec.encode(self._block))
        start = self._stream_length
        self._emit(record)
        frames = [start // frame.DATA_PER_FRAME, (start + len(record) - 1) // frame.DATA_PER_FRAME]
        self._blocks.append({"block": number, "offset": start, "length": len(record), "frames": frames,
                             "documents": len(self._block)})
        for entry in self._docs[len(self._docs) - len(self._block):]:
            entry["frames"] = frames
        self._block, self._block_size = [], 0

    def _emit(self, data: bytes) -> None:
        self._out += data
        self._stream_length += len(data)
        # keep at least one byte back so that the final frame (flagged last) is never empty
        while len(self._out) > frame.DATA_PER_FRAME:
            self._write_frame(bytes(self._out[:frame.DATA_PER_FRAME]), last=False)
            del self._out[:frame.DATA_PER_FRAME]

    def _write_frame(self, data: bytes, last: bool) -> None:
        payload = frame.pack(frame.Frame(self.segment_id, self._seq, last, data))
        self._video.write(qr.encode(payload))
        self._seq += 1

    def finish(self) -> dict[str, Any]:
        """Close the video (still under its temporary name) and return the index for it."""
        self._flush_block()
        self._emit(records.pack(records.END, records.END_BODY.pack(len(self._blocks), len(self._docs),
                                                                    self._digest.digest())))
        self._write_frame(bytes(self._out), last=True)
        self._out.clear()
        self._video.close()
        self._closed = True
        return {
            "format": index.FORMAT, "format_version": index.FORMAT_VERSION,
            "segment_id": self.segment_id.hex(), "created_at": self.created_at, "source": self.source,
            "documents": len(self._docs), "frames": self._seq, "blocks": self._blocks,
            "stream_bytes": self._stream_length, "content_sha256": self._digest.hexdigest(),
            "video": {"file": self.path.name, "bytes": self.tmp.stat().st_size, "sha256": sha256_file(self.tmp),
                      "container": video.CONTAINER, "codec": video.CODEC, "pix_fmt": video.PIX_FMT,
                      "width": qr.SIZE, "height": qr.SIZE, "gop": video.GOP, "options": video.OPTIONS},
            "qr": {"version": 40, "ec_level": "L", "mask": 0, "mode": "byte", "module_px": 1, "quiet_zone": 0,
                   "payload_bytes": qr.CAPACITY, "frame_data_bytes": frame.DATA_PER_FRAME},
            "compression": {"codec": "bsonpack+bzip2+zstd", "bzip2_level": blockcodec.BZIP2_LEVEL,
                            "zstd_level": blockcodec.ZSTD_LEVEL, "block_bytes": self._block_target},
            "docs": self._docs,
        }

    def seal(self, *, verify: bool = True) -> dict[str, Any]:
        """Finish, sync, decode everything back and compare, then publish video and index.

        Returns the index. On any failure the temporary files are removed and nothing is published.
        """
        def step(name: str) -> None:
            faults.hit(f"seal:{name}")

        try:
            idx = self.finish()
            step("video-written")
            durable.fsync_file(self.tmp)
            step("video-synced")
            if verify:
                report = verify_video(self.tmp, idx)
                if not report.ok:
                    raise SegmentError("read-back verification failed: " + "; ".join(report.problems),
                                       str(self.path))
            step("verified")
            index_tmp = self.tmp.with_name(self.tmp.name + ".index")
            durable.write_synced(index_tmp, index.dumps(idx))
            step("index-written")
            durable.publish(self.tmp, self.path)
            step("video-published")
            durable.publish(index_tmp, index.path_for(self.path))  # commit point
            step("index-published")
            durable.fsync_dir(self.path.parent)
            return idx
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written so far (temporary files only; sealed files are never touched)."""
        if not self._closed:
            self._video.abort()
            self._closed = True
        for tmp in (self.tmp, self.tmp.with_name(self.tmp.name + ".index")):
            tmp.unlink(missing_ok=True)


# --- reading -------------------------------------------------------------------------------------

DecodedFrame = tuple[int, "frame.Frame | None", bool]


def _decode_range(path: Path, start: int, stop: int | None, independent: bool) -> list[DecodedFrame]:
    out: list[DecodedFrame] = []
    for number, image in video.read_frames(path, start, stop):
        decoded, repaired = frame.from_image(image)
        if independent and decoded is not None and not repaired:
            # a standard reader must agree with the fast path on every frame
            if qr.read_robust(image) != frame.pack(decoded):
                decoded = None
        out.append((number, decoded, repaired))
    return out


def _frames(path: Path, start: int = 0, stop: int | None = None, *, independent: bool = False,
            workers: int | None = None) -> Iterator[DecodedFrame]:
    """Decoded frames in order. With a known end, GOP-aligned chunks are decoded on worker threads
    (PyAV and numpy release the GIL), a bounded number ahead of the consumer."""
    workers = workers or min(4, os.cpu_count() or 1)
    if stop is None or workers == 1 or stop - start <= _CHUNK_FRAMES:
        yield from _decode_range(path, start, stop, independent)
        return
    bounds = list(range(start, stop, _CHUNK_FRAMES))
    with ThreadPoolExecutor(workers, thread_name_prefix="verify") as pool:
        pending: list[Future[list[DecodedFrame]]] = []
        for i, a in enumerate(bounds):
            # the last chunk runs to the end of the file so that extra frames are seen too
            b = None if i == len(bounds) - 1 else a + _CHUNK_FRAMES
            pending.append(pool.submit(_decode_range, path, a, b, independent))
            if len(pending) > 2 * workers:
                yield from pending.pop(0).result()
        for fut in pending:
            yield from fut.result()


@dataclass
class VerifyReport:
    """Outcome of `verify`: ok only if every check passed. Problems name what and where."""

    path: str
    ok: bool = False
    documents: int = 0
    frames: int = 0
    blocks: int = 0
    repaired_frames: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        if len(self.problems) < _MAX_LISTED:
            self.problems.append(message)
        elif len(self.problems) == _MAX_LISTED:
            self.problems.append("(further problems not listed)")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Stream:
    """Checks frames in order and turns them into documents. Every deviation is reported through
    `fail`; after the first one the content can no longer be trusted and is not decoded further."""

    def __init__(self, fail: Any, segment_id: str | None) -> None:
        self.fail = fail
        self.segment_id = segment_id
        self.parser = records.Parser()
        self.position = 0
        self.content_ok = True
        self.ended = False  # saw the frame flagged last
        self.header: dict[str, Any] | None = None
        self.end: tuple[int, int, bytes] | None = None
        self.blocks = 0
        self.digest = hashlib.sha256()
        self.repaired = 0
        self.foreign: bytes | None = None

    def _stop(self, message: str) -> None:
        self.fail(message)
        self.content_ok = False

    def feed(self, number: int, decoded: frame.Frame | None, repaired: bool) -> Iterator[tuple[int, bytes]]:
        """Yield (block number, document) for documents completed by this frame."""
        p = self.position
        self.position += 1
        self.repaired += repaired
        if self.ended:
            self._stop(f"frame {p}: extra frame after the frame flagged last")
            return
        if number != p:
            self._stop(f"frame {p}: video frame numbering jumps to {number} (frames missing)")
            return
        if decoded is None:
            self._stop(f"frame {p}: unreadable (QR does not decode, or its CRC fails)")
            return
        if self.segment_id is None:
            self.segment_id = decoded.segment_id.hex()
        if decoded.segment_id.hex() != self.segment_id:
            if decoded.segment_id != self.foreign:  # a swapped index would otherwise flag every frame
                self.foreign = decoded.segment_id
                self._stop(f"frame {p}: belongs to segment {decoded.segment_id.hex()}, not {self.segment_id}")
            return
        if decoded.seq != p:
            kind = "duplicated or out of order" if decoded.seq < p else f"frames {p}..{decoded.seq - 1} missing"
            self._stop(f"frame {p}: carries sequence number {decoded.seq} ({kind})")
            return
        self.ended = decoded.last
        if not self.content_ok:
            return
        try:
            for kind, body, offset in self.parser.feed(decoded.data):
                yield from self._record(kind, body, offset)
        except SegmentError as exc:
            self._stop(f"frame {p}: {exc}")

    def _record(self, kind: bytes, body: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
        if self.header is None:
            if kind != records.HEADER:
                raise SegmentError(f"stream offset {offset}: stream does not start with a header")
            try:
                self.header = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise SegmentError("segment header is not valid JSON") from None
            return
        if self.end is not None:
            raise SegmentError(f"stream offset {offset}: data after the end record")
        if kind == records.BLOCK:
            (number,) = records.BLOCK_NUMBER.unpack_from(body)
            if number != self.blocks:
                raise SegmentError(f"stream offset {offset}: block {number} where block {self.blocks} belongs")
            try:
                docs = blockcodec.decode(body[records.BLOCK_NUMBER.size:])
            except SegmentError as exc:
                raise SegmentError(f"block {number}: {exc}") from None
            self.blocks += 1
            for doc in docs:
                self.digest.update(doc)
                yield number, doc
        elif kind == records.END:
            self.end = records.END_BODY.unpack(body)
        else:
            raise SegmentError(f"stream offset {offset}: unexpected {kind.decode()} record")

    def close(self, documents: int) -> None:
        """Checks that need the whole stream."""
        if not self.content_ok:
            return
        if not self.ended:
            self._stop(f"video ends after {self.position} frames without the frame flagged last (truncated)")
        elif self.end is None or self.parser.pending:
            self._stop("record stream is incomplete (no end record)")
        elif self.end[:2] != (self.blocks, documents):
            self._stop(f"end record says {self.end[0]} blocks / {self.end[1]} documents, "
                       f"stream holds {self.blocks} / {documents}")
        elif self.end[2] != self.digest.digest():
            self._stop("content digest in the end record does not match the documents")


def stream_documents(path: Path, *, workers: int | None = None) -> Iterator[bytes]:
    """Every document of a video, in order, from the stream alone (no index); raises on any problem."""
    def fail(message: str) -> None:
        raise SegmentError(message, str(path))

    stream = _Stream(fail, None)
    count = 0
    for number, decoded, repaired in _frames(path, workers=1 if workers is None else workers):
        for _, doc in stream.feed(number, decoded, repaired):
            count += 1
            yield doc
    if stream.position == 0:
        fail("video has no frames")
    stream.close(count)


def verify_video(path: Path, idx: Mapping[str, Any] | None, *, independent: bool = False,
                 workers: int | None = None) -> VerifyReport:
    """Decode every frame and check it against the index (when given): phases are
    1. file vs index (size, SHA-256), 2. frames (QR, CRC, segment id, sequence, last flag),
    3. records and blocks (structure, block CRCs, end record, content digest),
    4. every document vs its index entry (order, length, SHA-256, _id, block, frames)."""
    started = time.perf_counter()
    report = VerifyReport(str(path))
    where = path.name
    if idx is not None:
        vid = idx["video"]
        try:
            size = path.stat().st_size
        except OSError as exc:
            report.problem(f"{where}: cannot read video ({exc.strerror})")
            return report
        if size != vid.get("bytes"):
            report.problem(f"{where}: video is {size} bytes, index says {vid.get('bytes')}")
        elif sha256_file(path) != vid.get("sha256"):
            report.problem(f"{where}: video SHA-256 differs from the index (file changed or index swapped)")
    stream = _Stream(lambda m: report.problem(f"{where}: {m}"), idx["segment_id"] if idx else None)
    docs = idx["docs"] if idx else None
    count = 0
    try:
        for number, decoded, repaired in _frames(path, 0, idx["frames"] if idx else None,
                                                 independent=independent, workers=workers):
            for block, doc in stream.feed(number, decoded, repaired):
                if docs is not None:
                    _check_document(stream, docs, count, block, doc)
                count += 1
    except SegmentError as exc:
        report.problem(str(exc))
        stream.content_ok = False
    if stream.position == 0 and not report.problems:
        report.problem(f"{where}: video has no frames")
    stream.close(count)
    if idx is not None and stream.content_ok:
        if count != idx["documents"]:
            report.problem(f"{where}: stream holds {count} documents, index lists {idx['documents']}")
        if stream.position != idx["frames"]:
            report.problem(f"{where}: video has {stream.position} frames, index says {idx['frames']}")
        if stream.header and stream.header.get("segment_id") != idx["segment_id"]:
            report.problem(f"{where}: segment header names segment {stream.header.get('segment_id')}")
    if stream.repaired:
        report.warnings.append(f"{stream.repaired} frames needed QR error correction")
    report.documents, report.frames, report.blocks = count, stream.position, stream.blocks
    report.repaired_frames = stream.repaired
    report.ok = not report.problems
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _check_document(stream: _Stream, docs: list[dict[str, Any]], i: int, block: int, raw: bytes) -> None:
    if i >= len(docs):
        stream._stop(f"document {i}: not in the index")
        return
    entry = docs[i]
    if len(raw) != entry["bytes"] or hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        stream.fail(f"document {i} (_id {json.dumps(entry.get('_id'))}): bytes differ from the index checksum")
    elif document_id(raw) != entry.get("_id"):
        stream.fail(f"document {i}: _id differs from the index")
    elif entry["block"] != block:
        stream.fail(f"document {i}: found in block {block}, index says {entry['block']}")


class SegmentReader:
    """Read a sealed segment: iterate its documents, fetch one by `_id`, or verify it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SegmentError("no such segment file", str(self.path))
        self.index = index.load(index.path_for(self.path))

    def __iter__(self) -> Iterator[bytes]:
        """Every document's exact BSON bytes, in the order written, each checked against the index."""
        docs = self.index["docs"]
        for i, raw in enumerate(stream_documents(self.path, workers=1)):
            if i >= len(docs) or hashlib.sha256(raw).hexdigest() != docs[i]["sha256"]:
                raise SegmentError(f"document {i} does not match the index checksum", str(self.path))
            yield raw

    def entries(self) -> list[dict[str, Any]]:
        return self.index["docs"]

    def get(self, _id: Any) -> bytes:
        """One document by `_id` (a BSON value), decoding only the frames of its block."""
        key = index.key_of(_id)
        found = [i for i, e in enumerate(self.index["docs"]) if index.id_key(e.get("_id")) == key]
        if not found:
            raise KeyError(_id)
        i = found[-1]  # the newest copy if a document was archived more than once
        entry = self.index["docs"][i]
        block = self.index["blocks"][entry["block"]]
        first, last = block["frames"]
        data = bytearray()
        for p, (number, decoded, _) in enumerate(_frames(self.path, first, last + 1, workers=1), start=first):
            if number != p or decoded is None or decoded.seq != p or decoded.segment_id.hex() != self.index["segment_id"]:
                raise SegmentError(f"frame {p} is unreadable or out of place", str(self.path))
            data += decoded.data
        start = block["offset"] - first * frame.DATA_PER_FRAME
        parser = records.Parser()
        recs = list(parser.feed(bytes(data[start:start + block["length"]])))
        if len(recs) != 1 or recs[0][0] != records.BLOCK:
            raise SegmentError(f"block {entry['block']} is not where the index says", str(self.path))
        docs = blockcodec.decode(recs[0][1][records.BLOCK_NUMBER.size:])
        first_doc = sum(b["documents"] for b in self.index["blocks"][:entry["block"]])
        raw = docs[i - first_doc]
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            raise SegmentError(f"document {i} does not match the index checksum", str(self.path))
        return raw

    def verify(self, *, independent: bool = False, workers: int | None = None) -> VerifyReport:
        return verify_video(self.path, self.index, independent=independent, workers=workers)


def write_segment(path: Path, documents: Iterable[Any], **kwargs: Any) -> dict[str, Any]:
    """Write and seal a whole segment from an iterable of documents; returns the index."""
    with SegmentWriter(path, **kwargs) as writer:
        for doc in documents:
            writer.append(doc)
        return writer.seal()

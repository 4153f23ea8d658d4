"""Writing a segment: documents -> blocks -> record stream -> data and parity frames -> GOPs -> video.

Where a document goes (docs/ARCHITECTURE.md has the picture):
append() -> block (blockcodec) -> BLCK record (records) -> 2,925-byte frame bodies -> frame records
with Reed–Solomon parity frames per stripe (frame, parity) -> QR symbols and FFV1 GOPs (video, on
worker processes: workers.py) -> Matroska clusters (mkv) in an anonymous temporary file.
seal(): finish -> fsync -> hash and decode everything back through the same descriptor and compare
-> index -> fsync -> publish video, then index (the commit point) -> fsync directory.
No MongoDB here: the daemon hands in BSON bytes and gets back a sealed, verified segment.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import blockcodec, frame, index, mkv, parity, qr, records, sidecar, video, workers as cpu
from . import encryption as enc
from ..crypto import aead, envelope
from ..crypto.keyring import MasterKey
from .documents import id_entry, to_bson
from .. import faults
from ..errors import SegmentError
from ..store import durable

DEFAULT_BLOCK_BYTES = 4 << 20
GOPS_PER_TASK = 8  # GOPs a worker encodes per task: 16 frames, 47 KB in (the pipes' overhead is <1 %)
# publishes a verified segment elsewhere than beside its temporary file: (its video temp, index, index bytes, key file bytes)
Upload = Callable[[durable.TempFile, dict[str, Any], bytes, bytes | None], None]


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=None)
def _codec_private(workers: int | None) -> bytes:
    """FFV1's global header, from a worker when there are several: only they need PyAV."""
    return cpu.call("codec_private", workers=workers)


class FrameWriter:
    """Record-stream bytes -> data frames with Reed–Solomon parity per stripe -> GOPs encoded on
    worker processes -> Matroska clusters in an anonymous temporary file. Deterministic: the same
    stream, segment id and settings give the same file byte for byte, whatever the number of
    workers (which is how `repair` rebuilds a damaged video exactly)."""

    def __init__(self, path: Path, segment_id: bytes, geometry: parity.Geometry, *, workers: int | None = None,
                 version: int = frame.VERSION) -> None:
        self.path = path
        self.segment_id = segment_id
        self.geometry = geometry
        self.version = version  # of the frame records (3 in an encrypted segment)
        self.stream_length = 0
        self.data_frames = 0
        self.position = 0
        self.tail_parity_rows: int | None = None
        self._pending = bytearray()  # stream bytes not yet in a frame
        # the data bodies of the stripe being filled, in an unpublished file beside the video, not
        # in memory (22 MB at the default geometry, a seventh of the daemon's peak RSS); its parity
        # is computed from it, row by row, when the stripe is full or the video ends
        self._stripe = durable.TempFile(path.parent, f"{path.name}.stripe") if geometry.parity_rows else None
        self._stripe_count = 0
        self._gop: list[bytes] = []
        self._task: list[list[bytes]] = []  # GOPs for the next encoding task
        self._encoder = cpu.Ordered("encode", workers)
        self.clusters: list[list[int]] = []
        self.temp = durable.TempFile(path.parent, path.name)
        self._mkv = mkv.Writer(self.temp.write, codec_id=video.CODEC_ID, codec_private=_codec_private(workers),
                               width=qr.SIZE, height=qr.SIZE, frame_ms=video.FRAME_MS,
                               app=f"{video.APP} segment format {version}")
        self.closed = False

    def position_of(self, stream_offset: int) -> int:
        """Video position of the data frame that carries this stream offset."""
        return self.geometry.data_position(stream_offset // frame.BODY)

    def write(self, data: bytes) -> None:
        """Append stream bytes; full frame bodies go out as they fill (keeping at least one byte back,
        so that the final data frame, flagged last, is never empty)."""
        view = memoryview(data)
        self.stream_length += len(view)
        if self._pending:
            take = min(len(view), frame.BODY - len(self._pending))
            self._pending += view[:take]
            view = view[take:]
            if not view:
                return
            self._data_frame(bytes(self._pending), last=False)
            self._pending.clear()
        while len(view) > frame.BODY:
            self._data_frame(bytes(view[:frame.BODY]), last=False)
            view = view[frame.BODY:]
        self._pending += view

    def _data_frame(self, body: bytes, last: bool) -> None:
        body = body.ljust(frame.BODY, b"\0")
        g = self.geometry
        if g.data_position(self.data_frames) != self.position:
            raise AssertionError(f"data frame {self.data_frames} at position {self.position}")
        self._frame(frame.Frame(self.segment_id, self.position, frame.LAST if last else frame.DATA, body,
                                g.rows if g.parity_rows else 0, g.parity_rows, version=self.version))
        self.data_frames += 1
        if self._stripe is not None:
            self._stripe.write(body, self._stripe_count * frame.BODY)
            self._stripe_count += 1
            if self._stripe_count == g.data_per_stripe:
                self._parity_frames(g.parity_rows)

    def _parity_frames(self, rows: int) -> None:
        count = self._stripe_count
        g = self.geometry
        columns = g.columns(count)
        for q, body in enumerate(parity.encode_rows(self._stripe_rows(count, columns), columns, rows, frame.BODY)):
            self._frame(frame.Frame(self.segment_id, self.position, frame.PARITY, body.tobytes(), g.rows,
                                    g.parity_rows, count, rows, q // columns, self.version))
        self._stripe_count = 0

    def _stripe_rows(self, count: int, columns: int) -> Iterator[np.ndarray]:
        """The stripe's `count` data bodies as rows of `columns` frames, read back from the spill
        file; a short last row is padded with zero frames (what lies beyond `count` in the file is
        an earlier stripe's)."""
        assert self._stripe is not None
        row_bytes = columns * frame.BODY
        for start in range(0, count * frame.BODY, row_bytes):
            want = min(row_bytes, count * frame.BODY - start)
            data = self._stripe.read(start, want)
            if len(data) != want:
                raise SegmentError(f"the stripe's spill file gave {len(data)} of {want} bytes", str(self.path))
            yield np.frombuffer(data.ljust(row_bytes, b"\0"), dtype=np.uint8)

    def _frame(self, record: frame.Frame) -> None:
        self._gop.append(frame.pack(record))
        self.position += 1
        if len(self._gop) == video.GOP:
            self._submit_gop()

    def _submit_gop(self) -> None:
        self._task.append(self._gop)
        self._gop = []
        if len(self._task) == GOPS_PER_TASK:
            self._submit_task()

    def _submit_task(self) -> None:
        task, self._task = self._task, []
        self._write_clusters(self._encoder.put(task, size=sum(len(r) for gop in task for r in gop)))

    def _write_clusters(self, results: Iterable[list[list[bytes]]]) -> None:
        """One cluster per GOP, in order."""
        for gops in results:
            for packets in gops:
                offset, length = self._mkv.add_cluster(packets)
                self.clusters.append([offset, length])

    def end_stream_at(self, length: int) -> None:
        """Drop what was written past `length` (the zero padding after the END record, when a
        recovered stream is written again); only bytes not yet in a frame can be dropped."""
        excess = self.stream_length - length
        if not 0 <= excess <= len(self._pending):
            raise ValueError("cannot end the stream there")
        del self._pending[len(self._pending) - excess:]
        self.stream_length = length

    def close(self) -> None:
        """Flush the last data frame (flagged last), the last stripe's parity, the last GOP, the Cues."""
        self._data_frame(bytes(self._pending), last=True)
        self._pending.clear()
        tail = self._stripe_count
        g = self.geometry
        self.tail_parity_rows = g.tail_parity_rows(tail, video.GOP) if tail else g.parity_rows
        if tail:
            self._parity_frames(self.tail_parity_rows)
        self._close_stripe()
        if self._gop:
            self._submit_gop()
        if self._task:
            self._submit_task()
        self._write_clusters(self._encoder.finish())
        self._mkv.close()
        self.closed = True

    def _close_stripe(self) -> None:
        if self._stripe is not None:
            self._stripe.close()
            self._stripe = None

    def abort(self) -> None:
        self._encoder.close()
        self._close_stripe()
        self.temp.close()


class SegmentWriter:
    """Streams documents into a new segment with bounded memory (one block, one stripe and a few
    GOPs at a time). Nothing appears under the final names until `seal()`; use it as a context
    manager so that an exception drops the temporary file."""

    def __init__(self, path: Path | str, *, source: Mapping[str, Any] | None = None,
                 block_bytes: int = DEFAULT_BLOCK_BYTES, redundancy: float = parity.DEFAULT_PERCENT,
                 workers: int | None = None, vectors: bool = True, encryption: MasterKey | None = None,
                 created_at: str | None = None, rewritten_from: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        # the codes of the vector sidecar, collected as documents arrive (`vectors=False`: none)
        self._sidecar = sidecar.SidecarBuilder() if vectors else None
        self.segment_id = os.urandom(8)
        # an encrypted segment (format version 3): its keys, and its data key wrapped by `encryption`
        self.keys, self.wrapped_key = enc.new_segment(encryption, self.segment_id) if encryption else (None, None)
        self.version = enc.VERSION if encryption else index.FORMAT_VERSION
        # a rewrite (erase) keeps its original's creation time: the newest-copy rule must not change
        self.created_at = created_at or _utc_now()
        self.rewritten_from = dict(rewritten_from) if rewritten_from else None
        self.source = dict(source) if source else None
        self.redundancy = redundancy
        geometry = parity.Geometry.for_percent(redundancy)
        self._block_target = block_bytes
        self._block: list[bytes] = []
        self._block_size = 0
        self._blocks: list[dict[str, Any]] = []
        self._docs: list[dict[str, Any]] = []
        self._digest = hashlib.sha256()
        self._vector_fields: dict[str, int] = {}  # dotted path of a packed array -> its number in the index
        self._frames = FrameWriter(self.path, self.segment_id, geometry, workers=workers, version=self.version)
        self.temp = self._frames.temp
        self._finished = False
        self._closed = False
        shdr = header(self.segment_id, self.created_at, self.source, geometry, redundancy, block_bytes, self.version)
        if self.wrapped_key is not None:
            shdr["encryption"] = {"alg": aead.ALGORITHM, "wrapped": self.wrapped_key}
        self._frames.write(records.pack(records.HEADER, json.dumps(shdr, sort_keys=True).encode()))

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()

    @property
    def documents(self) -> int:
        return len(self._docs)

    def append(self, document: Any, meta: Mapping[str, Any] | None = None, *, sha256: str | None = None) -> dict[str, Any]:
        """Add one document; `meta` (JSON values) is stored with its index entry. `sha256`: the
        hex SHA-256 of its bytes when the caller has it already (one pass over them fewer; a wrong
        one fails the seal's verify, which checks every document against its index entry)."""
        if self._finished:
            raise SegmentError("segment is already finished", str(self.path))
        raw = to_bson(document)
        entry: dict[str, Any] = {**id_entry(raw), "sha256": sha256 or hashlib.sha256(raw).hexdigest(),
                                 "bytes": len(raw), "block": len(self._blocks)}
        if meta:
            entry.update(meta)
        if self._sidecar is not None:
            self._sidecar.add(len(self._docs), raw)
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
        head = records.block_head(number, self._block)
        encoded = blockcodec.encode_block(self._block)
        head_plain = len(head) + blockcodec.head_length(encoded.body)  # the block's bytes before its first vector section
        if self.keys is None:
            pieces: tuple[bytes, ...] = (head, encoded.body)
        else:  # one GCM message over the digest and the codec body, after the block number in clear
            plain = head[records.BLOCK_NUMBER.size:] + encoded.body
            head_digest = hashlib.sha256(memoryview(plain)[:head_plain - records.BLOCK_NUMBER.size]).hexdigest()
            pieces = (head[:records.BLOCK_NUMBER.size], enc.seal_block(self.keys, number, plain))
            del plain
        size = sum(map(len, pieces))
        length = records.PREFIX.size + size
        start = self._frames.stream_length
        for piece in (records.PREFIX.pack(records.BLOCK, size), *pieces):
            self._frames.write(piece)  # no concatenated copy of a block that may hold 16 MiB
        frames = [self._frames.position_of(start), self._frames.position_of(start + length - 1)]
        info = {"block": number, "offset": start, "length": length, "frames": frames,
                "documents": len(self._block), "sha256": head[4:36].hex(), "head": records.PREFIX.size + head_plain}
        if self.keys is not None:
            info["head_sha256"] = head_digest
        self._blocks.append(info)
        entries = self._docs[len(self._docs) - len(self._block):]
        for entry in entries:
            entry["frames"] = frames
        body_start = start + records.PREFIX.size + len(head)
        for doc, path, offset, size in encoded.vectors:
            field = self._vector_fields.setdefault(path, len(self._vector_fields))
            spot: list[Any] = [field, body_start + offset, size]
            if self.keys is not None:  # a section read on its own is checked against this
                spot.append(enc.section_digest(memoryview(encoded.body)[offset:offset + size]))
            entries[doc].setdefault("vectors", []).append(spot)
        self._block, self._block_size = [], 0

    def finish(self) -> dict[str, Any]:
        """Close the video (still unpublished) and return the index for it (without the video's
        SHA-256, which `seal` adds after reading it back)."""
        if self._finished:
            raise SegmentError("segment is already finished", str(self.path))
        self._flush_block()
        digest = self._digest.digest()
        self._frames.write(records.pack(records.END, records.END_BODY.pack(
            len(self._blocks), len(self._docs), enc.content_digest(self.keys, digest) if self.keys else digest)))
        self._frames.close()
        self._finished = True
        return build_index(self._frames, self.created_at, self.source, self._blocks, self._docs,
                           self._digest.hexdigest(), self.redundancy, self._block_target, list(self._vector_fields),
                           encrypted=self.keys is not None)

    def sidecar(self, idx: Mapping[str, Any]) -> bytes:
        """The vector sidecar of the sealed segment `idx` (format/sidecar.py; sealed in an encrypted
        segment): derived, written by the caller after the seal, never part of it."""
        if self._sidecar is None:
            raise SegmentError("this writer collects no vector codes (vectors=False)", str(self.path))
        data = self._sidecar.build(idx["documents"], idx["content_sha256"])
        return enc.seal_sidecar(self.keys, data) if self.keys is not None else data

    def video_bytes(self) -> bytes:
        """The finished video's bytes (for the in-memory API)."""
        return self.temp.read(0, self.temp.size)

    def seal(self, *, verify: bool = True, before_publish: Callable[[], None] | None = None,
             upload: Upload | None = None) -> dict[str, Any]:
        """Finish, sync, read everything back through the same descriptor and compare, then publish
        video and index. `before_publish` runs right before the first name appears and again right
        before the commit point (the daemon checks its lease there and raises to stop); `upload` publishes into an object store instead
        of beside the temporary file (store/objects.py). Returns the index; on any failure nothing
        is published and the temporary files go away."""
        key_file = None if self.wrapped_key is None else \
            (envelope.path_for(self.path), envelope.dumps(self.wrapped_key))
        try:
            idx = self.finish()
            if self.rewritten_from is not None:
                idx["rewritten_from"] = self.rewritten_from
            return publish(self.path, self.temp, idx, verify=verify, before_publish=before_publish,
                           keys=self.keys, key_file=key_file, upload=upload)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far (temporary files only; published files are never touched)."""
        if not self._closed:
            self._frames.abort()
            self._closed = True


def header(segment_id: bytes, created_at: str, source: Mapping[str, Any] | None,
           geometry: parity.Geometry, redundancy: float, block_bytes: int, version: int) -> dict[str, Any]:
    """The SHDR record's JSON object: what the index says about the segment as a whole."""
    return {"format_version": version, "segment_id": segment_id.hex(), "created_at": created_at,
            "source": dict(source) if source else None,
            "parity": {"columns": parity.COLUMNS, "data_rows": geometry.rows, "parity_rows": geometry.parity_rows,
                       "percent": redundancy},
            "compression": {"codec": blockcodec.CODEC_NAME, "block_bytes": block_bytes}}


def build_index(frames: FrameWriter, created_at: str, source: Mapping[str, Any] | None,
                blocks: list[dict[str, Any]], docs: list[dict[str, Any]], content_sha256: str,
                redundancy: float | None, block_bytes: int | None, vector_fields: list[str], *,
                encrypted: bool = False) -> dict[str, Any]:
    """The sidecar index of a finished video (video SHA-256 still None)."""
    g = frames.geometry
    return {
        "format": index.FORMAT, "format_version": frames.version,
        **({"encryption": {"alg": aead.ALGORITHM}} if encrypted else {}),
        "segment_id": frames.segment_id.hex(), "created_at": created_at, "source": dict(source) if source else None,
        "documents": len(docs), "frames": frames.position, "data_frames": frames.data_frames,
        "blocks": blocks, "stream_bytes": frames.stream_length, "content_sha256": content_sha256,
        "parity": {"columns": parity.COLUMNS, "data_rows": g.rows, "parity_rows": g.parity_rows,
                   "tail_parity_rows": frames.tail_parity_rows, "percent": redundancy,
                   "code": "reed-solomon-cauchy-gf256"},
        "video": {"file": frames.path.name, "bytes": frames.temp.size, "sha256": None,
                  "container": video.CONTAINER, "codec": video.CODEC, "pix_fmt": video.PIX_FMT,
                  "width": qr.SIZE, "height": qr.SIZE, "gop": video.GOP, "frame_ms": video.FRAME_MS,
                  "options": video.OPTIONS, "clusters": frames.clusters},
        "qr": {"version": 40, "ec_level": "L", "mask": 0, "mode": "byte", "module_px": 1, "quiet_zone": 0,
               "payload_bytes": qr.CAPACITY, "frame_body_bytes": frame.BODY},
        "compression": {"codec": blockcodec.CODEC_NAME, "block_bytes": block_bytes},
        "vector_fields": vector_fields,
        "docs": docs,
    }


def publish(path: Path, temp: durable.TempFile, idx: dict[str, Any], *, verify: bool = True,
            before_publish: Callable[[], None] | None = None, keys: enc.SegmentKeys | None = None,
            key_file: tuple[Path, bytes] | None = None, upload: Upload | None = None) -> dict[str, Any]:
    """The seal: fsync the finished video, hash it and decode it back through the same descriptor,
    write the index, link the video's inode under its name, re-read it by that name (size and
    SHA-256 must be what was verified), write an encrypted segment's key file (`key_file`: path,
    bytes; never over an existing one), then link the index (the commit point). With `keys` the
    index file's private part is sealed. With `upload`, the verified video, key file and index go
    to an object store instead (`upload(temp, idx, index bytes, key file bytes)`, which returns
    once the store has confirmed each; store/objects.upload_segment)."""
    from .reader import published_mismatch, verify_source

    def step(name: str) -> None:
        faults.hit(f"seal:{name}")

    step("video-written")
    temp.sync()
    step("video-synced")
    if verify:  # the scan hashes the file into the index in the same pass as its read of the clusters
        report = verify_source(temp, idx, str(path), sealing=True)
        if not report.ok:
            raise SegmentError("read-back verification failed: " + "; ".join(report.problems), str(path))
    else:
        idx["video"]["sha256"] = file_sha256(temp)
    step("verified")
    if upload is not None:
        if before_publish is not None:
            before_publish()
        upload(temp, idx, index.dumps(idx, keys), None if key_file is None else key_file[1])
        return idx
    with durable.TempFile(path.parent, index.path_for(path).name) as index_temp:
        index_temp.write(index.dumps(idx, keys))
        index_temp.sync()
        step("index-written")
        if before_publish is not None:
            before_publish()
        temp.publish(path)
        step("video-published")
        problem = published_mismatch(path, idx)
        if problem:  # not the verified bytes: leave an orphan video, commit nothing, delete nothing
            raise SegmentError(f"published video differs from what was verified ({problem}); not committed",
                               str(path))
        if before_publish is not None:  # again: the lease may have been lost while the video was re-read
            before_publish()
        if key_file is not None:
            durable.write_new(*key_file)
            step("key-written")
        index_temp.publish(index.path_for(path))  # commit point
        step("index-published")
    durable.fsync_dir(path.parent)
    return idx


def file_sha256(source: durable.TempFile | mkv.Source | Any, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of everything readable through `source` (an open descriptor, not a name; or a
    store's object, read in `chunk_bytes` ranges). SegmentError when it ends before its size: a
    file cut while it is read has no SHA-256 to give (a hash of what was left would be recorded,
    or compared, as the file's)."""
    h = hashlib.sha256()
    pos = 0
    while pos < source.size:
        chunk = source.read(pos, chunk_bytes)
        if not chunk:
            raise SegmentError(f"the video ended at byte {pos} of {source.size} while it was read")
        h.update(chunk)
        pos += len(chunk)
    return h.hexdigest()


def write_segment(path: Path, documents: Iterable[Any], **kwargs: Any) -> dict[str, Any]:
    """Write and seal a whole segment from an iterable of documents, then its vector sidecar;
    returns the index."""
    with SegmentWriter(path, **kwargs) as writer:
        for doc in documents:
            writer.append(doc)
        idx = writer.seal()
        if kwargs.get("vectors", True):
            durable.replace_synced(sidecar.path_for(Path(path)), writer.sidecar(idx))
        return idx

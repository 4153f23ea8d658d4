"""Reading a segment: frames -> parity repair -> record stream -> verified documents, with salvage.

One reading core serves verify, restore, export, get, reindex and check. It decodes the video's GOPs
on worker processes (workers.py), turns every frame image into a frame record (CRC-checked), rebuilds lost data
frames from parity one stripe at a time (bounded memory: one stripe of frame bodies), parses the
record stream, decodes blocks, and checks every document: against the sidecar index when there is
one (length, SHA-256, `_id`, block), and in any case against its block's SHA-256 and the stream's
content digest. A document is yielded only when its bytes verify; what could not be recovered is
listed by block and, with an index, by document. Damage is described in `ScanReport.problems`,
naming frames and stream offsets.

A verify decodes and checks every frame. A read for the documents (restore, export, the public API)
does not decode the parity frames of a stripe whose data frames are all intact (5 % of the frames at
the default redundancy): it leaves them unread where the index, the frame flagged last, or the
video's length shows they are parity, and decodes them after all before it lets a stripe go that
lacks a data frame or whose shape its data frames do not give. With an index it skips only in a file
whose SHA-256 is the index's, so what it leaves unread is as sealed; damage in parity frames that a
read did not need is for `verify` and `check` to report, not for restore or export.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
import numpy as np

from . import blockcodec, frame, index, mkv, parity, records, video, workers as workers_mod
from . import encryption as enc
from .documents import id_entry
from ..errors import ConfigError, EncryptionKeyError, SegmentError

_CHUNK_CLUSTERS = 8  # clusters per unit of parallel decoding
_FETCH_THREADS = 2
_fetch_pool: tuple[int, ThreadPoolExecutor] | None = None


def _fetch_threads() -> ThreadPoolExecutor:
    """The threads that decode the GOPs of random reads (FFV1 releases the GIL). They live as long
    as the process so that each keeps its FFV1 decoder between reads (video.decode_packets); a
    forked child makes its own (the parent's threads do not exist there)."""
    global _fetch_pool
    if _fetch_pool is None or _fetch_pool[0] != os.getpid():
        _fetch_pool = (os.getpid(), ThreadPoolExecutor(_FETCH_THREADS, thread_name_prefix="fetch"))
    return _fetch_pool[1]
_MAX_LISTED = 50
OK, REPAIRABLE, UNREPAIRABLE = "ok", "damaged (repairable)", "damaged (unrepairable)"
NOT_READ = "not read"  # the segment could not be opened at all (no such file, no index, ...): nothing was decoded
# what a reader says of a segment that needed parity repair and lost nothing
RECOVERED = "every document was recovered from parity and verified: `archiverd check --repair` writes a repaired copy"


@dataclass
class ScanReport:
    """Outcome of reading a segment completely. `ok` only if every check passed untouched."""

    path: str
    ok: bool = False
    status: str = UNREPAIRABLE
    documents: int = 0  # documents recovered and verified
    expected_documents: int | None = None  # from the index or the end record
    frames: int = 0
    data_frames: int = 0
    parity_frames: int = 0
    blocks: int = 0
    damaged_frames: int = 0  # unreadable, missing or foreign frames
    repaired_frames: int = 0  # data frames rebuilt from parity
    qr_corrected_frames: int = 0  # frames that needed the standard reader's error correction
    unread_frames: int = 0  # parity frames a read did not decode: the data they protect was intact
    lost_blocks: list[int] = field(default_factory=list)
    lost_documents: list[Any] = field(default_factory=list)  # index entries' _ids (or document numbers)
    seconds: float = 0.0
    format_version: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        if len(self.problems) < _MAX_LISTED:
            self.problems.append(message)
        elif len(self.problems) == _MAX_LISTED:
            self.problems.append("(further problems not listed)")

    @property
    def lost(self) -> int:
        """Documents known to be unrecoverable."""
        if self.expected_documents is not None:
            return max(0, self.expected_documents - self.documents)
        return len(self.lost_documents)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["lost"] = self.lost
        return out


# --- frames --------------------------------------------------------------------------------------

def _decode_chunk(reader: video.VideoReader, refs: Sequence[mkv.ClusterRef],
                  independent: bool, limit: int | None = None) -> list[tuple[frame.Frame | None, bool]]:
    return video.frames_of(reader.private, reader.frame_ticks, [reader.source.read(r.offset, r.length) for r in refs],
                           independent, limit)


def decoded_frames(reader: video.VideoReader, refs: Sequence[mkv.ClusterRef], *, independent: bool = False,
                   workers: int | None = None, skip: Callable[[int], int] | None = None,
                   leave: Callable[[int, int, int], bool] | None = None
                   ) -> Iterator[tuple[int, frame.Frame | None, bool]]:
    """(slot in file order, frame or None, QR error correction used) for every frame of `refs`. The
    clusters are read here, through this source (the seal's own descriptor), and decoded on worker
    processes a bounded number of bytes ahead of the consumer. `skip(i)`, asked as cluster i is
    reached (ahead of the frames before it): the number of frames it holds when it need not be read
    (0: read it). `leave(i, slot, frames)`, asked when its turn comes in file order: True, it stays
    unread (its frames keep their slots but are not yielded); False, it is decoded there after all."""
    decoder = workers_mod.Ordered("decode", workers)
    gaps: deque[list[tuple[int, int]]] = deque()  # (cluster, frames) skipped before each task, in order
    slot = 0
    run: list[mkv.ClusterRef] = []
    skipped: list[tuple[int, int]] = []

    def submit() -> Iterator[Any]:
        nonlocal run, skipped
        clusters = [reader.source.read(r.offset, r.length) for r in run]
        gaps.append(skipped)
        run, skipped = [], []
        return decoder.put(reader.private, reader.frame_ticks, clusters, independent, size=sum(map(len, clusters)))

    def passed(clusters: list[tuple[int, int]]) -> Iterator[tuple[int, frame.Frame | None, bool]]:
        nonlocal slot
        for i, frames in clusters:
            if leave is None or leave(i, slot, frames):
                slot += frames
                continue
            for decoded, corrected in _decode_chunk(reader, [refs[i]], independent):
                yield slot, decoded, corrected
                slot += 1

    def emit(chunks: Iterator[Any]) -> Iterator[tuple[int, frame.Frame | None, bool]]:
        nonlocal slot
        for chunk in chunks:
            yield from passed(gaps.popleft())
            for decoded, corrected in chunk:
                yield slot, decoded, corrected
                slot += 1

    try:
        for i, ref in enumerate(refs):
            frames = skip(i) if skip is not None else 0
            if frames:
                if run:
                    yield from emit(submit())
                skipped.append((i, frames))
                continue
            run.append(ref)
            if len(run) == _CHUNK_CLUSTERS:
                yield from emit(submit())
        if run:
            yield from emit(submit())
        yield from emit(decoder.finish())
        yield from passed(skipped)
    finally:
        decoder.close()


# --- the whole segment ---------------------------------------------------------------------------

class SegmentScan:
    """Read one segment completely (see the module docstring). Iterate `documents()` once; then
    `report` holds the outcome."""

    def __init__(self, source: mkv.Source, where: str, idx: Mapping[str, Any] | None = None, *,
                 independent: bool = False, workers: int | None = None,
                 on_data: Callable[[int, bytes | None], None] | None = None, sealing: bool = False,
                 check_parity: bool = True) -> None:
        self.source = source
        # `check_parity` False: a read for the documents, which decodes a parity frame only where its
        # stripe needs it (a verify decodes and checks every frame)
        self.check_parity = check_parity
        # `idx` is the index being sealed: the file's SHA-256 is taken into it by this scan's one
        # pass over the file, not compared (a hash computed just before would be the same read twice)
        self.sealing = sealing
        self.on_data = on_data  # sees every data frame body in order (None where lost)
        self.collect_vectors = False  # record every block's vector sections (for rebuilding an index)
        self.blocks: list[dict[str, Any]] = []  # per block read: number, stream offset, record length, ...
        self.where = where
        self.idx = idx
        self.independent = independent
        self.workers = workers
        self.report = ScanReport(where)
        self.segment_id: str | None = idx["segment_id"] if idx else None
        self.version: int | None = idx["format_version"] if idx else None
        self.geometry: parity.Geometry | None = None
        if idx and idx["format_version"] >= 2:
            p = idx["parity"]
            self.geometry = parity.Geometry(p["data_rows"], p["parity_rows"])
        self._body_size = frame.BODY if (self.version or 2) >= 2 else frame.V1_DATA
        self._foreign: set[bytes] = set()
        self._last_data: int | None = None  # data index of the frame flagged last
        self._seen_positions = _Positions()
        self._shift = 0  # position - file slot of the last frame (0 in an intact file)
        self._stream: _Stream | None = None
        self._reader: video.VideoReader | None = None
        self._refs: list[mkv.ClusterRef] = []
        self._unread: list[tuple[int, int, mkv.ClusterRef]] = []  # (first position, frames, cluster) not decoded
        self._last_position: int | None = None  # where the frame flagged last was seen
        self._tail_parity: int | None = None  # where the video's length says the last stripe's parity begins
        self._timestamps_wrong = False  # a cluster's timestamp named another slot than it is at

    def _p(self, message: str) -> None:
        self.report.problem(f"{Path(self.where).name}: {message}")

    # -- encrypted segments -----------------------------------------------------------------------

    @property
    def keys(self) -> enc.SegmentKeys:
        """The keys of an encrypted segment: opened with its index, or (without one) from the key
        file or the wrapped data key in the header just read."""
        if self.idx is not None:
            return enc.cached_keys(self.idx["segment_id"], self.where)
        header = self._stream.header if self._stream is not None else None
        if header is None or self.segment_id is None:
            raise SegmentError("an encrypted block before the segment header")
        return enc.segment_keys(Path(self.where), self.segment_id, lambda: enc.header_wrapped(header))

    def open_block(self, body: bytes) -> tuple[int, bytes | None, memoryview]:
        """(number, documents digest, codec body) of a BLCK record body, opened when sealed."""
        return open_block(body, self.version or 2, self.segment_id or "", self.where,
                          (lambda: self.keys) if (self.version or 2) >= enc.VERSION else None)

    def end_digest(self, sha256: bytes) -> bytes:
        """What the SEND record must carry for documents whose SHA-256 is `sha256`."""
        return enc.content_digest(self.keys, sha256) if (self.version or 2) >= enc.VERSION else sha256

    @property
    def content_sha256(self) -> str | None:
        """The SHA-256 of every document in order, once a complete scan verified it."""
        stream = self._stream
        return stream.digest.hexdigest() if stream is not None and stream.digest_valid else None

    # -- phase 1: the file ------------------------------------------------------------------------

    def _check_file(self) -> bool:
        """Size and SHA-256 against the index. Returns whether the file is exactly as sealed."""
        if self.idx is None:
            return False
        vid = self.idx["video"]
        if self.source.size != vid.get("bytes"):
            self._p(f"video is {self.source.size} bytes, index says {vid.get('bytes')}")
            return False
        from .writer import file_sha256
        try:
            sha256 = file_sha256(self.source)
        except SegmentError as exc:  # cut while it is read (a file truncated under us)
            self._p(exc.message)
            return False
        if self.sealing:
            vid["sha256"] = sha256
            return True
        if sha256 != vid.get("sha256"):
            self._p("video SHA-256 differs from the index (file changed or index swapped)")
            return False
        return True

    def _cluster_refs(self, reader: video.VideoReader, exact: bool) -> list[mkv.ClusterRef]:
        vid = (self.idx or {}).get("video", {})
        listed = vid.get("clusters")
        if exact and listed:
            return [mkv.ClusterRef(offset, length, i * vid["gop"]) for i, (offset, length) in enumerate(listed)]
        return reader.clusters()

    # -- phase 2: frames -> data bodies, stripe by stripe -------------------------------------------

    def _accept(self, slot: int, decoded: frame.Frame | None, unread: bool = False) -> frame.Frame | None:
        """Check one frame's identity; None if it cannot be used."""
        if decoded is None:
            self._p(f"frame {slot}: unreadable (QR does not decode, or its CRC fails)")
            return None
        sid = decoded.segment_id.hex()
        if self.segment_id is None:
            self.segment_id = sid
        if sid != self.segment_id:
            if decoded.segment_id not in self._foreign:  # a swapped index would otherwise flag every frame
                self._foreign.add(decoded.segment_id)
                self._p(f"frame {slot}: belongs to segment {sid}, not {self.segment_id}")
            return None
        if self.version is None:
            self.version = decoded.version
            self._body_size = frame.BODY if decoded.version >= 2 else frame.V1_DATA
        if decoded.version != self.version:
            self._p(f"frame {slot}: format version {decoded.version} in a version {self.version} segment")
            return None
        shift = decoded.position - slot
        if shift != self._shift:
            kind = "duplicated or out of order" if decoded.position < slot + self._shift else \
                f"frames {slot + self._shift}..{decoded.position - 1} missing"
            self._p(f"frame {slot}: carries position {decoded.position} ({kind})")
            self._shift = shift
        if not self._seen_positions.add(decoded.position) and not unread:  # an unread cluster's were marked
            return None
        if self.geometry is None and decoded.version >= 2:
            self.geometry = parity.Geometry(decoded.rows, decoded.parity_rows) if decoded.parity_rows \
                else parity.Geometry(parity.DEFAULT_DATA_ROWS, 0)
        if decoded.last:
            self._last_position = decoded.position
        return decoded

    def _take(self, slot: int, decoded: frame.Frame | None, corrected: bool,
              unread: bool = False) -> frame.Frame | None:
        """Count one decoded frame into the report and check it (`_accept`)."""
        report = self.report
        report.frames += 1
        report.qr_corrected_frames += corrected
        accepted = self._accept(slot, decoded, unread)
        if accepted is None and not (self.geometry and self.geometry.parity_rows):
            report.damaged_frames += 1
        elif accepted is not None and accepted.kind == frame.PARITY:
            report.parity_frames += 1
        return accepted

    # -- parity frames a read leaves alone ----------------------------------------------------------

    def _parity_only(self, i: int) -> int:
        """The number of frames of cluster i when all of them are parity frames that this read need
        not decode (0: decode it). Only while the file reads as written, and only where its stripe's
        shape says so (the index, the frame flagged last, or at least the parity its length implies);
        a wrong guess costs a late decode (`read_unread`), never a frame."""
        g, refs = self.geometry, self._refs
        if self.check_parity or g is None or not g.parity_rows or self._shift or self.report.problems \
                or self._timestamps_wrong:
            return 0
        first = refs[i].first_frame
        # where the next cluster starts: the last one's end only from the index (of a file as sealed)
        following = refs[i + 1].first_frame if i + 1 < len(refs) else \
            self.idx["frames"] if self.idx is not None and refs[i].first_frame is not None else None
        if first is None or following is None or not 0 < following - first <= video.GOP:
            return 0
        parity_from = self._first_parity(first // g.stripe_positions, g)
        if parity_from is None or first < parity_from:
            return 0
        return following - first

    def _leave_unread(self, i: int, slot: int, frames: int) -> bool:
        """Whether cluster i, skipped ahead (`_parity_only`), stays unread now that its turn has come
        in file order: only if its timestamp names the slot it is at (a file whose timestamps do not
        count its frames is read whole from here on) and nothing read before it changed the answer."""
        if self._refs[i].first_frame != slot:
            self._timestamps_wrong = True
            return False
        if self._parity_only(i) != frames:
            return False
        for position in range(slot, slot + frames):
            self._seen_positions.add(position)
        self._unread.append((slot, frames, self._refs[i]))
        self.report.unread_frames += frames
        return True

    def _known_count(self, stripe: int, g: parity.Geometry) -> int | None:
        """The data frames of stripe `stripe` as the index or the frame flagged last tells, or None
        when neither does."""
        if self.idx is not None and self.idx.get("data_frames") is not None:
            return max(0, min(g.data_per_stripe, self.idx["data_frames"] - stripe * g.data_per_stripe))
        last = self._last_position
        if last is not None and last // g.stripe_positions == stripe:
            return last - g.stripe_start(stripe) + 1
        return None

    def _first_parity(self, stripe: int, g: parity.Geometry) -> int | None:
        """A position from which on stripe `stripe` surely holds parity frames only, or None."""
        start = g.stripe_start(stripe)
        full = start + g.data_per_stripe
        count = self._known_count(stripe, g)
        if count is not None:
            return start + count
        if self._last_position is not None:  # in a later stripe: this one is full; in an earlier: none
            return full if stripe < self._last_position // g.stripe_positions else None
        last_frame = self._refs[-1].first_frame if self._refs else None
        if last_frame is not None and last_frame // g.stripe_positions == stripe:
            if self._tail_parity is None:  # once: it is asked for every cluster of the last stripe
                positions = last_frame + 1 - start  # at least: the last cluster holds one frame or more
                self._tail_parity = min(full, start + positions - g.tail_parity_at_least(positions, video.GOP) + 1)
            return self._tail_parity
        return full

    def read_unread(self, end: int) -> list[tuple[int, frame.Frame | None]]:
        """Decode the clusters left unread below position `end` now: (slot, checked frame) of each
        frame (a stripe that needs its parity, or whose shape its data frames do not give)."""
        due = [u for u in self._unread if u[0] < end]
        self._unread = [u for u in self._unread if u[0] >= end]
        out = []
        assert self._reader is not None
        for first, frames, ref in due:
            decoded = _decode_chunk(self._reader, [ref], self.independent)
            self.report.unread_frames -= frames
            for k, (found, corrected) in enumerate(decoded):
                out.append((first + k, self._take(first + k, found, corrected, unread=True)))
        return out

    def unread_positions(self, start: int, end: int) -> set[int]:
        """Positions in [start, end) of clusters left unread (not missing: not needed)."""
        return {p for first, frames, _ in self._unread for p in range(first, first + frames) if start <= p < end}

    def documents(self) -> Iterator[tuple[int | None, int, bytes]]:
        """(document number or None, block number, BSON bytes) of every document that verifies."""
        started = time.perf_counter()
        report = self.report
        try:
            exact = self._check_file()
            try:
                reader = video.VideoReader(self.source, self.where)
            except SegmentError as exc:
                report.problem(str(exc))
                self._lose_all()
                return
            declared = reader.layout.declared_end
            if declared is not None and declared != self.source.size:
                self._p(f"the file is {self.source.size} bytes, its Matroska header says {declared} "
                        f"({'truncated' if declared > self.source.size else 'bytes appended'})")
            self._stream = _Stream(self)
            stripes = _Stripes(self)
            self._reader, self._refs = reader, self._cluster_refs(reader, exact)
            for slot, decoded, corrected in decoded_frames(reader, self._refs, independent=self.independent,
                                                           workers=self.workers, skip=self._parity_only,
                                                           leave=self._leave_unread):
                accepted = self._take(slot, decoded, corrected)
                for data_index, body in stripes.add(slot, accepted):
                    yield from self._feed(data_index, body)
            for data_index, body in stripes.close():
                yield from self._feed(data_index, body)
            yield from self._stream.close()
            if report.frames == 0:
                self._p("video has no frames")
            self._final_checks()
        finally:
            report.seconds = round(time.perf_counter() - started, 3)
            report.format_version = self.version
            if report.qr_corrected_frames:
                report.warnings.append(f"{report.qr_corrected_frames} frames needed QR error correction")
            self._classify()

    @property
    def header(self) -> dict[str, Any]:
        """The SHDR record's object ({} until read, or if it was lost)."""
        return (self._stream.header if self._stream else None) or {}

    @property
    def end(self) -> tuple[int, int, bytes] | None:
        """The SEND record (blocks, documents, content digest), once read."""
        return self._stream.end if self._stream else None

    @property
    def stream_end(self) -> int:
        """Stream offset just past the SEND record (valid once `end` is set)."""
        return self._stream.parser._offset if self._stream else 0

    def _feed(self, data_index: int, body: bytes | None) -> Iterator[tuple[int | None, int, bytes]]:
        if self.on_data is not None:
            self.on_data(data_index, body)
        assert self._stream is not None
        yield from self._stream.feed(data_index, body)

    def _lose_all(self) -> None:
        if self.idx is not None:
            self.report.expected_documents = self.idx["documents"]
            self.report.lost_blocks = [b["block"] for b in self.idx["blocks"]]
            self.report.lost_documents = [e.get("_id") for e in self.idx["docs"][:_MAX_LISTED]]

    def _final_checks(self) -> None:
        idx, report = self.idx, self.report
        if idx is None:
            return
        report.expected_documents = idx["documents"]
        if report.frames + report.unread_frames != idx["frames"]:
            self._p(f"video has {report.frames + report.unread_frames} frames, index says {idx['frames']}")
        stream = self._stream
        if stream is not None and stream.header and stream.header.get("segment_id") != idx["segment_id"]:
            self._p(f"segment header names segment {stream.header.get('segment_id')}")

    def _classify(self) -> None:
        report = self.report
        complete = (self._stream is not None and self._stream.end is not None) or \
            (self.idx is not None and report.documents == self.idx["documents"])
        if not report.problems:
            report.ok, report.status = True, OK
        elif report.lost or report.lost_blocks or not complete:
            report.status = UNREPAIRABLE
        else:
            report.status = REPAIRABLE


class _Positions:
    """The frame positions seen so far: those below `below` all were, the others are in a set. A
    scan sees them in order, so the set stays empty and a scan of millions of frames holds two
    ints, not a set entry per frame (it was a sixth of the seal's memory per document)."""

    def __init__(self) -> None:
        self.below = 0
        self.above: set[int] = set()

    def add(self, position: int) -> bool:
        """Record `position`; False if it was seen before."""
        if position < self.below or position in self.above:
            return False
        if position != self.below:
            self.above.add(position)
            return True
        self.below += 1
        while self.below in self.above:
            self.above.remove(self.below)
            self.below += 1
        return True


class _Stripes:
    """Collects accepted frames and releases data bodies in data-frame order, one stripe at a time,
    after rebuilding what parity can rebuild."""

    def __init__(self, scan: SegmentScan) -> None:
        self.scan = scan
        self.stripe = 0
        self.frames: dict[int, frame.Frame] = {}
        self.closed_before = 0  # positions below this belong to released stripes

    def _geometry(self) -> parity.Geometry | None:
        g = self.scan.geometry
        return g if g is not None and g.parity_rows else None

    def _keep(self, slot: int, decoded: frame.Frame | None) -> None:
        if decoded is not None:
            if decoded.position < self.closed_before:
                self.scan._p(f"frame {slot}: position {decoded.position} belongs to a stripe already read")
            else:
                self.frames[decoded.position] = decoded

    def add(self, slot: int, decoded: frame.Frame | None) -> Iterator[tuple[int, bytes | None]]:
        g = self._geometry()
        self._keep(slot, decoded)
        if g is None:
            if self.scan.geometry is not None or self.scan.version == 1:  # no parity: release in order
                yield from self._release_through(slot)
            return
        # release a stripe once the file has moved a GOP past its end
        while slot >= g.stripe_start(self.stripe + 1) + video.GOP:
            yield from self._release_stripe(final=False)

    def _release_through(self, slot: int) -> Iterator[tuple[int, bytes | None]]:
        """No parity: every position is a data position; release those up to `slot`."""
        for position in range(self.closed_before, slot + 1):
            found = self.frames.pop(position, None)
            yield from self._data(position, found)
        self.closed_before = slot + 1

    def _data(self, data_index: int, found: frame.Frame | None) -> Iterator[tuple[int, bytes | None]]:
        if found is not None and found.kind == frame.PARITY:
            self.scan._p(f"frame {found.position}: a parity frame where data belongs")
            found = None
        if found is not None and found.last:
            self.scan._last_data = data_index
        if self.scan._last_data is not None and data_index > self.scan._last_data:
            return
        yield data_index, found.body if found is not None else None

    def _release_stripe(self, final: bool) -> Iterator[tuple[int, bytes | None]]:
        g = self._geometry()
        assert g is not None
        start = g.stripe_start(self.stripe)
        first_data = self.stripe * g.data_per_stripe
        end = g.stripe_start(self.stripe + 1)
        if self.scan._unread and not self._whole(start, g, final):
            for slot, decoded in self.scan.read_unread(end):
                self._keep(slot, decoded)
        mine = {p: self.frames.pop(p) for p in [p for p in self.frames if p < end]}
        count, rows = self._stripe_shape(mine, start, first_data, g, final)
        data: dict[int, bytes] = {}
        parity_bodies: dict[tuple[int, int], bytes] = {}
        for position, f in mine.items():
            offset = position - start
            if f.kind == frame.PARITY:
                if f.stripe_count != count or f.stripe_parity_rows != rows:
                    self.scan._p(f"frame {position}: parity frame describes a stripe of {f.stripe_count} frames")
                    continue
                ref = parity.parity_ref(g, position, count)
                parity_bodies[(ref.row, ref.group)] = f.body
            elif offset < count:
                data[offset] = f.body
                if f.last:
                    self.scan._last_data = first_data + offset
        expected = count + rows * g.columns(count) if count else 0
        unread = self.scan.unread_positions(start, end)
        self.scan._unread = [u for u in self.scan._unread if u[0] >= end]  # not needed: the stripe was whole
        missing = [start + o for o in range(expected) if start + o not in mine and start + o not in unread]
        if missing:
            self.scan.report.damaged_frames += len(missing)
            self.scan._p(f"stripe {self.stripe}: {len(missing)} of {expected} frames missing or damaged "
                         f"(positions {_ranges(missing)})")
        extra = [p for p in mine if p >= start + expected and (final or p < end)]
        if extra and (final or self.scan._last_data is not None):
            self.scan._p(f"frames at positions {_ranges(sorted(extra))} lie beyond the end of the segment")
        lost = [i for i in range(count) if i not in data]
        if lost:
            data.update(self._repair(lost, data, parity_bodies, count, rows, start))
        self.stripe += 1
        self.closed_before = end
        for i in range(count):
            data_index = first_data + i
            if self.scan._last_data is not None and data_index > self.scan._last_data:
                break
            yield data_index, data.get(i)

    def _whole(self, start: int, g: parity.Geometry, final: bool) -> bool:
        """Whether the stripe's data frames are all here and its shape is known without its parity
        frames (from the index, the frame flagged last, or, before the end, a full stripe)."""
        count = self.scan._known_count(self.stripe, g)
        if count is None:
            if final or self.scan._last_position is not None:
                return False
            count = g.data_per_stripe
        return all(start + o in self.frames and self.frames[start + o].kind != frame.PARITY for o in range(count))

    def _stripe_shape(self, mine: dict[int, frame.Frame], start: int, first_data: int, g: parity.Geometry,
                      final: bool) -> tuple[int, int]:
        """(data frames, parity rows) of the stripe being released."""
        for f in mine.values():
            if f.kind == frame.PARITY and f.stripe_count:
                return f.stripe_count, f.stripe_parity_rows
        idx = self.scan.idx
        if idx is not None and idx.get("data_frames") is not None:
            count = max(0, min(g.data_per_stripe, idx["data_frames"] - first_data))
            tail = count < g.data_per_stripe or first_data + count == idx["data_frames"]
            rows = idx["parity"].get("tail_parity_rows", g.parity_rows) if tail else g.parity_rows
            return count, rows
        last = self.scan._last_data
        for f in mine.values():
            if f.last:
                last = first_data + (f.position - start)
        if last is not None and last < first_data + g.data_per_stripe:
            count = last - first_data + 1
            return count, g.tail_parity_rows(count, video.GOP)
        seen = [p - start for p, f in mine.items() if f.kind != frame.PARITY]
        if final:
            count = max(seen) + 1 if seen else 0
            return count, g.tail_parity_rows(count, video.GOP) if count else 0
        return g.data_per_stripe, g.parity_rows

    def _repair(self, lost: list[int], data: dict[int, bytes], parity_bodies: dict[tuple[int, int], bytes],
                count: int, rows: int, start: int) -> dict[int, bytes]:
        body = len(next(iter(data.values()), None) or next(iter(parity_bodies.values()), b"")) or frame.BODY
        g = self._geometry()
        assert g is not None
        columns = g.columns(count)
        out: dict[int, bytes] = {}
        for group in sorted({i % columns for i in lost}):
            members = parity.members(count, columns, group)
            known = {r: np.frombuffer(data[r * columns + group], dtype=np.uint8)
                     for r in members if r * columns + group in data}
            available = {row: np.frombuffer(b, dtype=np.uint8) for (row, g), b in parity_bodies.items() if g == group}
            try:
                rebuilt = parity.recover(known, available, members, body)
            except ValueError:
                continue
            for r, value in rebuilt.items():
                out[r * columns + group] = value.tobytes()
                self.scan.report.repaired_frames += 1
        return out

    def close(self) -> Iterator[tuple[int, bytes | None]]:
        g = self._geometry()
        if g is None:
            if self.frames:
                yield from self._release_through(max(self.frames))
            return
        while self.frames or self.scan._unread or (self.scan.idx is not None and
                              self.stripe * g.data_per_stripe < self.scan.idx.get("data_frames", 0)):
            yield from self._release_stripe(final=True)


class _Stream:
    """Data bodies in order -> records -> verified documents. A lost body loses the record it falls
    in; reading resumes at the next block the index names or, without an index, at the next record
    that parses and verifies."""

    def __init__(self, scan: SegmentScan) -> None:
        self.scan = scan
        self.idx = scan.idx
        self.parser = records.Parser()
        self.header: dict[str, Any] | None = None
        self.end: tuple[int, int, bytes] | None = None
        self.blocks_seen = 0
        self.next_block = 0
        self.digest = hashlib.sha256()
        self.digest_valid = True  # False once a document is missing from the sequence
        self.next_data = 0  # data index expected next
        self.skip_to: int | None = None  # after a gap: stream offset where parsing resumes
        self.scan_buffer: bytearray | None = None  # after a gap without an index: bytes to search
        self.scan_offset = 0
        self.doc_base = self._doc_base()
        self.lost_ranges: list[tuple[int, int]] = []

    def _doc_base(self) -> list[int]:
        if self.idx is None:
            return []
        base, out = 0, []
        for b in self.idx["blocks"]:
            out.append(base)
            base += b["documents"]
        return out

    def feed(self, data_index: int, body: bytes | None) -> Iterator[tuple[int | None, int, bytes]]:
        size = self.scan._body_size
        if data_index != self.next_data:  # frames beyond what stripes released: treat as a gap
            yield from self._gap(self.next_data * size, data_index * size)
        self.next_data = data_index + 1
        offset = data_index * size
        if body is None:
            yield from self._gap(offset, offset + size)
            return
        self.scan.report.data_frames += 1
        if self.skip_to is not None:
            if offset + len(body) <= self.skip_to:
                return
            body = body[max(0, self.skip_to - offset):]
            offset = max(offset, self.skip_to)
            self.parser = records.Parser(offset)
            self.skip_to = None
        if self.scan_buffer is not None:
            yield from self._search(body)
            return
        yield from self._parse(body)

    def _parse(self, data: bytes) -> Iterator[tuple[int | None, int, bytes]]:
        try:
            for kind, body, offset in self.parser.feed(data):
                yield from self._record(kind, body, offset)
        except SegmentError as exc:
            self.scan._p(str(exc))
            self._start_search(self.parser._offset + 1, b"")

    def _gap(self, start: int, end: int) -> Iterator[tuple[int | None, int, bytes]]:
        if end <= start:
            return
        if self.end is not None and self.parser.done:
            return  # lost padding after the end record
        self.lost_ranges.append((start, end))
        self.digest_valid = False
        if self.idx is not None:
            follow = [b["offset"] for b in self.idx["blocks"] if b["offset"] >= end]
            send = self.idx.get("stream_bytes", 0) - records.PREFIX.size - records.END_BODY.size
            self.skip_to = min(follow + ([send] if send >= end else []), default=None)
            if self.skip_to is None:
                self.skip_to = 1 << 62  # nothing left to read
            self.parser = records.Parser(self.skip_to)
            self.scan_buffer = None
        else:
            self._start_search(end, b"")
        return
        yield  # pragma: no cover - makes this a generator

    def _start_search(self, offset: int, data: bytes) -> None:
        self.scan_buffer = bytearray(data)
        self.scan_offset = offset

    def _search(self, data: bytes) -> Iterator[tuple[int | None, int, bytes]]:
        """Without an index: find the next record that parses and whose content verifies."""
        buf = self.scan_buffer
        assert buf is not None
        buf += data
        pos = 0
        while True:
            hits = [h for h in (buf.find(records.BLOCK, pos), buf.find(records.END, pos)) if h >= 0]
            if not hits:
                keep = max(0, len(buf) - 3)
                del buf[:keep]
                self.scan_offset += keep
                return
            hit = min(hits)
            if hit + records.PREFIX.size > len(buf):
                del buf[:hit]
                self.scan_offset += hit
                return
            kind, length = records.PREFIX.unpack_from(buf, hit)
            try:
                records.check_prefix(kind, length, self.scan_offset + hit)
            except SegmentError:
                pos = hit + 1
                continue
            end = hit + records.PREFIX.size + length
            if end > len(buf):
                del buf[:hit]
                self.scan_offset += hit
                return
            body = bytes(buf[hit + records.PREFIX.size:end])
            if self._valid_candidate(bytes(kind), body):
                rest = bytes(buf[end:])
                record_offset = self.scan_offset + hit
                self.scan_buffer = None
                self.parser = records.Parser(record_offset + end - hit)
                yield from self._record(bytes(kind), body, record_offset)
                yield from self._parse(rest)
                return
            pos = hit + 1

    def _valid_candidate(self, kind: bytes, body: bytes) -> bool:
        if kind == records.END:
            return True
        try:
            number, digest, encoded = self.scan.open_block(body)
            docs = blockcodec.decode(encoded)
        except (SegmentError, EncryptionKeyError):
            return False
        return digest is None or _digest(docs) == digest

    def _record(self, kind: bytes, body: bytes, offset: int) -> Iterator[tuple[int | None, int, bytes]]:
        if self.header is None and not self.lost_ranges:
            if kind != records.HEADER:
                raise SegmentError(f"stream offset {offset}: stream does not start with a header")
            try:
                self.header = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                raise SegmentError("segment header is not valid JSON") from None
            if not isinstance(self.header, dict):
                raise SegmentError("segment header is not a JSON object")
            return
        if kind == records.HEADER:
            raise SegmentError(f"stream offset {offset}: a second segment header")
        if self.end is not None:
            raise SegmentError(f"stream offset {offset}: data after the end record")
        if kind == records.END:
            self.end = records.END_BODY.unpack(body)
            return
        yield from self._block(body, offset)

    def _block(self, body: bytes, offset: int) -> Iterator[tuple[int | None, int, bytes]]:
        number = records.BLOCK_NUMBER.unpack_from(body)[0] if len(body) >= records.BLOCK_NUMBER.size else -1
        try:
            number, digest, encoded = self.scan.open_block(body)
        except EncryptionKeyError:
            raise
        except SegmentError as exc:  # cut short, or (encrypted) its tag fails
            if number < 0:
                raise
            encoded = None
            failure = exc
        if number < self.next_block or (number != self.next_block and not self.lost_ranges):
            raise SegmentError(f"stream offset {offset}: block {number} where block {self.next_block} belongs")
        for skipped in range(self.next_block, number):
            self._lose_block(skipped)
        self.next_block = number + 1
        try:
            if encoded is None:
                raise failure
            docs = blockcodec.decode(encoded)
        except SegmentError as exc:
            self.scan._p(f"block {number}: {exc}")
            self._lose_block(number)
            return
        docs_digest = _digest(docs)
        if digest is not None and docs_digest != digest:
            self.scan._p(f"block {number}: documents differ from the block's SHA-256")
            self._lose_block(number)
            return
        self.blocks_seen += 1
        self.scan.report.blocks += 1
        info = {"block": number, "offset": offset, "length": records.PREFIX.size + len(body),
                "documents": len(docs), "sha256": docs_digest.hex()}
        if self.scan.collect_vectors:  # rebuilding an index: where each embedding's section lies
            start = offset + records.PREFIX.size + records.BLOCK_HEAD_V2.size
            sealed = self.scan.version == enc.VERSION
            info["vectors"] = [(doc, path, start + at, length,
                                enc.section_digest(encoded[at:at + length]) if sealed else None)
                               for doc, path, at, length in blockcodec.vector_sections(encoded, docs)]
            info["head"] = start - offset + blockcodec.head_length(encoded)
            if sealed:
                info["head_sha256"] = hashlib.sha256(
                    bytes(digest or b"") + bytes(encoded[:blockcodec.head_length(encoded)])).hexdigest()
        self.scan.blocks.append(info)
        base = self.doc_base[number] if self.idx is not None and number < len(self.doc_base) else None
        if self.idx is not None and (number >= len(self.idx["blocks"]) or
                                     self.idx["blocks"][number]["documents"] != len(docs)):
            self.scan._p(f"block {number}: holds {len(docs)} documents, the index lists a different number")
            self._lose_block(number)
            return
        for i, raw in enumerate(docs):
            n = base + i if base is not None else None
            if self._document_ok(n, number, raw):
                self.digest.update(raw)
                self.scan.report.documents += 1
                yield n, number, raw
            else:
                self.digest_valid = False

    def _document_ok(self, n: int | None, block: int, raw: bytes) -> bool:
        if self.idx is None or n is None:
            return True
        entry = self.idx["docs"][n]
        if len(raw) != entry["bytes"] or hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            self.scan._p(f"document {n} (_id {json.dumps(entry.get('_id'))}): bytes differ from the index checksum")
            self._lose_document(entry, n)
            return False
        actual = id_entry(raw).get("_id", None if self.scan.version == 1 else _MISSING)  # v1 wrote null
        if actual != entry.get("_id", _MISSING):
            self.scan._p(f"document {n}: _id differs from the index")
            self._lose_document(entry, n)
            return False
        if entry["block"] != block:
            self.scan._p(f"document {n}: found in block {block}, index says {entry['block']}")
            self._lose_document(entry, n)
            return False
        return True

    def _lose_document(self, entry: Mapping[str, Any], n: int) -> None:
        if len(self.scan.report.lost_documents) < _MAX_LISTED:
            self.scan.report.lost_documents.append(entry.get("_id", f"document {n} (no _id)"))

    def _lose_block(self, number: int) -> None:
        report = self.scan.report
        if number in report.lost_blocks:
            return
        report.lost_blocks.append(number)
        self.digest_valid = False
        if self.idx is not None and number < len(self.idx["blocks"]):
            base = self.doc_base[number]
            for n in range(base, base + self.idx["blocks"][number]["documents"]):
                self._lose_document(self.idx["docs"][n], n)

    def close(self) -> Iterator[tuple[int | None, int, bytes]]:
        scan, report = self.scan, self.scan.report
        if self.idx is not None:
            for number in range(self.next_block, len(self.idx["blocks"])):
                self._lose_block(number)
        if self.lost_ranges:
            spans = ", ".join(f"{a}..{b - 1}" for a, b in self.lost_ranges[:5])
            scan._p(f"stream bytes {spans} are lost ({len(self.lost_ranges)} damaged ranges)")
        if scan._last_data is None and report.frames:
            scan._p(f"video ends after {report.frames} frames without the frame flagged last (truncated)")
        if self.end is None:
            if not self.lost_ranges:
                scan._p("record stream is incomplete (no end record)")
            report.expected_documents = report.expected_documents
        else:
            blocks, docs, digest = self.end
            if report.expected_documents is None:
                report.expected_documents = docs
            if not self.lost_ranges and not report.lost_blocks:
                if (blocks, docs) != (self.blocks_seen, report.documents):
                    scan._p(f"end record says {blocks} blocks / {docs} documents, stream holds "
                            f"{self.blocks_seen} / {report.documents}")
                elif self.digest_valid and digest != scan.end_digest(self.digest.digest()):
                    scan._p("content digest in the end record does not match the documents")
        if self.parser.garbage:
            scan._p("non-zero bytes after the end record")
        if self.parser.pending and self.end is None and not self.lost_ranges:
            scan._p("record stream is cut short")
        return
        yield  # pragma: no cover - makes this a generator


_MISSING = object()


def _ranges(positions: Sequence[int], limit: int = 6) -> str:
    """[3, 4, 5, 9] -> "3..5, 9"."""
    spans: list[tuple[int, int]] = []
    for p in positions:
        if spans and p == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], p)
        else:
            spans.append((p, p))
    text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in spans[:limit])
    return text + (", ..." if len(spans) > limit else "")


def _digest(docs: Sequence[bytes]) -> bytes:
    h = hashlib.sha256()
    for doc in docs:
        h.update(doc)
    return h.digest()


# --- entry points --------------------------------------------------------------------------------

class LocalFile(video.FileSource):
    """An open segment file; close it when done (or use as a context manager)."""

    def __init__(self, path: Path) -> None:
        try:  # O_NONBLOCK: a FIFO in the archive must be refused, not waited on for a writer
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SegmentError("no such segment file", str(path)) from None
        except IsADirectoryError:
            raise SegmentError("is a directory, not a segment file", str(path)) from None
        except OSError as exc:
            raise SegmentError(f"cannot open segment: {exc.strerror}", str(path)) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SegmentError("not a regular file", str(path))
        super().__init__(fd, st.st_size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def verify_source(source: mkv.Source, idx: Mapping[str, Any] | None, where: str, *,
                  independent: bool = False, workers: int | None = None, sealing: bool = False) -> ScanReport:
    """Read everything and check it (the documents are dropped). `sealing`: `idx` is the index
    being sealed, whose video SHA-256 this read takes (SegmentScan)."""
    scan = SegmentScan(source, where, idx, independent=independent, workers=workers, sealing=sealing)
    for _ in scan.documents():
        pass
    return scan.report


def verify_video(path: Path, idx: Mapping[str, Any] | None, *, independent: bool = False,
                 workers: int | None = None) -> ScanReport:
    """Decode every frame and check it against the index (when given)."""
    try:
        with LocalFile(Path(path)) as source:
            return verify_source(source, idx, str(path), independent=independent, workers=workers)
    except SegmentError as exc:
        report = ScanReport(str(path))
        report.problem(str(exc))
        return report


def stream_documents(source: mkv.Source, where: str) -> Iterator[bytes]:
    """Every document of a video from the stream alone (no index); raises unless it is all intact
    (parity repairs count as intact: the repaired documents verify against their block digests)."""
    scan = SegmentScan(source, where, check_parity=False)
    yield from (raw for _, _, raw in scan.documents())
    report = scan.report
    if report.status == UNREPAIRABLE or report.lost or report.lost_blocks:
        raise SegmentError("; ".join(report.problems) or "video is damaged", where)


def published_mismatch(path: Path, idx: Mapping[str, Any]) -> str | None:
    """Re-read a just-published video by its name: None if its size and SHA-256 are the index's,
    else what differs. Nothing is deleted against a segment unless this passes."""
    from .writer import file_sha256
    try:
        with LocalFile(path) as source:
            if source.size != idx["video"]["bytes"]:
                return f"{source.size} bytes, index says {idx['video']['bytes']}"
            if file_sha256(source) != idx["video"]["sha256"]:
                return "SHA-256 differs from the index"
    except SegmentError as exc:
        return str(exc)
    return None


def no_such_segment(video: Path) -> SegmentError:
    """The error for a segment that is not there; a relative DAY/PART name gets a hint (`list
    --segments` and the log print names relative to the collection's directory)."""
    hint = "" if video.is_absolute() or len(video.parts) < 4 else \
        " (a name as `list --segments` prints it is under the collection's directory, which that list names)"
    return SegmentError("no such segment file" + hint, str(video))


def refuse_url(path: Path | str) -> None:
    """A command that reads local files was given an s3:// URL (which a Path would mangle into
    `s3:/...` and then call a missing file): say so, exit 3."""
    text = str(path)
    if text.startswith("s3:/"):
        url = text if text.startswith("s3://") else "s3://" + text[len("s3:/"):]
        raise ConfigError(f"{url}: this command reads local files; `verify`, `get` and `restore` take s3:// URLs, and with "
                          "ARCHIVERD_ARCHIVE_URL set `check`, `list`, `find`, `export` and `search` read the bucket")


def segment_file(path: Path | str) -> Path:
    """The video a SEGMENT argument names (the .mkv, or its .index.json), checked to be a regular
    file: SegmentError (exit 4) naming what it is instead -- missing, a directory, a device, a FIFO."""
    named = Path(path)
    refuse_url(path)
    if str(path) in ("", "."):
        raise SegmentError("is a directory, not a segment file (an empty path names the current directory)",
                           str(path))
    video = index.named_video(named)
    try:
        st = video.stat()
    except FileNotFoundError:
        raise no_such_segment(video) from None
    except OSError as exc:
        raise SegmentError(f"cannot read the segment: {exc.strerror or exc}", str(video)) from None
    if stat.S_ISDIR(st.st_mode):
        raise SegmentError("is a directory, not a segment file", str(video))
    if not stat.S_ISREG(st.st_mode):
        raise SegmentError(f"is not a regular file (a segment is a .mkv file beside its {index.SUFFIX})",
                           str(video))
    return video


class SegmentReader:
    """Read a sealed segment (its video and sidecar index): iterate, fetch by `_id`, verify, salvage."""

    def __init__(self, path: Path | str, *, store: Any = None) -> None:
        self.store = store  # a store/objects.Store holding the segment (its objects read by ranges), or None: a file
        if store is not None:
            self.requested = self.path = Path(path)
            self.where = store.where(self.path.as_posix())
            self.index = store.load_index(self.path.as_posix())
            return
        self.requested = segment_file(path)
        self.path = index.preferred(self.requested)  # a verified repaired copy stands in for the original
        self.where = str(self.path)
        self.index = index.load(index.path_for(self.path))

    def open(self) -> Any:
        """The video's bytes: a local file, or the store's object read by ranged GETs."""
        return LocalFile(self.path) if self.store is None else self.store.open(self.path.as_posix())

    def entries(self) -> list[dict[str, Any]]:
        return self.index["docs"]

    def scan(self, **kwargs: Any) -> tuple[SegmentScan, Any]:
        source = self.open()
        return SegmentScan(source, self.where, self.index, **kwargs), source

    def __iter__(self) -> Iterator[bytes]:
        """Every document's exact BSON bytes in order; raises SegmentError if any is unrecoverable."""
        scan, source = self.scan(check_parity=False)
        with source:
            for _, _, raw in scan.documents():
                yield raw
        if scan.report.lost or scan.report.lost_blocks:
            raise SegmentError(f"{scan.report.lost} documents cannot be recovered: "
                               + "; ".join(scan.report.problems[:5]), self.where)

    def salvage(self) -> Iterator[tuple[int | None, bytes]]:
        """Every document that verifies, with its number; see `self.last_report` afterwards."""
        scan, source = self.scan(check_parity=False)
        self.last_report = scan.report
        with source:
            for n, _, raw in scan.documents():
                yield n, raw

    def verify(self, *, independent: bool = False, workers: int | None = None) -> ScanReport:
        try:
            with self.open() as source:
                return verify_source(source, self.index, self.where, independent=independent, workers=workers)
        except SegmentError as exc:
            report = ScanReport(self.where)
            report.problem(str(exc))
            return report

    def get(self, _id: Any) -> bytes:
        """One document by `_id` (a BSON value), decoding only the frames of its block (or, if one of
        them is damaged, the stripes that can repair it)."""
        key = index.key_of(_id)
        found = [i for i, e in enumerate(self.index["docs"]) if "_id" in e and index.id_key(e["_id"]) == key]
        if not found:
            raise KeyError(_id)
        return self.document(found[-1])  # the newest copy if a document was archived more than once

    def document(self, n: int) -> bytes:
        """Document `n` (its number in the index), checked against its SHA-256."""
        with self.open() as source:
            return read_document(source, self.index, n, self.where)

    def vectors(self, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray | None]:
        """Embeddings by (document number, index of the field in the index's `vector_fields`)."""
        with self.open() as source:
            return read_vectors(source, self.index, wanted, self.where)

    def block(self, number: int) -> list[bytes]:
        """The documents of one block, verified against its digest."""
        with self.open() as source:
            return read_block(source, self.index, number, self.where)


def fetch_ranges(source: mkv.Source, idx: Mapping[str, Any], ranges: Sequence[tuple[int, int]],
                 where: str) -> list[bytes | None]:
    """The record-stream bytes [offset, offset + length) of each range, decoding only the GOPs that
    hold them (a version 2 segment whose file is the size its index records). A range whose frames
    are not all intact comes back as None: the caller falls back to a full read with repair."""
    if idx["format_version"] < 2 or source.size != idx["video"]["bytes"] or not ranges:
        return [None] * len(ranges)
    p = idx["parity"]
    geometry = parity.Geometry(p["data_rows"], p["parity_rows"]) if p["parity_rows"] else \
        parity.Geometry(parity.DEFAULT_DATA_ROWS, 0)
    gop = idx["video"]["gop"]
    listed = idx["video"]["clusters"]
    wanted: dict[int, list[int]] = {}  # cluster -> positions
    spans = []
    for offset, length in ranges:
        first, last = offset // frame.BODY, (offset + max(length, 1) - 1) // frame.BODY
        positions = [geometry.data_position(d) for d in range(first, last + 1)]
        spans.append((offset, length, first, positions))
        for position in positions:
            wanted.setdefault(position // gop, []).append(position)
    if max(wanted) >= len(listed):
        return [None] * len(ranges)
    reader = video.VideoReader(source, where)

    def decode(cluster: int) -> dict[int, bytes]:
        offset, length = listed[cluster]
        out = {}
        needed = max(wanted[cluster]) - cluster * gop + 1  # the frames after the last one needed are not decoded
        for slot, (decoded, _) in enumerate(_decode_chunk(reader, [mkv.ClusterRef(offset, length)], False, needed)):
            position = cluster * gop + slot
            if decoded is not None and decoded.position == position and decoded.kind != frame.PARITY \
                    and decoded.segment_id.hex() == idx["segment_id"]:
                out[position] = decoded.body
        return out

    bodies: dict[int, bytes] = {}
    if len(wanted) > 2:
        for found in _fetch_threads().map(decode, sorted(wanted)):
            bodies.update(found)
    else:
        for cluster in sorted(wanted):
            bodies.update(decode(cluster))
    keys = enc.cached_keys(idx["segment_id"], where) if idx["format_version"] >= enc.VERSION else None
    out: list[bytes | None] = []
    for offset, length, first, positions in spans:
        if not all(p in bodies for p in positions):
            out.append(None)
            continue
        data = b"".join(bodies[p] for p in positions)
        start = offset - first * frame.BODY
        out.append(data[start:start + length] if keys is None else _decrypt(keys, idx, offset, data[start:start + length]))
    return out


def _decrypt(keys: enc.SegmentKeys, idx: Mapping[str, Any], offset: int, data: bytes) -> bytes | None:
    """The plaintext of stream bytes [offset, + len(data)) of an encrypted segment (the record
    prefix and block number are in clear); None when they are not inside one block."""
    block = next((b for b in idx["blocks"] if b["offset"] <= offset < b["offset"] + b["length"]), None)
    if block is None or offset + len(data) > block["offset"] + block["length"]:
        return None
    sealed_from = block["offset"] + records.PREFIX.size + records.BLOCK_NUMBER.size
    clear = max(0, min(len(data), sealed_from - offset))
    return data[:clear] + enc.decrypt_range(keys, block["block"], offset + clear - sealed_from, data[clear:])


def read_document(source: mkv.Source, idx: Mapping[str, Any], n: int, where: str) -> bytes:
    """Document `n`, checked against its SHA-256: from its block's head and its own vector sections
    when the index says where they are (a few GOPs), else from its whole block; with parity repair
    when a frame it needs is damaged."""
    entry = idx["docs"][n]
    block = idx["blocks"][entry["block"]]
    first = sum(b["documents"] for b in idx["blocks"][:entry["block"]])
    if "head" in block:
        ranges = [(block["offset"], block["head"])] + [(spot[1], spot[2]) for spot in entry.get("vectors", [])]
        parts = fetch_ranges(source, idx, ranges, where)
        if all(part is not None for part in parts):
            head = parts[0]
            skip = records.PREFIX.size + records.BLOCK_HEAD_V2.size
            try:
                if head[:4] != records.BLOCK or records.BLOCK_NUMBER.unpack_from(head, 8)[0] != block["block"]:
                    raise SegmentError("block record is not where the index says")
                raw = blockcodec.decode_document(memoryview(head)[skip:], parts[1:], n - first)
                if hashlib.sha256(raw).hexdigest() == entry["sha256"]:
                    return raw
            except SegmentError:
                pass
    raw = read_block(source, idx, entry["block"], where)[n - first]
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise SegmentError(f"document {n} does not match the index checksum", where)
    return raw


def read_vectors(source: mkv.Source, idx: Mapping[str, Any], wanted: Sequence[tuple[int, int]],
                 where: str) -> dict[tuple[int, int], np.ndarray | None]:
    """The float32 values of (document, vector field) pairs, each read from its own vector section
    (checked against the section's CRC); from the whole document where that is not possible. None
    where the document has no such field or cannot be read."""
    out: dict[tuple[int, int], np.ndarray | None] = {}
    direct, located, digests = [], [], []
    for n, which in wanted:
        spot = next((spot for spot in idx["docs"][n].get("vectors", []) if spot[0] == which), None)
        if spot is None:
            out[(n, which)] = None
        else:
            direct.append((n, which))
            located.append((spot[1], spot[2]))
            digests.append(spot[3] if len(spot) > 3 else None)
    for (n, which), part, digest in zip(direct, fetch_ranges(source, idx, located, where), digests):
        try:  # an encrypted section read on its own is checked against the sealed index's digest
            ok = part is not None and (digest is None or enc.section_digest(part) == digest)
            out[(n, which)] = blockcodec.decode_vector(part) if ok and part is not None else None
        except SegmentError:
            out[(n, which)] = None
        if out[(n, which)] is None:  # damaged or moved: the whole document, with repair if needed
            try:
                out[(n, which)] = _field_values(read_document(source, idx, n, where), idx["vector_fields"][which])
            except SegmentError:
                out[(n, which)] = None
    return out


def _field_values(raw: bytes, path: str) -> np.ndarray | None:
    value: Any = bson.decode(raw)
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    try:
        return np.asarray(value, dtype=np.float64).astype(np.float32) if isinstance(value, list) else None
    except (TypeError, ValueError):
        return None


def read_block(source: mkv.Source, idx: Mapping[str, Any], number: int, where: str) -> list[bytes]:
    """Decode only the GOPs holding block `number`; fall back to a full read (with parity repair)
    when one of its frames is damaged."""
    block = idx["blocks"][number]
    first, last = block["frames"]
    version = idx["format_version"]
    body_size = frame.BODY if version >= 2 else frame.V1_DATA
    data = _block_frames(source, idx, first, last, where)
    if data is not None:
        geometry = parity.Geometry(idx["parity"]["data_rows"], idx["parity"]["parity_rows"]) if version >= 2 \
            else None
        start_data = _data_index(geometry, first)
        stream = b"".join(data)
        start = block["offset"] - start_data * body_size
        recs = []
        try:
            recs = list(records.Parser(block["offset"]).feed(stream[start:start + block["length"]]))
        except SegmentError:
            recs = []
        if len(recs) == 1 and recs[0][0] == records.BLOCK:
            try:
                got, digest, encoded = open_block(recs[0][1], version, idx["segment_id"], where)
                docs = blockcodec.decode(encoded)
            except SegmentError:
                got, digest, docs = -1, None, None
            if got == number and docs is not None and (digest is None or _digest(docs) == digest):
                return docs
    # damaged: read the whole segment with repair and keep this block's documents
    scan = SegmentScan(source, where, idx)
    docs = [raw for _, b, raw in scan.documents() if b == number]
    if number in scan.report.lost_blocks or len(docs) != block["documents"]:
        raise SegmentError(f"block {number} is damaged beyond repair: " + "; ".join(scan.report.problems[:3]), where)
    return docs


def open_block(body: bytes, version: int, segment_id: str, where: str,
               keys: Callable[[], enc.SegmentKeys] | None = None) -> tuple[int, bytes | None, memoryview]:
    """(block number, documents digest or None in version 1, codec body) of a BLCK body; a sealed
    body (version 3) is opened with `keys()` (cached keys by segment id when not given)."""
    if version < enc.VERSION:
        return records.split_block(body, version)
    if len(body) < records.BLOCK_NUMBER.size:
        raise SegmentError("block record is shorter than its header", where)
    number = records.BLOCK_NUMBER.unpack_from(body)[0]
    segment_keys = keys() if keys is not None else enc.cached_keys(segment_id, where)
    plain = enc.open_block(segment_keys, number, memoryview(body)[records.BLOCK_NUMBER.size:], where)
    if len(plain) < 32:
        raise SegmentError("sealed block is shorter than its digest", where)
    return number, plain[:32], memoryview(plain)[32:]


def read_header(video_path: Path, max_clusters: int = 400, source: mkv.Source | None = None) -> dict[str, Any] | None:
    """The SHDR record of a video from its first frames alone (None if they do not give one intact):
    where an encrypted segment keeps a copy of its wrapped data key. `source`: the video's bytes
    when they are not the local file `video_path` (an object in a store)."""
    try:
        with source if source is not None else LocalFile(video_path) as source:
            reader = video.VideoReader(source, str(video_path))
            parser = records.Parser()
            for ref in reader.clusters()[:max_clusters]:
                for decoded, _ in _decode_chunk(reader, [ref], False):
                    if decoded is None or decoded.kind == frame.PARITY:
                        return None
                    for kind, body, _ in parser.feed(decoded.body):
                        header = json.loads(body) if kind == records.HEADER else None
                        return header if isinstance(header, dict) else None
    except (SegmentError, OSError, ValueError, RecursionError):
        return None
    return None


def _data_index(geometry: parity.Geometry | None, position: int) -> int:
    """Data-frame index of a data position."""
    if geometry is None or not geometry.parity_rows:
        return position
    stripe, offset = divmod(position, geometry.stripe_positions)
    return stripe * geometry.data_per_stripe + offset


def _block_frames(source: mkv.Source, idx: Mapping[str, Any], first: int, last: int, where: str) -> list[bytes] | None:
    """Bodies of the data frames at positions first..last, or None if any of them is damaged."""
    reader = video.VideoReader(source, where)
    listed = idx.get("video", {}).get("clusters")
    gop = idx.get("video", {}).get("gop", video.GOP)
    if listed and source.size == idx["video"]["bytes"]:
        refs = [mkv.ClusterRef(o, n, i * gop) for i, (o, n) in enumerate(listed)][first // gop:last // gop + 1]
    else:
        refs = reader.clusters()
    refs = [r for i, r in enumerate(refs) if r.first_frame is None or (
        r.first_frame <= last and (i + 1 == len(refs) or refs[i + 1].first_frame is None
                                   or refs[i + 1].first_frame > first))]
    base = refs[0].first_frame if refs and refs[0].first_frame is not None else 0
    bodies: list[bytes] = []
    seen = 0
    for slot, decoded, _ in decoded_frames(reader, refs, workers=1):
        position = base + slot
        if position < first:
            continue
        if position > last:
            break
        if decoded is None or decoded.position != position or decoded.segment_id.hex() != idx["segment_id"]:
            return None
        seen += 1
        if decoded.kind != frame.PARITY:
            bodies.append(decoded.body)
    return bodies if seen == last - first + 1 else None

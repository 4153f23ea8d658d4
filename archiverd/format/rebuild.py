"""Rebuilding from the video alone: a lost index (`reindex`) and a damaged video (`repair`).

Both read the video completely, repairing lost frames from parity, and write the recovered record
stream again through the writer's frame layer. The writer is deterministic, so the rebuilt video is
the original file byte for byte (the SHA-256 its index recorded) unless the FFV1 encoder itself
changed since; the rebuilt index describes that original. Nothing here writes over an existing
file: new files are published with exclusive links, after they have been verified.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import encryption, frame, index, parity
from ..crypto import envelope
from .documents import header_meta, id_entry
from .reader import LocalFile, ScanReport, SegmentScan, segment_file
from .writer import FrameWriter, build_index, file_sha256, publish
from ..errors import SegmentError
from ..store import durable

@dataclass
class Rebuilt:
    path: Path  # the file written: the index (reindex) or the repaired video (repair)
    index: dict[str, Any]
    identical: bool  # the rebuilt video has the original's bytes
    report: ScanReport


def _regenerate(video: Path, target: Path, idx: dict[str, Any] | None) \
        -> tuple[FrameWriter, dict[str, Any], ScanReport, encryption.SegmentKeys | None, dict[str, Any] | None]:
    """Read `video` (with `idx` if there is one), write the recovered stream again as `target`
    (unpublished), and return the writer with the index describing what it wrote, and for an
    encrypted segment its keys and the wrapped data key its header holds."""
    writer: FrameWriter | None = None
    docs: list[dict[str, Any]] = []

    def on_data(data_index: int, body: bytes | None) -> None:
        nonlocal writer
        if body is None:
            raise SegmentError(f"data frame {data_index} cannot be recovered", str(video))
        if writer is None:
            geometry = scan.geometry or parity.Geometry(parity.DEFAULT_DATA_ROWS, 0)
            writer = FrameWriter(target, bytes.fromhex(scan.segment_id or "00" * 8), geometry,
                                 version=scan.version or frame.VERSION)
        writer.write(body)

    try:
        with LocalFile(video) as source:
            scan = SegmentScan(source, str(video), idx, on_data=on_data)
            scan.collect_vectors = True
            for _, block, raw in scan.documents():
                entry = {**id_entry(raw), "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw), "block": block}
                if idx is None:  # what the daemon recorded per document, from the source the header names
                    entry |= header_meta(raw, scan.header)
                docs.append(entry)
        report = scan.report
        if writer is None or scan.end is None or report.lost or report.lost_blocks:
            raise SegmentError(f"the video cannot be rebuilt ({report.status}): " + "; ".join(report.problems[:5]),
                               str(video))
        writer.end_stream_at(scan.stream_end)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    header = scan.header
    blocks = [{k: v for k, v in b.items() if k != "vectors"} |
              {"frames": [writer.position_of(b["offset"]), writer.position_of(b["offset"] + b["length"] - 1)]}
              for b in scan.blocks]
    for entry in docs:
        entry["frames"] = blocks[entry["block"]]["frames"]
    fields: dict[str, int] = {}
    first = 0
    for b in scan.blocks:
        for doc, path, offset, length, digest in b.get("vectors", []):
            spot = [fields.setdefault(path, len(fields)), offset, length] + ([digest] if digest is not None else [])
            docs[first + doc].setdefault("vectors", []).append(spot)
        first += b["documents"]
    source = header.get("source") if isinstance(header.get("source"), dict) else None
    settings = idx or header
    content = scan.content_sha256
    if content is None:
        raise SegmentError("the documents do not match the segment's content digest", str(video))
    rebuilt = build_index(writer, str(header.get("created_at", "")), source, blocks, docs, content,
                          (settings.get("parity") or {}).get("percent"),
                          (settings.get("compression") or {}).get("block_bytes"), list(fields),
                          encrypted=(scan.version or 0) >= encryption.VERSION)
    if idx is not None:  # keep what the daemon added per document (e.g. the date)
        for new, old in zip(rebuilt["docs"], idx["docs"]):
            for key, value in old.items():
                new.setdefault(key, value)
    rebuilt["video"]["sha256"] = file_sha256(writer.temp)
    return writer, rebuilt, report, (scan.keys if (scan.version or 0) >= encryption.VERSION else None), \
        encryption.header_wrapped(header)


def reindex(video: Path) -> Rebuilt:
    """Rebuild a lost index from the video alone (verified by decoding every document against its
    block's SHA-256 and the stream's content digest) and write it with an exclusive create."""
    video = segment_file(video)
    target = index.path_for(video)
    if target.exists():
        raise SegmentError(f"{target.name} exists; reindex never replaces an index (move it away first)", str(video))
    writer, idx, report, keys, wrapped = _regenerate(video, video, None)
    try:
        with LocalFile(video) as source:
            identical = idx["video"]["sha256"] == file_sha256(source)
        if not identical:
            report.warnings.append("the video differs from the original rebuilt from it (it is damaged, or "
                                   "another encoder version wrote it): `archiverd check --repair` writes the original")
        if keys is not None and wrapped is not None and not envelope.path_for(video).exists():
            envelope.write(video, wrapped)  # the seal stopped before it: the header's copy
            report.warnings.append("the segment key file was missing; written again from the video's header")
        durable.write_new(target, index.dumps(idx, keys))
        durable.fsync_dir(video.parent)
        return Rebuilt(target, idx, identical, report)
    finally:
        writer.abort()


def repair(video: Path) -> Rebuilt:
    """Write a verified, repaired copy of a damaged segment beside it (`part-N.repaired.mkv` and its
    index). The original files are never modified or removed."""
    original = index.load(index.path_for(video))
    target = index.repaired_path(video)
    if target.exists() or index.path_for(target).exists():
        raise SegmentError(f"{target.name} already exists", str(video))
    writer, idx, report, keys, _ = _regenerate(video, target, original)
    try:
        idx["video"]["file"] = target.name
        with LocalFile(video) as source:
            idx["repaired_from"] = {"file": video.name, "sha256": file_sha256(source),
                                    "repaired_frames": report.repaired_frames}
        published = publish(target, writer.temp, idx, keys=keys)
        return Rebuilt(target, published, published["video"]["sha256"] == original["video"]["sha256"], report)
    finally:
        writer.abort()

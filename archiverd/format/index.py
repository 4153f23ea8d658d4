"""The sidecar index (`<segment>.index.json`): what a segment holds, without decoding it.

It lists every document's `_id` (canonical Extended JSON), SHA-256, length, block and frame range,
and (version 2) the byte range of every GOP's cluster, so one document is fetched by decoding only its
block's frames, and `verify` can compare what the video yields against what was written. Everything
in it can be rebuilt from the video alone (`archiverd reindex`). It is published after the video has
been verified: a segment is committed once its index exists (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
from bson import json_util
from bson.codec_options import DatetimeConversion

from . import identity
from ..errors import SegmentError
from ..store import durable

FORMAT = "archiverd-segment"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2, 3)  # 3: an encrypted segment (format/encryption.py)
SUFFIX = ".index.json"
MAX_INDEX_BYTES = 64 << 20  # 5,000 EAT documents take ~1.5 MB; ~200,000 documents fit
_REQUIRED = {"format": str, "format_version": int, "segment_id": str, "created_at": str,
             "documents": int, "frames": int, "blocks": list, "docs": list, "video": dict}
_REQUIRED_V2 = {"parity": dict, "data_frames": int, "stream_bytes": int}


def path_for(video: Path) -> Path:
    """part-0001.mkv -> part-0001.index.json"""
    return video.with_name(video.name.rsplit(".", 1)[0] + SUFFIX)


def repaired_path(video: Path) -> Path:
    """part-0003.mkv -> part-0003.repaired.mkv: the verified repaired copy `check --repair` writes
    beside a damaged segment, which readers prefer."""
    stem, _, ext = video.name.rpartition(".")
    return video.with_name(f"{stem}.repaired.{ext}")


def preferred(video: Path) -> Path:
    """The file to read for a segment: its repaired copy when one was written for it, else itself."""
    repaired = repaired_path(video)
    if ".repaired." in video.name or not (path_for(repaired).exists() and repaired.exists()):
        return video
    return video if foreign_repair(video) else repaired


def foreign_repair(video: Path) -> str | None:
    """Why the repaired copy beside `video` does not stand in for it (None: it does). A copy stands
    in only if its index loads, says it was repaired from this file, and holds this segment (the
    segment id of the original's index, else of its video's header): a copy of another segment
    under that name (a restore into the wrong directory, a hand copy) would otherwise hide the
    original's documents from every read, and `erase` would remove the original after rewriting the
    copy."""
    repaired = repaired_path(video)
    try:
        copy = load(path_for(repaired), public_only=True)
    except SegmentError as exc:
        return f"{repaired.name}: {exc.message}"
    came_from = copy.get("repaired_from")
    if not isinstance(came_from, dict) or came_from.get("file") != video.name:
        return f"{repaired.name} does not say it was repaired from {video.name}"
    own = _segment_id(video)
    if own is not None and copy["segment_id"] != own:
        return f"{repaired.name} holds segment {copy['segment_id']}, not {video.name}'s {own}"
    return None


def _segment_id(video: Path) -> str | None:
    """A segment's id from its index, else from its video's header; None if neither can be read."""
    try:
        return load(path_for(video), public_only=True)["segment_id"]
    except SegmentError:
        from .reader import read_header
        header = read_header(video)
        found = header.get("segment_id") if header else None
        return found if isinstance(found, str) else None


def id_json(value: Any) -> Any:
    """An `_id` as canonical Extended JSON (a JSON value, e.g. {"$oid": "..."})."""
    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))


_EJSON = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, tz_aware=True,
                               datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def from_json(ejson: Any) -> Any:
    """The BSON value back from its canonical Extended JSON (the inverse of `id_json`)."""
    return json_util.loads(json.dumps(ejson), json_options=_EJSON)


def id_key(ejson: Any) -> str:
    """The identity key (format/identity.py) of an `_id` given as canonical Extended JSON (an entry
    that is not valid Extended JSON -- a damaged or hostile index -- gets a key no document has)."""
    try:
        return identity.key(from_json(ejson))
    except (ValueError, TypeError, OverflowError, KeyError, RecursionError, bson.errors.BSONError):
        return json.dumps(["unreadable", ejson], sort_keys=True)


def key_of(value: Any) -> str:
    """The identity key of an `_id` given as a BSON value (equal to id_key of its index entry):
    equal exactly when MongoDB deems the two `_id`s the same."""
    return identity.key(value)


def dumps(index: dict[str, Any], keys: Any = None) -> bytes:
    """The index file's bytes; with an encrypted segment's keys (format/encryption.py), its
    private part sealed."""
    if keys is not None:
        from . import encryption
        index = encryption.seal_index(keys, index)
    return (json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode()


def load(path: Path, *, public_only: bool = False) -> dict[str, Any]:
    """Read and structurally check an index; SegmentError names what is wrong. The index of an
    encrypted segment is opened with its key (EncryptionKeyError without one), or with
    `public_only` only its public part is checked and returned (what `check` needs without a key)."""
    return parse(durable.read_bounded(path, MAX_INDEX_BYTES, "index file"), str(path), public_only=public_only)


def video_of(index_path: Path) -> Path:
    """part-0001.index.json -> part-0001.mkv"""
    return index_path.with_name(index_path.name[:-len(SUFFIX)] + ".mkv")


def named_video(path: Path) -> Path:
    """The video a SEGMENT argument names: the .mkv itself, or the video of an index file."""
    return video_of(path) if path.name.endswith(SUFFIX) else path


def parse(raw: bytes, where: str, *, public_only: bool = False,
          keys: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Structurally check index bytes (version 1, 2 or 3). An encrypted index is opened with
    `keys(public part)` (the segment's SegmentKeys; an object store reads its key objects), by
    default with the key file beside the video `where` names."""
    path = where
    try:
        index = json.loads(raw)
    except RecursionError:
        raise SegmentError("index is not valid JSON (nested too deeply)", str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegmentError(f"index is not valid JSON ({exc})", str(path)) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise SegmentError("not an archiverd segment index", str(path))
    if index.get("format_version") not in READABLE_VERSIONS:
        raise SegmentError(f"unsupported index format version {index.get('format_version')!r}", str(path))
    if (index["format_version"] == 3) != ("sealed" in index):
        raise SegmentError("index is sealed in a format version that is not, or not in one that is", str(path))
    if "sealed" in index:
        if not (isinstance(index.get("segment_id"), str) and isinstance(index.get("video"), dict)
                and isinstance(index.get("sealed"), str) and _natural(index.get("documents"))):
            raise SegmentError("index of an encrypted segment is malformed", str(path))
        if public_only:
            return index
        index = _open(index, where, keys)
    required = _REQUIRED | (_REQUIRED_V2 if index["format_version"] >= 2 else {})
    for key, kind in required.items():
        if not isinstance(index.get(key), kind):
            raise SegmentError(f"index field {key!r} is missing or not a {kind.__name__}", str(path))
    if len(index["docs"]) != index["documents"]:
        raise SegmentError(f"index lists {len(index['docs'])} documents but says {index['documents']}",
                           str(path))
    for i, doc in enumerate(index["docs"]):
        if not (isinstance(doc, dict) and isinstance(doc.get("sha256"), str) and _natural(doc.get("bytes"))
                and _natural(doc.get("block")) and _pair(doc.get("frames"))
                and doc["block"] < len(index["blocks"])):
            raise SegmentError(f"index entry {i} is malformed", str(path))
    for i, block in enumerate(index["blocks"]):
        if not (isinstance(block, dict) and block.get("block") == i
                and all(_natural(block.get(k)) for k in ("offset", "length", "documents"))
                and _pair(block.get("frames"))):
            raise SegmentError(f"index block {i} is malformed", str(path))
    if sum(b["documents"] for b in index["blocks"]) != index["documents"]:
        raise SegmentError("index blocks do not add up to its document count", str(path))
    video = index["video"]
    if not (_natural(video.get("bytes")) and isinstance(video.get("sha256"), str)):
        raise SegmentError("index video size or SHA-256 is malformed", str(path))
    if index["format_version"] >= 2:
        p = index["parity"]
        if not (_natural(p.get("data_rows")) and _natural(p.get("parity_rows"))
                and p["data_rows"] + p["parity_rows"] <= 255 and (p["parity_rows"] == 0 or p["data_rows"] > 0)):
            raise SegmentError("index parity settings are malformed", str(path))
        clusters = video.get("clusters")
        if not (isinstance(clusters, list) and all(_pair(c) for c in clusters)):
            raise SegmentError("index cluster list is malformed", str(path))
    return index


def _open(public: dict[str, Any], where: str, keys: Callable[[dict[str, Any]], Any] | None) -> dict[str, Any]:
    from . import encryption
    from .reader import read_header
    if keys is not None:
        return encryption.open_index(keys(public), public, where)
    video = named_video(Path(where))
    segment_keys = encryption.segment_keys(video, public["segment_id"],
                                           lambda: encryption.header_wrapped(read_header(video)))
    return encryption.open_index(segment_keys, public, where)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_natural(v) for v in value)

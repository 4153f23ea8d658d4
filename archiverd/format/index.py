"""The sidecar index (`<segment>.index.json`): what a segment holds, without decoding it.

It lists every document's `_id` (canonical Extended JSON), SHA-256, length, block and frame range,
so one document can be fetched by decoding only its block's frames, and `verify` can compare what
the video yields against what was written. The index is written after the video is verified and
published last: a segment exists once its index exists (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bson import json_util

from ..errors import SegmentError

FORMAT = "archiverd-segment"
FORMAT_VERSION = 1
SUFFIX = ".index.json"
_REQUIRED = {"format": str, "format_version": int, "segment_id": str, "created_at": str,
             "documents": int, "frames": int, "blocks": list, "docs": list, "video": dict}


def path_for(video: Path) -> Path:
    """part-0001.mkv -> part-0001.index.json"""
    return video.with_name(video.name.rsplit(".", 1)[0] + SUFFIX)


def id_json(value: Any) -> Any:
    """An `_id` as canonical Extended JSON (a JSON value, e.g. {"$oid": "..."})."""
    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))


def from_json(ejson: Any) -> Any:
    """The BSON value back from its canonical Extended JSON (the inverse of `id_json`)."""
    return json_util.loads(json.dumps(ejson))


def id_key(ejson: Any) -> str:
    """A stable lookup key for an `_id` given as canonical Extended JSON (what `id_json` returns)."""
    return json.dumps(ejson, sort_keys=True, separators=(",", ":"))


def key_of(value: Any) -> str:
    """The lookup key of an `_id` given as a BSON value (equal to id_key of its index entry)."""
    return id_key(id_json(value))


def dumps(index: dict[str, Any]) -> bytes:
    return (json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode()


def load(path: Path) -> dict[str, Any]:
    """Read and structurally check an index; SegmentError names what is wrong."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SegmentError("index file is missing", str(path)) from None
    except OSError as exc:
        raise SegmentError(f"cannot read index: {exc.strerror}", str(path)) from None
    try:
        index = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegmentError(f"index is not valid JSON ({exc})", str(path)) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise SegmentError("not an archiverd segment index", str(path))
    if index.get("format_version") != FORMAT_VERSION:
        raise SegmentError(f"unsupported index format version {index.get('format_version')!r}", str(path))
    for key, kind in _REQUIRED.items():
        if not isinstance(index.get(key), kind):
            raise SegmentError(f"index field {key!r} is missing or not a {kind.__name__}", str(path))
    if len(index["docs"]) != index["documents"]:
        raise SegmentError(f"index lists {len(index['docs'])} documents but says {index['documents']}",
                           str(path))
    for i, doc in enumerate(index["docs"]):
        if not (isinstance(doc, dict) and isinstance(doc.get("sha256"), str) and isinstance(doc.get("bytes"), int)
                and isinstance(doc.get("block"), int) and isinstance(doc.get("frames"), list)):
            raise SegmentError(f"index entry {i} is malformed", str(path))
    return index

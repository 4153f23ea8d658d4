"""`archiverd inspect`: what a segment holds, from its index (nothing is decoded)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..format import index


def summary(path: Path, idx: dict[str, Any]) -> dict[str, Any]:
    docs = idx["docs"]
    raw = sum(d["bytes"] for d in docs)
    size = idx["video"]["bytes"]
    return {
        "segment": str(path), "segment_id": idx["segment_id"], "created_at": idx["created_at"],
        "source": idx.get("source"), "documents": idx["documents"], "frames": idx["frames"],
        "blocks": len(idx["blocks"]), "video_bytes": size, "bson_bytes": raw,
        "bytes_per_document": round(size / len(docs)) if docs else None,
        "first_id": docs[0].get("_id") if docs else None, "last_id": docs[-1].get("_id") if docs else None,
        "codec": f"{idx['video']['codec']} in {idx['video']['container']}",
        "qr": f"version {idx['qr']['version']}-{idx['qr']['ec_level']}, {idx['qr']['payload_bytes']} bytes/frame",
        "compression": idx["compression"]["codec"],
    }


@click.command("inspect")
@click.argument("segment", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--docs", is_flag=True, help="Also list every document's index entry.")
def command(segment: Path, as_json: bool, docs: bool) -> int:
    """Summarise SEGMENT from its sidecar index.

    \b
    Examples:
      archiverd inspect part-0001.mkv
      archiverd inspect --json --docs part-0001.mkv | jq '.docs[0]'
    """
    idx = index.load(index.path_for(segment))
    info = summary(segment, idx)
    if docs:
        info["docs"] = idx["docs"]
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return 0
    for key, value in info.items():
        if key != "docs":
            click.echo(f"{key:>18}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    for entry in info.get("docs", []):
        click.echo(f"  block {entry['block']:>4} frames {entry['frames'][0]}-{entry['frames'][1]} "
                   f"{entry['bytes']:>9} B  {json.dumps(entry['_id'])}")
    return 0

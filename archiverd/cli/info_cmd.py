"""`archiverd info` (also `inspect`): what one segment holds, its parity and its repair state, from
its index and the file sizes alone (nothing is decoded; `verify` reads every frame)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import click

from .. import units
from ..errors import EXIT_OK, SegmentError
from ..format import index
from ..format.reader import no_such_segment, refuse_url


def _regular(path: Path, what: str) -> os.stat_result | None:
    """The file's stat if it is a regular file, None if it does not exist; SegmentError otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SegmentError(f"cannot read the {what}: {exc.strerror or exc}", str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise SegmentError("is a directory, not a segment (`archiverd list` shows what a collection holds)",
                           str(path))
    if not stat.S_ISREG(st.st_mode):
        raise SegmentError(f"is not a regular file (a segment is a .mkv file beside its {index.SUFFIX})", str(path))
    return st


def summary(segment: Path, *, docs: bool = False) -> dict[str, Any]:
    """Everything `info` shows (with `docs`, every document's index entry); SegmentError when there
    is no loadable index to show."""
    refuse_url(segment)
    original = index.named_video(segment)
    video_st = _regular(original, "video")
    if _regular(index.path_for(original), "index") is None:
        if video_st is None:
            raise no_such_segment(Path(segment))
        raise SegmentError("the index file is missing: this video is an orphan (`archiverd reindex` rebuilds "
                           "its index from the video)", str(original))
    reading = index.preferred(original)
    idx = index.load(index.path_for(reading))
    entries = idx["docs"]
    bson_bytes = sum(d["bytes"] for d in entries)
    video_bytes = idx["video"]["bytes"]
    on_disk = _regular(reading, "video")
    dates = [d["date"] for d in entries if isinstance(d.get("date"), str)]
    parity = idx.get("parity")
    data_frames = idx.get("data_frames", idx["frames"])
    info = {
        "segment": str(original), "segment_id": idx["segment_id"], "created_at": idx["created_at"],
        "source": idx.get("source"), "format_version": idx["format_version"],
        "documents": idx["documents"], "bson_bytes": bson_bytes,
        "first_id": entries[0].get("_id") if entries else None, "last_id": entries[-1].get("_id") if entries else None,
        "first_date": min(dates) if dates else None, "last_date": max(dates) if dates else None,
        "frames": idx["frames"], "data_frames": data_frames, "parity_frames": idx["frames"] - data_frames,
        "blocks": len(idx["blocks"]), "video_bytes": video_bytes,
        "index_bytes": index.path_for(reading).stat().st_size,
        "bytes_per_document": round(video_bytes / len(entries)) if entries else None,
        "codec": f"{idx['video']['codec']} in {idx['video']['container']}",
        "qr": f"version {idx['qr']['version']}-{idx['qr']['ec_level']}, {idx['qr']['payload_bytes']} bytes/frame",
        "compression": idx["compression"]["codec"],
        "parity": parity,
        "repair": {"reading": str(reading), "repaired_copy": reading != original,
                   "original_present": video_st is not None},
        "video_present": on_disk is not None,
        "size_matches_index": on_disk is not None and on_disk.st_size == video_bytes,
    }
    if docs:
        info["docs"] = entries
    return info


def _lines(info: dict[str, Any]) -> list[str]:
    src = info["source"] or {}
    out = [("segment", info["segment"]), ("segment id", info["segment_id"]), ("sealed", info["created_at"]),
           ("source", f"{src.get('db', '?')}.{src.get('collection', '?')}"
                      + (f" (date field {src['date_field']!r})" if src.get("date_field") else ""))]
    dated = f", dated {info['first_date']} .. {info['last_date']}" if info["first_date"] else ""
    out.append(("documents", f"{units.count(info['documents'])} ({units.size(info['bson_bytes'])} of BSON){dated}"))
    if info["documents"]:
        # in the order archived (by date), not a range: _ids need not sort with their dates
        out.append(("_ids", f"first {json.dumps(info['first_id'])}, last {json.dumps(info['last_id'])}"))
    ratio = f", {info['bson_bytes'] / info['video_bytes']:.2f} bytes of BSON per video byte" if info["video_bytes"] else ""
    out.append(("size", f"{units.size(info['video_bytes'])} video + {units.size(info['index_bytes'])} index"
                        + (f", {units.count(info['bytes_per_document'])} B per document" if info["documents"] else "")
                        + ratio))
    out.append(("frames", f"{info['frames']}: {info['data_frames']} data, {info['parity_frames']} parity; "
                          f"{units.plural(info['blocks'], 'block')}"))
    out.append(("format", f"version {info['format_version']}; {info['codec']}; QR {info['qr']}; {info['compression']}"))
    p = info["parity"]
    if p:
        out.append(("parity", f"{p.get('code', 'reed-solomon')} {p.get('percent', '?')}%: {p['parity_rows']} parity rows "
                              f"per stripe of {p['data_rows']} data rows x {p.get('columns', '?')} columns"
                              + (f" (last stripe: {p['tail_parity_rows']})" if "tail_parity_rows" in p else "")
                              + ("" if p["parity_rows"] else "; no parity: damage cannot be repaired")))
    else:
        out.append(("parity", "none (format version 1): damage cannot be repaired"))
    r = info["repair"]
    state = (f"a verified repaired copy is read: {Path(r['reading']).name}"
             + ("" if r["original_present"] else " (the damaged original is gone)") if r["repaired_copy"]
             else "original")
    if not info["video_present"]:
        state += "; THE VIDEO IS MISSING"
    elif info["size_matches_index"]:
        state += "; size as sealed (SHA-256 not read: `archiverd verify` checks every frame)"
    else:
        state += "; SIZE DIFFERS FROM THE INDEX: damaged or truncated (`archiverd check` classifies it)"
    out.append(("state", state))
    return [f"{k + ':':<12}{v}" for k, v in out]


@click.command("info")
@click.argument("segment", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--docs", is_flag=True, help="Also list every document's index entry.")
def command(segment: Path, as_json: bool, docs: bool) -> int:
    """Summarise SEGMENT (its .mkv or its .index.json) from its index: source, documents, dates,
    sizes, frames, format, parity, and whether a repaired copy stands in for it. Nothing is decoded.

    Exit 4 if the segment has no loadable index, or its video is missing or not the size sealed.
    `inspect` is another name for this command.

    \b
    Examples:
      archiverd info archives/evolving_agents_db/eat_agent_experiences/2026/08/01/part-0001.mkv
      archiverd info --json --docs part-0001.mkv | jq '.docs[0]'
    """
    info = summary(segment, docs=docs)
    if as_json:
        click.echo(json.dumps(info, indent=1))
    else:
        click.echo("\n".join(_lines(info)))
        for entry in info.get("docs", []):
            click.echo(f"  block {entry['block']:>4} frames {entry['frames'][0]}-{entry['frames'][1]} "
                       f"{entry['bytes']:>9} B  {json.dumps(entry.get('_id'))}")
    return EXIT_OK if info["video_present"] and info["size_matches_index"] else SegmentError.exit_code


# the first name of this command, kept for scripts: the same command under another name
alias = click.Command("inspect", callback=command.callback, params=command.params, help=command.help,
                      hidden=True)

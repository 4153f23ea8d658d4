"""`archiverd reindex`: rebuild a segment's lost index, and its vector sidecar, from its video."""
from __future__ import annotations

from pathlib import Path

import click

from .. import units
from ..errors import SegmentError
from ..format import index, rebuild
from ..format.reader import SegmentReader, segment_file
from ..store import derived


@click.command("reindex")
@click.argument("segments", nargs=-1, required=True, type=click.Path(path_type=Path))
def command(segments: tuple[Path, ...]) -> int:
    """Rebuild what can be derived from each video in SEGMENTS: a lost index, and a missing,
    damaged or stale vector sidecar.

    The video carries everything its index holds (source, every document's _id, length and
    SHA-256, block and frame positions, format parameters). The video is decoded completely,
    lost frames are rebuilt from parity, every document is checked against its block's SHA-256 and
    the stream's content digest, and only then is the index written -- with an exclusive create:
    an existing index is never replaced. The sidecar is rebuilt from the documents, bit for bit
    what the seal wrote. Exit 4 if a video cannot be decoded completely, or is not the size its index
    records.

    \b
    Examples:
      archiverd reindex archives/evolving_agents_db/eat_agent_experiences/2026/08/01/part-0003.mkv
    """
    for named in segments:
        path = segment_file(named)
        done = []
        if not index.path_for(path).exists():
            rebuilt = rebuild.reindex(path)
            note = "" if rebuilt.identical else f" ({'; '.join(rebuilt.report.warnings)})"
            frames = rebuilt.report.repaired_frames
            repaired = f", {units.plural(frames, 'frame')} rebuilt from parity" if frames else ""
            documents = units.plural(rebuilt.index['documents'], 'document')
            done.append(f"index rebuilt: {documents}{repaired} -> {rebuilt.path.name}{note}")
        reader = SegmentReader(path)
        size = reader.path.stat().st_size
        if size != reader.index["video"]["bytes"]:  # cut, grown or replaced: nothing here can rebuild that
            raise SegmentError(f"the video is {size} bytes, its index says {reader.index['video']['bytes']}: "
                               "it is not the video that was sealed; run `archiverd check` on it", reader.where)
        problem = derived.sidecar_problem(path, reader.index)
        if problem:
            done.append(f"vector sidecar rebuilt ({problem}) -> {derived.rebuild_sidecar(path).name}")
        click.echo(f"{path}: " + ("; ".join(done) if done else "index and vector sidecar present and consistent, video of the indexed size; "
                                                   "nothing to rebuild (`archiverd verify` decodes the video)"))
    return 0

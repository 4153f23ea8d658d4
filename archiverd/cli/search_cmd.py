"""`archiverd search`: semantic (vector) search over archived embeddings."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from ..config import Config
from ..errors import EXIT_WARNING, ConfigError
from ..format.documents import field_value
from ..format.sidecar import MAX_DIM, MIN_DIM, as_vector
from ..query import ejson
from ..query.ids import parse_id
from ..query.project import Projection
from ._common import json_option, lines_written, open_archive, parse_range, with_config

MAX_VECTOR_FILE = 64 << 20


def parse_vector(text: str) -> list[float]:
    """--vector: a JSON array of numbers, inline or in a file."""
    stripped = text.strip()
    if not stripped.startswith("["):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--vector takes a JSON array of numbers or a file holding one; {text!r} is neither")
        if path.stat().st_size > MAX_VECTOR_FILE:
            raise ConfigError(f"--vector file {path} is too large for a vector")
        stripped = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--vector is not a JSON array: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise ConfigError("--vector is not a JSON array of numbers: it is nested too deeply") from None
    if not isinstance(value, list) or not value or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value):
        raise ConfigError("--vector must be a non-empty JSON array of finite numbers")
    return [float(x) for x in value]


@click.command("search")
@click.option("--field", required=True, metavar="PATH",
              help="The embedding field to search, e.g. embeddings.output_summary_embedding.")
@click.option("--vector", metavar="JSON|FILE", help="The query vector: a JSON array, or a file holding one.")
@click.option("--like", metavar="ID", help="Use the FIELD embedding of this archived document (_id) as the query "
              "(the document itself is left out of the results).")
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=10, show_default=True, help="How many results.")
@click.option("--from", "start", metavar="WHEN", help="Only documents dated at or after WHEN.")
@click.option("--to", "end", metavar="WHEN", help="Only documents dated before WHEN.")
@click.option("--filter", "filter_", metavar="JSON", help="Only documents matching this MongoDB filter.")
@click.option("--projection", metavar="JSON", help="Fields to include or exclude from each printed document.")
@click.option("--canonical", is_flag=True, help="Canonical Extended JSON (type-exact) instead of relaxed.")
@with_config
def command(cfg: Config, field: str, vector: str | None, like: str | None, k: int, start: str | None,
            end: str | None, filter_: str | None, projection: str | None, canonical: bool) -> int:
    """Print the K archived documents whose FIELD embedding is most similar (cosine) to a query
    vector, best first, one JSON line each: {"score": ..., "document": {...}}.

    Each segment's vector sidecar (about 1.9 bits per dimension) ranks every document; the best
    candidates are re-ranked with their exact vectors, read from the video, so the scores printed
    are exact cosines. A segment whose sidecar is missing or damaged is searched exactly (slower;
    `archiverd reindex` rebuilds the sidecar). --from/--to/--filter restrict the documents searched.

    \b
    Examples:
      archiverd search --field embeddings.output_summary_embedding --vector query.json -k 10
      archiverd search --field embeddings.output_summary_embedding --like 66b1f0c2e4b0a1b2c3d4e5f6 \\
          --from 2026-03-01 --filter '{"final_outcome": "failure"}' --projection '{"embeddings": 0}'
    """
    if (vector is None) == (like is None):
        raise ConfigError("give the query as --vector JSON|FILE or --like ID (one of them)")
    spec = json_option(filter_, "--filter")
    if spec is not None and not isinstance(spec, dict):
        raise ConfigError("--filter must be a JSON object")
    shape = Projection(json_option(projection, "--projection"))
    lo, hi = parse_range(start, end)
    with open_archive(cfg) as archive:
        if like is not None:
            itself, found = next(((v, d) for v in parse_id(like) if (d := archive.get(v, raw=True)) is not None),
                                 (None, None))
            if found is None:
                raise ConfigError(f"--like {like}: no archived document has this _id")
            present, value = field_value(found, field)
            if not present:
                raise ConfigError(f"--like {like}: that document has no {field}")
            if as_vector(value) is None:
                raise ConfigError(f"--like {like}: its {field} is not an embedding (an array of {MIN_DIM}.."
                                  f"{MAX_DIM} finite numbers, not all zero)")
            query: Any = value
        else:
            query = parse_vector(vector or "")
            itself = None
        # as Elasticsearch's more_like_this: the document asked about is not one of its own results
        hits = archive.search(query, field, k, start=lo, end=hi, filter=spec, raw=True, leave_out=itself)
    if not hits:  # most often a misspelt --field: say so, as `get` does for an _id it does not find
        click.echo(f"archiverd: no archived document{' in that range or filter' if spec or lo or hi else ''} has an "
                   f"embedding in {field}", err=True)
        return EXIT_WARNING
    lines = ejson.Lines(canonical)
    for hit in hits:
        click.echo(lines.dumps({"score": hit.score, "document": lines.document(shape.apply(hit.document))}))
    return lines_written(lines, 0)

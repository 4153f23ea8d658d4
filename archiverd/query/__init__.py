"""Reading archived data without restoring it: MongoDB's find semantics (filter, projection, sort,
limit) over BSON documents read back from segments, `_id` helpers for lookups, semantic search over
embeddings (`search`: quantised per-segment sidecars, format/sidecar.py, and a re-rank with exact
vectors), and `Archive`, the API that puts them together over a whole archive.

    from archiverd.query import Query, loads, parse_id, id_key
    q = Query(loads(filter_text, "filter"), projection, sort=[("timestamp", -1)], limit=10)
    for raw in q.run(raw_documents):   # BSON bytes in, BSON bytes out
        ...
    candidates = parse_id("66b1f0c2e4b0a1b2c3d4e5f6")  # [ObjectId(...), "66b1..."]: first found wins
    catalog_key = id_key(candidates[0])                # equal exactly for _ids MongoDB deems equal

Modules: order (BSON comparison order, id_key), paths (how dotted paths reach values), match
(filters), project (projections), sort, find (Query), ids (parse_id), ejson (command-line Extended
JSON), rawbson (element walking for byte-exact projections). Every invalid argument raises
QueryError (exit code 3).
"""
from .ejson import loads
from .find import Query
from .ids import parse_id
from .match import Filter, compile_filter
from .order import compare, id_key
from .project import Projection, compile_projection
from .sort import Sort, compile_sort

__all__ = ["Filter", "Projection", "Query", "Sort", "compare", "compile_filter", "compile_projection",
           "compile_sort", "id_key", "loads", "parse_id"]

"""Finding documents in the archive without MongoDB: MongoDB's filter, projection and sort semantics
over BSON documents read from segments, and `_id` helpers for lookups.

    from archiverd.query import Query, parse_id, id_key, loads
    q = Query(loads(filter_text, "filter"), projection, sort=[("timestamp", -1)], limit=10)
    for raw in q.run(raw_documents): ...
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

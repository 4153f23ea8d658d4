"""The catalog (store/catalog.py): a derived SQLite file of every segment's documents."""
from __future__ import annotations

import datetime as dt

import bson

from archiverd import write_segment
from archiverd.format import index
from archiverd.store import layout
from archiverd.store.catalog import Catalog

DAYS = ["2026-08-01", "2026-08-02"]


def _docs(day: str, first: int) -> list[bytes]:
    when = dt.datetime.fromisoformat(day).replace(hour=3, tzinfo=dt.timezone.utc)
    return [bson.encode({"_id": first + i, "timestamp": when, "experience_id": f"exp-{first + i}"}) for i in range(4)]


def test_a_segment_recorded_again_keeps_exactly_its_own_rows(tmp_path):
    """Recording a segment again (recovery after a crash re-catalogues it) replaces all its rows: a
    newest segment's reused id must not collide with its old document rows, an older one's must not
    leave orphans behind."""
    videos = []
    for n, day in enumerate(DAYS):
        video = layout.day_dir(tmp_path, day) / "part-0001.mkv"
        video.parent.mkdir(parents=True)
        write_segment(video, _docs(day, 10 * n), source={"db": "d", "collection": "c", "date_field": "timestamp",
                                                         "index_fields": ["experience_id"]})
        videos.append(video)
    with Catalog.for_reading(tmp_path) as catalog:
        for video in reversed(videos):  # the newest first: its id is the one SQLite hands out again
            rel = video.relative_to(tmp_path).as_posix()
            catalog.add(rel, index.load(index.path_for(video)), index.path_for(video))
        db = catalog.db
        assert db.execute("SELECT COUNT(*) FROM segments").fetchone()[0] == 2
        assert db.execute("SELECT COUNT(*) FROM docs").fetchone()[0] == 8
        assert db.execute("SELECT COUNT(*) FROM docs WHERE segment NOT IN (SELECT id FROM segments)").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM fields WHERE segment NOT IN (SELECT id FROM segments)").fetchone()[0] == 0
        assert [w.n for w in catalog.by_id(12)] == [2]


def test_a_drop_by_a_process_with_an_older_view_never_takes_another_segments_rows(tmp_path):
    """Process A drops a vanished newest segment and records a new one, which SQLite gives the same
    id; process B, which listed the catalog before, then drops the vanished segment too. B's drop
    goes by the segment's path, so the new segment keeps its rows."""
    source = {"db": "d", "collection": "c", "date_field": "timestamp"}
    first = layout.day_dir(tmp_path, DAYS[0]) / "part-0001.mkv"
    gone = layout.day_dir(tmp_path, DAYS[1]) / "part-0001.mkv"
    for n, video in enumerate((first, gone)):
        video.parent.mkdir(parents=True)
        write_segment(video, _docs(DAYS[n], 10 * n), source=source)
    with Catalog.for_reading(tmp_path) as a, Catalog.for_reading(tmp_path) as b:
        old_id = a.db.execute("SELECT id FROM segments WHERE path=?", (gone.relative_to(tmp_path).as_posix(),)).fetchone()[0]
        for f in gone.parent.iterdir():
            f.unlink()
        new = layout.day_dir(tmp_path, DAYS[1]) / "part-0002.mkv"
        write_segment(new, _docs(DAYS[1], 20), source=source)
        a.sync()
        assert a.db.execute("SELECT path FROM segments WHERE id=?", (old_id,)).fetchone()[0] == \
            new.relative_to(tmp_path).as_posix()  # the id came back to the new segment
        b._drop(gone.relative_to(tmp_path).as_posix())  # what b's sync does with its older listing
        assert [w.n for w in a.by_id(21)] == [1]
        assert a.db.execute("SELECT COUNT(*) FROM docs").fetchone()[0] == 8

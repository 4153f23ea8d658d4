"""A string that is not valid UTF-8: MongoDB keeps the bytes a client sent, so the archive holds
them exactly. Commands that print JSON show U+FFFD in their place and say so (exit 1), every other
document still printed; the Python APIs raise a clear error instead of returning a changed value;
`get --bson` and the raw reader give the exact bytes."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import bson
import pytest

from archiverd import SegmentReader, config, write_segment
from archiverd.api import decode_video_to_experiences, encode_experiences_to_video
from archiverd.errors import ArchiverdError
from archiverd.query.archive import Archive
from archiverd.store import layout

WHEN = dt.datetime(2026, 8, 1, 3, tzinfo=dt.timezone.utc)
VECTOR = [0.5, -0.25, 0.125, 1.0, 0.75, -0.5, 0.25, 0.0625]


def _bad() -> bytes:
    """{_id: 1, timestamp, embedding, note: <the bytes ff fe 80>} -- `note` is not valid UTF-8."""
    body = bson.encode({"_id": 1, "timestamp": WHEN, "embedding": VECTOR})[4:-1]
    body += b"\x02note\x00" + (4).to_bytes(4, "little") + b"\xff\xfe\x80\x00"
    return (len(body) + 5).to_bytes(4, "little") + body + b"\x00"


GOOD = bson.encode({"_id": 2, "timestamp": WHEN, "embedding": VECTOR[::-1], "note": "fine"})


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("utf8") / "archives"
    env = {"ARCHIVERD_ARCHIVE_DIR": str(root)}
    cfg = config.load(environ=env)
    video = layout.day_dir(cfg.collection_dir, "2026-08-01") / "part-0001.mkv"
    video.parent.mkdir(parents=True)
    write_segment(video, [_bad(), GOOD], source={"db": cfg.database, "collection": cfg.collection,
                                               "date_field": "timestamp"})
    return cfg, env, video


def _run(env, *args):
    proc = subprocess.run([sys.executable, "-m", "archiverd", *args], capture_output=True, timeout=300,
                          env={**os.environ, **env})
    assert b"Traceback" not in proc.stderr and b"internal error" not in proc.stderr, proc.stderr
    return proc


def test_the_archive_holds_the_exact_bytes(archive):
    _cfg, env, video = archive
    assert list(SegmentReader(video)) == [_bad(), GOOD]
    proc = _run(env, "get", "--bson", "1")
    assert proc.returncode == 0 and proc.stdout == _bad()


@pytest.mark.parametrize("args", [["get", "1", "2"], ["find"], ["export"], ["search", "--field", "embedding",
                                                                             "--vector", json.dumps(VECTOR)]])
def test_json_output_shows_u_fffd_says_so_and_exits_1(archive, args):
    _cfg, env, video = archive
    proc = _run(env, *args, *([str(video)] if args[0] == "export" else []))
    assert proc.returncode == 1, proc.stderr
    assert b"1 document with strings that are not valid UTF-8" in proc.stderr
    docs = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    docs = [d.get("document", d) for d in docs]  # search wraps each document with its score
    assert sorted(d["note"] for d in docs) == ["fine", "\ufffd\ufffd\ufffd"]


def test_a_command_printing_only_valid_documents_exits_0(archive):
    _cfg, env, _ = archive
    proc = _run(env, "get", "2")
    assert proc.returncode == 0 and b"UTF-8" not in proc.stderr


def test_the_python_apis_raise_a_clear_error(archive):
    cfg, _env, _ = archive
    with pytest.raises(ArchiverdError, match="document 0 cannot be decoded into Python values"):
        decode_video_to_experiences(encode_experiences_to_video([_bad(), GOOD]))
    with Archive(cfg.collection_dir) as arch:
        assert arch.get(2)["note"] == "fine"
        assert arch.get(1, raw=True) == _bad()
        with pytest.raises(ArchiverdError, match="cannot be decoded into Python values"):
            arch.get(1)

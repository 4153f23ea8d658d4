"""Sealed files in an S3-API store (store/s3.py) on a real server process (moto, tests/s3_server.py):
the same contract as the local directory, the daemon's seal confirmed before any delete, reading by
ranged GETs, crashes and failures between upload and delete, and names never taken twice."""
from __future__ import annotations

import hashlib
import os

import pytest

from archiverd.errors import SegmentError
from archiverd.store import objects
from archiverd.store.objects import LocalStore, ObjectExists
from archiverd.store.s3 import S3Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return objects.open_url(request.getfixturevalue("s3"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_store_keeps_the_same_contract(store):
    data = os.urandom(700_000)
    assert not store.exists("2026/08/01/part-0001.mkv") and store.size("2026/08/01/part-0001.mkv") is None
    assert store.names("2026/") == []
    store.put_new("2026/08/01/part-0001.mkv", data, _sha(data))
    store.put_new("2026/08/01/part-0001.index.json", b"{}", _sha(b"{}"))
    store.put_new("2026/08/02/part-0001.mkv", b"x", _sha(b"x"))
    assert store.size("2026/08/01/part-0001.mkv") == len(data) and store.sha256("2026/08/01/part-0001.mkv") == _sha(data)
    assert store.names("2026/08/01/") == ["2026/08/01/part-0001.index.json", "2026/08/01/part-0001.mkv"]
    assert store.segments("2026/") == ["2026/08/01/part-0001.mkv"]  # the other video has no index
    assert store.next_part("2026/08/01") == "2026/08/01/part-0002.mkv"
    assert store.next_part("2026/08/03") == "2026/08/03/part-0001.mkv"
    with store.open("2026/08/01/part-0001.mkv") as source:
        assert source.size == len(data)
        assert source.read(123_456, 1000) == data[123_456:124_456]
        assert source.read(len(data) - 10, 100) == data[-10:]
    assert store.read("2026/08/01/part-0001.index.json", 100) == b"{}"
    with pytest.raises(SegmentError, match="larger than"):
        store.read("2026/08/01/part-0001.mkv", 100)
    with pytest.raises(SegmentError, match="missing"):
        store.read("2026/08/01/part-0009.index.json", 100)
    with pytest.raises(SegmentError, match="no such segment"):
        store.open("2026/08/01/part-0009.mkv")


def test_no_store_ever_replaces_an_object(store):
    store.put_new("a/part-0001.mkv", b"first", _sha(b"first"))
    with pytest.raises(ObjectExists, match="refusing to overwrite"):
        store.put_new("a/part-0001.mkv", b"second", _sha(b"second"))
    with store.open("a/part-0001.mkv") as source:
        assert source.read(0, 100) == b"first"


def test_an_upload_the_store_does_not_confirm_is_an_error(s3):
    """What the store holds must have the SHA-256 that was verified, or nothing counts as uploaded."""
    store = objects.open_url(s3)
    with pytest.raises(Exception, match="other bytes than were verified"):
        store.put_new("a/part-0001.mkv", b"what was sent", _sha(b"what was verified"))


def test_ranged_reads_fetch_only_what_is_asked(s3):
    store = objects.open_url(s3)
    data = os.urandom(3 << 20)
    store.put_new("v.mkv", data, _sha(data))
    with store.open("v.mkv") as source:
        for offset in (0, 100, 5000, 2 << 20):
            assert source.read(offset, 200) == data[offset:offset + 200]
        assert source.requests == 2  # the first three fall inside one read-ahead span

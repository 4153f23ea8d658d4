from __future__ import annotations

import datetime as dt
import math
import re
import struct
import uuid
from pathlib import Path

import bson
import pytest
from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from bench.corpus import experiences

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="session")
def eat_docs() -> list[bytes]:
    """Experiences with four 1536-d embeddings (~85 KB of BSON each)."""
    return [bson.encode(d) for d in experiences(24, embeddings=True, now=NOW)]


@pytest.fixture(scope="session")
def text_docs() -> list[bytes]:
    """Experiences without embeddings (~3 KB each): many share one frame."""
    return [bson.encode(d) for d in experiences(300, embeddings=False, now=NOW, seed=7)]


def every_type_document(extreme_dates: bool = True) -> bytes:
    """One document holding every BSON type, including edge values that break naive codecs.
    (SecantusDB rejects dates outside Python's datetime range; real MongoDB stores them.)"""
    doc = {
        "_id": ObjectId("66b1f0c2e4b0a1b2c3d4e5f6"),
        "double": 1.5, "nan": math.nan, "neg_nan": -math.nan, "inf": math.inf, "ninf": -math.inf, "negzero": -0.0,
        "string": "héllo \u0000 wörld \U0001F600", "empty": "",
        "doc": {"nested": {"deeper": [1, {"x": None}]}},
        "array": [1, "two", 3.0, None, [4, [5]]],
        "bin_generic": Binary(b"\x00\x01\xff", 0), "bin_function": Binary(b"f", 1), "bin_old": Binary(b"old", 2),
        "bin_uuid_old": Binary(uuid.UUID(int=1).bytes, 3), "bin_uuid": Binary(uuid.UUID(int=2).bytes, 4),
        "bin_md5": Binary(b"\x11" * 16, 5), "bin_enc": Binary(b"enc", 6), "bin_column": Binary(b"col", 7),
        "bin_sensitive": Binary(b"s", 8), "bin_vector": Binary(b"\x03\x00\x01\x02", 9),
        "bin_user": Binary(b"user", 128),
        "bool_t": True, "bool_f": False,
        "date": dt.datetime(2024, 2, 29, 23, 59, 59, 999000),
        "date_1900": dt.datetime(1900, 1, 1), "date_epoch_minus": DatetimeMS(-1),
        **({"date_min": DatetimeMS(-(2 ** 63)), "date_max": DatetimeMS(2 ** 63 - 1)} if extreme_dates else {}),
        "null": None, "regex": Regex("^a.*b$", "imsx"), "compiled": re.compile("x+", re.I),
        "dbref": DBRef("other", ObjectId("66b1f0c2e4b0a1b2c3d4e5f7"), "db"),
        "code": Code("function(){return 1;}"), "code_scope": Code("function(){return x;}", {"x": 1}),
        "int32": 2 ** 31 - 1, "int32_min": -(2 ** 31), "int64": Int64(2 ** 63 - 1), "int64_min": Int64(-(2 ** 63)),
        "timestamp": Timestamp(4_000_000_000, 7), "decimal": Decimal128("-1.234567890123456789012345678901234E-6143"),
        "decimal_nan": Decimal128("NaN"), "minkey": MinKey(), "maxkey": MaxKey(),
        "key.with.dots": 1, "$dollar": 2, "ключ": 3, "": 4,
        "f32_array": [float(i) / 8 for i in range(40)],  # packable
        "mixed_array": [1.0] * 20 + [1],  # not packable: one int32
        "f64_array": [0.1] * 20,  # not float32-exact
    }
    raw = bson.encode(doc)
    # Hand-made elements pymongo will not produce from Python values: undefined (0x06), symbol (0x0E),
    # DBPointer (0x0C) and an array with non-canonical keys.
    extra = (b"\x06undef\x00"
             + b"\x0esym\x00" + (4).to_bytes(4, "little") + b"sym\x00"
             + b"\x0cptr\x00" + (4).to_bytes(4, "little") + b"col\x00" + bytes(range(12))
             + b"\x04oddkeys\x00" + _odd_array())
    body = raw[4:-1] + extra
    return (len(body) + 5).to_bytes(4, "little") + body + b"\x00"


def _odd_array() -> bytes:
    """20 doubles whose first two keys are swapped ("1", "0", "2", ...): legal BSON, not canonical."""
    keys = [b"1", b"0"] + [str(i).encode() for i in range(2, 20)]
    elements = b"".join(b"\x01" + key + b"\x00" + struct.pack("<d", i / 4) for i, key in enumerate(keys))
    return (len(elements) + 5).to_bytes(4, "little") + elements + b"\x00"


@pytest.fixture(scope="session")
def every_type() -> bytes:
    return every_type_document()


@pytest.fixture
def seg_path(tmp_path: Path) -> Path:
    return tmp_path / "part-0001.mkv"


# --- a real MongoDB-wire server ------------------------------------------------------------------

import itertools  # noqa: E402
import os  # noqa: E402

from tests.mongo_server import Server  # noqa: E402

_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory) -> str:
    external = os.environ.get("ARCHIVERD_TEST_MONGODB_URI")
    if external:
        yield external
        return
    server = Server(tmp_path_factory.mktemp("secantus")).start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def cfg(mongo_uri, tmp_path):
    """A configuration for a fresh database of its own on the shared server."""
    from archiverd import config
    env = {"MONGODB_URI": mongo_uri, "MONGODB_DATABASE_NAME": f"t{os.getpid()}_{next(_db_numbers)}",
           "ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "archives"), "ARCHIVERD_RETRY_SECONDS": "20",
           "ARCHIVERD_SERVER_TIMEOUT_MS": "3000"}
    (tmp_path / "archives").mkdir()
    return config.load(environ=env)


@pytest.fixture
def collection(cfg):
    from pymongo import MongoClient
    from bson.raw_bson import RawBSONDocument
    client = MongoClient(cfg.uri, document_class=RawBSONDocument, tz_aware=True)
    yield client[cfg.database][cfg.collection]
    client.drop_database(cfg.database)
    client.close()


# --- a real S3-API server ------------------------------------------------------------------------

from tests.s3_server import S3Server  # noqa: E402

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> str:
    """A new, empty bucket on the shared S3-API server, its endpoint and credentials in the
    environment (as boto3 reads them); returns its s3:// URL with a prefix."""
    import boto3
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    bucket = f"archive-{os.getpid()}-{next(_buckets)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/archives"


# --- the wheel, installed into a fresh venv (tests/test_install*.py) --------------------------------

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]


def _checkout(dest: Path) -> Path:
    """The files a fresh clone would have (tracked, plus new files not ignored): nothing from .venv,
    build/ or a developer's archives leaks into the wheel."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=_ROOT, capture_output=True,
                            text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in listed.stdout.splitlines():
        src = _ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only the built wheel (and its dependencies from PyPI / pip's cache) in it."""
    work = tmp_path_factory.mktemp("install")
    src = _checkout(work / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
                            str(src)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheels = list((work / "dist").glob("archiverd-*.whl"))
    assert len(wheels) == 1
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])], capture_output=True,
                         text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr
    return venv


@pytest.fixture
def golden_key(tmp_path):
    """The v3 vector's master key: a published test key (bytes 0..31), never a real one."""
    import shutil

    from archiverd.crypto import keyring
    from archiverd.format import encryption
    key_file = tmp_path / "master.key"
    shutil.copyfile(Path(__file__).parent / "golden" / "v3-master.key", key_file)
    key_file.chmod(0o600)
    encryption.use_keyring(keyring.load(key_file))
    yield
    encryption.use_keyring(None)

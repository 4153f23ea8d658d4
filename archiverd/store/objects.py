"""Where sealed files live, behind one small interface: a local directory or an S3-API bucket.

A store holds named objects (names are POSIX paths relative to the store's root, the same names the
archive directory uses: `2026/08/01/part-0001.mkv`, `part-0001.index.json`, ...). What a store must do:

| method | idempotent | when the object is not there |
|---|---|---|
| `exists(name)` | yes | False |
| `size(name)` | yes | None |
| `listing(prefix)` | yes | {} (every name under `prefix` with its size) |
| `read(name, limit)` | yes | SegmentError("... is missing") |
| `open(name)` | yes | SegmentError("no such segment file") |
| `put_new(name, data, sha256)` | no: a second call raises ObjectExists (S3: not for the same bytes) | creates it |
| `remove(name)` | yes | 0 (versions removed; prune and erase only) |

`put_new` never replaces an object: it fails with ObjectExists when the name is taken (a conditional
put on S3, an exclusive link locally; on S3 a name holding exactly these bytes is the upload's own:
boto3 sends a PUT again when its answer was lost). It returns only once the object is confirmed complete with
exactly the SHA-256 given (S3: the size and checksum the store reports, and a read-back by ranged
GETs; locally: the file re-read by its name). Only `prune` and `erase` remove sealed objects
(`remove`: every version of it, in a versioned bucket), when a person or a configured retention
asks (store/retention.py, store/erase.py).

The daemon's seal to a store other than the local directory (`upload_segment`): the video, the key
file of an encrypted segment, then the index (the commit point), each confirmed before the next.
"""
from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import faults
from ..crypto import envelope
from ..errors import ConfigError, SegmentError, StorageError
from ..format import index
from . import durable, layout

if TYPE_CHECKING:  # the reader imports the store's durable helpers: no cycle at run time
    from ..config import Config
    from ..format.encryption import SegmentKeys
    from ..format.reader import SegmentReader

_VIDEO = re.compile(r"(?:^|/)part-\d{4,}\.mkv$")
_PART = re.compile(r"(?:^|/)\.?part-(\d{4,})\.")


class ObjectExists(StorageError):
    """A name is already taken in the store: a sealed object is never replaced."""


class RangeSource(Protocol):
    """Random-access bytes of one object (format/mkv.Source), closed when done."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> RangeSource: ...

    def __exit__(self, *_: object) -> None: ...


class Readable(Protocol):
    """What `put_new` uploads: bytes, or an open file read by offset (durable.TempFile)."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class Store:
    """The operations every store offers (table in the module docstring)."""

    url: str
    local = False  # the local directory keeps today's seal (link of the verified inode)

    def where(self, name: str) -> str:
        """How a person finds the object (a path or an s3:// URL)."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def listing(self, prefix: str = "") -> dict[str, int]:
        raise NotImplementedError

    def names(self, prefix: str = "") -> list[str]:
        """Every name under `prefix`, sorted (a name starting with a dot is never a sealed file's)."""
        return sorted(self.listing(prefix))

    def read(self, name: str, limit: int) -> bytes:
        raise NotImplementedError

    def open(self, name: str) -> RangeSource:
        raise NotImplementedError

    def put_new(self, name: str, data: bytes | Readable, sha256: str) -> None:
        raise NotImplementedError

    def remove(self, name: str) -> int:
        """Remove the object for good -- every stored version of it -- and return how many versions
        went (0: it was not there; idempotent). Only `prune` and `erase` call this, when a person or
        a configured retention asks (store/retention.py). RemovalRefused when the store keeps a
        version it was asked to remove."""
        raise NotImplementedError

    def versioning(self) -> str:
        """Whether the store keeps old versions of removed objects: "off", "Enabled", "Suspended"
        (removals take every version either way), or "unknown" (for the audit log)."""
        return "off"

    # -- segments, in terms of the operations above ---------------------------------------------

    def videos(self, prefix: str = "") -> list[str]:
        """Every original video under `prefix`, oldest day and part first (layout.videos)."""
        return [n for n in self.names(prefix) if _VIDEO.search(n)]

    def orphans(self) -> list[str]:
        """Videos without their index: written or uploaded by a seal that never committed them."""
        names = set(self.names())
        return [n for n in sorted(names) if _VIDEO.search(n) and index_name(n) not in names]

    def segments(self, prefix: str = "") -> list[str]:
        """Committed segments (those with an index) under `prefix`."""
        names = set(self.names(prefix))
        return [n for n in sorted(names) if _VIDEO.search(n) and index_name(n) in names]

    def next_part(self, day: str) -> str:
        """The next free part name of a day (`2026/08/01`): every name there counts as taken."""
        numbers = [int(m.group(1)) for n in self.names(day + "/") if (m := _PART.search(n))]
        return f"{day}/part-{max(numbers, default=0) + 1:04d}.mkv"

    def load_index(self, video: str, *, public_only: bool = False) -> dict[str, Any]:
        """The index of the segment `video` (SegmentError when missing or malformed); an encrypted
        one is opened with the segment's key objects (EncryptionKeyError without the master key),
        or with `public_only` only its public part is returned (what `check` needs without a key)."""
        name = index_name(video)
        return index.parse(self.read(name, index.MAX_INDEX_BYTES), self.where(name), public_only=public_only,
                           keys=lambda public: self.segment_keys(video, public["segment_id"]))

    def key_copies(self, video: str) -> Iterator[envelope.KeyCopy]:
        """The stored copies of an encrypted segment's wrapped data key, in the order readers try
        them: the seal's key file, then the copies `key rotate` added (crypto/rotation.py), which
        are listed only when the seal's does not open under the keyring at hand."""
        sealed = envelope.path_for(Path(video)).as_posix()
        yield self.where(sealed), lambda: self.read_key_file(sealed)
        for name in self.names(sealed.removesuffix(envelope.SUFFIX) + ".key."):
            if envelope.rotated_key_id(name) is not None:
                yield self.where(name), functools.partial(self.read_key_file, name)

    def read_key_file(self, name: str) -> dict[str, Any]:
        """The wrapped data key a key object holds (SegmentError when missing or not one)."""
        return envelope.parse(self.read(name, envelope.MAX_KEY_FILE_BYTES), self.where(name))

    def segment_keys(self, video: str, segment_id: str, problems: list[str] | None = None) -> SegmentKeys:
        """The keys of the encrypted segment `video`: from its key
        objects, else from the copy of its data key in the video's header."""
        from ..format import encryption
        from ..format.reader import read_header

        def header_copy() -> dict[str, Any] | None:
            try:
                source = self.open(video)
            except SegmentError:
                return None
            return encryption.header_wrapped(read_header(Path(video), source=source))
        return encryption.segment_keys(Path(self.where(video)), segment_id, header_copy, problems,
                                       self.key_copies(video))

    def reader(self, video: str) -> SegmentReader:
        from ..format.reader import SegmentReader
        return SegmentReader(video, store=self)

    def mismatch(self, reader: SegmentReader) -> str | None:
        """None if the stored video `reader` reads is exactly what its index describes (size,
        SHA-256), else what differs. Nothing is deleted against a segment unless this passes."""
        return self.video_mismatch(reader.path.as_posix(), reader.index)

    def video_mismatch(self, video: str, idx: dict[str, Any]) -> str | None:
        """`mismatch` for a video and its index (the public part of an encrypted one will do)."""
        size = self.size(video)
        if size is None:
            return "the video is missing"
        if size != idx["video"]["bytes"]:
            return f"{size} bytes, index says {idx['video']['bytes']}"
        return None if self.sha256(video) == idx["video"]["sha256"] else "SHA-256 differs from the index"

    def sha256(self, name: str) -> str | None:
        """The object's SHA-256 (hex) as the store knows it (S3: its checksum), else by reading it."""
        with self.open(name) as source:
            return sha256_of(source)


def index_name(video: str) -> str:
    return index.path_for(Path(video)).as_posix()


def sha256_of(source: Readable) -> str:
    """SHA-256 of an object, read in 8 MiB ranges (few requests)."""
    from ..format.writer import file_sha256  # the format imports this module's interface
    return file_sha256(source, 8 << 20)


class LocalStore(Store):
    """The archive directory (store/durable.py does every fsync and exclusive publish)."""

    local = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def where(self, name: str) -> str:
        return str(self.path(name))

    def remove(self, name: str) -> int:
        path = self.path(name)
        if not durable.unlink(path):
            return 0
        durable.fsync_dir(path.parent)
        return 1

    def size(self, name: str) -> int | None:
        try:
            return self.path(name).stat().st_size if self.path(name).is_file() else None
        except OSError:
            return None

    def listing(self, prefix: str = "") -> dict[str, int]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        directory = base if prefix.endswith("/") or not prefix else base.parent
        if not directory.is_dir():
            return {}
        out = {}
        for p in directory.rglob("*"):
            name = p.relative_to(self.root).as_posix()
            if not p.name.startswith(".") and name.startswith(prefix) and (size := self.size(name)) is not None:
                out[name] = size
        return out

    def read(self, name: str, limit: int) -> bytes:
        return durable.read_bounded(self.path(name), limit, "file")

    def open(self, name: str) -> RangeSource:
        from ..format.reader import LocalFile
        return LocalFile(self.path(name))

    def put_new(self, name: str, data: bytes | Readable, sha256: str) -> None:
        path = self.path(name)
        durable.ensure_dir(path.parent)
        temp = durable.TempFile(path.parent, path.name)
        try:
            body = data if isinstance(data, bytes) else None
            pos = 0
            while body is None and pos < data.size:  # type: ignore[union-attr]
                chunk = data.read(pos, 8 << 20)  # type: ignore[union-attr]
                temp.write(chunk)
                pos += len(chunk)
            if body is not None:
                temp.write(body)
            temp.sync()
            try:
                temp.publish(path)
            except StorageError as exc:
                if path.exists():
                    raise ObjectExists(str(exc)) from None
                raise
        finally:
            temp.close()
        durable.fsync_dir(path.parent)
        if self.sha256(name) != sha256:
            raise StorageError(f"{path} does not read back with the SHA-256 written; nothing is deleted against it")

    def key_copies(self, video: str) -> Iterator[envelope.KeyCopy]:
        yield from envelope.local_copies(self.path(video))  # `key rotate` replaces it in place here

    def reader(self, video: str) -> SegmentReader:
        from ..format.reader import SegmentReader
        return SegmentReader(self.path(video))  # a verified repaired copy stands in for the original

    def mismatch(self, reader: SegmentReader) -> str | None:
        from ..format.reader import published_mismatch
        return published_mismatch(reader.path, reader.index)  # re-read by its name: size and SHA-256

    def next_part(self, day: str) -> str:
        return layout.next_part(self.root / day).relative_to(self.root).as_posix()


def upload_segment(store: Store, video: str, temp: Readable, idx: dict[str, Any], index_bytes: bytes,
                   key_file: bytes | None, fence: Callable[[], None] | None = None) -> None:
    """The seal into a store: the verified video, then an encrypted segment's key file, then the
    index (the commit point), each one confirmed complete with its SHA-256 before the next goes up.
    A crash or a failure anywhere before the index is up leaves the segment uncommitted: no delete
    is made against it (docs/ARCHITECTURE.md, "Sealing to object storage"). `fence` (the daemon's
    lease check, which raises when the day is no longer this process's) runs again before each
    object after the video: the video's upload and read-back take long, and a process that lost
    its day meanwhile must not commit a second copy of documents the day's new holder seals."""
    store.put_new(video, temp, idx["video"]["sha256"])
    faults.hit("seal:video-uploaded")
    if key_file is not None:
        if fence is not None:
            fence()
        name = envelope.path_for(Path(video)).as_posix()
        store.put_new(name, key_file, hashlib.sha256(key_file).hexdigest())
        faults.hit("seal:key-uploaded")
    if fence is not None:
        fence()
    store.put_new(index_name(video), index_bytes, hashlib.sha256(index_bytes).hexdigest())
    faults.hit("seal:uploaded")


def uploader(store: Store, video: str, fence: Callable[[], None] | None = None
             ) -> Callable[[Readable, dict[str, Any], bytes, bytes | None], None] | None:
    """What the writer's seal calls instead of publishing locally (None: the local directory);
    `fence` as in `upload_segment`."""
    if store.local:
        return None
    return lambda temp, idx, index_bytes, key_file: upload_segment(store, video, temp, idx, index_bytes, key_file,
                                                                   fence)


def parse_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (bucket, prefix without slashes at either end); ConfigError otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "s3":
        raise ConfigError(f"{url!r} is not an s3://BUCKET/PREFIX URL")
    bucket, _, prefix = rest.partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or ".." in bucket:
        raise ConfigError(f"{url!r}: {bucket!r} is not a valid S3 bucket name (3-63 characters: "
                          "lowercase letters, digits, dots and hyphens)")
    prefix = prefix.strip("/")
    if "//" in prefix or any(p in (".", "..") for p in prefix.split("/")) or "\x00" in prefix:
        raise ConfigError(f"{url!r}: the prefix must be a plain path (no empty, '.' or '..' parts)")
    return bucket, prefix


def open_url(url: str) -> Store:
    """A store for an `s3://bucket/prefix` URL (boto3 is needed only then: `pip install archiverd[s3]`)."""
    bucket, prefix = parse_url(url)
    from .s3 import S3Store
    return S3Store(bucket, prefix)


def for_collection(cfg: Config) -> Store:
    """Where this collection's sealed files go: `<archive_url>/<db>/<collection>/` when an archive
    URL is set, else the collection directory."""
    if cfg.archive_url is None:
        return LocalStore(cfg.collection_dir)
    return open_url(f"{cfg.archive_url.rstrip('/')}/{cfg.database}/{cfg.collection}")


def reader_at(text: str | Path) -> SegmentReader:
    """One segment named on the command line: a local video's path (read as it always was), or the
    s3:// URL of a video in a bucket (read by ranged GETs)."""
    text = str(text)
    if not text.startswith("s3://"):
        from ..format.reader import SegmentReader
        return SegmentReader(Path(text))
    bucket, key = parse_url(text)
    if not key or text.endswith("/"):
        raise ConfigError(f"{text} names a place in a bucket, not a segment's video (…/part-NNNN.mkv)")
    from .s3 import S3Store
    return S3Store(bucket, "").reader(key)


def readers_at(text: str | Path) -> list[SegmentReader]:
    """Segments named on the command line: as `reader_at`, or an s3:// URL ending in `/` (or a
    bare bucket): every committed segment under it, oldest day and part first."""
    text = str(text)
    if not text.startswith("s3://"):
        return [reader_at(text)]
    bucket, key = parse_url(text)
    if key and not text.endswith("/"):
        return [reader_at(text)]
    from .s3 import S3Store
    store = S3Store(bucket, "")
    found = store.segments(f"{key}/" if key else "")
    if not found:
        raise ConfigError(f"no committed segment under {text}")
    return [store.reader(name) for name in found]

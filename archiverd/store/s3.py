"""An S3-API bucket as a store (store/objects.py): conditional puts, SHA-256 checksums, ranged GETs.

boto3 finds the endpoint and the credentials where it always does (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/config and credentials, instance
roles); it is imported only when an s3:// archive is used (`pip install archiverd[s3]`).

- `put_new` sends `If-None-Match: *`: the store refuses the put when the name exists (HTTP 412), so
  two instances can never both own a name. A name found holding exactly the bytes being put is this
  upload's own (an attempt the store took whose answer was lost, sent again by boto3's retry). A
  store that does not implement conditional puts (HTTP 501) gets a HEAD first, then the put: safe
  under the daemon's lease, which is checked before each of the seal's uploads (not against a
  holder paused between its check and its put past the lease: only a conditional put is).
- Every put carries the object's SHA-256 (`x-amz-checksum-sha256`): S3 rejects a body that does not
  match it. After the put, a HEAD must report the size (and that SHA-256, where the store reports
  checksums), and the object is read back by ranged GETs and hashed: not every S3-API store checks
  the checksum it is sent (moto does not), and after the delete this object is the only copy. Only
  then does `put_new` return.
- `remove` (prune and erase only) deletes every version and delete marker of the object by its
  version id and lists again to confirm none is left: in a versioned bucket a plain DELETE would
  only hide the object. Credentials that may not do so get RemovalRefused (exit 7), never a
  removal reported done.
- An object read whole (an index, a key file, a sidecar) is checked against the SHA-256 the store
  recorded at its upload; a ranged GET must bring exactly the range asked for (the video's frames
  and documents carry their own checksums).
- Reads are ranged GETs, a few hundred KB at a time around what the reader asks for (the reader
  asks for clusters by their byte ranges, from the index), growing up to 8 MiB while the reads
  follow one another (a full scan): nothing downloads a whole video unless the whole video is
  being read.
"""
from __future__ import annotations

import base64
import binascii
import re
import threading
from typing import Any

from ..errors import ConfigError, RemovalRefused, SegmentError, StorageError
from .objects import ObjectExists, Readable, Store, sha256_of

MAX_PUT_BYTES = 5 << 30  # one PUT; a larger segment needs ARCHIVERD_SEGMENT_MAX_DOCS
SMALL_READ = 4096  # a read shorter than this (a cluster's header while scanning) fetches READ_AHEAD bytes
READ_AHEAD = 512 << 10  # about two clusters: the scan's next reads fall inside it
SEQUENTIAL_MAX = 8 << 20  # the furthest a sequential scan fetches ahead in one GET
HEAD_BYTES = 64 << 10  # the first bytes of an object read from its start are kept (video.HEAD_PROBE_BYTES)


# attempts in all (the first and its retries); seconds to connect; seconds without a byte from the store
ATTEMPTS, CONNECT_TIMEOUT, READ_TIMEOUT = 3, 5, 25


def _client() -> Any:
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise ConfigError("an s3:// archive needs boto3: pip install 'archiverd[s3]'") from None
    # few retries and short timeouts: a seal that cannot upload fails and is retried by the next cycle,
    # and a store that hangs holds a call for at most ATTEMPTS x (CONNECT + READ) seconds, within
    # systemd's TimeoutStopSec (120 s) for a daemon asked to stop (a stop lets the step finish)
    return boto3.client("s3", config=BotoConfig(retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
                                                connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                                                request_checksum_calculation="when_required",
                                                response_checksum_validation="when_required"))


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) or str(response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode", ""))


class _Body:
    """A file-like view of a `Readable` (read by offset) for boto3: it may seek back and resend."""

    def __init__(self, source: Readable) -> None:
        self.source = source
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = self.source.size - self.pos if n is None or n < 0 else n
        data = self.source.read(self.pos, n)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else (self.pos + offset if whence == 1 else self.source.size + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client: Any = None
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}  # of objects opened: an object is never replaced,
        self._heads: dict[str, bytes] = {}  # nor are their first bytes (a video's head, read by every reader)

    @property
    def client(self) -> Any:
        """One client for every thread (boto3 clients are thread-safe; making one is not, and is slow)."""
        with self._lock:
            if self._client is None:
                self._client = _client()
            return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def _fail(self, action: str, name: str, exc: Exception) -> StorageError:
        from botocore.exceptions import ClientError
        if isinstance(exc, ClientError):
            code = _code(exc)
            reason = {"NoSuchBucket": "the bucket does not exist", "AccessDenied": "access denied",
                      "InvalidAccessKeyId": "the access key is not known to the store",
                      "SignatureDoesNotMatch": "the secret key does not match"}.get(code, code)
        else:
            reason = str(exc).splitlines()[0][:200]
        return StorageError(f"cannot {action} {self.where(name)}: {reason}")

    def _call(self, action: str, name: str, method: str, *, absent: tuple[str, ...] = ("404", "NoSuchKey", "NotFound"),
              denied: str | None = None, **kwargs: Any) -> Any:
        """One request: None when the store answers with an `absent` code; RemovalRefused(`denied`)
        when it refuses access to a removal (prune and erase); StorageError for anything else."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _code(exc) in absent:
                return None
            if denied is not None and _code(exc) in ("AccessDenied", "403"):
                raise RemovalRefused(denied) from None
            raise self._fail(action, name, exc) from None
        except BotoCoreError as exc:
            raise self._fail(action, name, exc) from None

    def _head(self, name: str) -> dict[str, Any] | None:
        return self._call("look up", name, "head_object", Key=self.key(name), ChecksumMode="ENABLED")

    def size(self, name: str) -> int | None:
        head = self._head(name)
        return None if head is None else int(head["ContentLength"])

    def listing(self, prefix: str = "") -> dict[str, int]:
        out: dict[str, int] = {}
        base = self.key("")
        token: dict[str, str] = {}
        while True:
            page = self._call("list", prefix, "list_objects_v2", Prefix=self.key(prefix), **token)
            if page is None:
                raise StorageError(f"cannot list {self.where(prefix)}: the bucket does not exist")
            out.update((o["Key"][len(base):], int(o["Size"])) for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return {n: size for n, size in out.items() if not n.rsplit("/", 1)[-1].startswith(".")}
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def read(self, name: str, limit: int) -> bytes:
        """The whole object, checked against the SHA-256 the store recorded at its upload (where
        the store reports it; botocore compares as the body is read): an index, a key file or a
        sidecar has no checksum of its own, and a bit changed on the way must not be parsed."""
        got = self._call("read", name, "get_object", Key=self.key(name), ChecksumMode="ENABLED")
        if got is None:
            raise SegmentError("is missing", self.where(name))
        if int(got["ContentLength"]) > limit:
            got["Body"].close()
            raise SegmentError(f"larger than {limit} bytes", self.where(name))
        return self._body(name, got)

    def _body(self, name: str, got: dict[str, Any]) -> bytes:
        from botocore.exceptions import BotoCoreError
        try:
            return got["Body"].read()
        except BotoCoreError as exc:
            raise self._fail("read", name, exc) from None

    def range(self, name: str, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length) of the object (fewer at its end). The answer must be
        that range, whole: a store (or a proxy) that sends fewer bytes, or ignores the range and
        sends the object from its start, fails the read (StorageError), never hands other bytes on."""
        if length <= 0:
            return b""
        got = self._call("read", name, "get_object", Key=self.key(name), Range=f"bytes={offset}-{offset + length - 1}")
        if got is None:
            raise SegmentError("no such segment file", self.where(name))
        data = self._body(name, got)
        sent = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", str(got.get("ContentRange") or ""))
        expected = None if sent is None else min(length, int(sent[3]) - offset)
        if sent is None or int(sent[1]) != offset or len(data) != expected:
            what = f"bytes {offset}-{offset + length - 1}" if sent is None else \
                f"{expected} bytes from offset {offset}"
            raise StorageError(f"cannot read {self.where(name)}: the store answered a ranged GET for {what} with "
                               f"{len(data)} bytes ({got.get('ContentRange') or 'no Content-Range'})")
        return data

    def open(self, name: str) -> S3Object:
        size = self._sizes.get(name)
        if size is None:
            size = self.size(name)
            if size is None:
                raise SegmentError("no such segment file", self.where(name))
            self._sizes[name] = size
        return S3Object(self, name, size)

    def sha256(self, name: str) -> str | None:
        head = self._head(name)
        if head is None:
            return None
        reported = _hex(head.get("ChecksumSHA256"))
        if reported is not None:
            return reported
        with self.open(name) as source:  # a store without additional checksums: read it back
            return sha256_of(source)

    def put_new(self, name: str, data: bytes | Readable, sha256: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        size = len(data) if isinstance(data, bytes) else data.size
        if size > MAX_PUT_BYTES:
            raise StorageError(f"{self.where(name)}: {size} bytes is more than one PUT takes ({MAX_PUT_BYTES}); "
                               "set ARCHIVERD_SEGMENT_MAX_DOCS so that segments stay smaller")
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        conditional = {"IfNoneMatch": "*"}
        while True:
            body = data if isinstance(data, bytes) else _Body(data)
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=body, ContentLength=size,
                                       ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum, **conditional)
                break
            except ClientError as exc:
                code = _code(exc)
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    # taken -- perhaps by this very upload: the store took an attempt whose answer was
                    # lost, and boto3 sent it again. Exactly the verified bytes are this seal's own.
                    if self._differs(name, size, sha256) is not None:
                        raise ObjectExists(f"refusing to overwrite sealed object {self.where(name)}") from None
                    return
                if code in ("NotImplemented", "501") and conditional:
                    conditional = {}  # no conditional puts here: check, then put (under the lease)
                    if self._head(name) is not None:
                        raise ObjectExists(f"refusing to overwrite sealed object {self.where(name)}") from None
                    continue
                if code in ("BadDigest", "InvalidRequest", "XAmzContentSHA256Mismatch"):
                    raise StorageError(f"{self.where(name)}: the store received other bytes than were verified "
                                       f"({code}); nothing is deleted against it") from None
                raise self._fail("upload", name, exc) from None
            except BotoCoreError as exc:
                raise self._fail("upload", name, exc) from None
        problem = self._differs(name, size, sha256)
        if problem is not None:
            raise StorageError(f"{self.where(name)}: {problem} after its upload; nothing is deleted against it")

    def _differs(self, name: str, size: int, sha256: str) -> str | None:
        """None if the object holds exactly `size` bytes with `sha256` -- the size and checksum its
        HEAD reports, then a read-back by ranged GETs (not every S3-API store checks what it
        received) -- else what differs."""
        head = self._head(name)
        if head is None:
            return "it is missing"
        if int(head["ContentLength"]) != size:
            return f"it has {head['ContentLength']} bytes, not {size}"
        if _hex(head.get("ChecksumSHA256")) not in (None, sha256):
            return "the store holds other bytes than were verified (its SHA-256 differs)"
        with S3Object(self, name, size) as source:
            if sha256_of(source) != sha256:
                return "the store holds other bytes than were verified (SHA-256 differs)"
        return None

    # -- removal (prune and erase only) ------------------------------------------------------------

    def remove(self, name: str) -> int:
        """Every version of the object and every delete marker, each by its version id: in a
        versioned bucket a plain DELETE only adds a delete marker, and the bytes stay readable in
        the older versions. Then the versions are listed again and must be gone (a store may keep
        one it was asked to delete: an object lock). RemovalRefused when the credentials may not
        list or delete versions, or a version stays."""
        versions = self._versions(name)
        if versions is None:  # a store without the versions API keeps no versions: one plain DELETE
            self._delete(name, None)
            if self._head(name) is not None:
                raise RemovalRefused(f"{self.where(name)} is still stored after its removal")
            return 1
        for version in versions:
            self._delete(name, version)
        left = self._versions(name) or []
        self._sizes.pop(name, None)
        self._heads.pop(name, None)
        if left:
            raise RemovalRefused(f"{self.where(name)}: {len(left)} of its versions are still stored after their "
                                 "removal (an object lock or retention rule on the bucket?): it is not erased")
        return len(versions)

    def _versions(self, name: str) -> list[str] | None:
        """The version ids of every version and delete marker of exactly this object; None when
        the store does not implement ListObjectVersions."""
        key, found, marker = self.key(name), [], {}
        while True:
            page = self._call("list the versions of", name, "list_object_versions", Prefix=key,
                              absent=("NotImplemented", "501"),
                              denied=f"cannot list the versions of {self.where(name)}: access denied (prune and "
                                     "erase need s3:ListBucketVersions and s3:DeleteObjectVersion, so that no "
                                     "older version of what they remove stays readable)", **marker)
            if page is None:
                return None
            found += [v["VersionId"] for kind in ("Versions", "DeleteMarkers") for v in page.get(kind, [])
                      if v["Key"] == key]
            if not page.get("IsTruncated"):
                return found
            marker = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}

    def _delete(self, name: str, version: str | None) -> None:
        what = f"version {version} of " if version is not None else ""
        self._call("remove", name, "delete_object", Key=self.key(name), absent=(),
                   denied=f"cannot remove {what}{self.where(name)}: access denied (prune and erase need "
                          "s3:DeleteObjectVersion, as a plain DELETE leaves the bytes in older versions; or an "
                          "object lock or legal hold on the bucket keeps this version)",
                   **({"VersionId": version} if version is not None else {}))

    def versioning(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return str(self.client.get_bucket_versioning(Bucket=self.bucket).get("Status") or "off")
        except (BotoCoreError, ClientError):
            return "unknown"


def _hex(checksum: str | None) -> str | None:
    """A full-object SHA-256 checksum (base64) as hex; None for none or a composite one ("...-N")."""
    if not checksum or "-" in checksum:
        return None
    try:
        raw = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


class S3Object:
    """One object read by ranged GETs (format/mkv.Source). A read fetches what is asked (the reader
    asks for whole clusters by their byte ranges); a small read (a cluster's header while scanning)
    fetches READ_AHEAD bytes, kept, so the reads of the cluster that follows cost no request; a read
    that starts where the one before ended (a scan through the whole video: verify, restore, erase)
    fetches twice as far ahead as the last sequential fetch, up to SEQUENTIAL_MAX, so that a full
    read costs a few requests per SEQUENTIAL_MAX bytes instead of one per cluster, while one
    document's few clusters stay a few small GETs; the video's head, which every reader reads first,
    is kept by the store."""

    def __init__(self, store: S3Store, name: str, size: int) -> None:
        self.store, self.name, self.size = store, name, size
        self._span = (0, b"")
        self._end = -1  # where the last read ended
        self._ahead = 0  # bytes the last sequential fetch asked for
        self.requests = 0

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        if length == 0:  # at (or past) its end: nothing, as a file reads; the store would answer 416
            return b""
        sequential, self._end = offset == self._end, offset + length
        head = self.store._heads.get(self.name, b"")
        if offset + length <= len(head):
            return head[offset:offset + length]
        start, data = self._span
        if start <= offset and offset + length <= start + len(data):
            return data[offset - start:offset - start + length]
        self._ahead = min(SEQUENTIAL_MAX, max(2 * self._ahead, length)) if sequential else 0
        fetched = self.store.range(self.name, offset, max(length if length >= SMALL_READ else READ_AHEAD,
                                                          self._ahead))
        self.requests += 1
        self._span = (offset, fetched)
        if offset == 0 and len(fetched) <= HEAD_BYTES:
            self.store._heads[self.name] = fetched
        return fetched[:length]

    def close(self) -> None:
        self._span = (0, b"")

    def __enter__(self) -> S3Object:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

"""Checking a whole archive, like `borg check` / `restic check`, in documented phases:

1. structure: every video has its index, no index lacks its video, orphans (videos without an
   index), leftover temporary files, indexes that do not parse;
2. checksums: every video's size and SHA-256 against its index (cheap: reads each file once);
3. content (`read_data`, or a random `subset` of segments): a full decode with parity repair and
   every document checked against the index. A segment whose checksum fails is always decoded, so
   that it is classified: `damaged (repairable)` (every document still verifies) or
   `damaged (unrepairable: K documents)`.

4. derived files (never the only copy of anything): each segment's vector sidecar (present,
   intact, of this segment) and the catalog (agrees with the indexes it believes current).

An object store (an s3:// archive) is checked by `check_store`, in the same phases.

`repair` never deletes or modifies a sealed file: a repairable segment gets a verified repaired
copy beside it (which readers prefer from then on), an orphan gets its index rebuilt from the
video, and derived files that fail their checks are rebuilt.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import derived, layout, objects
from ..errors import EncryptionKeyError, SegmentError
from ..format import encryption, index, rebuild
from ..format.reader import REPAIRABLE, LocalFile, ScanReport, read_header, verify_source
from ..format.writer import file_sha256
from ..progress import Meter

OK, ORPHAN, MISSING_VIDEO, BAD_INDEX = "ok", "orphan", "missing video", "unreadable index"
UNUSABLE_COPY = "unusable repaired copy"  # an intact segment beside a `.repaired.` copy no read uses


@dataclass
class SegmentCheck:
    path: str
    status: str = OK
    documents: int = 0
    lost: int = 0
    bytes: int = 0
    read: bool = False  # content was decoded
    format_version: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)  # problems of its derived files (the sidecar)
    repaired: str | None = None  # what --repair wrote

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class CheckResult:
    segments: list[SegmentCheck] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)
    catalog: list[str] = field(default_factory=list)  # where a catalog disagrees with the indexes
    catalog_rebuilt: bool = False
    seconds: float = 0.0
    bytes_read: int = 0
    documents_read: int = 0

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.segments)

    @property
    def derived_problems(self) -> int:
        """Derived files that failed their checks and were not rebuilt (exit 1: nothing is lost)."""
        stale = sum(1 for s in self.segments if s.derived and not (s.repaired and "sidecar" in s.repaired))
        return stale + (0 if self.catalog_rebuilt else len(self.catalog))

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for s in self.segments:
            counts[s.status] = counts.get(s.status, 0) + 1
        return {"segments": len(self.segments), "by_status": counts, "temporaries": len(self.temporaries),
                "derived_problems": self.derived_problems, "documents_read": self.documents_read,
                "bytes_read": self.bytes_read, "seconds": self.seconds, "ok": self.ok}

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary(), "segments": [s.__dict__ | {"ok": s.ok} for s in self.segments],
                "temporaries": self.temporaries, "catalog": self.catalog, "catalog_rebuilt": self.catalog_rebuilt}


def collect(paths: Iterable[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(videos, indexes without a video, temporary files) under the given files and directories."""
    videos: set[Path] = set()
    lonely: set[Path] = set()
    temps: set[Path] = set()
    for path in paths:
        if path.is_dir():
            videos.update(layout.videos(path))
            temps.update(layout.temporaries(path))
            for idx in path.rglob("part-*" + index.SUFFIX):
                if ".repaired." not in idx.name and not index.video_of(idx).exists():
                    lonely.add(idx)
        elif path.name.endswith(index.SUFFIX):
            video = index.video_of(path)
            (videos if video.exists() else lonely).add(video if video.exists() else path)
        elif path.exists() and not path.is_file():
            raise SegmentError("not a segment: not a regular file, nor a directory of segments", str(path))
        else:
            videos.add(path)
    return sorted(videos), sorted(lonely), sorted(temps)


def check(paths: Iterable[Path], *, read_data: bool = False, subset: float | None = None, repair: bool = False,
          progress: Callable[[SegmentCheck], None] | None = None, seed: int | None = None,
          meter: Meter | None = None) -> CheckResult:
    """`meter` (progress, statistics) counts each segment's documents and bytes as it is checked and
    times the phases."""
    meter = meter or Meter()
    started = time.perf_counter()
    with meter.stage("structure"):
        videos, lonely, temps = collect(paths)
        sizes = {v: v.stat().st_size if v.is_file() else 0 for v in videos}
    meter.expect(bytes=sum(sizes.values()))
    result = CheckResult(temporaries=[str(t) for t in temps])
    chosen: set[Path] = set(videos) if read_data else set()
    if subset is not None and videos:
        k = max(1, round(len(videos) * subset / 100))
        chosen.update(random.Random(seed).sample(videos, min(k, len(videos))))
    for idx in lonely:
        item = SegmentCheck(str(idx), MISSING_VIDEO, problems=[f"{idx.name}: the video of this index is missing"])
        result.segments.append(item)
        if progress:
            progress(item)
    for video in videos:
        item = _check_one(video, video in chosen, result, meter)
        _unusable_copy(video, item)
        meter.add(item.documents, sizes[video])
        if repair and (not item.ok or item.derived):
            _repair(video, item)
        result.segments.append(item)
        if progress:
            progress(item)
    for path in paths:
        if path.is_dir():
            found = derived.check_catalog(path, repair=repair)
            result.catalog += found.problems
            result.catalog_rebuilt |= found.rebuilt
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _check_one(video: Path, read: bool, result: CheckResult, meter: Meter) -> SegmentCheck:
    item = SegmentCheck(str(video))
    if not index.path_for(video).exists():
        item.status = ORPHAN
        item.problems.append(f"{video.name}: no index (the video is kept; `archiverd reindex` rebuilds it)")
        return item
    target = index.preferred(video)
    if target != video:
        item.warnings.append(f"read from its repaired copy {target.name}")
    try:
        idx = index.load(index.path_for(target), public_only=True)
        if "sealed" in idx:
            key_problems: list[str] = []
            encryption.segment_keys(video, idx["segment_id"],
                                    lambda: encryption.header_wrapped(read_header(video)), key_problems)
            item.warnings.extend(key_problems)
        idx = index.load(index.path_for(target))
    except EncryptionKeyError as exc:  # structure and checksums only
        item.warnings.append(f"encrypted: content not checked ({exc})")
        return _checksums_only(target, idx, item, result)
    except SegmentError as exc:
        item.status = BAD_INDEX
        item.problems.append(str(exc))
        return item
    item.documents = idx["documents"]
    item.format_version = idx["format_version"]
    if idx["format_version"] < 2:
        item.warnings.append("format version 1: no parity, damage cannot be repaired")
    try:
        with LocalFile(target) as source:
            item.bytes = source.size
            with meter.stage("checksum"):
                intact = source.size == idx["video"]["bytes"] and file_sha256(source) == idx["video"]["sha256"]
            result.bytes_read += source.size
            if intact and not read:
                _check_derived(video, idx, item)
                return item
            with meter.stage("decode"):
                report = verify_source(source, idx, str(target))
    except SegmentError as exc:
        report = ScanReport(str(target))
        report.problem(str(exc))
        report.expected_documents = idx["documents"]
    item.read = True
    result.documents_read += report.documents
    item.lost = report.lost
    item.problems.extend(report.problems)
    item.warnings.extend(report.warnings)
    if not report.ok:
        item.status = report.status if report.status == REPAIRABLE else f"damaged (unrepairable: {report.lost} documents)"
    _check_derived(video, idx, item)
    return item


def _unusable_copy(video: Path, item: SegmentCheck) -> None:
    """A `.repaired.` copy beside a segment that does not stand in for it (another segment's files,
    or half a copy) is reported, and makes an otherwise intact segment not ok (exit 4): no read uses
    it, so it is someone's mistake to look at, and `check --repair` cannot write a copy beside it."""
    copy = index.repaired_path(video)
    if index.preferred(video) != video or not (copy.exists() or index.path_for(copy).exists()):
        return
    why = index.foreign_repair(video) if copy.exists() else f"{copy.name} is missing"
    item.problems.append(f"{why or 'the repaired copy is incomplete'}: readers ignore it and read {video.name}")
    if item.status == OK:
        item.status = UNUSABLE_COPY


def _checksums_only(target: Path, public: dict[str, Any], item: SegmentCheck, result: CheckResult) -> SegmentCheck:
    """What can be checked of an encrypted segment without its key: the video against the index."""
    item.documents = public["documents"]
    item.format_version = public["format_version"]
    try:
        with LocalFile(target) as source:
            item.bytes = source.size
            result.bytes_read += source.size
            if source.size != public["video"].get("bytes") or file_sha256(source) != public["video"].get("sha256"):
                item.status = "damaged (not checked further without the key)"
                item.problems.append("video size or SHA-256 differs from the index")
    except SegmentError as exc:
        item.status = "damaged (not checked further without the key)"
        item.problems.append(str(exc))
    return item


def _check_derived(video: Path, idx: dict[str, Any], item: SegmentCheck) -> None:
    problem = derived.sidecar_problem(video, idx)
    if problem:
        item.derived.append(f"{problem} (`archiverd reindex` or `check --repair` rebuilds it; search reads "
                            "this segment's vectors exactly meanwhile)")


def _repair(video: Path, item: SegmentCheck) -> None:
    try:
        if item.status == ORPHAN:
            rebuilt = rebuild.reindex(video)
            item.repaired = f"index rebuilt: {rebuilt.path.name}"
            if derived.sidecar_problem(video, rebuilt.index):
                item.repaired += f"; vector sidecar rebuilt: {derived.rebuild_sidecar(video).name}"
        elif item.status == REPAIRABLE and index.preferred(video) == video:
            rebuilt = rebuild.repair(video)
            item.repaired = f"repaired copy written and verified: {rebuilt.path.name}" + (
                " (identical to the original)" if rebuilt.identical else "")
        if item.derived and item.status in (OK, REPAIRABLE):
            rebuilt_sidecar = derived.rebuild_sidecar(video)
            item.repaired = "; ".join(filter(None, [item.repaired, f"vector sidecar rebuilt: {rebuilt_sidecar.name}"]))
    except SegmentError as exc:
        item.problems.append(f"repair failed: {exc}")


def check_store(store: objects.Store, *, read_data: bool = False, subset: float | None = None,
                progress: Callable[[SegmentCheck], None] | None = None, seed: int | None = None,
                meter: Meter | None = None) -> CheckResult:
    """The same phases for an object store (an s3:// archive), without downloading what need not be:
    structure from the listing; checksums from what the store reports for each video (its size and
    the SHA-256 it computed at the upload, compared with the index); content (`read_data`, a
    `subset`, or a checksum that differs) by a full decode through ranged GETs. Derived files and
    the catalog are not checked there, and nothing is repaired in a store."""
    meter = meter or Meter()
    started = time.perf_counter()
    with meter.stage("structure"):
        names = set(store.names())
    videos = store.videos()
    chosen: set[str] = set(videos) if read_data else set()
    if subset is not None and videos:
        k = max(1, round(len(videos) * subset / 100))
        chosen.update(random.Random(seed).sample(videos, min(k, len(videos))))
    result = CheckResult()
    lonely = sorted(n for n in names if n.endswith(index.SUFFIX) and ".repaired." not in n
                    and index.video_of(Path(n)).as_posix() not in names)
    items = [SegmentCheck(store.where(n), MISSING_VIDEO, problems=[f"{Path(n).name}: the video of this index is missing"])
             for n in lonely]
    for video in videos:
        item = SegmentCheck(store.where(video))
        items.append(item)
        if objects.index_name(video) not in names:
            item.status = ORPHAN
            item.problems.append(f"{Path(video).name}: no index (the video is kept: it was uploaded, never committed)")
            continue
        try:
            public = store.load_index(video, public_only=True)
            if "sealed" in public:
                key_problems: list[str] = []
                store.segment_keys(video, public["segment_id"], key_problems)
                item.warnings.extend(key_problems)
            reader = store.reader(video)
        except EncryptionKeyError as exc:  # structure and the store's checksums only
            item.warnings.append(f"encrypted: content not checked ({exc})")
            item.documents, item.format_version = public["documents"], public["format_version"]
            item.bytes = public["video"].get("bytes")
            with meter.stage("checksum"):
                problem = store.video_mismatch(video, public)
            if problem is not None:
                item.status = "damaged (not checked further without the key)"
                item.problems.append(problem)
            continue
        except SegmentError as exc:
            item.status = BAD_INDEX
            item.problems.append(str(exc))
            continue
        item.documents, item.format_version = reader.index["documents"], reader.index["format_version"]
        with meter.stage("checksum"):
            problem = store.mismatch(reader)
        item.bytes = reader.index["video"]["bytes"]
        if problem is None and video not in chosen:
            meter.add(item.documents, item.bytes)
            continue
        if problem is not None:
            item.problems.append(problem)
        with meter.stage("decode"):
            report = reader.verify()
        item.read = True
        result.bytes_read += item.bytes
        result.documents_read += report.documents
        item.lost = report.lost
        item.problems.extend(report.problems)
        item.warnings.extend(report.warnings)
        if not report.ok:
            item.status = report.status if report.status == REPAIRABLE else \
                f"damaged (unrepairable: {report.lost} documents)"
        meter.add(item.documents, item.bytes)
    for item in items:
        result.segments.append(item)
        if progress:
            progress(item)
    result.seconds = round(time.perf_counter() - started, 3)
    return result

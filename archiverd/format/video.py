"""Grayscale frames <-> an FFV1 video in a Matroska container (PyAV).

FFV1 is lossless and an archival standard (RFC 9043); level 3 adds a CRC to every slice. Measured on
v40 QR frames (bench/bench_format.py): one slice, range coder with the custom state table, context
model 1 and a 32-frame GOP cost 1.386 bytes per payload byte; a GOP of 1 costs 1.456, a 4-module quiet
zone 1.450. Encoding runs on a background thread because PyAV releases the GIL while coding (1.5x).
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from . import qr
from ..errors import SegmentError, StorageError

CODEC = "ffv1"
CONTAINER = "matroska"
PIX_FMT = "gray"
RATE = 25  # frames/s; with Matroska's 1 ms time base each frame is exactly 40 ticks
GOP = 32
OPTIONS = {"level": "3", "coder": "range_tab", "context": "1", "slices": "1", "slicecrc": "1"}
_QUEUE_DEPTH = 256


class VideoWriter:
    """Append frames to a new video file; `close()` finishes it. Encoding happens on a thread."""

    def __init__(self, path: Path) -> None:
        try:
            self._container = av.open(str(path), "w", format=CONTAINER)
        except OSError as exc:
            raise StorageError(f"cannot create {path}: {exc.strerror or exc}") from None
        stream = self._container.add_stream(CODEC, rate=RATE)
        stream.width = stream.height = qr.SIZE
        stream.pix_fmt = PIX_FMT
        stream.options = dict(OPTIONS)
        stream.codec_context.gop_size = GOP
        self._stream = stream
        self._path = path
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ffv1-encoder", daemon=True)
        self._thread.start()
        self.frames = 0

    def _run(self) -> None:
        try:
            while (image := self._queue.get()) is not None:
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format=PIX_FMT)):
                    self._container.mux(packet)
            for packet in self._stream.encode():
                self._container.mux(packet)
        except BaseException as exc:  # reported to the caller by write()/close()
            self._error = exc
            while self._queue.get() is not None:  # drain so producers never block
                pass

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            exc = self._error
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {self._path}: {exc.strerror or exc}") from None
            raise StorageError(f"video encoder failed on {self._path}: {exc}") from None

    def write(self, image: np.ndarray) -> None:
        self._raise_if_failed()
        self._queue.put(image)
        self.frames += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            self._container.close()
        except OSError as exc:
            self._error = self._error or exc
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop without caring about the file (the caller deletes it)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass


def read_frames(path: Path, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, image) for frames start..stop-1 (to the end if stop is None), in order.
    Raises SegmentError if the file is not such a video or the stream breaks off."""
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError) as exc:
        raise SegmentError(f"not a readable video ({exc.__class__.__name__}: {exc})", str(path)) from None
    with container:
        streams = container.streams.video
        if len(streams) != 1 or streams[0].codec_context.name != CODEC:
            raise SegmentError("not an archiverd video (expected exactly one FFV1 stream)", str(path))
        stream = streams[0]
        ticks = 1 / (RATE * stream.time_base)
        if start:
            container.seek(int(start * ticks), stream=stream, backward=True, any_frame=False)
        try:
            for decoded in container.decode(stream):
                index = round(decoded.pts / ticks) if decoded.pts is not None else -1
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    return
                image = decoded.to_ndarray()  # already gray: no conversion
                if image.shape != (qr.SIZE, qr.SIZE):
                    raise SegmentError(f"frame {index} is {image.shape[1]}x{image.shape[0]}, "
                                       f"expected {qr.SIZE}x{qr.SIZE}", str(path))
                yield index, image
        except av.error.FFmpegError as exc:
            raise SegmentError(f"video stream is damaged ({exc})", str(path)) from None

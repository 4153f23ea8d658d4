"""The format-version-1 block encoder (codec 1: bzip2 of table + skeletons, zstd of float planes).

The product no longer writes codec 1; it only reads it (`archiverd.format.blockcodec.decode`). This
reference writer stays for the codec benchmark (codec 1 against codec 2, side by side) and for the
tests of the version-1 reader. Layout: docs/FORMAT.md section 5.2.
"""
from __future__ import annotations

import bz2
import struct
import zlib
from typing import Sequence

import numpy as np
import zstandard

from archiverd.format import bsonpack
from archiverd.format.blockcodec import CODEC_PACKED
from archiverd.format.bsoncolumns import varint

BZIP2_LEVEL = 9
ZSTD_LEVEL = 1
_HEAD = struct.Struct(">BIIIIII")
_CRC = struct.Struct(">I")


def encode(documents: Sequence[bytes]) -> bytes:
    """Compress whole BSON documents into one codec-1 block body."""
    table = bytearray()
    skeletons, floats = [], []
    for doc in documents:
        packed = bsonpack.split(doc)
        varint(len(packed.skeleton), table)
        varint(len(packed.arrays), table)
        prev = 0
        for offset, count in packed.arrays:
            varint(offset - prev, table)
            varint(count, table)
            prev = offset
        skeletons.append(packed.skeleton)
        floats.append(packed.floats)
    text = bytes(table) + b"".join(skeletons)
    values = np.concatenate(floats) if floats else np.empty(0, dtype=np.float32)
    planes = np.ascontiguousarray(values.astype("<f4").view(np.uint8).reshape(-1, 4).T).tobytes()
    text_z = bz2.compress(text, BZIP2_LEVEL) if text else b""
    planes_z = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(planes) if planes else b""
    crc = zlib.crc32(planes, zlib.crc32(text))
    head = _HEAD.pack(CODEC_PACKED, len(documents), len(text), len(text_z), values.size, len(planes_z), crc)
    body = head + text_z + planes_z
    return body + _CRC.pack(zlib.crc32(body))

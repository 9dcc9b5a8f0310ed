"""ClickHouse's own compressed-block framing, ``compress=1`` / ``decompress=1`` over HTTP.

The JDBC driver (client-v2, as DBeaver, Metabase and Tableau ship it) asks for it by
default instead of an ``Accept-Encoding``. Each block: a 16-byte CityHash128 (v1.0.2) of
the rest, a method byte (``0x82`` LZ4, ``0x02`` none), the compressed size including the
9-byte header and the uncompressed size (both UInt32 little-endian), then the data. The
driver checks the checksum, so the hash must be ClickHouse's exact CityHash
(``clickhouse-cityhash``, installed with the ``embedded`` extra).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable

import lz4.block

LZ4, NONE = 0x82, 0x02
BLOCK = 1024 * 1024  # the server's largest uncompressed block
_HEADER = struct.Struct("<BII")


def _cityhash128() -> Callable[[bytes], int] | None:
    try:
        module = importlib.import_module("clickhouse_cityhash.cityhash")
    except ImportError:
        return None
    hash128: Callable[[bytes], int] = module.CityHash128
    return hash128


def available() -> bool:
    return _cityhash128() is not None


class BlockEncoder:
    """Frames a byte stream as LZ4-compressed ClickHouse blocks (an ``Encoder``)."""

    def __init__(self) -> None:
        hash128 = _cityhash128()
        if hash128 is None:
            raise RuntimeError("clickhouse-cityhash is not installed")
        self.hash128 = hash128

    def compress(self, data: bytes) -> bytes:
        return b"".join(
            self._block(data[i : i + BLOCK]) for i in range(0, len(data), BLOCK) if data
        )

    def flush(self) -> bytes:
        return b""

    def _block(self, raw: bytes) -> bytes:
        packed = lz4.block.compress(raw, store_size=False)
        body = _HEADER.pack(LZ4, _HEADER.size + len(packed), len(raw)) + packed
        checksum = self.hash128(body)
        return struct.pack("<QQ", checksum >> 64, checksum & (2**64 - 1)) + body


def decode_blocks(data: bytes) -> bytes:
    """A request body sent with ``decompress=1`` (LZ4 or uncompressed blocks)."""
    out, pos = [], 0
    while pos < len(data):
        method, size, raw_size = _HEADER.unpack_from(data, pos + 16)
        payload = data[pos + 16 + _HEADER.size : pos + 16 + size]
        if method == LZ4:
            out.append(lz4.block.decompress(payload, uncompressed_size=raw_size))
        elif method == NONE:
            out.append(payload)
        else:
            raise ValueError(f"compression method 0x{method:02x} is not supported")
        pos += 16 + size
    return b"".join(out)

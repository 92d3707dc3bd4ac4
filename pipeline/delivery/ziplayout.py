"""ZIP layout: the bytes of a STORE ZIP's records and where each one lies, ZIP64 included. Pure.

What this module owns: the record formats (local header, data descriptor, central directory
record, end records, ZIP64 and the "UT" timestamp field) and ``layout``, which gives the offset
of every record from the members' names, sizes and modification times alone, so that the
archive's exact length is known and any byte range can be produced without reading a member.
Local headers carry no CRC (a data descriptor after each member does): only the descriptors and
the central directory need the members' CRC-32s, which the caller passes in.

It knows nothing of jobs, files or I/O: ``pipeline.delivery.zipper`` chooses the members and produces the
bytes of a range from the member files.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

# Bumped whenever the bytes for the same members change, so old ETags stop matching.
LAYOUT_VERSION = 1
# ZIP64 records past this (zipfile's limit: some readers treat 32-bit fields as signed).
ZIP64_LIMIT = (1 << 31) - 1
_VERSION = 20  # 2.0: stored files, folders in names
_VERSION_ZIP64 = 45
_FLAG_DESCRIPTOR = 1 << 3
_FLAG_UTF8 = 1 << 11
_UNIX = 3  # "version made by" host: external attributes are Unix modes
_EXTERNAL = 0o100644 << 16  # a regular file, rw-r--r--


@dataclass(frozen=True)
class Entry:
    """One stored member of the archive and where its records lie."""

    name: str
    size: int
    mtime: int  # Unix seconds; DOS date/time in UTC, plus an extended timestamp field
    offset: int  # of its local header

    @property
    def zip64(self) -> bool:
        return self.size > ZIP64_LIMIT

    @property
    def encoded_name(self) -> bytes:
        return self.name.encode("utf-8")

    @property
    def flags(self) -> int:
        return _FLAG_DESCRIPTOR | (0 if self.name.isascii() else _FLAG_UTF8)

    @property
    def header_length(self) -> int:
        return 30 + len(self.encoded_name) + 9 + (20 if self.zip64 else 0)

    @property
    def data_offset(self) -> int:
        return self.offset + self.header_length

    @property
    def descriptor_offset(self) -> int:
        return self.data_offset + self.size

    @property
    def descriptor_length(self) -> int:
        return 24 if self.zip64 else 16

    @property
    def end(self) -> int:
        return self.descriptor_offset + self.descriptor_length


@dataclass(frozen=True)
class Layout:
    """Where an archive's records lie: its entries, the central directory, the total length."""

    entries: tuple[Entry, ...]
    central_offset: int
    central_length: int
    length: int


def layout(members: list[tuple[str, int, int]]) -> Layout:
    """Offsets of every record for ``(name, size, mtime)`` members, in order. Pure."""
    entries, offset = [], 0
    for name, size, mtime in members:
        e = Entry(name, size, mtime, offset)
        entries.append(e)
        offset = e.end
    central = sum(len(_central_record(e, 0)) for e in entries)
    tail = len(_end_records(len(entries), offset, central))
    return Layout(tuple(entries), offset, central, offset + central + tail)


def _dos_time(ts: int) -> tuple[int, int]:
    t = time.gmtime(min(max(ts, 315532800), 4354819199))  # 1980-01-01 .. 2107-12-31
    return ((t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday,
            t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2)


def _timestamp_field(e: Entry) -> bytes:
    # "UT" extended timestamp: the modification time in Unix seconds, restored by unzip and 7-Zip.
    return struct.pack("<HHBI", 0x5455, 5, 1, min(max(e.mtime, 0), 0xFFFFFFFF))


def local_header(e: Entry) -> bytes:
    """Sizes and CRC are 0 here (they follow in the data descriptor), as for streamed ZIPs."""
    date, tm = _dos_time(e.mtime)
    extra = _timestamp_field(e)
    sizes = 0
    if e.zip64:
        extra += struct.pack("<HHQQ", 1, 16, 0, 0)
        sizes = 0xFFFFFFFF
    name = e.encoded_name
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, _VERSION_ZIP64 if e.zip64 else _VERSION,
                       e.flags, 0, tm, date, 0, sizes, sizes, len(name), len(extra)) + name + extra


def data_descriptor(e: Entry, crc: int) -> bytes:
    if e.zip64:
        return struct.pack("<IIQQ", 0x08074B50, crc, e.size, e.size)
    return struct.pack("<IIII", 0x08074B50, crc, e.size, e.size)


def _central_record(e: Entry, crc: int) -> bytes:
    date, tm = _dos_time(e.mtime)
    zip64 = []
    size = e.size
    if e.size > ZIP64_LIMIT:
        zip64 += [e.size, e.size]
        size = 0xFFFFFFFF
    offset = e.offset
    if e.offset > ZIP64_LIMIT:
        zip64.append(e.offset)
        offset = 0xFFFFFFFF
    extra = _timestamp_field(e)
    if zip64:
        extra += struct.pack(f"<HH{len(zip64)}Q", 1, 8 * len(zip64), *zip64)
    version = _VERSION_ZIP64 if zip64 or e.zip64 else _VERSION
    name = e.encoded_name
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, _UNIX << 8 | version, version, e.flags,
                       0, tm, date, crc, size, size, len(name), len(extra), 0, 0, 0, _EXTERNAL,
                       offset) + name + extra


def _end_records(count: int, central_offset: int, central_length: int) -> bytes:
    out = b""
    if count >= 0xFFFF or central_offset > ZIP64_LIMIT or central_length > ZIP64_LIMIT:
        zip64_end = central_offset + central_length
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, _VERSION_ZIP64, _VERSION_ZIP64, 0, 0,
                           count, count, central_length, central_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1)
        count, central_offset = min(count, 0xFFFF), min(central_offset, 0xFFFFFFFF)
        central_length = min(central_length, 0xFFFFFFFF)
    return out + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, central_length,
                             central_offset, 0)


def central_directory(lay: Layout, crcs: list[int]) -> bytes:
    """The central directory and end records: everything after the last member."""
    body = b"".join(_central_record(e, c) for e, c in zip(lay.entries, crcs, strict=True))
    return body + _end_records(len(lay.entries), lay.central_offset, lay.central_length)

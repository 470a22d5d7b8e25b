"""A strict structural check of an encoded data set (PS3.5 §7): every element inside its bounds.

pydicom's reader is lenient: it returns a short value when an element's length runs past the end of
the data, and reads random bytes after a data set as more elements. This walker reads nothing into
memory; it only follows the element headers of Explicit or Implicit VR (Little or Big Endian) data
and raises :class:`MalformedDataSet` unless

- every element header and value lies within the data set, sequence item or fragment list that
  contains it (PS3.5 §7.1, §7.5), and nothing follows the last element;
- explicit VRs are known VR codes (PS3.5 §6.2) and undefined lengths occur only where PS3.5 §7.1.3
  allows them (SQ, UN, encapsulated Pixel Data; any element in Implicit VR is then a sequence);
- data elements come in ascending tag order in each data set (PS3.5 §7.1);
- sequences and items end with their delimiters (PS3.5 §7.5.2) and nesting stays bounded.
"""

from __future__ import annotations

import struct

#: VRs with a 2-byte reserved field and a 4-byte length in Explicit VR (PS3.5 Table 7.1-1).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
     b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)  # fmt: skip
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
MAX_DEPTH = 32


class MalformedDataSet(ValueError):
    """The encoded data set is not well formed; the message says where and why.

    ``truncated`` is True when the data ends inside an element (the data set is incomplete)."""

    def __init__(self, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


class _Walker:
    def __init__(self, data: bytes | memoryview, implicit: bool, little: bool) -> None:
        self.data = memoryview(data)
        self.implicit = implicit
        self.e = "<" if little else ">"

    def fail(self, offset: int, why: str, end: int = -1) -> MalformedDataSet:
        """The error for ``why`` at ``offset``; ``end`` the bound that was crossed, if any."""
        return MalformedDataSet(f"{why} at byte {offset}", truncated=end == len(self.data))

    def tag_at(self, pos: int, end: int) -> int:
        if pos + 4 > end:
            raise self.fail(pos, "element header truncated", end)
        group, element = struct.unpack_from(self.e + "HH", self.data, pos)
        return int(group) << 16 | int(element)

    def item_header(self, pos: int, end: int) -> tuple[int, int]:
        """Tag and length of an item or delimiter (always tag + 4-byte length, PS3.5 §7.5)."""
        if pos + 8 > end:
            raise self.fail(pos, "item header truncated", end)
        group, element, length = struct.unpack_from(self.e + "HHL", self.data, pos)
        return int(group) << 16 | int(element), int(length)

    pixel_offset: int = -1
    #: length of the top-level Pixel Data value; -1 when encapsulated (undefined length)
    pixel_length: int = -1

    def dataset(self, pos: int, end: int, depth: int, until_item_end: bool) -> int:
        """Walk elements from ``pos``; returns the offset after the data set (or its delimiter)."""
        if depth > MAX_DEPTH:
            raise self.fail(pos, "sequences nested too deeply")
        previous = -1
        while pos < end:
            tag = self.tag_at(pos, end)
            if tag == ITEM_END and until_item_end:
                _, length = self.item_header(pos, end)
                if length != 0:
                    raise self.fail(pos, "item delimiter with non-zero length")
                return pos + 8
            if tag >> 16 == 0xFFFE:
                raise self.fail(pos, f"unexpected delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            if tag <= previous:
                raise self.fail(pos, f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) out of order")
            previous = tag
            if tag == PIXEL_DATA and depth == 0:
                self.pixel_offset = pos
            pos = self.element(pos, end, tag, depth)
        if until_item_end:
            raise self.fail(pos, "item without its delimiter")
        return pos

    def element(self, pos: int, end: int, tag: int, depth: int) -> int:
        name = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if self.implicit:
            if pos + 8 > end:
                raise self.fail(pos, f"{name} header truncated", end)
            (length,) = struct.unpack_from(self.e + "L", self.data, pos + 4)
            vr = b"SQ" if length == UNDEFINED and tag != PIXEL_DATA else b"??"
            pos += 8
        else:
            if pos + 8 > end:
                raise self.fail(pos, f"{name} header truncated", end)
            vr = bytes(self.data[pos + 4 : pos + 6])
            if vr in LONG_VRS:
                if pos + 12 > end:
                    raise self.fail(pos, f"{name} header truncated", end)
                (length,) = struct.unpack_from(self.e + "L", self.data, pos + 8)
                pos += 12
            elif vr in SHORT_VRS:
                (length,) = struct.unpack_from(self.e + "H", self.data, pos + 6)
                pos += 8
            else:
                raise self.fail(pos, f"{name} has an unknown VR {vr!r}")
        if tag == PIXEL_DATA and depth == 0:
            self.pixel_length = -1 if length == UNDEFINED else int(length)
        if length == UNDEFINED:
            if tag == PIXEL_DATA and vr in (b"OB", b"OW", b"??"):
                return self.fragments(pos, end)
            if vr not in (b"SQ", b"UN"):
                raise self.fail(pos, f"{name} has an undefined length but VR {vr.decode()}")
            return self.sequence(pos, end, depth, undefined=True)
        value_end = pos + int(length)
        if value_end > end:
            raise self.fail(
                pos, f"{name} value of {length} bytes runs past the end ({end - pos} left)", end
            )
        if vr == b"SQ":
            self.sequence(pos, value_end, depth, undefined=False)
        return value_end

    def sequence(self, pos: int, end: int, depth: int, undefined: bool) -> int:
        while pos < end:
            tag, length = self.item_header(pos, end)
            if tag == SEQUENCE_END and undefined:
                if length != 0:
                    raise self.fail(pos, "sequence delimiter with non-zero length")
                return pos + 8
            if tag != ITEM:
                raise self.fail(pos, "sequence content is not an item")
            pos += 8
            if length == UNDEFINED:
                pos = self.dataset(pos, end, depth + 1, until_item_end=True)
            else:
                if pos + length > end:
                    raise self.fail(pos, f"item of {length} bytes runs past its sequence")
                self.dataset(pos, pos + length, depth + 1, until_item_end=False)
                pos += length
        if undefined:
            raise self.fail(pos, "sequence without its delimiter")
        return pos

    def fragments(self, pos: int, end: int) -> int:
        """Encapsulated Pixel Data: items of raw bytes, then a sequence delimiter (PS3.5 A.4)."""
        while True:
            tag, length = self.item_header(pos, end)
            pos += 8
            if tag == SEQUENCE_END:
                if length != 0:
                    raise self.fail(pos - 8, "sequence delimiter with non-zero length")
                return pos
            if tag != ITEM or length == UNDEFINED:
                raise self.fail(pos - 8, "encapsulated Pixel Data fragment is not an item")
            if pos + length > end:
                raise self.fail(
                    pos, f"Pixel Data fragment of {length} bytes runs past the end", end
                )
            pos += length


def check_structure(data: bytes | memoryview, implicit: bool, little: bool = True) -> int:
    """Raise :class:`MalformedDataSet` unless ``data`` is exactly one well-formed data set.

    Returns the offset of the top-level Pixel Data element (the length of the data when there is
    none): what comes before it is the header that search and metadata answers are made from."""
    return walk(data, implicit, little)[0]


def walk(data: bytes | memoryview, implicit: bool, little: bool = True) -> tuple[int, int | None]:
    """:func:`check_structure`, plus the length of the top-level Pixel Data value (None when
    there is none, -1 when it is encapsulated)."""
    walker = _Walker(data, implicit, little)
    end = walker.dataset(0, len(walker.data), 0, until_item_end=False)
    if end != len(walker.data):  # pragma: no cover - dataset() walks to the end or raises
        raise walker.fail(end, "trailing bytes after the data set")
    if walker.pixel_offset < 0:
        return len(walker.data), None
    return walker.pixel_offset, walker.pixel_length

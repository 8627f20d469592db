"""Avro's zigzag varints, the only integer encoding in the hot-path codecs."""

from __future__ import annotations

__all__ = ["read_long", "write_long"]

# Non-negative values below 64 are one byte: the common case for string lengths.
_SMALL = [bytes([n << 1]) for n in range(64)]


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the zigzag varint at ``pos``; return ``(value, position after it)``.

    Raises:
        IndexError: the varint runs past the end of ``data``.
    """
    byte = data[pos]
    pos += 1
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos
    value = byte & 0x7F
    shift = 7
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7


def write_long(value: int) -> bytes:
    """Encode ``value`` as a zigzag varint."""
    if 0 <= value < 64:
        return _SMALL[value]
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)

"""The byte loops of the inference hot path, compiled by numba: a whole batch per call, no Python per record.

:func:`scan_features` reads the records of a batch that are in the features schema's current
one-block layout; :func:`encode_predictions` writes a batch of predictions into one buffer. Both
work on one ``uint8`` array holding every record of the batch back to back, cut by ``bounds``
(record ``r`` is ``buf[bounds[r]:bounds[r + 1]]``). Every read is bounded by its record's end, so
no input can make them read past it.

The scan is conservative: a record it does not take (another layout, a varint over nine bytes,
non-ASCII ids, a check failed) is left to the full codec, which decodes it or names what is wrong;
a record it takes decodes to exactly what the full codec would make of it. Compiled code is cached
next to this file (``__pycache__``), so a worker compiles it once per install, not at every start.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["encode_predictions", "scan_features"]

_LONGEST_VARINT = 63  # bits: nine bytes, the longest varint read here; an int64 holds it whole


@njit(cache=True, nogil=True)
def _read_long(buf: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """The zigzag varint at ``pos`` and the position after it; -1 as position when it runs past ``end``
    or is longer than nine bytes."""
    value = np.int64(0)
    shift = 0
    while pos < end and shift < _LONGEST_VARINT:
        byte = buf[pos]
        pos += 1
        value |= np.int64(byte & 0x7F) << shift
        if byte < 0x80:
            return int((value >> 1) ^ -(value & 1)), pos
        shift += 7
    return 0, -1


@njit(cache=True, nogil=True)
def _same(buf: np.ndarray, at: int, expected: np.ndarray) -> bool:
    for k in range(len(expected)):
        if buf[at + k] != expected[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def _ascii(buf: np.ndarray, start: int, stop: int) -> bool:
    for k in range(start, stop):
        if buf[k] >= 0x80:
            return False
    return True


@njit(cache=True, nogil=True)
def scan_features(
    buf: np.ndarray,
    bounds: np.ndarray,
    header: np.ndarray,
    block_head: np.ndarray,
    width: int,
    max_id: int,
    min_time: int,
    max_time: int,
    rows: np.ndarray,
    spans: np.ndarray,
    times: np.ndarray,
) -> np.ndarray:
    """Which records are ``Features`` written with the current schema (``header``), ids of 1 to ``max_id``
    ASCII bytes, an event time in [``min_time``, ``max_time``], ``width`` floats in one block (``block_head``
    is its item count) and no named fields.

    For each such record ``r``: its floats' bytes go to ``rows[r]`` (``4 * width`` bytes), where its
    event_id and entity_id lie in ``buf`` to ``spans[r]`` (id start, id end, entity start, entity end),
    its event time to ``times[r]``. The other records' rows are left as they were.
    """
    n = len(bounds) - 1
    taken = np.zeros(n, np.bool_)
    tail = len(block_head) + 4 * width + 2  # the float block, its end marker, the empty map of fields
    for r in range(n):
        start, end = bounds[r], bounds[r + 1]
        if end - start < len(header) or not _same(buf, start, header):
            continue
        size, pos = _read_long(buf, start + len(header), end)
        if pos < 0 or size <= 0 or size > max_id or pos + size > end:
            continue
        id_at = pos
        event_time, pos = _read_long(buf, id_at + size, end)
        if pos < 0 or event_time < min_time or event_time > max_time:
            continue
        entity_size, pos = _read_long(buf, pos, end)
        if pos < 0 or entity_size < 0 or pos + entity_size > end:
            continue
        entity_at = pos
        pos += entity_size
        if end - pos != tail or buf[end - 2] != 0 or buf[end - 1] != 0 or not _same(buf, pos, block_head):
            continue
        if not _ascii(buf, id_at, id_at + size) or not _ascii(buf, entity_at, entity_at + entity_size):
            continue
        pos += len(block_head)
        for k in range(4 * width):
            rows[r, k] = buf[pos + k]
        spans[r, 0], spans[r, 1] = id_at, id_at + size
        spans[r, 2], spans[r, 3] = entity_at, entity_at + entity_size
        times[r] = event_time
        taken[r] = True
    return taken


@njit(cache=True, nogil=True)
def _long_size(value: int) -> int:
    bits = np.uint64((value << 1) ^ (value >> 63))
    size = 1
    while bits >= np.uint64(0x80):
        bits >>= np.uint64(7)
        size += 1
    return size


@njit(cache=True, nogil=True)
def _put_long(out: np.ndarray, at: int, value: int) -> int:
    bits = np.uint64((value << 1) ^ (value >> 63))
    while bits >= np.uint64(0x80):
        out[at] = np.uint8((bits & np.uint64(0x7F)) | np.uint64(0x80))
        bits >>= np.uint64(7)
        at += 1
    out[at] = np.uint8(bits)
    return at + 1


@njit(cache=True, nogil=True)
def _put(out: np.ndarray, at: int, source: np.ndarray, start: int, stop: int) -> int:
    for k in range(start, stop):
        out[at] = source[k]
        at += 1
    return at


@njit(cache=True, nogil=True)
def encode_predictions(
    text: np.ndarray,
    spans: np.ndarray,
    times: np.ndarray,
    prediction_time: int,
    score_bytes: np.ndarray,
    winners: np.ndarray,
    wait_bytes: np.ndarray,
    header: np.ndarray,
    model: np.ndarray,
    tails: np.ndarray,
    tail_bounds: np.ndarray,
    inference_ms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's framed ``Prediction``, back to back, and the bounds that cut them apart.

    Row ``r``: ``header``, its event_id (``text[spans[r, 0]:spans[r, 1]]``), event time, the
    prediction time, its entity_id (``text[spans[r, 2]:spans[r, 3]]``), ``model`` (the encoded
    fields from model name to the score count), its scores' bytes, the class tail of its winner
    (``tails[tail_bounds[w]:tail_bounds[w + 1]]``: the scores' end marker and the class name), its
    queue wait's bytes and ``inference_ms``'s.
    """
    n = len(times)
    bounds = np.empty(n + 1, np.int64)
    bounds[0] = 0
    fixed = len(header) + len(model) + score_bytes.shape[1] + wait_bytes.shape[1] + len(inference_ms)
    fixed += _long_size(prediction_time)
    for r in range(n):
        id_size, entity_size, winner = spans[r, 1] - spans[r, 0], spans[r, 3] - spans[r, 2], winners[r]
        bounds[r + 1] = bounds[r] + fixed + _long_size(id_size) + id_size + _long_size(times[r]) + \
            _long_size(entity_size) + entity_size + tail_bounds[winner + 1] - tail_bounds[winner]  # fmt: skip
    out = np.empty(bounds[n], np.uint8)
    for r in range(n):
        at = _put(out, bounds[r], header, 0, len(header))
        at = _put_long(out, at, spans[r, 1] - spans[r, 0])
        at = _put(out, at, text, spans[r, 0], spans[r, 1])
        at = _put_long(out, at, times[r])
        at = _put_long(out, at, prediction_time)
        at = _put_long(out, at, spans[r, 3] - spans[r, 2])
        at = _put(out, at, text, spans[r, 2], spans[r, 3])
        at = _put(out, at, model, 0, len(model))
        at = _put(out, at, score_bytes[r], 0, score_bytes.shape[1])
        at = _put(out, at, tails, tail_bounds[winners[r]], tail_bounds[winners[r] + 1])
        at = _put(out, at, wait_bytes[r], 0, wait_bytes.shape[1])
        _put(out, at, inference_ms, 0, len(inference_ms))
    return out, bounds

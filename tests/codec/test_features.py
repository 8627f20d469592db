import io
import math

import fastavro
import numpy as np
import pytest

from loopline.codec import Codec, FeatureDecoder, load_schema
from loopline.codec.checks import MAX_ID_BYTES, MAX_TIME_MS, MIN_TIME_MS
from loopline.codec.compiled import scan_features
from loopline.codec.varint import read_long, write_long


@pytest.fixture(scope="module")
def codec():
    return Codec.load("features")


def features(i, values):
    return {
        "event_id": f"event-{i}",
        "event_time": 1_795_000_000_000 + i,
        "entity_id": f"e{i % 3}",
        "values": values,
    }


def test_varints_round_trip():
    for value in [0, 1, -1, 63, 64, -65, 300, 2**31, 1_795_000_000_000, -(2**62)]:
        data = write_long(value) + b"\xff"
        assert read_long(data, 0) == (value, len(data) - 1)


def test_a_batch_becomes_one_float32_matrix_in_input_order(codec):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 8)).astype(np.float32)
    batch = FeatureDecoder(codec, 8).decode([codec.encode(features(i, row.tolist())) for i, row in enumerate(values)])
    assert batch.matrix.dtype == np.float32 and batch.matrix.shape == (50, 8)
    np.testing.assert_array_equal(batch.matrix, values)
    assert batch.event_ids == [f"event-{i}" for i in range(50)]
    assert batch.entity_ids == [f"e{i % 3}" for i in range(50)]
    assert batch.event_times.tolist() == [1_795_000_000_000 + i for i in range(50)]
    assert batch.index.tolist() == list(range(50)) and batch.errors == []


def test_arrays_written_in_several_blocks_take_the_full_codec(codec):
    # fastavro writes one block; Avro allows several (here 2 + 1 items, with the block byte size).
    body = io.BytesIO()
    fastavro.schemaless_writer(body, codec.schema, features(0, []))
    head = body.getvalue()[:-2]  # drop the empty array's end marker and the empty map of fields
    floats = np.array([1.0, 2.0, 3.0], dtype="<f4").tobytes()
    blocks = write_long(-2) + write_long(8) + floats[:8] + write_long(1) + floats[8:] + b"\x00" + b"\x00"
    batch = FeatureDecoder(codec, 3).decode([codec.header + head + blocks])
    assert batch.errors == []
    np.testing.assert_array_equal(batch.matrix, [[1.0, 2.0, 3.0]])


def test_the_compiled_scan_takes_the_current_layout_and_leaves_the_rest_to_the_codec(codec):
    several_blocks = codec.header + codec.encode(features(0, []))[10:-2] + write_long(-1) + write_long(4) + \
        np.array([1.0], dtype="<f4").tobytes() + write_long(1) + np.array([2.0], dtype="<f4").tobytes() + b"\0\0"  # fmt: skip
    messages = [
        codec.encode(features(0, [1.0, 2.0])),
        codec.encode(features(1, [1.0, 2.0]) | {"event_id": "événement"}),
        several_blocks,
        codec.encode(features(2, [1.0, 2.0]) | {"event_time": 10_413_792_000_000}),
        codec.encode(features(3, [1.0, 2.0, 3.0])),
        b"garbage",
    ]
    decoder = FeatureDecoder(codec, 2)
    count = len(messages)
    bounds = np.cumsum([0] + [len(m) for m in messages], dtype=np.int64)
    rows, spans, times = np.empty((count, 8), np.uint8), np.empty((count, 4), np.int64), np.empty(count, np.int64)
    taken = scan_features(np.frombuffer(b"".join(messages), np.uint8), bounds, decoder._header, decoder._block_head, 2,
                          MAX_ID_BYTES, MIN_TIME_MS, MAX_TIME_MS, rows, spans, times)  # fmt: skip
    assert taken.tolist() == [True, False, False, False, False, False]
    batch = decoder.decode(messages)
    assert batch.event_ids == ["event-0", "événement", "event-0"]
    assert [(i, e.reason) for i, e in batch.errors] == [(3, "invalid-time"), (4, "wrong-length"), (5, "corrupt")]


def test_records_of_a_newer_writer_schema_decode():
    newer = load_schema("features")
    newer["fields"].append({"name": "region", "type": "string", "default": ""})
    reader = Codec.load("features")
    reader.add_writer(newer)
    data = Codec(newer).encode(features(0, [0.5, 2.0]) | {"region": "eu"})
    batch = FeatureDecoder(reader, 2).decode([data])
    np.testing.assert_array_equal(batch.matrix, [[0.5, 2.0]])
    assert batch.event_ids == ["event-0"]


def test_bad_records_are_reported_and_the_rest_of_the_batch_is_served(codec):
    good = [codec.encode(features(i, [float(i), 1.0])) for i in range(4)]
    messages = [
        good[0],
        b"garbage",
        codec.encode(features(9, [1.0, 2.0, 3.0])),
        good[1],
        codec.encode(features(8, [math.nan, 1.0])),
        Codec(load_schema("features") | {"name": "Other"}).encode(features(7, [1.0, 1.0])),
        good[2][:-5],
        codec.encode(features(6, [math.inf, 1.0])),
        good[3],
    ]
    batch = FeatureDecoder(codec, 2).decode(messages)
    assert batch.index.tolist() == [0, 3, 8]
    assert batch.event_ids == ["event-0", "event-1", "event-3"]
    np.testing.assert_array_equal(batch.matrix, [[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    assert [(i, e.reason) for i, e in batch.errors] == [
        (1, "corrupt"),
        (2, "wrong-length"),
        (4, "non-finite"),
        (5, "unknown-schema"),
        (6, "corrupt"),
        (7, "non-finite"),
    ]
    assert len(batch) + len(batch.errors) == len(messages)


def test_an_empty_batch_is_an_empty_matrix(codec):
    batch = FeatureDecoder(codec, 4).decode([])
    assert batch.matrix.shape == (0, 4) and len(batch) == 0


def test_an_empty_or_overlong_event_id_and_a_time_clickhouse_cant_store_are_not_rows(codec):
    edge = [
        features(0, [1.0, 2.0]) | {"event_time": -2_208_988_800_000},  # 1900-01-01: the first storable instant
        features(1, [1.0, 2.0]) | {"event_time": 10_413_791_999_999, "event_id": "x" * 1024},  # 2299, 1024 bytes
    ]
    bad = [
        features(2, [1.0, 2.0]) | {"event_id": ""},
        features(3, [1.0, 2.0]) | {"event_id": "é" * 513},  # 1026 bytes
        features(4, [1.0, 2.0]) | {"event_time": -2_208_988_800_001},
        features(5, [1.0, 2.0]) | {"event_time": 10_413_792_000_000},
    ]
    batch = FeatureDecoder(codec, 2).decode([codec.encode(r) for r in edge + bad])
    assert batch.index.tolist() == [0, 1]
    assert [(i, e.reason) for i, e in batch.errors] == [
        (2, "invalid-id"), (3, "invalid-id"), (4, "invalid-time"), (5, "invalid-time")
    ]  # fmt: skip
    assert "1026 bytes" in batch.errors[1][1].message and "1900-2299" in batch.errors[2][1].message

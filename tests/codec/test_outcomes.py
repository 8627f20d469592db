"""The drift agent's outcome reader: the codec's fields, read from the bytes where it can, the codec elsewhere."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.codec import Codec, CodecError
from loopline.codec.outcomes import OutcomeReader
from loopline.codec.varint import write_long
from tests.codec.test_fuzz import mutated
from tests.samples import SAMPLES

CODEC = Codec.load("outcome")
READER = OutcomeReader(CODEC)
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(max_size=20)
floats32 = st.floats(width=32, allow_nan=False)
times = st.integers(-2_208_988_800_000, 10_413_791_999_999)
outcomes = st.fixed_dictionaries({
    "event_id": st.text(min_size=1, max_size=30), "event_time": times, "entity_id": texts,
    "values": st.lists(floats32, max_size=40), "model_name": texts, "model_version": st.integers(-(2**31), 2**31 - 1),
    "shadow": st.booleans(), "scores": st.lists(floats32, max_size=4), "predicted_class": texts, "label": texts,
    "label_time": times, "prediction_delay_ms": st.integers(-(2**63), 2**63 - 1),
    "label_delay_ms": st.integers(-(2**63), 2**63 - 1), "correct": st.booleans(), "log_loss": floats32,
    "label_rate": floats32,
})  # fmt: skip


def fields(record):
    return {name: record[name] for name in OutcomeReader.FIELDS}


@FUZZ
@given(outcomes)
def test_a_valid_record_is_read_from_its_bytes_as_the_codec_reads_it(outcome):
    data = CODEC.encode(outcome)
    fast = READER._fast(data)
    assert fast is not None and fast == fields(CODEC.decode(data))


@FUZZ
@given(st.one_of(mutated(CODEC.encode(SAMPLES["outcome"])), st.binary(max_size=120).map(lambda b: CODEC.header + b)))
def test_bytes_read_from_the_record_are_only_what_the_codec_accepts_and_reads_the_same(data):
    fast = READER._fast(data)
    try:
        decoded = CODEC.decode(data)
    except CodecError:
        assert fast is None  # the codec's error is the reader's
        with pytest.raises(CodecError):
            READER.read(data)
        return
    assert fast is None or fast == fields(decoded)
    assert fields(READER.read(data)) == fields(decoded)


def test_an_array_in_two_blocks_is_left_to_the_codec():
    outcome = SAMPLES["outcome"] | {"values": [0.5, -1.25, 3.0, 4.0]}
    one_block = CODEC.encode(outcome)
    floats = one_block[one_block.index(write_long(4)) + 1 :][:16]
    at = one_block.index(write_long(4) + floats)
    two_blocks = (one_block[:at] + write_long(2) + floats[:8] + write_long(-2) + write_long(8) + floats[8:]
                  + one_block[at + 1 + 16 :])  # fmt: skip
    assert CODEC.decode(two_blocks)["values"] == outcome["values"]
    assert READER._fast(two_blocks) is None
    assert fields(READER.read(two_blocks)) == fields(CODEC.decode(one_block))

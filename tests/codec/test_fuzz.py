"""Property: whatever bytes reach a decoder, it gives a row or a CodecError, nothing else.

Three kinds of input: any bytes; a decoder's own header followed by any bytes (past the framing
check, into the Avro body); and valid records with bytes flipped, cut or inserted anywhere.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopline.codec import Codec, CodecError, FeatureDecoder
from tests.samples import SAMPLES

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
WIDTH = 3
CODECS = {name: Codec.load(name) for name in ("features", "label", "model_version")}
VALID = {name: codec.encode(SAMPLES[name]) for name, codec in CODECS.items()}


def mutated(valid):
    """``valid`` with one byte flipped, cut there or inserted anywhere."""
    return st.tuples(
        st.integers(0, len(valid) - 1), st.integers(0, 255), st.sampled_from(["flip", "cut", "insert"])
    ).map(
        lambda m: valid[: m[0]] + bytes([m[1]]) + valid[m[0] + 1 :] if m[2] == "flip"
        else valid[: m[0]] if m[2] == "cut"
        else valid[: m[0]] + bytes([m[1]]) + valid[m[0] :]
    )  # fmt: skip


def inputs(name):
    """Bytes for the ``name`` decoder: random, behind its header, or a valid record mutated."""
    header = CODECS[name].header
    return st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: header + b), mutated(VALID[name]))


def row_or_codec_error(decode, data):
    try:
        row = decode(data)
    except CodecError as exc:
        assert exc.reason in {"corrupt", "unknown-schema", "invalid-id", "invalid-time"}, exc
        return None
    assert isinstance(row, dict)
    return row


@pytest.mark.parametrize("name", ["label", "model_version"])
def test_the_label_and_version_decoders_give_a_row_or_a_codec_error(name):
    @FUZZ
    @given(inputs(name))
    def check(data):
        row_or_codec_error(CODECS[name].decode, data)

    check()


@FUZZ
@given(st.lists(inputs("features"), min_size=1, max_size=8))
def test_the_feature_decoder_gives_each_record_a_row_or_a_codec_error(messages):
    batch = FeatureDecoder(CODECS["features"], WIDTH).decode(messages)
    assert sorted(batch.index.tolist() + [i for i, _ in batch.errors]) == list(range(len(messages)))
    assert all(isinstance(error, CodecError) for _, error in batch.errors)
    assert batch.matrix.shape == (len(batch), WIDTH) and np.isfinite(batch.matrix).all()
    for row, i in enumerate(batch.index.tolist()):  # a row is what the full codec reads, checks included
        record = row_or_codec_error(CODECS["features"].decode, messages[i])
        assert record is not None and batch.event_ids[row] == record["event_id"]
        assert batch.entity_ids[row] == record["entity_id"] and batch.event_times[row] == record["event_time"]
        np.testing.assert_array_equal(batch.matrix[row], np.asarray(record["values"], dtype=np.float32))

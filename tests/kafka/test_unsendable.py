"""Outputs that can't be sent, alone: the records over the limit are found, and replaced by dead letters of
the inputs they name (or of a batch's one record); an output whose input is unknown is left as it was."""

import pytest

from loopline.codec import Codec
from loopline.deadletters import DeadLetters
from loopline.kafka.unsendable import replace, too_large
from loopline.records import Produced, SourceRecord, Topic

LETTERS = Codec.load("dead_letter")
DEAD = DeadLetters("relay")


def records(count):
    return [SourceRecord(f"k{i}".encode(), f"v{i}".encode(), "in", 0, i, i) for i in range(count)]


def test_the_records_over_the_limit_are_found_with_their_size():
    out = Produced()
    out.extend(Topic.PREDICTIONS, [(b"k", b"x" * 10), (b"kk", b"x" * 8), (None, b"x" * 11)])  # type: ignore[list-item]
    out.extend(Topic.OUTCOMES, [(b"k", b"x" * 9)])
    assert too_large(out, 10) == [
        (Topic.PREDICTIONS, 0, "its predictions record would be 11 bytes; the topics take at most 10"),
        (Topic.PREDICTIONS, 2, "its predictions record would be 11 bytes; the topics take at most 10"),
    ]
    assert too_large(out, 11) == []


def test_bad_records_are_replaced_by_dead_letters_of_the_inputs_they_name():
    batch = records(4)
    out = Produced()
    for record in batch:
        out.send(Topic.PREDICTIONS, record.key, record.value, source=record)
    out.send(Topic.OUTCOMES, b"o", b"from 1", source=batch[1])
    bad = [(Topic.PREDICTIONS, 1, "too big"), (Topic.OUTCOMES, 0, "too big too"), (Topic.PREDICTIONS, 3, "big")]
    assert replace(out, bad, batch, "too-large", DEAD)
    assert out.to(Topic.PREDICTIONS) == [(b"k0", b"v0"), (b"k2", b"v2")]
    assert [out.source_of(Topic.PREDICTIONS, i) for i in range(2)] == [batch[0], batch[2]]  # still in step
    assert out.to(Topic.OUTCOMES) == []
    letters = [LETTERS.decode(value) for _, value in out.dead_letters]
    assert [(d["source_offset"], d["reason"], d["error"]) for d in letters] == [
        (1, "too-large", "too big"),  # one dead letter for both of its records
        (3, "too-large", "big"),
    ]
    assert out.dead_reasons == ["too-large", "too-large"]


def test_a_batch_of_one_record_is_the_input_of_every_bad_output():
    [record] = records(1)
    out = Produced()
    out.extend(Topic.PREDICTIONS, [(b"k0", b"v0")])
    assert replace(out, [(Topic.PREDICTIONS, 0, "refused")], [record], "send-refused", DEAD)
    assert out.to(Topic.PREDICTIONS) == []
    assert [LETTERS.decode(v)["reason"] for _, v in out.dead_letters] == ["send-refused"]


def test_an_output_whose_input_is_unknown_is_left_as_it_was():
    out = Produced()
    out.extend(Topic.PREDICTIONS, [(b"k0", b"v0"), (b"k1", b"v1")])
    assert not replace(out, [(Topic.PREDICTIONS, 1, "refused")], records(2), "send-refused", DEAD)
    assert out.to(Topic.PREDICTIONS) == [(b"k0", b"v0"), (b"k1", b"v1")] and out.dead_letters == []


def test_a_dead_letter_that_cant_be_sent_is_an_error_with_the_reason():
    batch = records(1)
    out = Produced()
    DEAD.add(out, batch[0], "corrupt", "junk")
    with pytest.raises(RuntimeError, match="relay: a dead letter can't be sent \\(denied\\)"):
        replace(out, [(Topic.DEAD_LETTERS, 0, "denied")], batch, "send-refused", DEAD)

"""Dead letters fit in their topic whatever they report: a bounded prefix, the size and sha256 of the whole."""

import hashlib

from loopline.codec import Codec
from loopline.deadletters import KEY_PREFIX_BYTES, VALUE_PREFIX_BYTES, DeadLetters
from loopline.records import Produced, SourceRecord, Topic

LETTER = Codec.load("dead_letter")


def test_a_dead_letter_of_a_record_near_the_limit_keeps_a_prefix_its_size_and_sha256():
    value = bytes(range(256)) * (16 * 4096 - 1)  # 16 MiB less 256 bytes
    key = b"k" * 5000
    source = SourceRecord(key, value, "t.features", 3, 42, 1_795_000_000_000)
    out = Produced()
    DeadLetters("inference").add(out, source, "wrong-length", "feature vector has 4194240 values")
    [(letter_key, letter_value)] = out.dead_letters
    assert len(letter_value) < VALUE_PREFIX_BYTES + KEY_PREFIX_BYTES + 6000
    letter = LETTER.decode(letter_value)
    assert letter_key == b"t.features" and letter["reason"] == "wrong-length"
    assert letter["value"] == value[:VALUE_PREFIX_BYTES] and letter["key"] == key[:KEY_PREFIX_BYTES]
    assert f"value: {len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()}" in letter["error"]
    assert f"key: 5000 bytes, sha256 {hashlib.sha256(key).hexdigest()}" in letter["error"]
    assert out.source_of(Topic.DEAD_LETTERS, 0) == source and out.dead_reasons == ["wrong-length"]


def test_a_small_record_is_kept_whole_and_a_wild_timestamp_is_moved_into_storable_years():
    source = SourceRecord(None, b"\x00junk", "t.labels", 0, 7, 99_999_999_999_999)
    letter = LETTER.decode(DeadLetters("join").encode(source, "corrupt", "x" * 10_000)[1])
    assert letter["value"] == b"\x00junk" and letter["key"] is None
    assert letter["event_time"] == 10_413_791_999_999
    assert len(letter["error"]) == 4097 and "bytes, sha256" not in letter["error"]

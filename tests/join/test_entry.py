import pytest

from loopline.join.entry import (
    ENTRY_OVERHEAD,
    SERVING,
    SHADOW,
    Entry,
    decode_entry,
    encode_entry,
    entry_deadline,
)
from loopline.records import SourceRecord

T0 = 1_795_000_000_000


def test_entries_round_trip_through_their_stored_layout():
    label = SourceRecord(b"k", b"label", "l", 3, 42, T0)
    entry = Entry(T0 + 3_600_000, b"features", None, b"shadow", label, SHADOW)
    again = decode_entry(encode_entry(entry), "l", 3)
    assert vars(again) == vars(entry)
    assert decode_entry(encode_entry(Entry(5)), "l", 0).label is None
    unkeyed = Entry(-7, label=label._replace(key=None))
    assert vars(decode_entry(encode_entry(unkeyed), "l", 3)) == vars(unkeyed)


def test_the_deadline_is_read_without_decoding_the_parts():
    assert entry_deadline(encode_entry(Entry(T0, b"f", b"p"))) == T0
    assert entry_deadline(encode_entry(Entry(-1))) == -1


def test_an_entry_in_another_format_is_refused():
    data = bytearray(encode_entry(Entry(5)))
    data[0] = 2
    with pytest.raises(ValueError, match="format 2"):
        decode_entry(bytes(data), "l", 0)


def test_an_entry_is_done_once_every_prediction_it_holds_has_its_outcome_the_serving_one_included():
    assert not Entry(0, prediction=b"p").done
    assert Entry(0, prediction=b"p", sent=SERVING).done
    assert not Entry(0, prediction=b"p", shadow=b"s", sent=SERVING).done
    assert Entry(0, prediction=b"p", shadow=b"s", sent=SERVING | SHADOW).done
    assert not Entry(0, shadow=b"s", sent=SHADOW).done  # the serving prediction may still come


def test_an_entrys_size_counts_its_parts_and_the_labels_key():
    label = SourceRecord(b"key", b"label", "l", 0, 1, T0)
    assert Entry(0).size == ENTRY_OVERHEAD
    assert Entry(0, b"ff", b"ppp", b"s", label).size == ENTRY_OVERHEAD + 2 + 3 + 1 + 5 + 3

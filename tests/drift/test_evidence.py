from loopline.drift.evidence import Span
from loopline.drift.monitor import Detection
from loopline.records import SourceRecord


def records(topic, partition, offsets, t0=1000):
    return [SourceRecord(b"k", b"v", topic, partition, offset, t0 + offset) for offset in offsets]


def test_a_span_keeps_the_first_time_and_the_offsets_from_first_to_last_per_partition():
    span = Span()
    span.saw(records("o", 0, [5, 6]) + records("o", 1, [40]))
    span.saw(records("o", 0, [9]) + records("p", 0, [2, 3]))
    assert span.first_ms == 1005
    assert span.ranges == {("o", 0): (5, 9), ("o", 1): (40, 40), ("p", 0): (2, 3)}
    span.saw([])
    assert span.first_ms == 1005 and Span.load(span.state()).ranges == span.ranges


def test_evidence_covers_what_was_seen_up_to_the_record_that_fired_and_no_further():
    span = Span()
    span.saw(records("o", 0, [0, 1, 2], t0=500))
    batch = records("o", 0, [3, 4]) + records("o", 1, [7, 8])
    detection = Detection(2, 6, "x1", {"shift_in_std": 1.5})
    evidence = span.evidence("covariate", "ADWIN", detection, batch)
    assert evidence == {
        "kind": "covariate", "detector": "ADWIN", "feature": "x1", "statistics": {"shift_in_std": 1.5},
        "window_start": 500, "window_end": 1007, "samples": 6,
        "offsets": [{"topic": "o", "partition": 0, "start": 0, "end": 4},
                    {"topic": "o", "partition": 1, "start": 7, "end": 7}],
    }  # fmt: skip
    assert span.ranges == {("o", 0): (0, 2)}  # the evidence changes nothing


def test_before_anything_was_seen_the_window_starts_at_the_batch_first_record():
    evidence = Span().evidence("concept", "ADWIN", Detection(0, 1, None, {}), records("o", 2, [11, 12]))
    assert (evidence["window_start"], evidence["window_end"]) == (1011, 1011)
    assert evidence["offsets"] == [{"topic": "o", "partition": 2, "start": 11, "end": 11}]

"""Where a batch leaves its input partitions: the last record of each, from records of several partitions mixed."""

from loopline.kafka.offsets import last_records, next_offsets
from loopline.records import SourceRecord


def test_the_last_record_of_each_partition_and_the_offset_after_it():
    batch = [SourceRecord(b"k", b"v", topic, partition, offset, 0)
             for topic, partition, offset in [("a", 0, 5), ("b", 0, 1), ("a", 1, 9), ("a", 0, 6), ("b", 0, 2)]]  # fmt: skip
    assert last_records(batch) == {("a", 0): batch[3], ("b", 0): batch[4], ("a", 1): batch[2]}
    assert next_offsets(batch) == {("a", 0): (7, ""), ("b", 0): (3, ""), ("a", 1): (10, "")}
    assert next_offsets([]) == {}

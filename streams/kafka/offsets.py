"""Where a batch leaves its input partitions: each one's last record, and the offset after it."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from loopline.kafka.source import Partition
from loopline.records import SourceRecord

__all__ = ["last_records", "next_offsets"]

_PARTITION = operator.itemgetter(2, 3)  # a SourceRecord's (topic, partition)


def last_records(records: Sequence[SourceRecord]) -> dict[Partition, SourceRecord]:
    """The last record of each partition in ``records``, whose records of one partition come in offset order
    (as the source gives them)."""
    return dict(zip(map(_PARTITION, records), records, strict=True))


def next_offsets(records: Sequence[SourceRecord]) -> dict[Partition, tuple[int, str]]:
    """Per input partition, the offset after the batch's last record of it (no metadata)."""
    return {tp: (record.offset + 1, "") for tp, record in last_records(records).items()}

"""The sink core: a batch of records from every topic in, rows per table out (no Kafka, no ClickHouse)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loopline.codec import Codec, CodecError
from loopline.deadletters import DeadLetters
from loopline.records import Produced, SourceRecord
from loopline.settings import KafkaSettings
from loopline.sink.tables import TABLES, Row, Table

__all__ = ["SinkBatch", "SinkCore"]


@dataclass
class SinkBatch(Produced):
    """Rows to insert per table; the records that could not become rows are its dead letters."""

    rows: dict[Table, list[Row]] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


class SinkCore:
    """Turns records of the sink's topics into table rows."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.tables = {kafka.topic(table.topic): table for table in TABLES}
        self.codecs = {name: Codec.load(table.schema) for name, table in self.tables.items()}
        self.dead = DeadLetters("sink")

    @property
    def topics(self) -> list[str]:
        """The full names of the topics the sink reads."""
        return list(self.tables)

    def rows(self, records: Sequence[SourceRecord]) -> SinkBatch:
        """Decode ``records`` into rows; a record that does not decode becomes a dead letter."""
        batch = SinkBatch()
        for record in records:
            table = self.tables[record.topic]
            try:
                row = table.row(self.codecs[record.topic].decode(record.value))
            except CodecError as exc:
                self.dead.add(batch, record, exc.reason, str(exc))
                continue
            batch.rows.setdefault(table, []).append(row)
        return batch

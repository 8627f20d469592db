"""The batch loop's two ends: a :class:`Source` of batches and an :class:`Output` of their outputs and offsets.

On Kafka they are :class:`~loopline.kafka.source.KafkaSource` and
:class:`~loopline.kafka.output.KafkaOutput`; ``loopline.testing`` has in-memory ones, with
which the loop and an agent's wiring are tested without a broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import TopicPartition

from loopline.kafka.source import Partition
from loopline.records import KeyValue, SourceRecord, Topic
from loopline.state.store import Changes

__all__ = ["Assign", "Output", "Revoke", "Source"]

Assign = Callable[[dict[Partition, tuple[int, str]]], None]
Revoke = Callable[[list[Partition], bool], None]
"""Told of partitions taken away, and whether they were lost (taken before this worker could hand them back)."""


class Source(Protocol):
    """Where batches come from (``KafkaSource``, or ``loopline.testing.MemorySource``).

    The loop sits between the source and the core's ``on_assign`` and ``on_revoke``: it takes its
    own fields out of the committed metadata before the core sees it.
    """

    on_assign: Assign | None
    on_revoke: Revoke | None

    def take(self, max_records: int, max_wait_s: float, first_wait_s: float | None = None) -> list[SourceRecord]: ...

    def rewind(self) -> None: ...

    def backlog(self) -> int: ...

    def close(self) -> None: ...


class Output(Protocol):
    """Where a batch's outputs and offsets go (``KafkaOutput``, or ``loopline.testing.MemoryOutput``)."""

    def commit(
        self,
        records: dict[Topic, list[KeyValue]],
        offsets: list[TopicPartition],
        stop: threading.Event,
        changes: dict[int, Changes] | None = None,
        close: bool = True,
    ) -> bool: ...

    def abandon(self, stop: threading.Event) -> None: ...

    def mark(self, offsets: list[TopicPartition], stop: threading.Event) -> None: ...

    def close(self) -> None: ...

"""Training data from Kafka: a window of a model's recent outcomes, read by exact offset ranges.

The ranges read go into the new version's lineage; reading the same ranges again
(:func:`read_ranges`) gives the same rows in the same order, which is what ``models reproduce``
relies on (as long as the topic's retention still holds them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import numpy as np
from confluent_kafka import TopicPartition

from loopline.codec import Codec, CodecError
from loopline.kafka.clients import offset_reader, read_spans, watermarks
from loopline.settings import KafkaSettings

__all__ = ["Window", "read_ranges", "read_window", "start_offsets"]


class OffsetRange(TypedDict):
    """Offsets ``start`` to ``end`` (inclusive, as in the schemas) of one partition."""

    topic: str
    partition: int
    start: int
    end: int


@dataclass
class Window:
    """A model's served outcomes in offset order: features, labels and where they were read."""

    x: np.ndarray
    labels: list[str]
    ranges: list[OffsetRange]


def read_window(
    kafka: KafkaSettings,
    model_name: str,
    max_events: int,
    max_age_s: float | None = None,
    since: dict[int, int] | None = None,
    timeout_s: float = 60.0,
    versions: Collection[int] | None = None,
) -> Window:
    """The last ``max_events`` records of each outcomes partition (none older than ``max_age_s``, none
    before offset ``since[partition]``), filtered to ``model_name``'s served outcomes (of ``versions``,
    when given: those that take the same input) and cut to the ``max_events`` most recent of them."""
    topic = kafka.topic("outcomes")
    consumer = offset_reader(kafka)
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        spans: list[OffsetRange] = []
        for partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition), timeout_s)
            start = max(low, high - max_events, (since or {}).get(partition, 0))
            if max_age_s is not None:
                oldest = TopicPartition(topic, partition, int((time.time() - max_age_s) * 1000))
                found = consumer.offsets_for_times([oldest], timeout=timeout_s)[0].offset
                start = max(start, found if found >= 0 else high)
            if high > start:
                spans.append(OffsetRange(topic=topic, partition=partition, start=start, end=high - 1))
    finally:
        consumer.close()
    window = read_ranges(kafka, model_name, spans, timeout_s, versions)
    if len(window.labels) > max_events:
        keep = slice(len(window.labels) - max_events, None)
        window = Window(window.x[keep], window.labels[keep], window.ranges)
    return window


def start_offsets(kafka: KafkaSettings, since: int | datetime, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Where a training ``since`` an offset or a time starts, per outcomes partition (``PartitionOffset``
    records of a retrain request).

    An offset applies to every partition: a model's outcomes are keyed by its name, so they all lie
    in one partition, and that is the partition it means. A time starts each partition at its first
    outcome written at or after it (at its end when there is none).
    """
    topic = kafka.topic("outcomes")
    consumer = offset_reader(kafka)
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        if isinstance(since, int):
            offsets = dict.fromkeys(partitions, since)
        else:
            millis = int(since.timestamp() * 1000)
            found = consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout_s)
            offsets = {tp.partition: tp.offset if tp.offset >= 0 else
                       watermarks(consumer, TopicPartition(topic, tp.partition), timeout_s)[1] for tp in found}  # fmt: skip
    finally:
        consumer.close()
    return [{"topic": topic, "partition": p, "offset": offset} for p, offset in offsets.items()]


def read_ranges(kafka: KafkaSettings, model_name: str, ranges: list[OffsetRange], timeout_s: float = 60.0,
                versions: Collection[int] | None = None) -> Window:  # fmt: skip
    """``model_name``'s served outcomes in ``ranges`` (each event once; only of ``versions`` when given), in
    partition then offset order."""
    codec = Codec.load("outcome")
    consumer = offset_reader(kafka)
    try:
        spans = {r["partition"]: (r["start"], r["end"] + 1) for r in ranges}
        messages = read_spans(consumer, ranges[0]["topic"], spans, timeout_s) if ranges else []
    finally:
        consumer.close()
    rows: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for message in messages:
        # An undecodable outcome is reported by the sink and the drift agent; training goes without it.
        with contextlib.suppress(CodecError):
            rows.setdefault(message.partition() or 0, []).append(
                (message.offset() or 0, codec.decode(message.value() or b""))
            )
    seen: set[str] = set()
    values, labels = [], []
    for partition in sorted(rows):
        for _, outcome in sorted(rows[partition], key=lambda item: item[0]):
            if outcome["model_name"] != model_name or outcome["shadow"] or outcome["event_id"] in seen:
                continue
            if versions is not None and outcome["model_version"] not in versions:
                continue
            seen.add(outcome["event_id"])
            values.append(outcome["values"])
            labels.append(str(outcome["label"]))
    x = np.asarray(values, dtype=np.float32) if values else np.zeros((0, 0), dtype=np.float32)
    return Window(x, labels, list(ranges))

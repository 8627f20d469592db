"""Outputs that can't be sent, replaced by dead letters of the inputs they were made from.

Every output record (key and value) is sized against the largest record the topics take before it
is sent; one too large (``too-large``), or one the broker refuses for what it is
(``send-refused``), is replaced by a dead letter of its input: the input the record names
(``Produced.send(..., source=record)``), or the batch's one record. Where neither says, the loop
reads the batch again in halves (:mod:`loopline.kafka.rewinds`) until the batch is that record.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from loopline.deadletters import DeadLetters
from loopline.records import KeyValue, Produced, SourceRecord, Topic

__all__ = ["replace", "too_large"]

_KEY, _VALUE = operator.itemgetter(0), operator.itemgetter(1)


def _longest(pairs: list[KeyValue], part: Callable[[KeyValue], bytes | None]) -> int:
    return max(map(len, filter(None, map(part, pairs))), default=0)


def too_large(out: Produced, limit: int) -> list[tuple[Topic, int, str]]:
    """The records of ``out`` over ``limit`` bytes (key and value), as (topic, position among the topic's
    records, error); a topic whose longest key and longest value fit together is not looked into."""
    return [
        (topic, index, f"its {topic} record would be {size} bytes; the topics take at most {limit}")
        for topic, pairs in out.records.items()
        if pairs and _longest(pairs, _KEY) + _longest(pairs, _VALUE) > limit  # else none is
        for index, size in enumerate(len(key or b"") + len(value) for key, value in pairs)
        if size > limit
    ]


def replace(
    out: Produced, bad: list[tuple[Topic, int, str]], inputs: list[SourceRecord], reason: str, dead: DeadLetters
) -> bool:
    """Put dead letters of their inputs in place of the ``bad`` records of ``out`` (topic, position among
    the topic's records, error of each), with ``reason``; False, and ``out`` unchanged, where an
    input is unknown (``inputs``: the batch's records).

    Raises:
        RuntimeError: a bad record is a dead letter itself: the dead-letters topic can't take it.
    """
    single = inputs[0] if len(inputs) == 1 else None
    letters: dict[tuple[str, int, int], tuple[SourceRecord, str]] = {}
    for topic, index, error in bad:
        if topic is Topic.DEAD_LETTERS:
            raise RuntimeError(f"{dead.agent}: a dead letter can't be sent ({error}); check the dead-letters topic")
        source = out.source_of(topic, index) or single
        if source is None:
            return False
        letters.setdefault((source.topic, source.partition, source.offset), (source, error))
    gone: dict[Topic, set[int]] = {}
    for topic, index, _ in bad:
        gone.setdefault(topic, set()).add(index)
    kept = Produced()
    for topic, pairs in out.records.items():
        keep = [i for i in range(len(pairs)) if i not in gone.get(topic, set())]
        kept.extend(topic, [pairs[i] for i in keep], [out.source_of(topic, i) for i in keep])
    out.records, out.sources = kept.records, kept.sources
    for source, error in letters.values():
        dead.add(out, source, reason, error)
    return True

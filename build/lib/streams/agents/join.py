"""``loopline worker join``: features, predictions and labels in, outcomes (keyed by model name) out.

The input topics are co-partitioned by event_id and assigned by range, so the three parts of an
event meet in one worker however many run. Offsets are committed as the join core says (the
oldest record it still holds), with the offset reached as commit metadata, so that a restarted or
newly assigned worker rebuilds the state without sending an outcome twice.
"""

from __future__ import annotations

import logging
from collections import Counter

import faust
from aiokafka import ConsumerRebalanceListener, TopicPartition

from streams.agents.app import make_app
from streams.agents.batches import BatchConsumer, Outgoing, deliver, make_producer
from streams.join.core import JoinCore, JoinOutput, JoinTopics
from streams.kafka.versions import VersionLookup
from streams.metrics import (
    BATCH_SIZE,
    DEAD_LETTERS,
    EVENTS_IN,
    JOIN_DUPLICATES,
    JOIN_EXPIRED,
    JOIN_PENDING,
    LABEL_RATE,
    OUTCOMES_OUT,
)
from streams.settings import JoinSettings, KafkaSettings

__all__ = ["build_join_app"]

log = logging.getLogger("loopline.join")


class Rebalance(ConsumerRebalanceListener):
    """Keeps the join state to the partitions this worker owns."""

    def __init__(self, core: JoinCore) -> None:
        self.core = core
        self.consumer: BatchConsumer | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.core.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        assert self.consumer is not None
        metadata = await self.consumer.committed_metadata(assigned)
        reached = {(tp.topic, tp.partition): int(text) for tp, text in metadata.items() if text.isdigit()}
        self.core.assign(reached)
        log.info("assigned %d partitions; %d were read up to a recorded offset before", len(assigned), len(reached))


def build_join_app(kafka: KafkaSettings, settings: JoinSettings) -> faust.App:
    """The Faust app of a join worker."""
    app = make_app("join", kafka)

    @app.task
    async def join() -> None:
        topics = JoinTopics(*(kafka.topic(t) for t in ("features", "predictions", "shadow-predictions", "labels")))
        lookup = VersionLookup(kafka)
        core = JoinCore(
            topics,
            lambda model, version: lookup(model, version).classes,
            ttl_ms=int(settings.max_label_delay_hours * 3600 * 1000),
            max_pending=settings.max_pending,
            quality_window=settings.quality_window,
        )
        producer = make_producer(kafka)
        await producer.start()
        try:
            rebalance = Rebalance(core)
            consumer = BatchConsumer(
                kafka, topics.all, f"{kafka.topic_prefix}join", settings.max_batch_size, settings.max_wait_ms / 1000,
                listener=rebalance,
            )  # fmt: skip
            rebalance.consumer = consumer
            async with consumer:
                async for records in consumer.batches():
                    # Records of a partition revoked meanwhile are its new owner's to read.
                    out = core.process([record for record in records if consumer.owns(record)])
                    await deliver(producer, _outgoing(kafka, out))
                    positions = core.positions()
                    await consumer.commit_offsets(
                        {TopicPartition(*tp): (commit, str(reached)) for tp, (commit, reached) in positions.items()}
                    )
                    _record_metrics(len(records), len(core.entries), out)
        finally:
            await producer.stop()

    return app


def _outgoing(kafka: KafkaSettings, out: JoinOutput) -> list[Outgoing]:
    outcomes, dead = kafka.topic("outcomes"), kafka.topic("dead-letters")
    outgoing: list[Outgoing] = [(outcomes, key, value) for key, value in out.outcomes]
    return outgoing + [(dead, key, value) for key, value in out.dead_letters]


def _record_metrics(size: int, pending: int, out: JoinOutput) -> None:
    EVENTS_IN.labels("join").inc(size)
    BATCH_SIZE.labels("join").observe(size)
    JOIN_PENDING.set(pending)
    JOIN_DUPLICATES.inc(out.duplicates)
    for reason, count in out.expired.items():
        JOIN_EXPIRED.labels(reason).inc(count)
    for reason, count in Counter(out.dead_reasons).items():
        DEAD_LETTERS.labels("join", reason).inc(count)
    for (model, version), rate in out.label_rates.items():
        LABEL_RATE.labels(model, str(version)).set(rate)
    for model_key, count in Counter(key for key, _ in out.outcomes).items():
        OUTCOMES_OUT.labels(model_key.decode()).inc(count)

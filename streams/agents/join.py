"""``loopline worker join``: features, predictions and labels in, outcomes (keyed by model name) out.

The input topics are co-partitioned by event_id and assigned by range, so the three parts of an
event meet in one worker however many run. Offsets are committed as the join core says (the
oldest record it still holds), with the offset reached as commit metadata, in the transaction of
the batch's outcomes, so that a restarted or newly assigned worker rebuilds the state without
sending an outcome twice.
"""

from __future__ import annotations

import logging
from collections import Counter

import faust

from streams.agents.app import make_app
from streams.join.core import JoinCore, JoinOutput, JoinTopics
from streams.kafka.loop import kafka_loop
from streams.kafka.source import Partition
from streams.kafka.versions import VersionLookup
from streams.metrics import JOIN_DUPLICATES, JOIN_EXPIRED, JOIN_PENDING, JOIN_SKIPPED, LABEL_RATE, OUTCOMES_OUT
from streams.records import Produced, SourceRecord, Topic
from streams.settings import JoinSettings, KafkaSettings

__all__ = ["build_join_app", "join_process"]

log = logging.getLogger("loopline.join")

INPUTS = [Topic.FEATURES, Topic.PREDICTIONS, Topic.SHADOW_PREDICTIONS, Topic.LABELS]


class JoinWiring:
    """The join core between the batch loop and the partitions this worker owns."""

    def __init__(self, core: JoinCore) -> None:
        self.core = core

    def process(self, records: list[SourceRecord]) -> JoinOutput:
        out = self.core.process(records)
        out.offsets = {tp: (commit, str(reached)) for tp, (commit, reached) in self.core.positions().items()}
        return out

    def assigned(self, committed: dict[Partition, tuple[int, str]]) -> None:
        known = {tp: (offset, int(text)) for tp, (offset, text) in committed.items() if text.isdigit()}
        self.core.assign(known)
        log.info("assigned %d partitions; %d were read up to a recorded offset before", len(committed), len(known))

    def revoked(self, partitions: list[Partition]) -> None:
        self.core.revoke({partition for _, partition in partitions})


def join_process(kafka: KafkaSettings, settings: JoinSettings) -> JoinWiring:
    """The join core of a worker, wired to its version lookup."""
    lookup = VersionLookup(kafka)
    core = JoinCore(
        JoinTopics(*(kafka.topic(t) for t in INPUTS)),
        lambda model, version: lookup(model, version).classes,
        ttl_ms=int(settings.max_label_delay_hours * 3600 * 1000),
        max_pending=settings.max_pending,
        quality_window=settings.quality_window,
        max_skew_ms=settings.max_clock_skew_ms,
    )
    return JoinWiring(core)


def build_join_app(kafka: KafkaSettings, settings: JoinSettings) -> faust.App:
    """The Faust app of a join worker."""
    wiring = join_process(kafka, settings)
    loop = kafka_loop(
        kafka, "join", INPUTS, wiring.process, settings.max_batch_size, settings.max_wait_ms / 1000,
        on_assign=wiring.assigned, on_revoke=wiring.revoked, observe=lambda out: _record_metrics(wiring.core, out),
    )  # fmt: skip
    return make_app("join", kafka, loop.run)


def _record_metrics(core: JoinCore, produced: Produced) -> None:
    assert isinstance(produced, JoinOutput)
    out = produced
    JOIN_PENDING.set(len(core.entries))
    JOIN_DUPLICATES.inc(out.duplicates)
    JOIN_SKIPPED.inc(out.skipped)
    for reason, count in out.expired.items():
        JOIN_EXPIRED.labels(reason).inc(count)
    for (model, version), rate in out.label_rates.items():
        LABEL_RATE.labels(model, str(version)).set(rate)
    for model_key, count in Counter(key for key, _ in out.outcomes).items():
        OUTCOMES_OUT.labels(model_key.decode()).inc(count)

"""``loopline worker join``: features, predictions and labels in, outcomes (keyed by model name) out.

The input topics are co-partitioned by event_id and assigned by range, so the three parts of an
event meet in one worker however many run. The entries waiting for their other parts are the
join's state (``loopline.state``): one store per input partition, every change logged to the
join-changelog topic in the transaction of the batch's outcomes and input offsets, so that a
restarted or newly assigned worker restores it (the core then rebuilds its expiry index) and reads
on from the committed offsets.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

import faust

from loopline.agents.app import make_app
from loopline.agents.versions import SnapshotLookup, VersionPeek
from loopline.codec.typed import Vectoriser, parse_inputs
from loopline.join.core import JoinCore, JoinOutput, JoinTopics
from loopline.kafka.loop import RECORD_OVERHEAD_BYTES, kafka_loop
from loopline.metrics import JOIN_DUPLICATES, JOIN_EXPIRED, JOIN_PENDING, JOIN_SKIPPED, LABEL_RATE, OUTCOMES_OUT
from loopline.models import ModelVersion
from loopline.models.registry import RegistryFollower
from loopline.records import Produced, Topic
from loopline.settings import JoinSettings, KafkaSettings, StateSettings
from loopline.state.changelog import kafka_state
from loopline.state.state import State

__all__ = ["INPUTS", "build_join_app", "join_core"]

INPUTS = [Topic.FEATURES, Topic.PREDICTIONS, Topic.SHADOW_PREDICTIONS, Topic.LABELS]


def join_core(
    kafka: KafkaSettings, settings: JoinSettings, state: State, lookup: Callable[[str, int], ModelVersion]
) -> JoinCore:
    """The join core of a worker, wired to its version lookup (no I/O: :class:`SnapshotLookup`) and its state."""

    @functools.cache
    def typed(model: str, version: int) -> Vectoriser | None:  # a version's inputs never change
        found = lookup(model, version)
        return Vectoriser(parse_inputs(found.feature_names, found.feature_types)) if found.feature_types else None

    return JoinCore(
        JoinTopics(*(kafka.topic(t) for t in INPUTS)),
        lambda model, version: lookup(model, version).classes,
        state,
        ttl_ms=int(settings.max_label_delay_hours * 3600 * 1000),
        max_pending=settings.max_pending,
        quality_window=settings.quality_window,
        max_skew_ms=settings.max_clock_skew_ms,
        max_entry_bytes=kafka.max_message_bytes - RECORD_OVERHEAD_BYTES,
        typed=typed,
    )


def build_join_app(kafka: KafkaSettings, settings: JoinSettings, state_settings: StateSettings) -> faust.App:
    """The Faust app of a join worker: the registry follower and the batch loop.

    A batch whose predictions name a version the registry snapshot does not hold waits for the
    follower to catch up before the core sees it (:class:`SnapshotLookup`).
    """
    state = kafka_state(kafka, state_settings, "join", Topic.JOIN_CHANGELOG)
    follower = RegistryFollower(kafka)
    named = VersionPeek(
        {kafka.topic(Topic.PREDICTIONS): "prediction", kafka.topic(Topic.SHADOW_PREDICTIONS): "prediction"}
    )
    lookup = SnapshotLookup(follower, named)
    core = join_core(kafka, settings, state, lookup)
    loop = kafka_loop(
        kafka, "join", INPUTS, lookup.before(core.process), settings.max_batch_size, settings.max_wait_ms / 1000,
        on_assign=core.assigned, on_revoke=core.revoked, observe=_record_metrics, state=state,
    )  # fmt: skip
    return make_app("join", kafka, follower.run, loop.run)


def _record_metrics(produced: Produced) -> None:
    assert isinstance(produced, JoinOutput)
    out = produced
    JOIN_PENDING.set(out.pending)
    JOIN_DUPLICATES.inc(out.duplicates)
    JOIN_SKIPPED.inc(out.skipped)
    for reason, count in out.expired.items():
        JOIN_EXPIRED.labels(reason).inc(count)
    for (model, version), rate in out.label_rates.items():
        LABEL_RATE.labels(model, str(version)).set(rate)
    for model_key, count in Counter(key for key, _ in out.outcomes).items():
        OUTCOMES_OUT.labels(model_key.decode()).inc(count)

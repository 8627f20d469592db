"""``loopline worker drift``: outcomes and predictions in, drift events and retrain requests out.

Outcomes are keyed by model name, so one worker of the group watches the whole outcome stream of
a model. The monitors' state (detector inputs since their last restart, references, windows,
cooldowns) is the core's, kept per input partition and mirrored into a state store whose changes
go to the drift-changelog topic in each batch's transaction: the worker that reads a partition
next, after a restart or a rebalance, restores the monitors and goes on where they were.
"""

from __future__ import annotations

import faust

from loopline.agents.app import make_app
from loopline.agents.versions import SnapshotLookup, VersionPeek
from loopline.drift.core import DriftCore, DriftOutput
from loopline.kafka.loop import kafka_loop
from loopline.metrics import DRIFT_EVENTS, ONLINE_ACCURACY, ONLINE_LOG_LOSS, RETRAIN_REQUESTS
from loopline.models.registry import RegistryFollower
from loopline.records import Produced, Topic
from loopline.settings import DriftSettings, KafkaSettings, StateSettings
from loopline.state.changelog import kafka_state
from loopline.state.state import Mirror

__all__ = ["build_drift_app"]


def build_drift_app(kafka: KafkaSettings, settings: DriftSettings, state_settings: StateSettings) -> faust.App:
    """The Faust app of a drift worker: the registry follower and the batch loop.

    A batch whose records name a version the registry snapshot does not hold waits for the follower
    to catch up before the core sees it (:class:`SnapshotLookup`).
    """
    follower = RegistryFollower(kafka)
    named = VersionPeek({kafka.topic(Topic.OUTCOMES): "outcome", kafka.topic(Topic.PREDICTIONS): "prediction"})
    lookup = SnapshotLookup(follower, named)
    core = DriftCore(settings, kafka.topic(Topic.OUTCOMES), lookup)
    state = kafka_state(kafka, state_settings, "drift", Topic.DRIFT_CHANGELOG)
    mirror = Mirror(state, core, lookup.before(core.process))
    loop = kafka_loop(
        kafka, "drift", [Topic.OUTCOMES, Topic.PREDICTIONS], mirror.process, settings.max_batch_size,
        settings.max_wait_ms / 1000, on_assign=mirror.assigned, on_revoke=mirror.revoked, observe=_record_metrics,
        state=state,
    )  # fmt: skip
    return make_app("drift", kafka, follower.run, loop.run)


def _record_metrics(produced: Produced) -> None:
    assert isinstance(produced, DriftOutput)
    out = produced
    for (model, version, shadow), (accuracy, loss) in out.quality.items():
        ONLINE_ACCURACY.labels(model, str(version), str(shadow).lower()).set(accuracy)
        ONLINE_LOG_LOSS.labels(model, str(version), str(shadow).lower()).set(loss)
    for (key, _), kind in zip(out.drift_events, out.kinds, strict=True):
        DRIFT_EVENTS.labels(key.decode(), kind).inc()
    for key, _ in out.retrain_requests:
        RETRAIN_REQUESTS.labels(key.decode(), "drift").inc()

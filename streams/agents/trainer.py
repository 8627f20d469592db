"""``loopline worker trainer``: retrain requests in, gated model versions out, and the rollback guard.

Requests are taken in batches; the requests of one model in a batch make one training, and a
request written before the window of that model's last training was read (by retrain-requests
offsets) was answered by it (coalesced; :mod:`loopline.trainer.requests`). After a drift the window starts after the detection
(the data of the new world), and the training waits, up to ``wait_minutes``, until ``min_events``
such outcomes have come. A request that can't be served (unknown model, too few outcomes) becomes
a dead letter with the reason. The
guard reads the outcomes in a group of its own and puts a predecessor back when a newly serving
version does worse; its comparison windows are mirrored into a state store (guard-changelog), so a
guard restarted between a promotion and its verdict goes on judging.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import faust
import torch
from confluent_kafka import TopicPartition

from loopline.agents.app import make_app
from loopline.agents.versions import SnapshotLookup, VersionPeek
from loopline.codec import Codec, CodecError
from loopline.deadletters import DeadLetters
from loopline.kafka.clients import make_sender, offset_reader, watermarks
from loopline.kafka.loop import kafka_loop
from loopline.metrics import CANARY_STEPS, RETRAINS, ROLLBACKS, STAGING_VERDICTS
from loopline.models import ArtifactStore, Registry, Status
from loopline.models.registry import RegistryFollower, RegistryView, moved, publish
from loopline.models.registry.admission import rollback_records
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import InferenceSettings, KafkaSettings, RegistrySettings, StateSettings, TrainerSettings
from loopline.state.changelog import kafka_state
from loopline.state.state import Mirror
from loopline.trainer.canary import Ramp, RampVerdict, go_live
from loopline.trainer.core import Refused, Trainer
from loopline.trainer.guard import RollbackGuard, Verdict
from loopline.trainer.requests import answered, answered_by, data_start
from loopline.trainer.staging import Staging, StagingVerdict
from loopline.trainer.window import Window, read_window

__all__ = ["build_trainer_app"]

log = logging.getLogger("loopline.trainer")

Request = tuple[SourceRecord, dict[str, Any]]

TRAININGS_PER_REQUEST = 2
"""A training whose registry moved meanwhile (another version came to serve) is done once more on the
registry as it is; a second move makes its candidate a rejection that names the change."""


class Requests:
    """The request side of the worker: coalesce, train, publish, answer."""

    def __init__(self, kafka: KafkaSettings, settings: TrainerSettings, registry: RegistrySettings,
                 checks: InferenceSettings, follower: RegistryFollower) -> None:  # fmt: skip
        self.kafka, self.settings, self.follower = kafka, settings, follower
        store = ArtifactStore(registry.artifact_dir, registry.inline_limit_bytes, registry.max_artifact_bytes)
        self.trainer = Trainer(settings, store, registry, checks, kafka.max_message_bytes)
        self.codec = Codec.load("retrain_request")
        self.dead = DeadLetters("trainer")
        self.read_upto: dict[str, dict[int, int] | None] = {}
        """Model → the retrain-requests ends when its last training read its window; at a model's first
        request since the start, those of the last trained version in the registry (:func:`answered_by`)."""
        self.producer = make_sender(kafka)  # made at start: a new version is published without connecting first
        self.positions = offset_reader(kafka)  # for the ends of retrain-requests, made once
        self.publishing = threading.Lock()
        """Held from reading the registry for a decision to publishing it, by the guard too: the worker's
        decisions never act on a registry another of them has just changed."""
        self.stop = threading.Event()

    def handle(self, records: list[SourceRecord]) -> Produced:
        """Answer a batch of requests; refusals are its dead letters."""
        out = Produced()
        by_model: dict[str, list[Request]] = {}
        for record in records:
            try:
                request = self.codec.decode(record.value)
            except CodecError as exc:
                self.dead.add(out, record, exc.reason, str(exc))
                continue
            if answered(record.partition, record.offset, self._last_read(request["model_name"])):
                RETRAINS.labels(request["model_name"], "coalesced").inc()
                log.info(
                    "request %s coalesced into the last training of %s", request["event_id"], request["model_name"]
                )
                continue
            by_model.setdefault(request["model_name"], []).append((record, request))
        for model, requests in by_model.items():
            self._retrain(out, model, requests)
        return out

    def _last_read(self, model: str) -> dict[int, int] | None:
        """The retrain-requests ends read by ``model``'s last training (None: none yet).

        Restored from the registry at the model's first request since the start: a worker that
        stopped after publishing a version and before committing its requests reads them again, and
        answers them with that version instead of training again.
        """
        if model not in self.read_upto:
            self.read_upto[model] = answered_by(self.follower.catch_up().registry(), model)
        return self.read_upto[model]

    def _retrain(self, out: Produced, model: str, requests: list[Request]) -> None:
        why = "; ".join(f"{r['requested_by']}: {r['reason']}" for _, r in requests)
        try:
            since = data_start((r for _, r in requests), self.kafka.topic(Topic.OUTCOMES))
            window, registry = self._read_window(model, since)
            for attempt in range(TRAININGS_PER_REQUEST):
                decision = self.trainer.retrain(registry, model, window, why, requests_read=self.read_upto.get(model))
                with self.publishing:
                    now = self.follower.catch_up()
                    change = moved(registry, now, model)
                    then, serving = registry.serving(model), now.serving(model)
                    kept = then is not None and serving is not None and serving.takes_input_of(then)  # the window fits
                    again = attempt < TRAININGS_PER_REQUEST - 1 and kept
                    if not change or not again:
                        if change:
                            decision = decision.stale(change)
                            log.warning("%s v%d: %s", model, decision.candidate.version, decision.reason)
                        publish(self.kafka, decision.records, self.producer)
                        break
                log.info("%s: the registry moved during the training (%s); training again on it", model, change)
                registry = now.registry()
        except Refused as exc:
            RETRAINS.labels(model, "refused").inc()
            log.warning("retrain of %s refused: %s", model, exc)
            for record, _ in requests:
                self.dead.add(out, record, exc.reason, str(exc))
            return
        except Exception as exc:  # a failed training must not stop the worker: answer with the cause
            RETRAINS.labels(model, "failed").inc()
            log.exception("retrain of %s failed", model)
            for record, _ in requests:
                self.dead.add(out, record, "internal-error", repr(exc))
            return
        outcome = {"serving": "promoted", "shadow": "staged", "canary": "canary"}.get(
            decision.records[-1].status, "rejected"
        )
        RETRAINS.labels(model, outcome).inc()

    def _request_ends(self) -> dict[int, int]:
        """The end offset of each retrain-requests partition now."""
        topic = self.kafka.topic(Topic.RETRAIN_REQUESTS)
        partitions = self.positions.list_topics(topic, timeout=60).topics[topic].partitions
        return {p: watermarks(self.positions, TopicPartition(topic, p), 60)[1] for p in partitions}

    def _read_window(self, model: str, since: dict[int, int]) -> tuple[Window, Registry]:
        """The training window, of the versions that take the serving version's input, and the registry
        read with it; after a drift, once ``min_events`` outcomes came after the detection (or
        ``wait_minutes`` passed)."""
        s = self.settings
        max_age_s = s.window_minutes * 60 if s.window_minutes else None
        deadline = time.monotonic() + s.wait_minutes * 60
        said = float("-inf")
        while True:
            self.read_upto[model] = self._request_ends()
            registry = self.follower.catch_up().registry()
            serving = registry.serving(model)
            versions = registry.same_input(serving) if serving is not None else None
            window = read_window(self.kafka, model, s.window_events, max_age_s, since, versions=versions)
            if not since or len(window.labels) >= s.min_events or time.monotonic() >= deadline:
                return window, registry
            if time.monotonic() - said >= 30:  # checked every 0.5 s, said every 30 s
                said = time.monotonic()
                log.info("%s: %d outcomes since the drift, waiting for %d", model, len(window.labels), s.min_events)
            if self.stop.wait(0.5):
                return window, registry


class Guard:
    """The rollback guard, the staging judge and the canary ramp over the outcome stream: it outputs nothing,
    it publishes rollbacks, promotions, canary steps and rejections."""

    def __init__(self, kafka: KafkaSettings, settings: TrainerSettings, store: ArtifactStore, checks: InferenceSettings,
                 publishing: threading.Lock, follower: RegistryFollower) -> None:  # fmt: skip
        self.kafka, self.settings, self.store, self.publishing = kafka, settings, store, publishing
        self.checks, self.follower = checks, follower
        self.lookup = SnapshotLookup(follower, VersionPeek({kafka.topic(Topic.OUTCOMES): "outcome"}))
        self.watch = RollbackGuard(settings.guard_outcomes, settings.guard_margin, self.lookup)
        self.staging = Staging(settings, self.lookup)
        self.ramp = Ramp(settings)
        self.codec = Codec.load("outcome")

    def _caught_up(self, registry: RegistryView) -> RegistryView:
        """The registry once the follower read what was just published; ``registry`` while the broker does
        not answer."""
        try:
            return self.follower.catch_up()
        except TimeoutError as exc:  # the guard must keep watching
            log.warning("the canary steps are counted on the registry as last read: %s", exc)
            return registry

    def process(self, records: list[SourceRecord]) -> Produced:
        """Count a batch of outcomes under the registry snapshot taken for it, and act on the verdicts."""
        registry: RegistryView = self.lookup.pin(records)
        for record in records:
            try:
                outcome = self.codec.decode(record.value)
                verdict = self.watch.add(outcome, record.partition)
                staged = self.staging.add(outcome)
                step = self.ramp.add(outcome, registry)
            except (CodecError, KeyError):
                continue  # the drift agent dead-letters these; the guard only skips them
            if staged is not None:
                try:
                    with self.publishing:
                        _judge_staged(self.kafka, self.follower, staged, self.settings.canary_shares)
                except Exception:  # the guard must keep watching
                    log.exception("acting on the live verdict on version %d of %s failed", staged.version,
                                  staged.model_name)  # fmt: skip
            if step is not None:
                try:
                    with self.publishing:
                        _judge_step(self.kafka, self.follower, step)
                except Exception:  # the guard must keep watching
                    log.exception("acting on the canary verdict on version %d of %s failed", step.version,
                                  step.model_name)  # fmt: skip
                registry = self._caught_up(registry)  # the rest of the batch counts for the next step
            if verdict is None:
                continue
            try:
                with self.publishing:
                    _roll_back(self.kafka, self.follower, self.store, self.checks, verdict,
                               f"automatic: {verdict.reason}")  # fmt: skip
            except Exception:  # the guard must keep watching: say so loudly and go on
                log.exception("rolling %s back from version %d failed", verdict.model_name, verdict.version)
        return Produced()


def build_trainer_app(
    kafka: KafkaSettings,
    settings: TrainerSettings,
    registry: RegistrySettings,
    state_settings: StateSettings,
    checks: InferenceSettings,
) -> faust.App:
    """The Faust app of a trainer worker: the registry follower, the request loop and the rollback guard (its
    windows in a state store).

    ``checks``: the inference workers' settings for the checks every candidate and every rollback passes.
    """
    follower = RegistryFollower(kafka)
    requests = Requests(kafka, settings, registry, checks, follower)
    # A batch of requests may take minutes of training: longer than a transaction may stay open.
    train = kafka_loop(kafka, "trainer", [Topic.RETRAIN_REQUESTS], requests.handle, 100, 0.5, spans=False)
    watch = Guard(kafka, settings, requests.trainer.store, checks, requests.publishing, follower)
    state = kafka_state(kafka, state_settings, "guard", Topic.GUARD_CHANGELOG, group="trainer-guard")
    mirror = Mirror(state, watch.watch, watch.process)
    guard = kafka_loop(kafka, "trainer", [Topic.OUTCOMES], mirror.process, 4096, 0.1, group="trainer-guard",
                       on_assign=mirror.assigned, on_revoke=mirror.revoked, state=state)  # fmt: skip

    def run_requests(stop: threading.Event) -> None:
        requests.stop = stop
        torch.set_num_threads(settings.threads)
        requests.trainer.warm_up()
        train.run(stop)

    return make_app("trainer", kafka, follower.run, run_requests, guard.run)


def _judge_staged(kafka: KafkaSettings, follower: RegistryFollower, verdict: StagingVerdict,
                  steps: list[float]) -> None:  # fmt: skip
    """Put a staged version live (a canary at the first of ``steps``, else serving) or reject it on its live
    verdict, if it is still staged (a newer candidate or a person may have acted meanwhile)."""
    registry = follower.catch_up()
    staged = registry.get(verdict.model_name, verdict.version)
    if staged.status != Status.SHADOW:
        log.info("version %d of %s is %s, no longer staged: %s", staged.version, staged.model_name, staged.status,
                 verdict.figures)  # fmt: skip
        return
    if verdict.passed:
        records = go_live(registry, staged.model_name, staged.version, f"staging passed: {verdict.figures}", steps)
    else:
        records = [staged.with_status(Status.REJECTED, f"staging failed: {verdict.figures}")]
    publish(kafka, records)
    STAGING_VERDICTS.labels(staged.model_name, "promoted" if verdict.passed else "rejected").inc()
    log.warning("%s v%d: %s", staged.model_name, staged.version, records[-1].reason)


def _judge_step(kafka: KafkaSettings, follower: RegistryFollower, verdict: RampVerdict) -> None:
    """Move a canary to its next share, to serving, or reject it, if it still runs the step judged (a person
    may have acted meanwhile)."""
    registry = follower.catch_up()
    canary = registry.canary(verdict.model_name)
    if canary is None or (canary.version, canary.traffic) != (verdict.version, verdict.traffic):
        log.info("%s: the canary step judged no longer runs: %s", verdict.model_name, verdict.figures)
        return
    if not verdict.passed:
        records = [canary.with_status(Status.REJECTED, f"canary aborted: {verdict.figures}")]
        outcome = "aborted"
    elif verdict.next_traffic is not None:
        records = registry.start_canary(canary.model_name, canary.version, verdict.next_traffic,
                                        f"canary at {verdict.next_traffic:.0%}: {verdict.figures}")  # fmt: skip
        outcome = "advanced"
    else:
        records = registry.promote(canary.model_name, canary.version, f"canary passed: {verdict.figures}")
        outcome = "promoted"
    publish(kafka, records)
    CANARY_STEPS.labels(canary.model_name, outcome).inc()
    log.warning("%s v%d: %s", canary.model_name, canary.version, records[-1].reason)


def _roll_back(kafka: KafkaSettings, follower: RegistryFollower, store: ArtifactStore, checks: InferenceSettings,
               verdict: Verdict, reason: str) -> None:  # fmt: skip
    """Put the predecessor back if the judged version still serves (a person may have acted meanwhile),
    after the checks every serving version passes.

    Raises:
        ModelRejected: the predecessor fails its checks (nothing is published).
    """
    model, version, predecessor = verdict.model_name, verdict.version, verdict.predecessor
    registry = follower.catch_up()
    serving = registry.serving(model)
    if serving is None or serving.version != version:
        log.info("version %d of %s no longer serves; no rollback", version, model)
        return
    records, _ = rollback_records(registry, model, reason, checks, store, to=predecessor)
    publish(kafka, records)
    ROLLBACKS.labels(model).inc()
    log.warning("rolled %s back from version %d to %d: %s", model, version, predecessor, reason)

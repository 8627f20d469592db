"""The whole loop through a real broker on River's drift streams, next to River's own online learners.

    python bench/loop.py          # six streams x 3 seeds at the defaults: about an hour on the 2-core VM
    python bench/loop.py --streams abrupt,stationary --seeds 1 --before 2000 --after 4000 \\
        --stationary-events 4000 --rate 800        # a quick check that everything runs

One local broker (started here, ``--partitions`` per data topic). Every stream run (a stream and
a seed) gets a topic prefix, a model name, a state directory and an artifact directory of its own,
and a fresh set of workers: ``python -m loopline.cli worker inference|join|drift|trainer``. They take
every setting but those from the environment's defaults (pass others with ``--env KEY=VALUE``); no
sink and no ClickHouse: everything is read back from the run's topics with read_committed readers.

A run:

1. draws the stream from ``river.datasets.synth`` (the table ``STREAMS``; drifts made with
   ``ConceptDriftStream``'s position and width, and its very draws, through :class:`ConceptDrift`, which
   only avoids its overflow far before the position), each sample a float vector in the fixed order of
   the first sample's features (categorical and integer features as floats), its label the class
   ``"0"`` or ``"1"``;
2. trains version 1 on 5,000 rows of the pre-drift concept drawn with another seed, with the
   project's ``bootstrap_version`` (default ``TrainConfig``, which retrains then inherit from the
   serving version's lineage), and publishes it serving before the workers start;
3. sends event ``i`` (event_id ``%08d`` of ``i``) at ``--rate`` events/s and its label with event
   ``i + --label-delay``, as the demo does; then waits (``--wait`` seconds at most) until every event
   has a served outcome, the drift worker and the trainer's guard have read every outcome and the
   trainer has answered every retrain request, and says what is missing instead of hanging;
4. reads the outcomes, drift-events, retrain-requests and model-versions topics;
5. after the workers are stopped, runs ``river.forest.ARFClassifier`` and
   ``river.tree.HoeffdingAdaptiveTreeClassifier`` (seed fixed) on the same samples (the float32
   values the loop was sent), in the same order, test-then-train with the same delay: predict event
   ``i``, then learn event ``i - delay``. Nothing is cached between runs.

Figures, per event index (from event ids and topic offsets, never from arrival order or clocks):

- detection: the labeled outcomes of events at or after the onset that the detector had seen when the
  first drift event after the onset fired (concept or covariate: the kinds with outcome evidence).
  What it had seen is the outcome offset ranges in the event's evidence: the served outcomes of the
  event's model version in them. A drift event is after the onset when that count is above zero;
- onset → new version: events from the onset to the first event at or after it served by another
  version than the one that served the last event before it;
- promoted / rejected after the onset: versions whose training data (the outcome offset ranges of
  their lineage) holds outcomes of events at or after the onset, that served (rollbacks excluded) or
  were rejected; rolled back likewise (stationary: over the whole run);
- served accuracy over events ``onset .. onset+5,000`` and over the last 5,000 events, and the same
  for ARF and HAT;
- false requests: retrain requests of the drift agent whose evidence holds no outcome of an event at
  or after the first onset (on the stationary stream: all of them), as a count and per 100,000
  served outcomes before the first onset;
- for ``recurring`` the table shows the first onset; the JSON has the figures of each onset.

Prints a table per stream (rows = seeds, plus their mean) and a summary, and writes each run's raw
figures to ``--out/<stream>-s<seed>.json``, with its drift events, retrain requests and version records
placed at events (and, to find them in the workers' logs, when they were written, in seconds since the
first event was sent at ``sent_from_ms``), and the workers' logs to ``--out/logs/<stream>-s<seed>/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from broker import Bench, Worker, local_bench
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from river import forest, tree
from river.base import Classifier
from river.datasets import synth

from loopline.codec import Codec
from loopline.kafka.broker import free_port
from loopline.kafka.clients import make_sender, offset_reader, read_to_end, send_all
from loopline.kafka.config import confluent_config
from loopline.kafka.topics import create_topics
from loopline.metrics import read_metric
from loopline.models import ArtifactStore, ModelVersion, bootstrap_version
from loopline.models.registry import load_registry, publish
from loopline.records import KeyValue, Topic
from loopline.settings import KafkaSettings, RegistrySettings

AGENTS = {"inference": ("inference",), "join": ("join",), "drift": ("drift",), "trainer": ("trainer", "trainer-guard")}
"""Each worker and the consumer groups it reads in (``<prefix><group>``)."""
CLASSES = ["0", "1"]
BOOTSTRAP_ROWS = 5000
BOOTSTRAP_SEED = 10_000  # added to the run's seed: version 1 learns the first concept from another sample
GRADUAL_WIDTH = 5000
SALARY_SHIFT = 50_000.0
WINDOW = 5000  # events in each accuracy window
RIVER_SEED = 42
OUTCOME_KINDS = ("concept", "covariate")  # drift events whose evidence is outcome offsets
READY_S = 180.0  # how long the workers may take to join their groups
PROGRESS_S = 10.0

Sample = tuple[dict[Any, Any], Any]
"""A River sample: features and label."""


# -- streams -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where a stream's drifts are: ``before`` events of the first concept, ``after`` events from the onset."""

    before: int
    after: int
    stationary: int


class RaisedSalary(synth.Agrawal):
    """Agrawal with ``salary`` raised by ``SALARY_SHIFT`` after it is drawn: commission (drawn from the
    original salary) and every other feature stay, and so does the label of classification function 0,
    which reads age alone. P(y|x) does not move; P(salary) does."""

    def __iter__(self) -> Iterator[Sample]:
        for x, y in super().__iter__():
            yield x | {"salary": x["salary"] + SALARY_SHIFT}, y


class ConceptDrift(synth.ConceptDriftStream):
    """River's ``ConceptDriftStream``, the same draws, with the share of the new concept computed without overflow.

    Event ``i`` comes from the new concept with probability 1 / (1 + exp(-4 (i + 1 - position) / width)). River
    computes it with ``math.exp``, which overflows (OverflowError) more than about 177 widths before the position,
    so that a width of 1 only works for a position under 178; here it is the same value as a tanh.
    """

    def __iter__(self) -> Iterator[Sample]:
        rng = random.Random(self.seed)
        first, then = iter(self.stream), iter(self.drift_stream)
        for i in itertools.count(1):
            share = 0.5 * (1.0 + math.tanh(2.0 * (i - self.position) / self.width))
            sample = next(first if rng.random() > share else then, None)
            if sample is None:
                return
            yield sample


def drift(first: Iterable[Sample], then: Iterable[Sample], position: int, width: int, seed: int) -> Iterable[Sample]:
    """``first``, then ``then`` from ``position`` over ``width`` events (:class:`ConceptDrift`)."""
    return ConceptDrift(first, then, position=position, width=width, seed=seed)


@dataclass(frozen=True)
class Stream:
    """One benchmark stream: the samples of a run's seed, where its drifts are, and its first concept."""

    name: str
    what: str
    build: Callable[[int, Layout], Iterable[Sample]]
    """(seed, layout) → the stream."""
    first: Callable[[int, int], Iterable[Sample]]
    """(seed, sample seed) → the concept before the first onset, drawn with the sample seed."""
    onsets: Callable[[Layout], tuple[int, ...]]
    stationary: bool = False

    def events(self, layout: Layout) -> int:
        return layout.stationary if self.stationary else layout.before + layout.after


STREAMS: dict[str, Stream] = {s.name: s for s in [
    Stream("abrupt", "Agrawal classification function 0 → 2 (47% of labels agree), width 1; 9 features",
           lambda seed, at: drift(synth.Agrawal(0, seed=seed), synth.Agrawal(2, seed=seed + 1), at.before, 1, seed),
           lambda seed, sample: synth.Agrawal(0, seed=sample), lambda at: (at.before,)),
    Stream("abrupt-noise", "SEA variant 0 → 3 (threshold 8 → 9.5 on x0 + x1, 87% of labels agree), 10% label "
           "noise, width 1; 3 features",
           lambda seed, at: drift(synth.SEA(0, noise=0.1, seed=seed), synth.SEA(3, noise=0.1, seed=seed + 1),
                                  at.before, 1, seed),
           lambda seed, sample: synth.SEA(0, noise=0.1, seed=sample), lambda at: (at.before,)),
    Stream("gradual", f"RandomTree(seed_tree=100+seed) → RandomTree(seed_tree=200+seed), width {GRADUAL_WIDTH}: the "
           f"onset is where the new tree's share reaches 1.8%, 50% at onset + {GRADUAL_WIDTH}, 98% at onset + "
           f"{2 * GRADUAL_WIDTH}; 5 numeric + 5 categorical features",
           lambda seed, at: drift(synth.RandomTree(seed_tree=100 + seed, seed_sample=seed),
                                  synth.RandomTree(seed_tree=200 + seed, seed_sample=seed + 1),
                                  at.before + GRADUAL_WIDTH, GRADUAL_WIDTH, seed),
           lambda seed, sample: synth.RandomTree(seed_tree=100 + seed, seed_sample=sample), lambda at: (at.before,)),
    Stream("recurring", "Sine function 0 → 2 → 0 (73% of labels agree), width 1: B from the first onset, A again "
           "from the second (half way through the events after it); 2 features",
           lambda seed, at: drift(drift(synth.Sine(0, seed=seed), synth.Sine(2, seed=seed + 1), at.before, 1, seed),
                                  synth.Sine(0, seed=seed + 2), at.before + at.after // 2, 1, seed + 3),
           lambda seed, sample: synth.Sine(0, seed=sample), lambda at: (at.before, at.before + at.after // 2)),
    Stream("covariate", f"Agrawal function 0 (the label reads age only); from the onset salary is raised by "
           f"{SALARY_SHIFT:,.0f} (its range 20k-150k becomes 70k-200k), everything else and P(y|x) stay; width 1",
           lambda seed, at: drift(synth.Agrawal(0, seed=seed), RaisedSalary(0, seed=seed + 1), at.before, 1, seed),
           lambda seed, sample: synth.Agrawal(0, seed=sample), lambda at: (at.before,)),
    Stream("stationary", "Agrawal function 0, no drift (--stationary-events long): every retrain request is false",
           lambda seed, at: synth.Agrawal(0, seed=seed),
           lambda seed, sample: synth.Agrawal(0, seed=sample), lambda at: (), stationary=True),
]}  # fmt: skip


@dataclass
class Data:
    """Samples as the loop gets them: float32 features in the order of ``names``, labels as class names."""

    names: list[str]
    x: np.ndarray
    labels: list[str]


def take(samples: Iterable[Sample], count: int, keys: Sequence[Any] | None = None) -> tuple[Data, list[Any]]:
    """The first ``count`` samples, features in the order of ``keys`` (by default the first sample's); and the keys."""
    drawn = list(itertools.islice(samples, count))
    keys = list(keys if keys is not None else drawn[0][0])
    x = np.array([[float(features[k]) for k in keys] for features, _ in drawn], dtype=np.float32)
    names = [k if isinstance(k, str) else f"x{k}" for k in keys]
    return Data(names, x, [str(int(label)) for _, label in drawn]), keys


# -- one run through the loop ------------------------------------------------------------------


class Loop:
    """The four workers of one run: processes with their own log and metrics port."""

    def __init__(self, kafka: KafkaSettings, env: dict[str, str], log_dir: Path) -> None:
        self.kafka = kafka
        log_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {agent: free_port() for agent in AGENTS}
        self.workers: dict[str, Worker] = {}
        for agent in AGENTS:
            own = {"LOOPLINE_METRICS_PORT": str(self.ports[agent]), "LOOPLINE_METRICS_HOST": "127.0.0.1"}
            command = [sys.executable, "-m", "loopline.cli", "worker", agent, "--loglevel", "info"]
            self.workers[agent] = Worker(command, env | own, log_dir / f"{agent}.log")

    def check(self) -> None:
        """Raise with its log's tail if a worker exited."""
        for worker in self.workers.values():
            worker.check()

    def wait_ready(self) -> None:
        """Return once every worker's log says that each of its groups got its partitions."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            self.check()
            if all(f"{self.kafka.topic_prefix}{group}: assigned " in self.workers[agent].log.read_text(errors="replace")
                   for agent, groups in AGENTS.items() for group in groups):  # fmt: skip
                return
            time.sleep(0.5)
        raise TimeoutError(f"the workers did not join their groups within {READY_S:.0f} s")

    def metric(self, agent: str, name: str, **labels: str) -> float:
        try:
            return read_metric(self.ports[agent], name, timeout_s=2, **labels)
        except OSError:
            return math.nan

    def progress(self, sent: int) -> str:
        m = self.metric
        return (f"sent {sent:,}, predicted {m('inference', 'loopline_predictions_out_total', shadow='false'):,.0f}, "
                f"outcomes {m('join', 'loopline_outcomes_out_total'):,.0f}, serving "
                f"v{m('inference', 'loopline_serving_version', role='serving'):.0f}, drift events "
                f"{m('drift', 'loopline_drift_events_total'):.0f}, retrain requests "
                f"{m('drift', 'loopline_retrain_requests_total'):.0f}, retrains {m('trainer', 'loopline_retrains_total'):.0f}")  # fmt: skip

    def stop(self) -> None:
        """SIGTERM to every worker at once, then wait for each (SIGKILL after 30 s)."""
        for worker in self.workers.values():
            if worker.proc.poll() is None:
                worker.proc.terminate()
        for worker in self.workers.values():
            try:
                worker.proc.wait(30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()


def worker_env(kafka: KafkaSettings, model: str, run_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The settings a run's workers get; everything else is the environment's default."""
    return {
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "LOOPLINE_KAFKA_PARTITIONS": str(kafka.partitions),
        "LOOPLINE_INFERENCE_MODEL_NAME": model,
        "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(run_dir / "artifacts"),
        "LOOPLINE_STATE_DIR": str(run_dir / "state"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def serve_bootstrap(kafka: KafkaSettings, store: ArtifactStore, model: str, data: Data) -> ModelVersion:
    """Train version 1 on ``data`` (the project's bootstrap: the newest 20% held out) and make it serve."""
    y = np.array([CLASSES.index(label) for label in data.labels], dtype=np.int64)
    version = bootstrap_version(data.x, y, model_name=model, feature_names=data.names, classes=CLASSES, store=store)
    registry = load_registry(kafka)
    registry.apply(version)
    publish(kafka, [version, *registry.promote(model, version.version, "bench bootstrap")])
    return version


def event_id(index: int) -> str:
    return f"{index:08d}"


def encode(data: Data, delay: int, start_ms: int, ms_per_event: float) -> tuple[list[KeyValue], list[KeyValue]]:
    """The feature records and label records of every event, by event index."""
    features_codec, label_codec = Codec.load("features"), Codec.load("label")
    features, labels = [], []
    for i, (values, label) in enumerate(zip(data.x.tolist(), data.labels, strict=True)):
        key = event_id(i).encode()
        record = {"event_id": event_id(i), "event_time": start_ms + int(i * ms_per_event),
                  "entity_id": f"entity-{i % 100}", "values": values}  # fmt: skip
        features.append((key, features_codec.encode(record)))
        known = {"event_id": event_id(i), "label": label, "event_time": start_ms + int((i + delay) * ms_per_event)}
        labels.append((key, label_codec.encode(known)))
    return features, labels


def send_paced(kafka: KafkaSettings, loop: Loop, data: Data, rate: float, delay: int) -> tuple[int, float]:
    """Send the events at ``rate`` per second in tenths of a second, each label with the event ``delay`` after
    its own; return when it started (epoch ms) and the seconds it took."""
    start_ms = int(time.time() * 1000)
    features, labels = encode(data, delay, start_ms, 1000 / rate)
    producer, chunk, count = make_sender(kafka), max(1, int(rate / 10)), len(features)
    started = shown = time.monotonic()
    for first in range(0, count + delay, chunk):
        if first < count:
            send_all(kafka, kafka.topic(Topic.FEATURES), features[first : first + chunk], producer)
        due = labels[max(0, first - delay) : max(0, first + chunk - delay)]
        if due:
            send_all(kafka, kafka.topic(Topic.LABELS), due, producer)
        if time.monotonic() - shown >= PROGRESS_S:
            loop.check()
            print(f"  {time.monotonic() - started:4.0f} s  {loop.progress(min(first + chunk, count))}", file=sys.stderr)
            shown = time.monotonic()
        time.sleep(max(0.0, started + (first + chunk) / rate - time.monotonic()))
    return start_ms, time.monotonic() - started


@dataclass
class Served:
    """One served (non-shadow) outcome: where it lies in the outcomes topic and what it says."""

    partition: int
    offset: int
    index: int
    version: int
    correct: bool


class OutcomeReader:
    """Reads the outcomes topic from its start with read_committed, as records come."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.topic = kafka.topic(Topic.OUTCOMES)
        self.codec = Codec.load("outcome")
        self.consumer = offset_reader(kafka)
        partitions = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        self.served: list[Served] = []
        self.last: dict[int, int] = {}  # partition → offset of the last outcome read (shadow ones too)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self.consumer.consume(num_messages=5000, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    continue
                partition, offset = message.partition() or 0, message.offset() or 0
                self.last[partition] = offset
                outcome = self.codec.decode(message.value() or b"")
                if not outcome["shadow"]:
                    index = int(outcome["event_id"])
                    self.served.append(Served(partition, offset, index, outcome["model_version"], outcome["correct"]))

    def missing(self, events: int) -> list[int]:
        have = np.zeros(events, dtype=bool)
        have[[s.index for s in self.served]] = True
        return np.flatnonzero(~have).tolist()

    def close(self) -> None:
        self.consumer.close()


def committed(kafka: KafkaSettings, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """The offsets a worker group committed on ``partitions`` of ``topic`` (-1 where none)."""
    consumer = Consumer(confluent_config(kafka, {"group.id": group, "enable.auto.commit": False}))
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def unsettled(kafka: KafkaSettings, reader: OutcomeReader) -> list[str]:
    """What the loop has yet to do with the records so far: outcomes the drift worker and the guard have not read,
    retrain requests the trainer has not answered."""
    waiting = []
    prefix = kafka.topic_prefix
    for group in ("drift", "trainer-guard"):
        done = committed(kafka, prefix + group, reader.topic, reader.last)
        behind = sum(last + 1 - max(done[p], 0) for p, last in reader.last.items() if done[p] <= last)
        if behind:
            waiting.append(f"{group}: {behind} outcome offsets not committed")
    requests = read_to_end(kafka, kafka.topic(Topic.RETRAIN_REQUESTS))
    if requests:
        last = requests[-1].offset() or 0
        done = committed(kafka, prefix + "trainer", kafka.topic(Topic.RETRAIN_REQUESTS), [0])[0]
        if done <= last:
            waiting.append(f"trainer: retrain requests from offset {max(done, 0)} to {last} not answered")
    return waiting


def wait_for_loop(kafka: KafkaSettings, loop: Loop, reader: OutcomeReader, events: int, wait_s: float) -> list[str]:
    """Wait (``wait_s`` at most) until every event has a served outcome and the loop has acted on all of them;
    return what is still missing (nothing when it all came)."""
    deadline = time.monotonic() + wait_s
    shown = time.monotonic()
    while True:
        reader.poll(1.0)
        loop.check()
        missing = reader.missing(events)
        waiting = [] if missing else unsettled(kafka, reader)
        if not missing and not waiting:
            return []
        if time.monotonic() >= deadline:
            shown_ids = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
            return [f"{len(missing)} events without a served outcome ({shown_ids})"] if missing else waiting
        if time.monotonic() - shown >= PROGRESS_S:
            print(f"  waiting: {len(missing)} outcomes missing; {'; '.join(waiting)}; {loop.progress(events)}",
                  file=sys.stderr)  # fmt: skip
            shown = time.monotonic()


def decoded(kafka: KafkaSettings, topic: str, schema: str) -> list[dict[str, Any]]:
    """Every committed record of a catalogue topic (one partition: in the order written), decoded, with the
    broker timestamp of the record as ``written_ms`` (for the JSON timeline only)."""
    codec = Codec.load(schema)
    messages = read_to_end(kafka, kafka.topic(topic), timeout_s=60)
    return [codec.decode(m.value() or b"") | {"written_ms": m.timestamp()[1]} for m in messages]


@dataclass
class Topics:
    """What a run left in its topics, and when its first event was sent (epoch ms)."""

    start_ms: int
    outcomes: Outcomes
    drift_events: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    versions: list[dict[str, Any]]


def read_run(kafka: KafkaSettings, reader: OutcomeReader, events: int, start_ms: int) -> Topics:
    return Topics(
        start_ms,
        Outcomes(reader.topic, reader.served, events),
        decoded(kafka, Topic.DRIFT_EVENTS, "drift_event"),
        decoded(kafka, Topic.RETRAIN_REQUESTS, "retrain_request"),
        decoded(kafka, Topic.MODEL_VERSIONS, "model_version"),
    )


# -- River -------------------------------------------------------------------------------------


def river_correct(model: Classifier, data: Data, delay: int) -> np.ndarray:
    """Test-then-train with late labels: predict event ``i``, then learn event ``i - delay`` (its label arrives)."""
    rows = [dict(zip(data.names, values, strict=True)) for values in data.x.tolist()]
    correct = np.zeros(len(rows))
    for i, row in enumerate(rows):
        correct[i] = model.predict_one(row) == data.labels[i]
        if i >= delay:
            model.learn_one(rows[i - delay], data.labels[i - delay])
    return correct


def river_learners() -> dict[str, Classifier]:
    return {"arf": forest.ARFClassifier(seed=RIVER_SEED), "hat": tree.HoeffdingAdaptiveTreeClassifier(seed=RIVER_SEED)}


# -- figures -----------------------------------------------------------------------------------


class Outcomes:
    """A run's served outcomes by event index, and by where they lie in the outcomes topic."""

    def __init__(self, topic: str, served: Sequence[Served], events: int) -> None:
        self.topic = topic
        self.version = np.full(events, -1)
        self.correct = np.full(events, np.nan)
        for s in reversed(served):  # the first outcome of an event wins
            self.version[s.index], self.correct[s.index] = s.version, float(s.correct)
        self.by_partition: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for partition in {s.partition for s in served}:
            mine = sorted((s for s in served if s.partition == partition), key=lambda s: s.offset)
            self.by_partition[partition] = (np.array([s.offset for s in mine]), np.array([s.index for s in mine]),
                                            np.array([s.version for s in mine]))  # fmt: skip

    def seen(self, spans: Iterable[dict[str, Any]], version: int | None = None) -> np.ndarray:
        """Event indices of the served outcomes (of ``version``, if given) in offset ranges (``end`` inclusive)."""
        found = []
        for span in spans:
            if span["topic"] != self.topic or span["partition"] not in self.by_partition:
                continue
            offsets, indices, versions = self.by_partition[span["partition"]]
            lo, hi = np.searchsorted(offsets, [span["start"], span["end"] + 1])
            found.append(indices[lo:hi] if version is None else indices[lo:hi][versions[lo:hi] == version])
        return np.concatenate(found) if found else np.zeros(0, dtype=int)

    def at(self, spans: Iterable[dict[str, Any]]) -> int | None:
        """The event of the last outcome in ranges of evidence: the one that fired the detector."""
        last = [(s["partition"], s["end"]) for s in spans if s["topic"] == self.topic]
        for partition, end in last:
            offsets, indices, _ = self.by_partition.get(partition, (np.zeros(0), np.zeros(0), None))
            hit = np.searchsorted(offsets, end)
            if hit < len(offsets) and offsets[hit] == end:
                return int(indices[hit])
        return None

    def accuracy(self, start: int, stop: int) -> float | None:
        window = self.correct[max(0, start) : stop]
        window = window[~np.isnan(window)]
        return float(window.mean()) if len(window) else None


def mean_of(correct: np.ndarray, start: int, stop: int) -> float | None:
    window = correct[max(0, start) : stop]
    return float(window.mean()) if len(window) else None


def detection(topics: Topics, onset: int) -> tuple[int | None, str | None]:
    """Labeled outcomes at or after ``onset`` seen by the first outcome drift event after it, and its kind."""
    for event in topics.drift_events:
        evidence = event["evidence"]
        if evidence["kind"] not in OUTCOME_KINDS:
            continue
        seen = topics.outcomes.seen(evidence["offsets"], version=event["model_version"])
        after = int((seen >= onset).sum())
        if after:
            return after, evidence["kind"]
    return None, None


def new_version_delay(outcomes: Outcomes, onset: int) -> int | None:
    """Events from ``onset`` to the first one served by another version than the one serving the last event before it."""
    before = np.flatnonzero(outcomes.version[:onset] >= 0)
    if not len(before):
        return None
    was = outcomes.version[before[-1]]
    later = outcomes.version[onset:]
    other = np.flatnonzero((later >= 0) & (later != was))
    return int(other[0]) if len(other) else None


def trained_up_to(topics: Topics) -> dict[int, int]:
    """Version → the newest event in its training data (-1: none read from the outcomes, as the bootstrap)."""
    newest: dict[int, int] = {}
    for record in topics.versions:
        if record["version"] not in newest:
            seen = topics.outcomes.seen(record["lineage"]["data"])
            newest[record["version"]] = int(seen.max()) if len(seen) else -1
    return newest


def version_counts(topics: Topics, onset: int) -> dict[str, int]:
    """Versions trained on events at or after ``onset`` that were promoted, rejected and rolled back."""
    newest = trained_up_to(topics)
    promoted, rejected, rolled_back = set(), set(), 0
    for record in topics.versions:
        version, status, reason = record["version"], record["status"], record["reason"]
        if newest[version] < onset:
            continue
        if status == "serving" and not reason.startswith("rollback from version"):
            promoted.add(version)
        elif status == "rejected":
            rejected.add(version)
        elif status == "retired" and reason.startswith("rolled back to version"):
            rolled_back += 1
    return {"promoted": len(promoted), "rejected": len(rejected), "rolled_back": rolled_back}


def false_requests(topics: Topics, first_onset: int | None) -> int:
    """Retrain requests of the drift agent that saw no outcome of an event at or after ``first_onset``."""
    count = 0
    for request in topics.requests:
        if request["requested_by"] != "drift" or request["evidence"] is None:
            continue
        seen = topics.outcomes.seen(request["evidence"]["offsets"])
        count += first_onset is None or not (seen >= first_onset).any()
    return count


@dataclass
class Figures:
    """Everything measured on one run (accuracies are shares; delays in events or outcomes)."""

    stream: str
    seed: int
    events: int
    onsets: list[int]
    bootstrap_holdout_accuracy: float
    accuracy_before: float | None
    detection: int | None
    detection_kind: str | None
    new_version: int | None
    promoted: int
    rejected: int
    rolled_back: int
    false_requests: int
    false_per_100k: float | None
    accuracy: dict[str, dict[str, float | None]]
    """learner (loop, arf, hat) → window (before, after_onset, last) → accuracy."""
    per_onset: list[dict[str, Any]]
    missing: list[str]
    seconds: dict[str, float]
    sent_from_ms: int
    """When the first event was sent (epoch ms), to find a run's moments in the worker logs."""
    timeline: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def windows(correct: Callable[[int, int], float | None], onset: int | None, events: int) -> dict[str, float | None]:
    return {
        "before": correct(0, onset if onset is not None else events),
        "after_onset": correct(onset, onset + WINDOW) if onset is not None else None,
        "last": correct(events - WINDOW, events),
    }


def timeline(topics: Topics) -> dict[str, list[dict[str, Any]]]:
    """The drift events, requests and version records of a run placed at events, and when each was written
    (seconds since the first event was sent; only to read the JSON by, no figure uses it)."""
    outcomes, newest = topics.outcomes, trained_up_to(topics)

    def written(record: dict[str, Any]) -> float:
        return round((record["written_ms"] - topics.start_ms) / 1000, 3)

    def first_served(version: int) -> int | None:
        served = np.flatnonzero(outcomes.version == version)
        return int(served[0]) if len(served) else None

    return {
        "drift_events": [{"kind": e["evidence"]["kind"], "feature": e["evidence"]["feature"],
                          "version": e["model_version"], "fired_at_event": outcomes.at(e["evidence"]["offsets"]),
                          "samples": e["evidence"]["samples"], "written_s": written(e)} for e in topics.drift_events],
        "retrain_requests": [{"requested_by": r["requested_by"], "reason": r["reason"],
                              "fired_at_event": outcomes.at(r["evidence"]["offsets"]) if r["evidence"] else None,
                              "written_s": written(r)} for r in topics.requests],
        "versions": [{"version": v["version"], "status": v["status"], "reason": v["reason"][:300],
                      "trained_up_to_event": newest[v["version"]], "first_served_event": first_served(v["version"]),
                      "written_s": written(v)} for v in topics.versions],
    }  # fmt: skip


def figures(stream: Stream, seed: int, layout: Layout, topics: Topics, river: dict[str, np.ndarray],
            bootstrap: ModelVersion, missing: list[str], seconds: dict[str, float]) -> Figures:  # fmt: skip
    events, onsets = stream.events(layout), list(stream.onsets(layout))
    onset = onsets[0] if onsets else None
    outcomes = topics.outcomes
    per_onset = []
    for at in onsets:
        delay, kind = detection(topics, at)
        per_onset.append({"onset": at, "detection": delay, "detection_kind": kind,
                          "new_version": new_version_delay(outcomes, at), **version_counts(topics, at),
                          "accuracy_after_onset": outcomes.accuracy(at, at + WINDOW)})  # fmt: skip
    first = per_onset[0] if per_onset else {"detection": None, "detection_kind": None, "new_version": None,
                                            **version_counts(topics, 0)}  # fmt: skip
    false = false_requests(topics, onset)
    before = int((~np.isnan(outcomes.correct[: onset if onset is not None else events])).sum())
    accuracy = {"loop": windows(outcomes.accuracy, onset, events)}
    for name, correct in river.items():
        accuracy[name] = windows(lambda start, stop, c=correct: mean_of(c, start, stop), onset, events)
    return Figures(
        stream=stream.name, seed=seed, events=events, onsets=onsets,
        bootstrap_holdout_accuracy=bootstrap.metrics["holdout_accuracy"], accuracy_before=accuracy["loop"]["before"],
        detection=first["detection"], detection_kind=first["detection_kind"], new_version=first["new_version"],
        promoted=first["promoted"], rejected=first["rejected"], rolled_back=first["rolled_back"],
        false_requests=false, false_per_100k=false / before * 100_000 if before else None,
        accuracy=accuracy, per_onset=per_onset, missing=missing, seconds=seconds, sent_from_ms=topics.start_ms,
        timeline=timeline(topics),
    )  # fmt: skip


# -- a run ---------------------------------------------------------------------------------------


def run_stream(bench: Bench, stream: Stream, seed: int, layout: Layout, args: argparse.Namespace,
               extra: dict[str, str]) -> Figures:  # fmt: skip
    """One stream and seed through a fresh loop, then through River's learners."""
    name = f"{stream.name}-s{seed}"
    started = time.monotonic()
    kafka = bench.base.model_copy(update={"topic_prefix": f"{bench.base.topic_prefix}{name}."})
    run_dir = bench.work / name
    create_topics(kafka)
    first, keys = take(stream.first(seed, BOOTSTRAP_SEED + seed), BOOTSTRAP_ROWS)
    data, _ = take(stream.build(seed, layout), stream.events(layout), keys)
    store = ArtifactStore(run_dir / "artifacts", RegistrySettings().inline_limit_bytes)
    bootstrap = serve_bootstrap(kafka, store, name, first)
    print(f"{name}: {len(data.labels):,} events, onsets {list(stream.onsets(layout))}; version 1 holdout accuracy "
          f"{bootstrap.metrics['holdout_accuracy']:.3f}", file=sys.stderr)  # fmt: skip
    loop = Loop(kafka, worker_env(kafka, name, run_dir, extra), args.out / "logs" / name)
    reader: OutcomeReader | None = None
    try:
        loop.wait_ready()
        ready = time.monotonic()
        start_ms, sending = send_paced(kafka, loop, data, args.rate, args.label_delay)
        reader = OutcomeReader(kafka)
        missing = wait_for_loop(kafka, loop, reader, len(data.labels), args.wait)
        topics = read_run(kafka, reader, len(data.labels), start_ms)
    finally:
        if reader is not None:
            reader.close()
        loop.stop()
    looped = time.monotonic()
    bench.drop(kafka)
    river = {learner: river_correct(model, data, args.label_delay) for learner, model in river_learners().items()}
    seconds = {"start": ready - started, "send": sending, "settle": looped - ready - sending,
               "river": time.monotonic() - looped, "total": time.monotonic() - started}  # fmt: skip
    for line in missing:
        print(f"  {name}: {line}", file=sys.stderr)
    return figures(stream, seed, layout, topics, river, bootstrap, missing, seconds)


# -- tables --------------------------------------------------------------------------------------


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def mean(values: Sequence[float | None], digits: int = 0) -> str:
    """The mean of the values there are, with how many there are when some are missing."""
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    shown = f"{sum(found) / len(found):,.{digits}f}"
    return shown if len(found) == len(values) else f"{shown} ({len(found)}/{len(values)})"


COLUMNS: list[tuple[str, Callable[[Figures], float | None], int]] = [
    ("loop accuracy before", lambda f: f.accuracy_before, 3),
    ("detection (labeled outcomes)", lambda f: f.detection, 0),
    ("onset → new version (events)", lambda f: f.new_version, 0),
    ("promoted", lambda f: f.promoted, 0),
    ("rejected", lambda f: f.rejected, 0),
    ("rolled back", lambda f: f.rolled_back, 0),
    ("false requests", lambda f: f.false_requests, 0),
    ("per 100k", lambda f: f.false_per_100k, 1),
    ("loop onset+5k", lambda f: f.accuracy["loop"]["after_onset"], 3),
    ("ARF onset+5k", lambda f: f.accuracy["arf"]["after_onset"], 3),
    ("HAT onset+5k", lambda f: f.accuracy["hat"]["after_onset"], 3),
    ("loop last 5k", lambda f: f.accuracy["loop"]["last"], 3),
    ("ARF last 5k", lambda f: f.accuracy["arf"]["last"], 3),
    ("HAT last 5k", lambda f: f.accuracy["hat"]["last"], 3),
]


def stream_table(stream: Stream, runs: list[Figures]) -> None:
    print(f"\n### {stream.name}: {stream.what}\n")
    print(f"{runs[0].events:,} events, onsets at {runs[0].onsets or 'none'}\n")
    print("| seed | " + " | ".join(title for title, _, _ in COLUMNS) + " | missing |")
    print("|---:|" + "---:|" * len(COLUMNS) + "---|")
    for run in runs:
        cells = [number(get(run), digits) for _, get, digits in COLUMNS]
        print(f"| {run.seed} | " + " | ".join(cells) + f" | {'; '.join(run.missing) or '-'} |")
    cells = [mean([get(run) for run in runs], digits) for _, get, digits in COLUMNS]
    print("| mean | " + " | ".join(cells) + " | |")


def summary_table(results: dict[str, list[Figures]]) -> None:
    print("\n### Summary (means over seeds)\n")
    print("| stream | detection | onset → new version | promoted | rejected | false requests per 100k "
          "| loop onset+5k | loop last 5k | best River last 5k | loop - River (points) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        loop = mean_value([r.accuracy["loop"]["last"] for r in runs])
        river = {k: mean_value([r.accuracy[k]["last"] for r in runs]) for k in ("arf", "hat")}
        best = max(river, key=lambda k: river[k])
        gap = f"{(loop - river[best]) * 100:+.1f}" if math.isfinite(loop) and math.isfinite(river[best]) else "-"
        print(f"| {name} | {mean([r.detection for r in runs])} | {mean([r.new_version for r in runs])} "
              f"| {mean([r.promoted for r in runs], 1)} | {mean([r.rejected for r in runs], 1)} "
              f"| {mean([r.false_per_100k for r in runs], 1)} | {mean([r.accuracy['loop']['after_onset'] for r in runs], 3)} "
              f"| {mean([r.accuracy['loop']['last'] for r in runs], 3)} | {river[best]:.3f} ({best.upper()}) | {gap} |")  # fmt: skip


def mean_value(values: Sequence[float | None]) -> float:
    """The mean of the values there are (-inf when none: it never wins a comparison)."""
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else -math.inf


# -- main ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default=",".join(STREAMS), help=f"comma-separated, of {', '.join(STREAMS)}")
    parser.add_argument("--seeds", type=int, default=3, help="runs per stream, seeds 0 .. seeds-1")
    parser.add_argument("--rate", type=float, default=400.0, help="feature events sent per second")
    parser.add_argument("--label-delay", type=int, default=100, help="events between a feature event and its label")
    parser.add_argument("--before", type=int, default=10_000, help="events before the (first) onset")
    parser.add_argument("--after", type=int, default=20_000, help="events from the (first) onset on")
    parser.add_argument("--stationary-events", type=int, default=100_000, help="events of the stationary stream")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the workers (repeatable), e.g. LOOPLINE_DRIFT_MIN_SAMPLES=1000")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="where the JSON figures and worker logs go (a new temp dir)"
    )
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the data topics")
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the loop after the last event")
    args = parser.parse_args()
    unknown = [s for s in args.streams.split(",") if s not in STREAMS]
    if unknown:
        parser.error(f"unknown streams {', '.join(unknown)}; known: {', '.join(STREAMS)}")
    if any("=" not in item for item in args.env):
        parser.error("--env takes KEY=VALUE")
    if min(args.before, args.after, args.stationary_events) < args.label_delay or args.rate <= 0:
        parser.error("--before, --after and --stationary-events must exceed --label-delay, and --rate be positive")
    args.out = args.out or Path(tempfile.mkdtemp(prefix="loopline-bench-loop-out-"))
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    args = parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    layout = Layout(args.before, args.after, args.stationary_events)
    print(f"command: python {shlex.join(sys.argv)}")
    broker, bench = local_bench(args, "loop")
    results: dict[str, list[Figures]] = {}
    started = time.monotonic()
    try:
        for name in args.streams.split(","):
            for seed in range(args.seeds):
                run = run_stream(bench, STREAMS[name], seed, layout, args, extra)
                (args.out / f"{name}-s{seed}.json").write_text(json.dumps(asdict(run), indent=2))
                results.setdefault(name, []).append(run)
                print(f"{name}-s{seed}: done in {run.seconds['total']:.0f} s "
                      f"({', '.join(f'{k} {v:.0f} s' for k, v in run.seconds.items() if k != 'total')})",
                      file=sys.stderr)  # fmt: skip
    except BaseException:
        print(f"failed; the broker's data and the runs' state are in {bench.work}, the workers' logs in {args.out}",
              file=sys.stderr)  # fmt: skip
        raise
    finally:
        broker.stop()
    shutil.rmtree(bench.work, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s; load average after the run {os.getloadavg()[0]:.2f}; "
          f"rate {args.rate:,.0f} events/s, label delay {args.label_delay} events, {args.partitions} partitions"
          f"{', worker settings ' + ' '.join(args.env) if args.env else ''}; figures and logs in {args.out})")  # fmt: skip
    for name, runs in results.items():
        stream_table(STREAMS[name], runs)
    summary_table(results)


if __name__ == "__main__":
    main()

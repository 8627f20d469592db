"""Through the broker: plain confluent-kafka relays, loopline's relay, inference, join and drift, side by side.

    python bench/broker.py                 # the full run: about 4 minutes on the 2-core VM
    python bench/broker.py --events 5000 --small-backlogs 1=50,64=2000 --join-events 2000 \\
        --drift-outcomes 5000 --latency-seconds 3      # a quick check that everything runs

One local broker (started here; 2 partitions per data topic), one topic prefix per row. Every
pipeline runs as its own process, the way a worker runs:

* plain relay: ``python bench/relay.py`` (confluent_kafka only, no loopline code): consume a batch,
  produce each record to another topic, then flush and commit (at-least-once) or one transaction
  per batch (exactly-once). In exactly-once it also runs with librdkafka's default
  ``retry.backoff.ms`` (100 ms instead of 5), to show what the wait between transactions costs,
  and with loopline's commit policy (a transaction takes full batches for up to 100 ms): the
  ceiling that loopline's exactly-once rows are compared with;
* loopline relay: ``python bench/broker.py --relay-worker``, the Faust worker of an agent around
  ``kafka_loop`` with a core that copies the features to the predictions topic;
* inference, join, drift: ``python -m loopline.cli worker inference|join|drift`` with LOOPLINE_*
  settings, serving a published model version (an MLP 64-32-2 on 32 features, ONNX Runtime).

Every row runs with ``LOOPLINE_KAFKA_GUARANTEE`` exactly-once (Kafka transactions) and
at-least-once (flush, then commit); the plain relay in the matching mode.

A new broker runs at a fraction of its speed until its JVM has warmed up, so each run first
drains the backlog through the plain relay once per guarantee, untimed.

Throughput: the backlog is produced before the worker starts: features of 32 floats (188 bytes
framed), 300,000 by default and fewer for the rows of max batch 1 and 64 (``--small-backlogs``);
for the join the features, predictions and labels of N events; for drift N outcomes. This script
then reads the worker group's committed offsets every 5 ms: events/s = records committed between the first read that sees the
first batch committed and the read that sees the whole backlog committed, over the time between
those two reads. The same method for every row. The outputs are then read with read_committed and
counted; for the one-to-one pipelines the rate from the first to the last output record's broker
timestamp (the output topics use LogAppendTime) is printed beside it as a check.

Latency: inference and, beside it, the plain relay with loopline's commit policy, at max batch
1024, max wait 5 ms, exactly-once, offered a steady half of the rate the inference row drained (2
ms ticks) for ``--latency-seconds``, then at each ``--latency-rates``: the event time written in
each feature record (stamped as it is produced) to the moment a read_committed reader received
its output ("committed"), and to the broker timestamp of that output ("appended"). The load and
that reader each run in a process of their own; the share of a core that the broker, the worker,
the load and the reader each used while the load ran is printed with the row.

Prints markdown tables; docs/benchmarks.md keeps a run's results.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from inference import bench_model

from loopline.codec import Codec, FeatureDecoder, PredictionEncoder
from loopline.codec.varint import read_long, write_long
from loopline.kafka.broker import Broker, free_port
from loopline.kafka.clients import read_to_end
from loopline.kafka.config import confluent_config
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactFormat, ArtifactStore, ModelVersion
from loopline.models.registry import publish
from loopline.records import KeyValue, Produced, SourceRecord, Topic
from loopline.settings import BrokerSettings, DriftSettings, InferenceSettings, JoinSettings, KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 32
MAX_WAIT_MS = 5.0  # max wait of the relays and inference
POLL_S = 0.005
TUNED_BACKOFF_MS = 100  # librdkafka's default, against the 5 ms loopline and the plain relay use
TUNED_RELAY = f"plain relay, retry.backoff.ms={TUNED_BACKOFF_MS}"
COMMIT_INTERVAL_MS = KafkaSettings().commit_interval_ms  # loopline's default
SPAN_RELAY = f"plain relay, transactions of up to {COMMIT_INTERVAL_MS} ms"
EXACTLY_ONCE, AT_LEAST_ONCE = "exactly-once", "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)


# -- records -----------------------------------------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode()
    return write_long(len(raw)) + raw


class FeatureRecords:
    """Framed feature records of ``WIDTH`` floats, built from parts so that the event time can be set as they are sent.

    A record is ``head`` (framing, event_id) + event time + ``tail`` (entity_id, values, no fields): the same
    bytes as ``Codec.load("features").encode`` (checked on the first record).
    """

    def __init__(self, count: int, seed: int = 1) -> None:
        codec = Codec.load("features")
        values = np.random.default_rng(seed).normal(size=(count, WIDTH)).astype("<f4")
        self.ids = [str(uuid.uuid4()) for _ in range(count)]
        self.keys = [event_id.encode() for event_id in self.ids]
        self.heads = [codec.header + _string(event_id) for event_id in self.ids]
        block = write_long(WIDTH)
        self.tails = [_string(f"u{i}") + block + values[i].tobytes() + b"\x00\x00" for i in range(count)]
        expected = codec.encode({"event_id": self.ids[0], "event_time": 1_795_000_000_000, "entity_id": "u0",
                                 "values": values[0].tolist()})  # fmt: skip
        assert self.value(0, 1_795_000_000_000) == expected, "the hand-built feature record differs from the codec's"

    def __len__(self) -> int:
        return len(self.ids)

    def value(self, i: int, event_time: int) -> bytes:
        return self.heads[i] + write_long(event_time) + self.tails[i]

    def records(self, event_time: int) -> list[KeyValue]:
        stamp = write_long(event_time)
        return [(key, head + stamp + tail) for key, head, tail in zip(self.keys, self.heads, self.tails, strict=True)]


def join_inputs(count: int, now: int) -> dict[Topic, list[KeyValue]]:
    """The features, serving predictions and labels of ``count`` events (the join's whole input)."""
    features = FeatureRecords(count, seed=2)
    feature_records = features.records(now)
    batch = FeatureDecoder(Codec.load("features"), WIDTH).decode([value for _, value in feature_records])
    scores = np.random.default_rng(3).random((count, 2)).astype(np.float32)
    scores /= scores.sum(axis=1, keepdims=True)
    encoder = PredictionEncoder(Codec.load("prediction"), "bench", 1, ["no", "yes"], shadow=False)
    predictions = encoder.encode(batch, np.arange(count), scores, now + 5, np.zeros(count, dtype=np.float32), 0.1)
    labels = Codec.load("label")
    return {
        Topic.FEATURES: feature_records,
        Topic.PREDICTIONS: list(zip(features.keys, predictions, strict=True)),
        Topic.LABELS: [
            (key, labels.encode({"event_id": event_id, "event_time": now + 10, "label": "yes" if i % 3 else "no"}))
            for i, (key, event_id) in enumerate(zip(features.keys, features.ids, strict=True))
        ],
    }


def outcome_records(count: int, now: int) -> list[KeyValue]:
    """``count`` outcomes of the bench model (keyed by model name, as the join sends them), 90% correct."""
    codec = Codec.load("outcome")
    values = np.random.default_rng(4).normal(size=(count, WIDTH)).astype(np.float32).tolist()
    out = []
    for i in range(count):
        correct = i % 10 != 0
        out.append((b"bench", codec.encode({
            "event_id": f"e{i}", "event_time": now, "entity_id": f"u{i}", "values": values[i],
            "model_name": "bench", "model_version": 1, "shadow": False, "scores": [0.3, 0.7],
            "predicted_class": "yes", "label": "yes" if correct else "no", "label_time": now + 10,
            "prediction_delay_ms": 5, "label_delay_ms": 10, "correct": correct, "log_loss": 0.36 if correct else 1.2,
            "label_rate": 1.0,
        })))  # fmt: skip
    return out


def prediction_event_time(value: bytes) -> int:
    """The event time of a framed prediction record (10-byte header, event_id, event_time)."""
    length, pos = read_long(value, 10)
    event_time, _ = read_long(value, pos + length)
    return event_time


# -- the loopline relay worker -----------------------------------------------------------------


def relay_worker() -> None:
    """loopline's relay, run as a worker: the batch loop copying features to predictions (LOOPLINE_* settings)."""
    from loopline.agents.app import make_app, run
    from loopline.kafka.loop import kafka_loop

    kafka, settings = KafkaSettings(), InferenceSettings()

    def copy(records: list[SourceRecord]) -> Produced:
        out = Produced()
        out.extend(Topic.PREDICTIONS, [(record.key or b"", record.value) for record in records])
        return out

    loop = kafka_loop(kafka, "relay", [Topic.FEATURES], copy, settings.max_batch_size, settings.max_wait_ms / 1000)
    run(make_app("relay", kafka, loop.run), loglevel="warning")


# -- one row -----------------------------------------------------------------------------------


@dataclass
class Result:
    pipeline: str
    guarantee: str
    max_batch: int
    records: int  # input records of the backlog
    rate: float  # input records/s committed
    outputs: int
    stamp_rate: float | None = None  # outputs/s from the first to the last output's broker timestamp
    drain_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class Worker:
    """A pipeline process with its own log file, stopped with SIGTERM."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(command, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"{self.proc.args!r} exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Progress:
    """Reads a group's committed offsets on the input partitions (outside the group, committed transactions only)."""

    def __init__(self, kafka: KafkaSettings, group: str, partitions: list[TopicPartition]) -> None:
        self.partitions = partitions
        self.consumer = Consumer(confluent_config(kafka, {"group.id": group, "enable.auto.commit": False,
                                                          "isolation.level": "read_uncommitted"}))  # fmt: skip
        self.last = 0

    def __call__(self) -> int:
        """Records committed so far (the last answer while the group coordinator can't answer, e.g. moving)."""
        try:
            committed = self.consumer.committed(self.partitions, timeout=10)
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].code() != KafkaError.NOT_COORDINATOR:
                raise
            return self.last
        done = sum(max(tp.offset, 0) for tp in committed)
        self.last = done
        return done

    def close(self) -> None:
        self.consumer.close()


def drain_rate(progress: Progress, total: int, worker: Worker, timeout_s: float) -> tuple[float, float]:
    """(records/s, seconds) between the first read of committed offsets that sees progress and the one that sees ``total``."""
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        done = progress()
        now = time.monotonic()
        if done > 0 and first is None:
            first = (now, done)
        if done >= total:
            assert first is not None
            seconds = now - first[0]
            return ((total - first[1]) / seconds if seconds > 0 else math.nan), seconds
        worker.check()
        time.sleep(POLL_S)
    raise TimeoutError(
        f"{total - progress()} of {total} records not committed after {timeout_s:.0f} s; see {worker.log}"
    )


class Bench:
    def __init__(self, base: KafkaSettings, work: Path, args: argparse.Namespace, broker_pid: int) -> None:
        self.base, self.work, self.args, self.broker_pid = base, work, args, broker_pid
        self.version: ModelVersion | None = None
        self.rows = 0

    # topics and inputs

    def case(self, name: str, guarantee: str) -> KafkaSettings:
        self.rows += 1
        prefix = f"{self.base.topic_prefix}{self.rows:02d}-{name}."
        case = self.base.model_copy(update={"topic_prefix": prefix, "guarantee": guarantee})
        create_topics(case)
        outputs = [ConfigResource(ResourceType.TOPIC, case.topic(t), incremental_configs=[
            ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET)])
            for t in (Topic.PREDICTIONS, Topic.OUTCOMES)]  # fmt: skip
        admin = AdminClient(confluent_config(case))
        for future in admin.incremental_alter_configs(outputs).values():
            future.result()
        return case

    def drop(self, case: KafkaSettings) -> None:
        """Delete a finished row's topics, so that the broker carries nothing of it into the next row."""
        admin = AdminClient(confluent_config(case))
        names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(case.topic_prefix)]
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()

    def publish_model(self, case: KafkaSettings) -> None:
        """Publish the bench model (trained once, inline ONNX artifact) as serving version 1 of ``bench``."""
        if self.version is None:
            self.version = bench_model(ArtifactFormat.ONNX, ArtifactStore(self.work / "artifacts", 4 << 20))
        publish(case, [self.version])

    def env(self, case: KafkaSettings, **extra: str) -> dict[str, str]:
        return {
            "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": case.bootstrap_servers, "LOOPLINE_KAFKA_TOPIC_PREFIX": case.topic_prefix,
            "LOOPLINE_KAFKA_PARTITIONS": str(case.partitions), "LOOPLINE_KAFKA_GUARANTEE": case.guarantee,
            "LOOPLINE_METRICS_PORT": str(free_port()), "LOOPLINE_METRICS_HOST": "127.0.0.1",
            "LOOPLINE_INFERENCE_MODEL_NAME": "bench", "LOOPLINE_STATE_DIR": str(self.work / "state"),
            "PYTHONUNBUFFERED": "1", **extra,
        }  # fmt: skip

    def command(self, pipeline: str, case: KafkaSettings, batch: int) -> tuple[list[str], dict[str, str], str]:
        """The worker's command line, environment and consumer group."""
        if pipeline.startswith("plain relay"):
            command = [sys.executable, str(ROOT / "bench" / "relay.py"), case.bootstrap_servers,
                       case.topic(Topic.FEATURES), case.topic(Topic.PREDICTIONS), f"{case.topic_prefix}plain-relay",
                       "--max-batch", str(batch), "--max-wait-ms", str(MAX_WAIT_MS)]  # fmt: skip
            if case.guarantee == EXACTLY_ONCE:
                command.append("--transactional")
            if pipeline == TUNED_RELAY:
                command += ["--retry-backoff-ms", str(TUNED_BACKOFF_MS)]
            if pipeline == SPAN_RELAY:
                command += ["--commit-interval-ms", str(COMMIT_INTERVAL_MS)]
            return command, {}, f"{case.topic_prefix}plain-relay"
        batching = {"LOOPLINE_INFERENCE_MAX_BATCH_SIZE": str(batch), "LOOPLINE_INFERENCE_MAX_WAIT_MS": str(MAX_WAIT_MS)}
        if pipeline == "loopline relay":
            return [sys.executable, str(Path(__file__).resolve()), "--relay-worker"], self.env(case, **batching), \
                f"{case.topic_prefix}relay"  # fmt: skip
        agent = pipeline.split()[0]
        env = self.env(case, **batching) if agent == "inference" else self.env(case)
        return [sys.executable, "-m", "loopline.cli", "worker", agent, "--loglevel", "warning"], env, \
            f"{case.topic_prefix}{agent}"  # fmt: skip

    # rows

    def throughput(self, pipeline: str, guarantee: str, batch: int, inputs: dict[Topic, list[KeyValue]],
                   output: Topic | None, one_to_one: bool, label: str = "") -> Result:  # fmt: skip
        """Drain ``inputs`` (produced first) through one worker of ``pipeline`` (``label``: a run that is not a row)."""
        case = self.case("-".join(re.findall(r"[a-z0-9]+", pipeline)), guarantee)
        if "relay" not in pipeline:
            self.publish_model(case)
        partitions: list[TopicPartition] = []
        for topic, records in inputs.items():
            produce(case, case.topic(topic), records)
            partitions += [TopicPartition(case.topic(topic), p) for p in range(case.partitions)]
        total = sum(len(records) for records in inputs.values())
        command, env, group = self.command(pipeline, case, batch)
        progress = Progress(case, group, partitions)
        worker = Worker(command, env, self.work / f"{case.topic_prefix}log")
        try:
            rate, seconds = drain_rate(progress, total, worker, self.args.row_timeout)
        finally:
            worker.stop()
            progress.close()
        result = Result(pipeline, guarantee, batch, total, rate, 0, drain_s=seconds)
        if output is not None:
            messages = read_to_end(case, case.topic(output), timeout_s=60)
            result.outputs = len(messages)
            stamps = [m.timestamp()[1] for m in messages]
            if one_to_one and len(stamps) > 1 and max(stamps) > min(stamps):
                result.stamp_rate = (len(stamps) - 1) / ((max(stamps) - min(stamps)) / 1000)
            if math.isnan(result.rate) and result.stamp_rate:
                # The whole backlog was committed at the first read (one transaction held it all):
                # the offsets give no interval, the output timestamps still do.
                result.rate = result.stamp_rate
        self.drop(case)
        shown = f"{rate:,.0f} records/s over {seconds:.2f} s, {result.outputs} outputs"
        print(f"  {label or pipeline}, {guarantee}, max batch {batch}: {shown}", file=sys.stderr, flush=True)
        return result

    def latency(self, pipeline: str, rate: float, seconds: float) -> Result:
        """``pipeline`` (inference or a plain relay) at max batch 1024, exactly-once, offered ``rate`` events/s for
        ``seconds``."""
        case = self.case("latency", EXACTLY_ONCE)
        if "relay" not in pipeline:
            self.publish_model(case)
        command, env, group = self.command(pipeline, case, 1024)
        warmup = FeatureRecords(1000, seed=5)
        produce(case, case.topic(Topic.FEATURES), warmup.records(int(time.time() * 1000)))
        partitions = [TopicPartition(case.topic(Topic.FEATURES), p) for p in range(case.partitions)]
        progress = Progress(case, group, partitions)
        # The reader and the load each run in a process of their own: in this one they would hold
        # each other up on the interpreter lock, and the latencies would be theirs.
        spawn = multiprocessing.get_context("spawn")
        ready, stopping, seen, sent_queue = spawn.Event(), spawn.Event(), spawn.Queue(), spawn.Queue()
        reader = spawn.Process(target=read_visible, args=(case, case.topic(Topic.PREDICTIONS), ready, stopping, seen))
        reader.start()
        worker = Worker(command, env, self.work / f"{case.topic_prefix}log")
        try:
            drain_rate(progress, len(warmup), worker, self.args.row_timeout)  # the worker is up and warm
            ready.wait(60)
            assert reader.pid is not None
            others = {"broker": self.broker_pid, "worker": worker.proc.pid, "reader": reader.pid}
            load = spawn.Process(target=paced, args=(case, rate, seconds, others, sent_queue))
            load.start()
            start_ms, sent, cpu = sent_queue.get(timeout=seconds + 120)
            load.join()
            drain_rate(progress, len(warmup) + 1 + sent, worker, self.args.row_timeout)
        finally:
            worker.stop()
            progress.close()
            stopping.set()
        pairs = seen.get(timeout=120)
        reader.join()
        messages = read_to_end(case, case.topic(Topic.PREDICTIONS), timeout_s=60)
        appended = []
        for message in messages:
            event_time = prediction_event_time(message.value() or b"")
            if event_time >= start_ms:
                appended.append(message.timestamp()[1] - event_time)
        visible = [arrived - event_time for event_time, arrived in pairs if event_time >= start_ms]
        self.drop(case)
        if len(appended) != sent or len(visible) != sent:
            raise RuntimeError(f"{sent} paced events sent, {len(appended)} outputs read after the run and "
                               f"{len(visible)} during it")  # fmt: skip
        a, v = np.percentile(appended, [50, 99]), np.percentile(visible, [50, 95, 99, 100])
        extra = {"offered": rate, "achieved": sent / seconds, "appended_p50": a[0], "appended_p99": a[1],
                 "p50": v[0], "p95": v[1], "p99": v[2], "max": v[3], **{f"cpu_{k}": c for k, c in cpu.items()}}  # fmt: skip
        print(f"  {pipeline} latency at {rate:,.0f} events/s: committed p50 {v[0]:.0f} ms, p99 {v[2]:.0f} ms",
              file=sys.stderr, flush=True)  # fmt: skip
        return Result(pipeline, EXACTLY_ONCE, 1024, sent, math.nan, len(messages), extra=extra)


def read_visible(kafka: KafkaSettings, topic: str, ready: Event, stopping: Event, seen: Queue) -> None:
    """Read ``topic`` with read_committed until ``stopping``; put (event time, arrival ms) of each output.

    ``consume`` returns after at most 1 ms, so that an arrival is stamped within a millisecond."""
    consumer = Consumer(confluent_config(kafka, {"group.id": f"bench-{uuid.uuid4().hex}",
                        "auto.offset.reset": "earliest", "enable.auto.commit": False,
                        "isolation.level": "read_committed", "fetch.wait.max.ms": 10}))  # fmt: skip
    consumer.subscribe([topic])
    arrivals: list[tuple[list[bytes], int]] = []
    while not stopping.is_set():
        messages = consumer.consume(num_messages=10_000, timeout=0.001)
        ready.set()
        if messages:
            arrivals.append(([m.value() or b"" for m in messages if m.error() is None], int(time.time() * 1000)))
    consumer.close()
    seen.put([(prediction_event_time(value), arrived) for values, arrived in arrivals for value in values])


def paced(kafka: KafkaSettings, rate: float, seconds: float, others: dict[str, int], sent: Queue) -> None:
    sent.put(pace(kafka, rate, seconds, others))


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, every thread) process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def produce(kafka: KafkaSettings, topic: str, records: Sequence[KeyValue]) -> None:
    """Send ``records`` (not in a transaction) and wait until every one is acknowledged."""
    failures: list[object] = []
    producer = Producer(confluent_config(kafka, {
        "acks": "all", "enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 1_000_000, "delivery.report.only.error": True,
        "on_delivery": lambda error, _message: failures.append(error),
    }))  # fmt: skip
    for i, (key, value) in enumerate(records):
        producer.produce(topic, value, key)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) or failures:
        raise RuntimeError(f"the backlog of {topic} was not all acknowledged: {failures[:1]}")


def pace(
    kafka: KafkaSettings, rate: float, seconds: float, others: dict[str, int]
) -> tuple[int, int, dict[str, float]]:
    """Send features at ``rate`` events/s for ``seconds`` in 2 ms ticks, each stamped as it is handed to the
    producer; return the first stamp, the count, and the share of a core each process used meanwhile
    (``others``, by name, and this load).

    One record stamped a second earlier goes first and is acknowledged before the clock starts: the
    producer has its metadata and its producer id, and the first stamped records don't wait for them."""
    records = FeatureRecords(int(rate * seconds) + 2, seed=6)
    topic = kafka.topic(Topic.FEATURES)
    producer = Producer(confluent_config(kafka, {"acks": "all", "enable.idempotence": True, "linger.ms": 1,
                                                 "partitioner": "murmur2_random"}))  # fmt: skip
    producer.produce(topic, records.value(0, int(time.time() * 1000) - 1000), records.keys[0])
    if producer.flush(30):
        raise RuntimeError("the first paced feature was not acknowledged")
    pids = {**others, "load": os.getpid()}
    used = {name: cpu_seconds(pid) for name, pid in pids.items()}
    tick, sent, start, start_ms = 0.002, 0, time.monotonic(), int(time.time() * 1000)
    while (elapsed := time.monotonic() - start) < seconds:
        due = min(int(rate * elapsed), len(records) - 1)
        for i in range(sent + 1, due + 1):
            stamp = write_long(int(time.time() * 1000))
            producer.produce(topic, records.heads[i] + stamp + records.tails[i], records.keys[i])
        sent = due
        producer.poll(0)
        time.sleep(max(0.0, tick - (time.monotonic() - start) % tick))
    if producer.flush(30):
        raise RuntimeError("paced features not acknowledged")
    elapsed = time.monotonic() - start
    return start_ms, sent, {name: (cpu_seconds(pid) - used[name]) / elapsed for name, pid in pids.items()}


# -- tables ------------------------------------------------------------------------------------


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else "-"


def print_tables(results: list[Result], args: argparse.Namespace) -> None:
    def find(pipeline: str, guarantee: str, batch: int | None = None) -> Result | None:
        return next((r for r in results if r.pipeline == pipeline and r.guarantee == guarantee
                     and (batch is None or r.max_batch == batch) and not r.extra), None)  # fmt: skip

    print(f"\n### Throughput through the broker ({args.partitions} partitions, one worker process, max wait "
          f"{MAX_WAIT_MS:.0f} ms)\n")  # fmt: skip
    print(
        "| pipeline | guarantee | max batch | backlog | events/s | by output timestamps | vs plain relay, same commits "
        "| vs batch 1 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r.pipeline not in ("plain relay", TUNED_RELAY, SPAN_RELAY, "loopline relay", "inference") or r.extra:
            continue
        plain = find(SPAN_RELAY if r.guarantee == EXACTLY_ONCE else "plain relay", r.guarantee)
        naive = find("inference", r.guarantee, 1)
        vs_plain = ratio(r.rate, plain.rate if plain else None)
        vs_one = f"{r.rate / naive.rate:.1f}x" if r.pipeline == "inference" and naive else ""
        stamps = f"{r.stamp_rate:,.0f}" if r.stamp_rate else "-"
        print(f"| {r.pipeline} | {r.guarantee} | {r.max_batch} | {r.records:,} | {r.rate:,.0f} | {stamps} | {vs_plain} "
              f"| {vs_one} |")  # fmt: skip
    feedback = [r for r in results if r.pipeline in ("join", "drift")]
    if feedback:
        print("\n### Join and drift through the broker (one worker process, the agents' default max batch and wait)\n")
        print("| agent | guarantee | max batch | backlog | records/s | events/s | outputs |")
        print("|---|---|---:|---|---:|---:|---|")
        for r in feedback:
            if r.pipeline == "join":
                backlog = f"{r.records // 3:,} events (features + predictions + labels)"
                events, outputs = r.rate / 3, f"{r.outputs:,} outcomes"
            else:
                backlog, events, outputs = f"{r.records:,} outcomes", r.rate, f"{r.outputs:,} drift events"
            print(
                f"| {r.pipeline} | {r.guarantee} | {r.max_batch} | {backlog} | {r.rate:,.0f} | {events:,.0f} | {outputs} |"
            )
    latencies = [r for r in results if r.extra]
    if latencies:
        print(f"\n### Latency through the broker (max batch 1024, max wait {MAX_WAIT_MS:.0f} ms, exactly-once, offered "
              f"for {args.latency_seconds:.0f} s; the first rate is half the rate inference drained)\n")  # fmt: skip
        print("| pipeline | offered events/s | sent events/s | events | committed: p50 ms | p95 ms | p99 ms | max ms "
              "| appended: p50 ms | p99 ms | cores: broker | worker | load | reader |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in latencies:
        e = r.extra
        print(f"| {r.pipeline} | {e['offered']:,.0f} | {e['achieved']:,.0f} | {r.records:,} | {e['p50']:.0f} | "
              f"{e['p95']:.0f} | {e['p99']:.0f} | {e['max']:.0f} | {e['appended_p50']:.0f} | {e['appended_p99']:.0f} | "
              f"{e['cpu_broker']:.2f} | {e['cpu_worker']:.2f} | {e['cpu_load']:.2f} | {e['cpu_reader']:.2f} |")  # fmt: skip
    targets(results, find)


def targets(results: list[Result], find: Callable[..., Result | None]) -> None:
    plain, inference = find(SPAN_RELAY, EXACTLY_ONCE), find("inference", EXACTLY_ONCE, 1024)
    per_batch = find("plain relay", EXACTLY_ONCE)
    join, drift = find("join", EXACTLY_ONCE), find("drift", EXACTLY_ONCE)
    latency = next((r for r in results if r.extra and r.pipeline == "inference"), None)
    rows: list[tuple[str, str, bool | None]] = []
    if plain and inference:
        best = max((r for r in results if r.pipeline == "inference" and r.guarantee == EXACTLY_ONCE and not r.extra),
                   key=lambda r: r.rate)  # fmt: skip
        rows.append((f"inference ≥ 0.7 x plain relay, exactly-once (max batch 1024; both with transactions of up to "
                     f"{COMMIT_INTERVAL_MS} ms)",
                     f"{inference.rate / plain.rate:.2f}", inference.rate >= 0.7 * plain.rate))  # fmt: skip
        if per_batch:
            rows.append(("inference ≥ 0.7 x plain relay, exactly-once (max batch 1024; the relay with a transaction "
                         "per batch)", f"{inference.rate / per_batch.rate:.2f}", inference.rate >= 0.7 * per_batch.rate))  # fmt: skip
        rows.append(("inference ≥ 104,000 events/s, exactly-once (best max batch)",
                     f"{best.rate:,.0f} (max batch {best.max_batch})", best.rate >= 104_000))  # fmt: skip
    if join:
        rows.append(("join events/s, exactly-once", f"{join.rate / 3:,.0f}", None))
    if drift:
        rows.append(("drift ≥ 50,000 outcomes/s, exactly-once", f"{drift.rate:,.0f}", drift.rate >= 50_000))
    if latency:
        p99 = latency.extra["p99"]
        relay = next((r for r in results if r.extra and r.pipeline == SPAN_RELAY
                      and r.extra["offered"] == latency.extra["offered"]), None)  # fmt: skip
        beside = f" (plain relay: {relay.extra['p99']:.0f} ms)" if relay else ""
        rows.append(("p99 event time → committed prediction ≤ 50 ms at half capacity",
                     f"{p99:.0f} ms{beside}", p99 <= 50))  # fmt: skip
    if rows:
        print("\n### Targets\n")
        print("| target | measured | met |")
        print("|---|---:|---|")
        for name, measured, met in rows:
            print(f"| {name} | {measured} | {'-' if met is None else ('yes' if met else 'no')} |")


# -- main --------------------------------------------------------------------------------------


def local_bench(args: argparse.Namespace, name: str) -> tuple[Broker, Bench]:
    """Say what machine this is, start a broker of its own in a new work directory, and a :class:`Bench`
    on it whose topics start with ``name`` (``args.partitions`` per data topic)."""
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average before the run {os.getloadavg()[0]:.2f}")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix=f"loopline-bench-{name}-"))
    broker = Broker(BrokerSettings(data_dir=work / "kafka", port=0, heap="1g"))
    base = KafkaSettings(bootstrap_servers=broker.start(), topic_prefix=f"{name}{uuid.uuid4().hex[:6]}.",
                         partitions=args.partitions)  # fmt: skip
    pid = broker.status().pid
    assert pid is not None
    return broker, Bench(base, work, args, pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=300_000, help="backlog of features per row")
    parser.add_argument("--small-backlogs", default="1=250,64=10000",
                        help="smaller backlogs of the rows of small max batches (max batch=events, comma-separated)")  # fmt: skip
    parser.add_argument("--join-events", type=int, default=50_000, help="events (3 records each) of the join rows")
    parser.add_argument("--drift-outcomes", type=int, default=100_000, help="outcomes of the drift rows")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="how long the latency run offers events")
    parser.add_argument("--latency-rates", default="",
                        help="more latency rows at these offered events/s (comma-separated), after the one at half capacity")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=2, help="partitions of the data topics")
    parser.add_argument("--batches", default="1,64,1024,4096", help="max batch sizes of the inference rows")
    parser.add_argument("--only", default="plain,loopline,inference,join,drift,latency",
                        help="which rows to run (comma-separated)")  # fmt: skip
    parser.add_argument("--row-timeout", type=float, default=120.0, help="seconds a row may take to drain")
    args = parser.parse_args()
    if args.relay_worker:
        relay_worker()
        return
    only = set(args.only.split(","))
    small = {int(b): int(n) for b, n in (item.split("=") for item in args.small_backlogs.split(",") if item)}
    broker, bench = local_bench(args, "b")
    work = bench.work
    results: list[Result] = []
    started = time.monotonic()
    try:
        now = int(time.time() * 1000)
        features = FeatureRecords(args.events).records(now)
        for guarantee in GUARANTEES:  # a new broker runs at a third of its speed until the JVM has warmed up
            bench.throughput("plain relay", guarantee, 1024, {Topic.FEATURES: features}, None, one_to_one=True,
                             label="warm-up")  # fmt: skip
        for guarantee in GUARANTEES:
            pipelines = ["plain relay", TUNED_RELAY, SPAN_RELAY, "loopline relay"] if guarantee == EXACTLY_ONCE \
                else ["plain relay", "loopline relay"]  # fmt: skip
            for pipeline in pipelines:
                if pipeline.split()[0] in only:
                    results.append(bench.throughput(pipeline, guarantee, 1024, {Topic.FEATURES: features},
                                                    Topic.PREDICTIONS, one_to_one=True))  # fmt: skip
            if "inference" in only:
                for batch in (int(b) for b in args.batches.split(",")):
                    backlog = features[: small.get(batch, args.events)]
                    results.append(bench.throughput("inference", guarantee, batch, {Topic.FEATURES: backlog},
                                                    Topic.PREDICTIONS, one_to_one=True))  # fmt: skip
        if "join" in only:
            inputs = join_inputs(args.join_events, now)
            for guarantee in GUARANTEES:
                results.append(bench.throughput("join", guarantee, JoinSettings().max_batch_size, inputs,
                                                Topic.OUTCOMES, one_to_one=False))  # fmt: skip
        if "drift" in only:
            outcomes = outcome_records(args.drift_outcomes, now)
            for guarantee in GUARANTEES:
                results.append(bench.throughput("drift", guarantee, DriftSettings().max_batch_size,
                                                {Topic.OUTCOMES: outcomes}, Topic.DRIFT_EVENTS, one_to_one=False))  # fmt: skip
        if "latency" in only:
            capacity = next((r.rate for r in results if r.pipeline == "inference" and r.guarantee == EXACTLY_ONCE
                             and r.max_batch == 1024), None)  # fmt: skip
            if capacity is None:
                raise SystemExit("the latency row needs the inference row at max batch 1024, exactly-once")
            for rate in [capacity / 2] + [float(r) for r in args.latency_rates.split(",") if r]:
                for pipeline in ("inference", SPAN_RELAY):
                    results.append(bench.latency(pipeline, rate, args.latency_seconds))
    except BaseException:
        print(f"failed; the broker's data and the workers' logs are in {work}", file=sys.stderr)
        raise
    finally:
        broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s; load average after the run {os.getloadavg()[0]:.2f})")
    print_tables(results, args)


if __name__ == "__main__":
    main()

"""Exactly-once through real processes: kills, rebalances, a zombie and a broker restart double nothing.

Every figure comes from the committed records of the output topics (read with read_committed):
exactly one prediction or outcome per valid event id, none missing, none twice.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import TopicPartition

from loopline.kafka.broker import Broker, free_port
from loopline.kafka.clients import make_sender, read_to_end, send_all
from loopline.kafka.offsets import next_offsets
from loopline.kafka.output import KafkaOutput
from loopline.kafka.source import KafkaSource
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore
from loopline.models.registry import publish
from loopline.records import Topic
from loopline.settings import BrokerSettings, KafkaSettings
from tests.agents.test_join_agent import parts
from tests.helpers import features_record, rows, small_model, version_of
from tests.workers import Worker, decoded, wait_for, worker

pytestmark = pytest.mark.slow  # a long integration test: `make test-quick` leaves it out

FAST = {
    "LOOPLINE_INFERENCE_MODEL_NAME": "m",
    "LOOPLINE_INFERENCE_MAX_BATCH_SIZE": "64",
    "LOOPLINE_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "LOOPLINE_KAFKA_TRANSACTION_TIMEOUT_MS": "5000",
}


class Paced:
    """Sends ``total`` valid feature events at about ``rate`` a second from a thread."""

    def __init__(self, kafka, total, rate=800):
        self.kafka, self.total, self.rate = kafka, total, rate
        self.sent: list[str] = []
        self.thread = threading.Thread(target=self._send)
        self.thread.start()

    def _send(self):
        producer, values = make_sender(self.kafka), rows(self.total)
        chunk = max(1, self.rate // 20)
        for start in range(0, self.total, chunk):
            ids = [str(uuid.uuid4()) for _ in range(min(chunk, self.total - start))]
            send_all(self.kafka, self.kafka.topic("features"),
                     [(e, features_record(values[start + i], e)) for i, e in enumerate(ids)], producer)  # fmt: skip
            self.sent.extend(ids)
            time.sleep(0.05)

    def join(self):
        self.thread.join()
        return self.sent


def exactly_once(kafka, topic, schema, expected, timeout_s=120):
    """Wait until every expected event id has its record, then check none came twice."""
    expected = set(expected)
    wait_for(lambda: {r["event_id"] for r in decoded(kafka, topic, schema)} >= expected,
             timeout_s=timeout_s, what=f"a record in {topic} for every event")  # fmt: skip
    counts = Counter(r["event_id"] for r in decoded(kafka, topic, schema))
    assert set(counts) == expected
    assert [e for e, n in counts.items() if n > 1] == []


@pytest.fixture
def model(kafka, tmp_path):
    create_topics(kafka)
    publish(kafka, [version_of(small_model(), 1, ArtifactStore(tmp_path / "artifacts", 1 << 20))])
    return kafka, tmp_path


def assigned(w: Worker) -> bool:
    """Whether the worker took part in a rebalance (with 2 partitions, a third worker may get none)."""
    return ": assigned " in w.log.read_text()


def kill(w: Worker) -> None:
    w.proc.kill()
    w.proc.wait()


def test_kills_and_a_joining_worker_neither_lose_nor_double_a_prediction(model):
    kafka, tmp = model
    stream = Paced(kafka, 20_000)
    with worker("inference", kafka, tmp, **FAST) as steady:
        victim = Worker("inference", kafka, tmp, FAST | {"LOOPLINE_KAFKA_WORKER_ID": "victim"})
        try:
            for round_ in range(3):
                wait_for(lambda v=victim: v.metric("loopline_events_in_total") > 0, what="the victim to serve a batch")
                kill(victim)  # whatever it had not committed is aborted and read again by the next owner
                victim = Worker("inference", kafka, tmp, FAST | {"LOOPLINE_KAFKA_WORKER_ID": "victim"})
                if round_ == 1:
                    with worker("inference", kafka, tmp, **FAST) as third:  # a rebalance that kills nothing
                        wait_for(lambda: assigned(third), what="the third worker to join the group")
            sent = stream.join()
            exactly_once(kafka, "predictions", "prediction", sent)
            assert steady.metric("loopline_events_in_total") > 0
        finally:
            victim.stop()
    assert len(sent) == 20_000


def test_kills_and_a_joining_worker_neither_lose_nor_double_an_outcome(model):
    kafka, tmp = model
    ids = [f"e{i}" for i in range(30_000)]
    features, predictions, labels = parts(ids)
    labelled = ids[: len(ids) * 9 // 10]
    by_topic = {
        "features": features,
        "predictions": predictions,
        "labels": [lab for lab in labels if lab[1] in labelled],
    }

    def send():  # each event's parts in order, labels 200 events behind, about 1,000 events/s: kills land mid-stream
        producer = make_sender(kafka)
        for start in range(0, len(ids), 100):
            for topic, records in by_topic.items():
                lag = 200 if topic == "labels" else 0
                chunk = [(key, value) for _, key, value in records if start - lag <= int(key[1:]) < start + 100 - lag]
                send_all(kafka, kafka.topic(topic), chunk, producer)
            time.sleep(0.1)
        send_all(kafka, kafka.topic("labels"),
                 [(key, value) for _, key, value in by_topic["labels"] if int(key[1:]) >= len(ids) - 200], producer)  # fmt: skip

    env = {"LOOPLINE_JOIN_MAX_BATCH_SIZE": "256", **FAST}
    victim_env = env | {"LOOPLINE_KAFKA_WORKER_ID": "victim"}  # its store on disk is found again, without a checkpoint
    sender = threading.Thread(target=send)
    sender.start()
    with worker("join", kafka, tmp, **env):
        victim = Worker("join", kafka, tmp, victim_env)
        try:
            for round_ in range(3):
                # killed right after its first batch: while it catches up with what came during its restart
                wait_for(lambda v=victim: v.metric("loopline_events_in_total") > 0, what="the victim to join a batch")
                kill(victim)
                victim = Worker("join", kafka, tmp, victim_env)
                if round_ == 0:
                    with worker("join", kafka, tmp, **env) as third:  # joins, then leaves mid-stream
                        wait_for(lambda: assigned(third), what="the third worker to join the group")
            sender.join()
            exactly_once(kafka, "outcomes", "outcome", labelled)
        finally:
            victim.stop()


def test_a_worker_frozen_past_its_session_timeout_doubles_nothing(model):
    kafka, tmp = model
    stream = Paced(kafka, 6000, rate=600)
    with worker("inference", kafka, tmp, **FAST) as zombie, worker("inference", kafka, tmp, **FAST) as other:
        wait_for(lambda: zombie.metric("loopline_events_in_total") > 0 and other.metric("loopline_events_in_total") > 0,
                 what="both workers to serve")  # fmt: skip
        zombie.proc.send_signal(signal.SIGSTOP)  # frozen mid-stream, past its session timeout
        before = other.metric("loopline_events_in_total")
        wait_for(lambda: other.metric("loopline_events_in_total") > before + 1000, timeout_s=90,
                 what="the other worker to take the zombie's partitions")  # fmt: skip
        zombie.proc.send_signal(signal.SIGCONT)
        sent = stream.join()
        exactly_once(kafka, "predictions", "prediction", sent)


def test_a_zombie_cannot_commit_the_batch_it_held_while_its_partitions_moved(model):
    kafka, tmp = model
    ids = set(Paced(kafka, 300, rate=3000).join())
    # The zombie: loopline's own source and output, in this process, paused past its poll interval.
    paused = kafka.model_copy(update={"max_poll_interval_ms": 6000, "session_timeout_ms": 6000})
    source = KafkaSource(paused, [kafka.topic("features")], f"{kafka.topic_prefix}inference")
    output = KafkaOutput(paused, source, "zombie")
    batch: list = []
    try:
        wait_for(lambda: batch.extend(source.take(1000, 0.5)) or batch, what="the zombie's batch")
        with worker("inference", kafka, tmp, **FAST) as successor:
            wait_for(lambda: successor.metric("loopline_events_in_total") >= len(ids), timeout_s=90,
                     what="the successor to take every partition")  # fmt: skip
            offsets = [TopicPartition(t, p, o) for (t, p), (o, _) in next_offsets(batch).items()]
            outputs = {Topic.DRIFT_EVENTS: [(r.key, r.value) for r in batch]}
            committed = output.commit(outputs, offsets, threading.Event())
            exactly_once(kafka, "predictions", "prediction", ids)
    finally:
        output.close()
        source.close()
    assert not committed
    assert read_to_end(kafka, kafka.topic("drift-events")) == []  # nothing of the zombie's batch is visible


def kafka_cli(data_dir, *args):
    """``loopline kafka ARGS`` as a user runs it (a process of its own, so the broker outlives it)."""
    return subprocess.run([sys.executable, "-m", "loopline.cli", "kafka", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def kafka_start(data_dir, *args):
    done = kafka_cli(data_dir, "start", *args)
    assert done.returncode == 0, done.stderr


def test_a_broker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(tmp_path):
    data_dir = tmp_path / "kafka"
    kafka_start(data_dir, "--port", "0")
    broker = Broker(BrokerSettings(data_dir=data_dir))
    servers = broker.bootstrap_servers
    squatter = None
    try:
        kafka = KafkaSettings(bootstrap_servers=servers, topic_prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=2)
        create_topics(kafka)
        publish(kafka, [version_of(small_model(), 1, ArtifactStore(tmp_path / "artifacts", 1 << 20))])
        first = set(Paced(kafka, 2000, rate=2000).join())
        with worker("inference", kafka, tmp_path, **FAST) as w:
            wait_for(lambda: w.metric("loopline_events_in_total") >= 500, what="the worker to serve")
            os.kill(int((data_dir / "kafka.pid").read_text()), signal.SIGKILL)
            wait_for(lambda: not broker.status().running, what="the broker to die")
            # The stale pid file now names an unrelated live process, as after pid reuse: not the broker.
            squatter = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            (data_dir / "kafka.pid").write_text(str(squatter.pid))
            assert kafka_cli(data_dir, "status").returncode == 1
            kafka_start(data_dir)  # its recorded port (made with --port 0), held by the worker's TIME_WAIT sockets
            assert squatter.poll() is None
            second = set(Paced(kafka, 2000, rate=2000).join())
            exactly_once(kafka, "predictions", "prediction", first | second, timeout_s=180)
            assert w.proc.poll() is None  # the same worker, never restarted
        lines = [line for line in w.log.read_text().splitlines() if "kafka client" in line or "trying again" in line]
        assert len(lines) < 100, f"{len(lines)} lines about the outage"
        refused = kafka_cli(data_dir, "start", "--port", str(free_port()))
        assert refused.returncode == 2 and f"was created on port {servers.rsplit(':', 1)[1]}" in refused.stderr
    finally:
        broker.stop()
        if squatter is not None:
            squatter.kill()
            squatter.wait()

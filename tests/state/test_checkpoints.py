"""Running checkpoints through a real broker: a process killed with SIGKILL, restarted on its stores.

The writer (``tests/state/writer.py``) commits rounds of changes with a checkpoint at every commit,
then rounds without, then leaves a transaction open; it is killed there. Every round is
``KEYS_PER_ROUND`` records and a marker per changelog partition, so the offsets of the rounds, and
what a restore from a checkpoint reads, are known.
"""

import os
import signal
import subprocess
import sys

from confluent_kafka import Producer

from loopline.kafka.config import confluent_config
from loopline.kafka.topics import create_topics
from loopline.state.changelog import KafkaChangelog
from loopline.state.state import State
from loopline.state.store import DiskStore
from tests.helpers import REPO_ROOT
from tests.state import writer
from tests.state.writer import KEYS_PER_ROUND, PARTITIONS
from tests.workers import wait_for

ROUND = KEYS_PER_ROUND + 1  # offsets per round and partition: its records and its commit marker


def killed_writer(kafka, directory, checkpointed, after):
    """Run the writer to its open transaction, then SIGKILL it."""
    environment = os.environ | {
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "LOOPLINE_KAFKA_PARTITIONS": str(kafka.partitions),
    }
    command = [sys.executable, "-m", "tests.state.writer", str(directory), str(checkpointed), str(after)]
    with subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        finally:
            proc.send_signal(signal.SIGKILL)


def test_a_killed_worker_restores_from_its_last_running_checkpoint_and_replays_the_tail(kafka, tmp_path):
    create_topics(kafka)
    checkpointed, after = 30, 4
    killed_writer(kafka, tmp_path, checkpointed, after)
    # The stores as the kill left them: every committed round, none of the open one.
    checkpoints = {}
    for partition in PARTITIONS:
        store = DiskStore(tmp_path / str(partition))
        assert dict(store.range(b"", b"\xff")) == writer.expected(checkpointed + after)[partition]
        checkpoints[partition] = store.checkpoint()
        store.close()
    # The last checkpoint was read before the last checkpointed round was committed: the round
    # before it may still have been writing its markers.
    assert set(checkpoints.values()) <= {(checkpointed - 2) * ROUND, (checkpointed - 1) * ROUND}
    writer.producer(kafka)  # the writer's restart fences it: its open transaction is aborted

    restored = {}
    changelog = KafkaChangelog(kafka, writer.changelog_topic(kafka))
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog,
                  on_restored=lambda partition, records, seconds: restored.update({partition: records}))  # fmt: skip
    state.assign(PARTITIONS)
    changelog.close()
    assert restored == {p: (checkpointed + after - checkpoints[p] // ROUND) * KEYS_PER_ROUND for p in PARTITIONS}
    committed = len(PARTITIONS) * (checkpointed + after) * KEYS_PER_ROUND
    assert sum(restored.values()) <= len(PARTITIONS) * (after + 2) * KEYS_PER_ROUND < committed
    expected = writer.expected(checkpointed + after)
    assert expected != writer.expected(checkpointed)  # the rounds after the last checkpoint changed the state
    assert {p: dict(state.items(p)) for p in PARTITIONS} == expected
    # The restore's own checkpoint: every committed round lies below it.
    assert all(state.stores[p].checkpoint() >= (checkpointed + after) * ROUND for p in PARTITIONS)


def test_the_end_of_a_changelog_is_below_an_open_transaction(kafka):
    create_topics(kafka)
    changelog = KafkaChangelog(kafka, writer.changelog_topic(kafka))
    out = Producer(confluent_config(kafka, {"transactional.id": kafka.topic_prefix + "open"}))
    out.init_transactions(30)
    for round_ in range(2):
        out.begin_transaction()
        for i in range(3):
            out.produce(changelog.topic, key=f"k{i}".encode(), value=b"v", partition=0)
        out.flush(30)
        assert changelog.end(0) == round_ * 4  # the open transaction's records are beyond it
        out.commit_transaction(30)
        wait_for(lambda r=round_: changelog.end(0) == (r + 1) * 4, what="the commit marker")
    changelog.close()

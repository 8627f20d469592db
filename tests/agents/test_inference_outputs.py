"""The inference core in the batch loop (in-memory source and output): a feature record whose
prediction can't be sent is dead-lettered in the batch it came in, and the rest of the batch served."""

import logging
import threading

import pytest

from loopline.codec import Codec
from loopline.inference.core import InferenceCore
from loopline.inference.loader import load_model
from loopline.kafka.loop import BatchLoop
from loopline.models import ArtifactStore
from loopline.records import SourceRecord, Topic
from loopline.settings import InferenceSettings
from loopline.testing import MemoryOutput, MemorySource
from tests.helpers import features_record, rows, small_model, version_of

MIB = 1 << 20
LETTERS = Codec.load("dead_letter")
NEVER = threading.Event()


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"), inline_limit=1 << 20)
    serving = InferenceCore()
    serving.stage("serving", load_model(version_of(small_model(), 1, store), InferenceSettings(device="cpu"), store,
                                             shadow=False, expected_features=None))  # fmt: skip
    return serving


def batch_with(big: bytes, count: int = 20) -> list[SourceRecord]:
    """``count`` valid feature records on two partitions with ``big`` in their middle."""
    values = [features_record(row, f"e{i}") for i, row in enumerate(rows(count))]
    values.insert(count // 2, big)
    keys = [f"e{i}".encode() for i in range(count)]
    keys.insert(count // 2, b"big")
    return [SourceRecord(key, value, "t.features", i % 2, i // 2, 1_795_000_000_000)
            for i, (key, value) in enumerate(zip(keys, values, strict=True))]  # fmt: skip


def served(core, batch, caplog, **output):
    """The loop run over ``batch`` (one batch of it); the predicted event ids, the dead letters, and the
    loop's warnings that it reads a batch again in halves."""
    source = MemorySource(batch)
    sink = MemoryOutput(source, **output)
    loop = BatchLoop("inference", source, sink, core.process, max_batch=64, max_wait_s=0)
    with caplog.at_level(logging.WARNING, logger="loopline.kafka.loop"):
        while not source.drained:
            loop.step(loop.take(), NEVER)
    halvings = [r for r in caplog.records if "names no input" in r.getMessage()]
    letters = [LETTERS.decode(value) for _, value in sink.to(Topic.DEAD_LETTERS)]
    return sorted(key.decode() for key, _ in sink.to(Topic.PREDICTIONS)), letters, halvings, source


def test_a_feature_record_at_the_brokers_limit_is_dead_lettered_in_its_batch_and_the_rest_served(core, caplog):
    # Valid, and under the 16 MiB the broker takes; its prediction copies its entity_id (an event_id is at
    # most 1 KiB, an entity_id is not bounded) and is larger than the topics take.
    big = features_record(rows(1, seed=5)[0], "big", entity_id="w" * (16 * MIB - 256))
    assert 16 * MIB - 256 < len(big) < 16 * MIB - 200
    predicted, letters, halvings, source = served(core, batch_with(big), caplog)
    assert predicted == sorted(f"e{i}" for i in range(20))
    assert [(d["key"], d["reason"]) for d in letters] == [(b"big", "too-large")]
    assert "its predictions record would be" in letters[0]["error"]
    assert halvings == []  # found in the batch it came in: never read again
    assert sum(offset for offset, _ in source.committed.values()) == 21


def test_a_prediction_the_broker_refuses_dead_letters_its_input_in_its_batch(core, caplog):
    wide = features_record(rows(1, seed=6)[0], "big", entity_id="w" * (2 * MIB))  # its prediction is 2 MiB

    def refuse(topic, key, value):  # as a predictions topic that takes 1 MiB
        return "Broker: Message size too large" if len(value) > MIB else None

    predicted, letters, halvings, _ = served(core, batch_with(wide), caplog, refuse=refuse)
    assert predicted == sorted(f"e{i}" for i in range(20))
    assert [(d["key"], d["reason"]) for d in letters] == [(b"big", "send-refused")]
    assert halvings == []


def test_a_prediction_names_the_feature_record_it_was_made_from(core):
    batch = batch_with(features_record(rows(1, seed=7)[0], "big"), count=6)
    out = core.process(batch)
    by_key = {record.key: record for record in batch}
    assert [out.source_of(Topic.PREDICTIONS, i) for i in range(len(out.predictions))] == [
        by_key[key] for key, _ in out.predictions
    ]

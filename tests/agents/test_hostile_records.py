"""Hostile feature records through a real inference worker: it keeps serving, every valid event once.

Records near the size limit (one whose dead letter would not fit, one whose prediction the broker
refuses), an empty event_id and a time ClickHouse can't store, among valid events.
"""

import hashlib

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from loopline.codec.varint import write_long
from loopline.kafka.clients import send_all
from loopline.kafka.config import confluent_config
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore
from loopline.models.registry import publish
from tests.helpers import FEATURES, features_record, rows, small_model, version_of
from tests.workers import decoded, wait_for, worker

MODEL = {
    "LOOPLINE_INFERENCE_MODEL_NAME": "m",
    "LOOPLINE_INFERENCE_MAX_WAIT_MS": "50",
    "LOOPLINE_INFERENCE_MAX_BATCH_SIZE": "4",
}
MIB = 1 << 20


def _string(text: str) -> bytes:
    raw = text.encode()
    return write_long(len(raw)) + raw


def near(event_id: str, size: int) -> bytes:
    """A framed features record of at most ``size`` bytes (4 less at worst): one float block far too long."""
    head = FEATURES.header + _string(event_id) + write_long(1_795_000_000_000) + _string("e")
    count = (size - len(head) - 7) // 4  # 5 bytes of block count at most, 1 of end marker, 1 of empty fields
    return head + write_long(count) + bytes(4 * count) + b"\x00" + b"\x00"


def test_records_near_the_limit_are_dead_lettered_and_the_worker_serves_every_valid_event_once(kafka, tmp_path):
    create_topics(kafka)
    admin = AdminClient(confluent_config(kafka))
    smaller = ConfigEntry("max.message.bytes", str(MIB), incremental_operation=AlterConfigOpType.SET)
    for future in admin.incremental_alter_configs(
        [ConfigResource("topic", kafka.topic("predictions"), incremental_configs=[smaller])]
    ).values():
        future.result()  # predictions take 1 MiB here: the broker refuses what the worker thinks fits
    publish(kafka, [version_of(small_model(), 1, ArtifactStore(tmp_path / "artifacts", 1 << 20))])
    huge = near("huge", kafka.max_message_bytes - 200)  # a wrong-length record about 200 bytes under 16 MiB
    assert kafka.max_message_bytes - 210 < len(huge) <= kafka.max_message_bytes - 200
    wide = FEATURES.encode({"event_id": "wide", "event_time": 1_795_000_000_000, "entity_id": "w" * (2 * MIB),
                            "values": rows(1, seed=9)[0].tolist()})  # fmt: skip # valid, its prediction is 2 MiB
    values = rows(42)
    first = [(f"a{i}", features_record(values[i], f"a{i}")) for i in range(20)]
    later = [(f"b{i}", features_record(values[20 + i], f"b{i}")) for i in range(20)]
    empty = FEATURES.encode({"event_id": "", "event_time": 1_795_000_000_000, "entity_id": "e",
                             "values": values[40].tolist()})  # fmt: skip
    ancient = features_record(values[41], "ancient", event_time=-3_000_000_000_000)  # year 1874
    hostile = [("huge", huge), ("wide", wide), ("empty", empty), ("ancient", ancient)]
    producer = Producer(confluent_config(kafka, {"message.max.bytes": kafka.max_message_bytes, "linger.ms": 5}))
    send_all(kafka, kafka.topic("features"), [*first[:10], *hostile, *first[10:]], producer)
    with worker("inference", kafka, tmp_path, **MODEL) as w:
        wait_for(lambda: w.metric("loopline_events_in_total") == 24, what="the first records committed")
        send_all(kafka, kafka.topic("features"), later)  # the same worker serves what comes next
        wait_for(lambda: w.metric("loopline_events_in_total") == 44, what="the later records committed")
        assert w.proc.poll() is None
        for reason in ("send-refused", "wrong-length", "invalid-id", "invalid-time"):
            assert w.metric("loopline_dead_letters_total", reason=reason) == 1, reason
    group = Consumer(confluent_config(kafka, {"group.id": f"{kafka.topic_prefix}inference"}))
    try:  # the worker's life count went with its first commit that got further
        committed = group.committed([TopicPartition(kafka.topic("features"), p) for p in range(2)], timeout=30)
    finally:
        group.close()
    assert sum(tp.offset for tp in committed) == 44 and {tp.metadata for tp in committed} == {""}
    predictions = [p["event_id"] for p in decoded(kafka, "predictions", "prediction")]
    assert sorted(predictions) == sorted(k for k, _ in first + later)  # every valid event once, in committed records
    letters = {d["key"]: d for d in decoded(kafka, "dead-letters", "dead_letter")}
    assert {key: d["reason"] for key, d in letters.items()} == {
        b"huge": "wrong-length", b"wide": "send-refused", b"empty": "invalid-id", b"ancient": "invalid-time"
    }  # fmt: skip
    big = letters[b"huge"]
    assert big["reason"] == "wrong-length" and big["value"] == huge[: 64 * 1024]
    assert f"value: {len(huge)} bytes, sha256 {hashlib.sha256(huge).hexdigest()}" in big["error"]
    assert letters[b"wide"]["reason"] == "send-refused" and "too large" in letters[b"wide"]["error"]

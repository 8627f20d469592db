"""``loopline demo``: bring up the local stack and push a few feature events through Kafka."""

from __future__ import annotations

import time
import uuid

import numpy as np
from confluent_kafka import Message

from streams.codec import Codec, FeatureDecoder
from streams.kafka.broker import Broker, metadata_answers
from streams.kafka.clients import read_topic, send_all
from streams.kafka.topics import create_topics
from streams.settings import BrokerSettings, ClickHouseSettings, KafkaSettings
from streams.store import connect, migrate

__all__ = ["run_demo"]


def ensure_broker(kafka: KafkaSettings, broker: BrokerSettings) -> KafkaSettings:
    """Use the brokers in ``kafka`` if they answer, else start the local broker and point at it."""
    if metadata_answers(kafka.bootstrap_servers):
        print(f"kafka     using the broker at {kafka.bootstrap_servers}")
        return kafka
    servers = Broker(broker).start()
    print(f"kafka     started a local broker on {servers} (data in {broker.data_dir})")
    return kafka.model_copy(update={"bootstrap_servers": servers})


def run_demo(kafka: KafkaSettings, broker: BrokerSettings, clickhouse: ClickHouseSettings, events: int = 5) -> None:
    """Start the broker, create the topics and tables, send ``events`` features and read them back."""
    kafka = ensure_broker(kafka, broker)
    for name, state in create_topics(kafka).items():
        print(f"topic     {name}: {state}")
    client = connect(clickhouse)
    print(f"clickhouse tables ready: {', '.join(migrate(client))}")
    client.close()

    codec = Codec.load("features")
    rng = np.random.default_rng()
    now = int(time.time() * 1000)
    sent = {}
    for i in range(events):
        event_id = str(uuid.uuid4())
        record = {
            "event_id": event_id,
            "event_time": now + i,
            "entity_id": f"entity-{i}",
            "values": rng.normal(size=4).round(3).tolist(),
        }
        sent[event_id] = codec.encode(record)
    topic = kafka.topic("features")
    send_all(kafka, topic, ((key, value) for key, value in sent.items()))
    print(f"sent      {len(sent)} feature events to {topic}")

    def received(messages: list[Message]) -> dict[str, bytes]:
        by_key = {(m.key() or b"").decode(): m.value() or b"" for m in messages}
        return {key: value for key, value in by_key.items() if key in sent}

    messages = read_topic(kafka, topic, until=lambda messages: len(received(messages)) == len(sent))
    batch = FeatureDecoder(codec, width=4).decode(list(received(messages).values()))
    for event_id, entity_id, row in zip(batch.event_ids, batch.entity_ids, batch.matrix, strict=True):
        print(f"read back {event_id} {entity_id} {np.round(row.astype(float), 3).tolist()}")
    print(f"round trip: {len(batch)}/{len(sent)} events read back, {len(batch.errors)} errors")

"""``loopline demo``: the local stack, a bootstrap model and an inference worker on a few events."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import numpy as np
from confluent_kafka import Message

from models import ArtifactStore, TrainConfig, bootstrap_version
from models.datasets import Concept, feature_names, sample
from streams.codec import Codec
from streams.kafka.broker import Broker, metadata_answers
from streams.kafka.clients import read_topic, send_all
from streams.kafka.topics import create_topics
from streams.kafka.versions import load_registry, publish_versions
from streams.settings import (
    BrokerSettings,
    ClickHouseSettings,
    InferenceSettings,
    KafkaSettings,
    RegistrySettings,
)
from streams.store import connect, migrate

__all__ = ["run_demo"]

N_FEATURES = 8


def ensure_broker(kafka: KafkaSettings, broker: BrokerSettings) -> KafkaSettings:
    """Use the brokers in ``kafka`` if they answer, else start the local broker and point at it."""
    if metadata_answers(kafka.bootstrap_servers):
        print(f"kafka      using the broker at {kafka.bootstrap_servers}")
        return kafka
    servers = Broker(broker).start()
    print(f"kafka      started a local broker on {servers} (data in {broker.data_dir})")
    return kafka.model_copy(update={"bootstrap_servers": servers})


def ensure_model(kafka: KafkaSettings, registry_settings: RegistrySettings, model_name: str) -> int:
    """The serving version of ``model_name``, after training and promoting one if none serves."""
    registry = load_registry(kafka)
    serving = registry.serving(model_name)
    if serving is not None:
        print(f"model      {model_name} v{serving.version} serves")
        return serving.version
    x, y = sample(Concept(seed=0, n_features=N_FEATURES), rows=20000, seed=0)
    store = ArtifactStore(registry_settings.artifact_dir, registry_settings.inline_limit_bytes)
    version = bootstrap_version(
        x, y, model_name=model_name, feature_names=feature_names(N_FEATURES), classes=["no", "yes"],
        store=store, config=TrainConfig(epochs=5), version=registry.next_version(model_name),
    )  # fmt: skip
    registry.apply(version)
    publish_versions(kafka, [version, *registry.promote(model_name, version.version, "demo bootstrap")])
    accuracy = version.metrics["holdout_accuracy"]
    print(f"model      trained {model_name} v{version.version} (holdout accuracy {accuracy:.3f}), serving")
    return version.version


def features(count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` feature events of the demo concept, keyed by event_id."""
    codec = Codec.load("features")
    x, _ = sample(Concept(seed=0, n_features=N_FEATURES), rows=count, seed=seed)
    now = int(time.time() * 1000)
    out = []
    for i, values in enumerate(x.tolist()):
        event_id = str(uuid.uuid4())
        out.append((event_id, codec.encode({"event_id": event_id, "event_time": now + i,
                                            "entity_id": f"entity-{i % 50}", "values": values})))  # fmt: skip
    return out


def run_demo(
    kafka: KafkaSettings,
    broker: BrokerSettings,
    clickhouse: ClickHouseSettings,
    registry: RegistrySettings,
    inference: InferenceSettings,
    events: int = 1000,
) -> None:
    """Start the stack, serve a model, score ``events`` feature events (and two malformed ones)."""
    kafka = ensure_broker(kafka, broker)
    created = create_topics(kafka)
    print(
        f"topics     {len(created)} topics under '{kafka.topic_prefix}' ({sum(s == 'created' for s in created.values())} new)"
    )
    client = connect(clickhouse)
    print(f"clickhouse {len(migrate(client))} tables ready")
    client.close()
    ensure_model(kafka, registry, inference.model_name)

    env = os.environ | {
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "LOOPLINE_INFERENCE_MODEL_NAME": inference.model_name,
        "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(registry.artifact_dir),
        "LOOPLINE_METRICS_PORT": "0",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "inference", "--loglevel", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"worker     inference worker started (pid {worker.pid})")
    try:
        sent = dict(features(events, seed=int(time.time())))
        bad = {f"malformed-{uuid.uuid4().hex[:8]}": b"not avro", f"short-{uuid.uuid4().hex[:8]}": b"\xc3\x01short"}
        send_all(kafka, kafka.topic("features"), [*sent.items(), *bad.items()])
        print(f"sent       {len(sent)} feature events and {len(bad)} malformed ones to {kafka.topic('features')}")
        start = time.monotonic()
        predictions = _mine(read_topic(kafka, kafka.topic("predictions"), timeout_s=120,
                                       until=lambda m: len(_mine(m, sent)) >= len(sent)), sent)  # fmt: skip
        elapsed = time.monotonic() - start
        letters = _dead_letters_of(read_topic(kafka, kafka.topic("dead-letters"), timeout_s=30,
                                              until=lambda m: len(_dead_letters_of(m, bad)) >= len(bad)), bad)  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(60)
    _report(predictions, letters, len(sent), elapsed)


def _mine(messages: list[Message], keys: dict[str, bytes]) -> dict[str, bytes]:
    found = {(m.key() or b"").decode(): m.value() or b"" for m in messages}
    return {key: value for key, value in found.items() if key in keys}


def _dead_letters_of(messages: list[Message], keys: dict[str, bytes]) -> list[dict[str, Any]]:
    """The dead letters whose source record had one of ``keys``."""
    codec = Codec.load("dead_letter")
    letters = [codec.decode(m.value() or b"") for m in messages]
    return [letter for letter in letters if (letter["key"] or b"").decode() in keys]


def _report(predictions: dict[str, bytes], letters: list[dict[str, Any]], sent: int, elapsed: float) -> None:
    decoded = [Codec.load("prediction").decode(value) for value in predictions.values()]
    versions = Counter(f"v{p['model_version']}" for p in decoded)
    classes = Counter(p["predicted_class"] for p in decoded)
    print(f"predicted  {len(decoded)}/{sent} events in {elapsed:.1f}s by {dict(versions)}: {dict(classes)}")
    for p in decoded[:3]:
        scores = np.round(np.array(p["scores"], dtype=float), 3).tolist()
        print(f"           {p['event_id']} → {p['predicted_class']} {scores} (batch took {p['inference_ms']:.2f} ms)")
    for letter in letters:
        print(f"dead       {letter['key'].decode()}: {letter['reason']} ({letter['error'][:70]})")

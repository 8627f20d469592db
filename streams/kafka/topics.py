"""The topic catalogue: every loopline topic, its partitions and cleanup policy, applied idempotently."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from loopline.errors import ConfigError
from loopline.kafka.config import confluent_config, reach
from loopline.settings import KafkaSettings

__all__ = ["TOPICS", "TopicSpec", "create_topics", "require_topics", "topic_specs"]


@dataclass(frozen=True)
class TopicSpec:
    """One topic as loopline creates it."""

    name: str
    partitions: int
    config: dict[str, str]


# Catalogue name → (whether it follows the data partition count, compacted).
# Data topics share one partition count so that they are co-partitioned by event_id; a changelog
# has a partition per input partition of the agent whose state it holds.
TOPICS: dict[str, tuple[bool, bool]] = {
    "features": (True, False),
    "predictions": (True, False),
    "shadow-predictions": (True, False),
    "labels": (True, False),
    "outcomes": (True, False),
    "drift-events": (False, False),
    "retrain-requests": (False, False),
    "model-versions": (False, True),
    "dead-letters": (False, False),
    "join-changelog": (True, True),
    "drift-changelog": (True, True),
    "guard-changelog": (True, True),
}


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The catalogue rendered for ``settings`` (prefix, partitions, retention)."""
    specs = []
    for name, (data_topic, compacted) in TOPICS.items():
        config = {"max.message.bytes": str(settings.max_message_bytes)}
        if compacted:
            config |= {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        else:
            config |= {"cleanup.policy": "delete", "retention.ms": str(settings.retention_ms)}
        partitions = settings.partitions if data_topic else 1
        specs.append(TopicSpec(settings.topic(name), partitions, config))
    return specs


def require_topics(settings: KafkaSettings) -> None:
    """Check that the brokers answer and that every catalogue topic exists.

    A command or worker that starts before ``loopline topics create`` would otherwise meet the
    broker's UNKNOWN_TOPIC_OR_PART somewhere deep in a client.

    Raises:
        Unreachable: no broker answers (:func:`loopline.kafka.config.reach`).
        ConfigError: topics are missing; the message names them and the command that creates them.
    """
    existing = reach(settings).topics
    specs = topic_specs(settings)
    missing = [spec.name for spec in specs if spec.name not in existing]
    if not missing:
        return
    which = (
        f"none of loopline's topics (prefix {settings.topic_prefix!r}) exist"
        if len(missing) == len(specs)
        else f"topics {', '.join(missing)} do not exist"
    )
    raise ConfigError(f"{which} on {settings.bootstrap_servers}: run `loopline topics create` first")


def create_topics(settings: KafkaSettings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every catalogue topic that does not exist yet.

    Returns topic name → ``"created"`` or ``"exists"``. Existing topics are left as they are.

    Raises:
        KafkaException: a topic could not be created for another reason than existing already.
    """
    admin = AdminClient(confluent_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    specs = topic_specs(settings)
    result = {spec.name: "exists" for spec in specs if spec.name in existing}
    new = [
        NewTopic(spec.name, spec.partitions, settings.replication_factor, config=spec.config)
        for spec in specs
        if spec.name not in existing
    ]
    if not new:
        return result
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result()
            result[name] = "created"
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
            result[name] = "exists"
    _wait_for_leaders(admin, [topic.topic for topic in new], timeout_s)
    return result


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of ``names`` has a leader, so the topics are usable right away."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(
            name in topics
            and topics[name].error is None
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            return
        time.sleep(0.1)
    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"topics without a leader after {timeout_s:.0f}s"))

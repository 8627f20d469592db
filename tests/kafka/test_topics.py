from confluent_kafka.admin import AdminClient, ConfigResource

from loopline.kafka.config import confluent_config
from loopline.kafka.topics import TOPICS, create_topics, topic_specs


def test_topics_get_their_partitions_and_cleanup_policy(kafka):
    assert set(create_topics(kafka).values()) == {"created"}
    admin = AdminClient(confluent_config(kafka))
    metadata = admin.list_topics(timeout=10).topics
    for spec in topic_specs(kafka):
        assert len(metadata[spec.name].partitions) == spec.partitions
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
        config = admin.describe_configs([resource])[resource].result()
        expected = "compact" if spec.name.endswith(("model-versions", "-changelog")) else "delete"
        assert config["cleanup.policy"].value == expected
        assert config["max.message.bytes"].value == str(kafka.max_message_bytes)
    assert len(metadata[kafka.topic("features")].partitions) == kafka.partitions == 2


def test_creating_topics_twice_is_fine(kafka):
    first = create_topics(kafka)
    second = create_topics(kafka)
    assert set(first) == set(second) == {kafka.topic(name) for name in TOPICS}
    assert set(second.values()) == {"exists"}


def test_the_data_topics_are_co_partitioned(kafka):
    counts = {spec.name: spec.partitions for spec in topic_specs(kafka)}
    data = [kafka.topic(name) for name in ("features", "predictions", "shadow-predictions", "labels", "outcomes",
                                           "join-changelog", "drift-changelog", "guard-changelog")]  # fmt: skip
    assert {counts[name] for name in data} == {kafka.partitions}

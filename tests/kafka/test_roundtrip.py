from loopline.codec import Codec
from loopline.kafka.clients import read_topic, send_all
from loopline.kafka.topics import create_topics
from tests.samples import SAMPLES

TOPIC_OF = {
    "features": "features",
    "prediction": "predictions",
    "label": "labels",
    "outcome": "outcomes",
    "drift_event": "drift-events",
    "retrain_request": "retrain-requests",
    "model_version": "model-versions",
    "dead_letter": "dead-letters",
}


def test_every_schema_round_trips_through_the_broker(kafka):
    assert set(TOPIC_OF) == set(SAMPLES)
    create_topics(kafka)
    for name, record in SAMPLES.items():
        codec = Codec.load(name)
        topic = kafka.topic(TOPIC_OF[name])
        send_all(kafka, topic, [(record["event_id"], codec.encode(record))])
        messages = read_topic(kafka, topic, until=lambda m: len(m) >= 1, timeout_s=20)
        assert len(messages) == 1, name
        assert messages[0].key() == record["event_id"].encode()
        assert codec.decode(messages[0].value()) == record

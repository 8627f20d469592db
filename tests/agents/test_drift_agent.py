"""Inference, join and drift workers together against the session broker: drift in, one retrain request out."""

import pytest

from loopline.codec import Codec
from loopline.kafka.clients import read_to_end
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore
from loopline.models.datasets import Concept, sample
from loopline.models.registry import publish
from tests.helpers import N_FEATURES, send_labeled_events, trained_model, version_of
from tests.workers import decoded, wait_for, wait_records, worker

T0 = 1_795_000_000_000
OUTCOME = Codec.load("outcome")


def test_drift_in_the_input_stream_ends_in_exactly_one_retrain_request(kafka, tmp_path):
    create_topics(kafka)
    # The served model learned concept 1; after 1,500 events the labels follow concept 2.
    publish(kafka, [version_of(trained_model(concept_seed=1), 1, ArtifactStore(tmp_path / "a", 1 << 20))])
    before = sample(Concept(seed=1, n_features=N_FEATURES), 1500, seed=10)
    x_after, _ = sample(Concept(seed=1, n_features=N_FEATURES), 1500, seed=11)
    after = (x_after, Concept(seed=2, n_features=N_FEATURES).label(x_after))
    # Follow-ups (requests on more data since the drift) are the trainer tests' business.
    env = {
        "LOOPLINE_INFERENCE_MODEL_NAME": "m",
        "LOOPLINE_DRIFT_MIN_SAMPLES": "300",
        "LOOPLINE_DRIFT_FOLLOW_UP_SAMPLES": "0",
    }
    with (
        worker("inference", kafka, tmp_path, **env),
        worker("join", kafka, tmp_path, **env),
        worker("drift", kafka, tmp_path, **env) as drift,
    ):
        send_labeled_events(kafka, *before, start=0)
        send_labeled_events(kafka, *after, start=1500)
        wait_records(kafka, "retrain-requests", "retrain_request", 1, timeout_s=120)
        # 3,000 predictions and 3,000 outcomes: the drift worker has seen the whole stream.
        wait_for(lambda: drift.metric("loopline_events_in_total") == 6000, timeout_s=120, what="every outcome")
        accuracy = drift.metric("loopline_online_accuracy", model="m", version="1", shadow="false")
    requests = decoded(kafka, "retrain-requests", "retrain_request")
    assert len(requests) == 1
    request = requests[0]
    evidence = request["evidence"]
    assert request["model_name"] == "m" and request["requested_by"] == "drift"
    assert evidence["kind"] == "concept" and evidence["detector"] == "ADWIN"
    assert [r["topic"] for r in evidence["offsets"]] == [kafka.topic("outcomes")]
    assert evidence["statistics"]["error_recent"] > evidence["statistics"]["error_reference"]
    # No request while the concept held: the detection comes after the first post-drift outcome.
    outcomes = read_to_end(kafka, kafka.topic("outcomes"))
    onset = min(m.offset() for m in outcomes if OUTCOME.decode(m.value())["event_time"] >= T0 + 1500 * 10)
    assert evidence["offsets"][0]["end"] > onset
    events = decoded(kafka, "drift-events", "drift_event")
    assert request["event_id"] in {e["event_id"] for e in events}
    # The gauge is the accuracy of the model's last 1,000 outcomes (in the topic's order, the drift
    # worker's), most of them after the drift: well below the 95% before it.
    last = [OUTCOME.decode(m.value()) for m in outcomes][-1000:]
    assert accuracy == pytest.approx(sum(o["correct"] for o in last) / 1000, abs=1e-9) and accuracy < 0.75

"""The trainer worker against the session broker: the gate, refusals, retries while the error stays high, a gradual
drift to recovery, and staging (the rollback guard: test_durable_state.py)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from confluent_kafka import Consumer, TopicPartition

from loopline.agents.trainer import Requests
from loopline.cli import main
from loopline.codec import Codec
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.config import confluent_config
from loopline.kafka.source import to_source
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore, Status, TrainConfig, load_backend, make_version
from loopline.models.datasets import Concept, feature_names, sample
from loopline.models.families import fit
from loopline.models.registry import load_registry, publish
from loopline.records import Topic
from loopline.settings import InferenceSettings, RegistrySettings, TrainerSettings
from loopline.trainer.reproduce import reproduce
from tests.helpers import N_FEATURES, trained_model, version_of
from tests.models.test_follower import following
from tests.samples import SAMPLES
from tests.workers import decoded, wait_for, worker

CLASSES = ["no", "yes"]
OUTCOME = Codec.load("outcome")
CHECKS = InferenceSettings(device="cpu")
CONCEPT_1, CONCEPT_2 = Concept(seed=1, n_features=N_FEATURES), Concept(seed=2, n_features=N_FEATURES)


@pytest.fixture
def setup(kafka, tmp_path, monkeypatch):
    create_topics(kafka)
    store = ArtifactStore(tmp_path / "artifacts", 1 << 20)
    env = {"LOOPLINE_INFERENCE_MODEL_NAME": "m", "LOOPLINE_REGISTRY_ARTIFACT_DIR": str(tmp_path / "artifacts")}
    for name, value in {"LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                        "LOOPLINE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return kafka, store, tmp_path, env


def outcome_records(x, labels, first=0, predicted=None):
    """Outcome records of version 1 of model m for rows ``x`` and class indices ``labels`` (event ids from
    ``first``); with ``predicted``, what the version said and whether it was right."""
    records = []
    for i, (values, label) in enumerate(zip(x.tolist(), labels.tolist(), strict=True)):
        fields = {"event_id": f"e{first + i}", "model_name": "m", "model_version": 1, "values": values,
                  "label": CLASSES[label]}  # fmt: skip
        if predicted is not None:
            fields |= {"predicted_class": CLASSES[predicted[i]], "correct": bool(predicted[i] == label)}
        records.append(("m", OUTCOME.encode(SAMPLES["outcome"] | fields)))
    return records


def test_requests_are_gated_coalesced_or_refused_with_a_reason(setup, capsys):
    kafka, store, tmp, env = setup
    publish(kafka, [version_of(trained_model(concept_seed=1), 1, store),
                             version_of(trained_model(concept_seed=1), 1, store, name="few")])  # fmt: skip
    send_all(kafka, kafka.topic("outcomes"), outcome_records(*sample(CONCEPT_1, 1200, seed=3)))
    for model in ("m", "m", "m", "nope", "few"):
        assert main(["retrain", model]) == 0
    with worker("trainer", kafka, tmp, **env, LOOPLINE_TRAINER_MIN_IMPROVEMENT="0.05", LOOPLINE_TRAINER_DEVICE="cpu"):
        wait_for(lambda: len(decoded(kafka, "dead-letters", "dead_letter")) >= 2, what="the refusals")
        wait_for(lambda: len(load_registry(kafka).versions("m")) == 2, what="the candidate")
    letters = {
        d["key"].decode(): (d["agent"], d["reason"], d["error"]) for d in decoded(kafka, "dead-letters", "dead_letter")
    }
    assert letters["nope"][:2] == ("trainer", "unknown-model") and "not a registered model" in letters["nope"][2]
    assert letters["few"][:2] == ("trainer", "too-few-outcomes") and "0 labeled outcomes" in letters["few"][2]
    registry = load_registry(kafka)
    candidate = registry.get("m", 2)  # three requests, one training
    assert candidate.status == Status.REJECTED and "gate failed" in candidate.reason
    assert registry.serving("m").version == 1


def test_a_request_written_during_a_rejected_training_gets_a_training_of_its_own(setup):
    kafka, store, tmp, env = setup
    # Many epochs make each training last seconds, so that the second request surely comes while the
    # first one trains (on the window it read before the request).
    slow = version_of(trained_model(concept_seed=1), 1, store)
    slow = replace(
        slow,
        lineage=slow.lineage | {"hyperparameters": {"hidden": "32", "epochs": "300"}},
        metrics={"holdout_accuracy": 0.9},
    )  # about what it scores on concept 1
    publish(kafka, [slow])

    def outcomes(concept, rows, seed, first):
        x, _ = sample(CONCEPT_1, rows, seed=seed)
        return outcome_records(x, concept.label(x), first)

    send_all(kafka, kafka.topic("outcomes"), outcomes(CONCEPT_1, 1000, 3, 0))
    with worker("trainer", kafka, tmp, **env, LOOPLINE_TRAINER_DEVICE="cpu") as trainer:
        assert main(["retrain", "m", "--reason", "first"]) == 0
        wait_for(lambda: "training m on" in trainer.log.read_text(), what="the first training")
        # The world changes while it trains; the second request asks for the outcomes since.
        send_all(kafka, kafka.topic("outcomes"), outcomes(CONCEPT_2, 1000, 4, 1000))
        assert main(["retrain", "m", "--since", "1000", "--reason", "second"]) == 0
        wait_for(lambda: len(load_registry(kafka).versions("m")) == 3, timeout_s=120, what="a second training")
    registry = load_registry(kafka)
    first, second = registry.get("m", 2), registry.get("m", 3)
    assert first.status == Status.REJECTED and first.reason.endswith("; cli: first")
    assert "no new version is needed" in first.reason  # the world it read had not changed
    assert second.status == Status.SERVING and "(on the outcomes since offset 1000)" in second.reason
    assert [r["start"] for r in second.lineage["data"]] == [1000]
    assert second.metrics["holdout_accuracy"] > 0.8 > second.metrics["serving_holdout_accuracy"]


def test_while_the_error_stays_high_the_loop_keeps_asking_and_training(setup):
    kafka, store, tmp, env = setup
    model = trained_model(concept_seed=1)
    publish(kafka, [version_of(model, 1, store)])
    rng = np.random.default_rng(8)
    x, y = sample(CONCEPT_1, 2400, seed=8)
    truth = np.where(np.arange(2400) < 800, y, rng.integers(0, 2, 2400))  # from outcome 800 on: coin flips
    served = model(torch.from_numpy(x)).argmax(1).numpy()
    records = outcome_records(x, truth, predicted=served.tolist())
    # Follow-ups 200 outcomes after the detection, then 600, then every 400 while the error stays high.
    drift_env = env | {"LOOPLINE_DRIFT_FOLLOW_UP_SAMPLES": "200", "LOOPLINE_DRIFT_FOLLOW_UP_MAX_SAMPLES": "400",
                       "LOOPLINE_DRIFT_MAX_BATCH_SIZE": "100"}  # fmt: skip

    def rejected():
        return [v for v in load_registry(kafka).versions("m") if v.status == Status.REJECTED]

    with (
        worker("drift", kafka, tmp, **drift_env),
        worker(
            "trainer",
            kafka,
            tmp,
            **env,
            LOOPLINE_TRAINER_MIN_EVENTS="150",
            LOOPLINE_TRAINER_DEVICE="cpu",
            LOOPLINE_TRAINER_GATE_STANDARD_ERRORS="3",
            LOOPLINE_TRAINER_FAMILIES="mlp",  # about retrying, not choosing: one family is enough
        ),
    ):
        send_all(kafka, kafka.topic("outcomes"), records[:1600])
        wait_for(lambda: rejected(), timeout_s=120, what="the first attempt")
        for start in (1600, 2000):  # 400 more coin flips: one more follow-up, one more attempt
            attempts = len(rejected())
            send_all(kafka, kafka.topic("outcomes"), records[start : start + 400])
            wait_for(lambda n=attempts: len(rejected()) > n, timeout_s=120, what=f"an attempt after outcome {start}")
    first, *follow_ups = decoded(kafka, "retrain-requests", "retrain_request")
    assert first["evidence"]["kind"] == "concept" and len(follow_ups) >= 3
    assert all(r["since"] == first["since"] and "follow-up" in r["reason"] for r in follow_ups)
    # Nothing learns coin flips: each attempt is rejected (a lucky one would need 3 standard errors),
    # and no rejection stops the next one.
    assert all("gate failed" in v.reason for v in rejected())


def settled(kafka, group, topic):
    """Whether the worker group ``group`` has committed past every record of ``topic`` written so far."""
    last = {message.partition(): message.offset() for message in read_to_end(kafka, kafka.topic(topic))}
    consumer = Consumer(confluent_config(kafka, {"group.id": kafka.topic_prefix + group}))
    try:
        done = consumer.committed([TopicPartition(kafka.topic(topic), p) for p in last], timeout=10)
        return all(tp.offset > last[tp.partition] for tp in done)
    finally:
        consumer.close()


def test_a_gradual_drift_ends_with_a_version_that_recovers(setup):
    kafka, store, tmp, env = setup
    model = trained_model(concept_seed=1)
    publish(kafka, [version_of(model, 1, store)])

    def steps(x):  # the new world: thresholds, where trees learn more from few rows than the MLP
        return (((x[:, 0] > 0.3) & (x[:, 2] < -0.5)) | (x[:, 4] > 1.0)).astype(np.int64)

    # 800 outcomes of concept 1, then the new rule's share rises from 0 to 1 over 1,200, then 1,200 of it.
    x, old = sample(CONCEPT_1, 3200, seed=21)
    share = np.clip((np.arange(3200) - 800) / 1200, 0, 1)
    truth = np.where(np.random.default_rng(21).random(3200) < share, steps(x), old)
    records = outcome_records(x, truth, predicted=model(torch.from_numpy(x)).argmax(1).tolist())
    drift_env = env | {"LOOPLINE_DRIFT_MIN_SAMPLES": "300", "LOOPLINE_DRIFT_FOLLOW_UP_SAMPLES": "300",
                       "LOOPLINE_DRIFT_FOLLOW_UP_MAX_SAMPLES": "600"}  # fmt: skip
    with worker("drift", kafka, tmp, **drift_env), worker("trainer", kafka, tmp, **env, LOOPLINE_TRAINER_DEVICE="cpu"):
        for start in range(0, 3200, 200):  # a stream: the drift worker reads each 200 before the next come
            send_all(kafka, kafka.topic("outcomes"), records[start : start + 200])
            wait_for(lambda: settled(kafka, "drift", "outcomes"), what=f"the drift worker at outcome {start + 200}")
        wait_for(lambda: settled(kafka, "trainer", "retrain-requests"), timeout_s=120, what="every request answered")
    requests = decoded(kafka, "retrain-requests", "retrain_request")
    assert requests[0]["requested_by"] == "drift" and requests[0]["evidence"]["kind"] == "concept"
    assert len(requests) >= 3 and all(
        r["evidence"] is None and r["since"] == requests[0]["since"] for r in requests[1:]
    )
    registry = load_registry(kafka)
    final, history = registry.serving("m"), [f"v{v.version}: {v.reason}" for v in registry.versions("m")]
    assert "gate passed" in final.reason and registry.get("m", 1).status == Status.RETIRED
    assert final.metrics["holdout_accuracy"] > final.metrics["serving_holdout_accuracy"]
    data = final.lineage["data"]
    assert [r["topic"] for r in data] == [kafka.topic("outcomes")]
    assert data[0]["start"] > requests[0]["evidence"]["offsets"][0]["end"]  # trained on the new world only
    fresh = np.random.default_rng(22).normal(size=(2000, N_FEATURES)).astype(np.float32)
    backend = load_backend(store.fetch(final), final.artifact_format, n_features=N_FEATURES, n_classes=2)
    recovered = float((backend.predict(fresh).argmax(1) == steps(fresh)).mean())
    before = float((model(torch.from_numpy(fresh)).argmax(1).numpy() == steps(fresh)).mean())
    assert before < 0.75 and final.version > 1 and recovered > 0.95, (before, recovered, history)
    assert reproduce(kafka, final, store).identical  # whichever family and rows were chosen


def test_staged_versions_are_promoted_or_rejected_on_the_live_outcomes_of_the_same_events(setup):
    kafka, store, tmp, env = setup
    versions = []
    for name in ("better", "worse"):
        versions += [version_of(trained_model(concept_seed=1), 1, store, name=name),
                     replace(version_of(trained_model(concept_seed=2), 2, store, Status.SHADOW, name=name),
                             metrics={"staging_outcomes": 200.0})]  # fmt: skip
    publish(kafka, versions)
    rng = np.random.default_rng(3)
    records = []
    for i in range(300):  # each event served by version 1 and run by the staged version 2
        right = {"better": (rng.random() < 0.6, rng.random() < 0.9), "worse": (rng.random() < 0.9, rng.random() < 0.6)}
        for name, (serving, staged) in right.items():
            for version, correct in ((1, serving), (2, staged)):
                fields = {"event_id": f"{name}-{i}", "model_name": name, "model_version": version,
                          "shadow": version == 2, "correct": bool(correct)}  # fmt: skip
                records.append((name, OUTCOME.encode(SAMPLES["outcome"] | fields)))
    send_all(kafka, kafka.topic("outcomes"), records)
    with worker("trainer", kafka, tmp, **env, LOOPLINE_TRAINER_DEVICE="cpu"):
        wait_for(lambda: {load_registry(kafka).get(n, 2).status for n in ("better", "worse")}
                 == {Status.SERVING, Status.REJECTED}, what="both live verdicts")  # fmt: skip
    registry = load_registry(kafka)
    better, worse = registry.get("better", 2), registry.get("worse", 2)
    assert better.status == Status.SERVING and better.reason.startswith("staging passed: live, on the same events")
    assert "on 200 outcomes" in better.reason and registry.get("better", 1).status == Status.RETIRED
    assert worse.status == Status.REJECTED and worse.reason.startswith("staging failed")
    assert registry.serving("worse").version == 1


def canary_outcomes(kafka, accuracies, first, count, seed):
    """``count`` outcomes of each arm of each model, right at ``accuracies[model] = (serving, canary)``."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(first, first + count):
        for name, rates in accuracies.items():
            for version, rate in zip((1, 2), rates, strict=True):
                fields = {"event_id": f"{name}-{version}-{i}", "model_name": name, "model_version": version,
                          "shadow": False, "correct": bool(rng.random() < rate)}  # fmt: skip
                records.append((name, OUTCOME.encode(SAMPLES["outcome"] | fields)))
    send_all(kafka, kafka.topic("outcomes"), records)


def test_a_canary_is_ramped_to_serving_on_good_live_outcomes_and_a_bad_one_is_aborted(setup):
    kafka, store, tmp, env = setup
    for name in ("good", "bad"):
        registry = load_registry(kafka)
        registry.apply(version_of(trained_model(concept_seed=1), 1, store, name=name))
        registry.apply(challenger := version_of(trained_model(concept_seed=2), 2, store, Status.CANDIDATE, name=name))
        publish(kafka, [registry.get(name, 1), challenger, *registry.start_canary(name, 2, 0.05, "by hand")])
    steps = {"LOOPLINE_TRAINER_CANARY_STEPS": "0.05,0.5", "LOOPLINE_TRAINER_CANARY_OUTCOMES": "100"}
    with worker("trainer", kafka, tmp, **env, **steps, LOOPLINE_TRAINER_DEVICE="cpu"):
        canary_outcomes(kafka, {"good": (0.8, 0.85), "bad": (0.9, 0.5)}, 0, 150, seed=4)
        wait_for(lambda: (load_registry(kafka).get("good", 2).traffic, load_registry(kafka).get("bad", 2).status)
                 == (0.5, Status.REJECTED), what="the first step's verdicts")  # fmt: skip
        canary_outcomes(kafka, {"good": (0.8, 0.85)}, 150, 150, seed=5)
        wait_for(lambda: load_registry(kafka).get("good", 2).status == Status.SERVING, what="the ramp's end")
    registry = load_registry(kafka)
    good, bad = registry.get("good", 2), registry.get("bad", 2)
    assert good.reason.startswith("canary passed: canary at 50%: online accuracy") and "on 100 outcomes" in good.reason
    assert registry.get("good", 1).status == Status.RETIRED and good.traffic == 0.0
    assert bad.reason.startswith("canary aborted: canary at 5%: online accuracy") and "below the" in bad.reason
    assert registry.serving("bad").version == 1


def requested(kafka, *args):
    """Write a retrain request for model m; every request record so far, as a worker reads them."""
    assert main(["retrain", "m", *args]) == 0
    return [to_source(m) for m in read_to_end(kafka, kafka.topic("retrain-requests"))]


def ten_classes(kafka, store, rows):
    """Version 1 of model m, a small MLP of 10 classes on 8 features, serving; ``rows`` of its outcomes sent."""
    concept, classes = Concept(seed=1, n_features=8, n_classes=10), [f"class{c}" for c in range(10)]
    x, y = sample(concept, rows, seed=0)
    model = fit(TrainConfig(hidden=(8,), epochs=1, min_steps=0), x, y, 10)
    publish(kafka, [make_version(model, model_name="m", version=1, feature_names=feature_names(8),
                                          classes=classes, store=store, status=Status.SERVING)])  # fmt: skip
    records = []
    for i, (values, label) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        fields = {"event_id": f"e{i}", "model_name": "m", "model_version": 1, "values": values, "label": classes[label]}
        records.append(("m", OUTCOME.encode(SAMPLES["outcome"] | fields)))
    send_all(kafka, kafka.topic("outcomes"), records)


def test_a_trees_candidate_of_megabytes_is_published_inline_or_by_uri_where_the_topic_takes_less(setup):
    """Ten classes of boosted trees make an artifact of about 1.5 MB: more than librdkafka's default
    record size, within the topics'. Where the topics take less, the artifact goes to a file."""
    kafka, store, tmp, _ = setup
    ten_classes(kafka, store, 800)
    settings = TrainerSettings(device="cpu", families="trees", min_improvement=-1.0, gate_standard_errors=0)
    registry = RegistrySettings(artifact_dir=tmp / "artifacts")
    for number, max_bytes in ((2, 1 << 20), (3, kafka.max_message_bytes)):
        records = requested(kafka)
        with following(kafka) as follower:
            sized = kafka.model_copy(update={"max_message_bytes": max_bytes})
            out = Requests(sized, settings, registry, CHECKS, follower).handle(records)
        assert out.to(Topic.DEAD_LETTERS) == []
        candidate = load_registry(kafka).get("m", number)
        assert candidate.status == Status.SERVING and candidate.lineage["hyperparameters"]["family"] == "trees"
        artifact = ArtifactStore(tmp / "artifacts", 0).fetch(candidate)
        assert len(artifact) > 1_000_000
        assert (candidate.artifact is None) == (max_bytes == 1 << 20)
    assert load_registry(kafka).get("m", 2).artifact_uri.startswith((tmp / "artifacts").as_uri())


def test_a_trainer_stopped_after_publishing_and_before_committing_answers_the_request_again_with_its_version(setup):
    """A worker that stops after publishing a version and before committing the request's offset reads the
    request again at its next start: it answers it with the version published, and trains no second one."""
    kafka, store, tmp, _ = setup
    publish(kafka, [version_of(trained_model(concept_seed=1), 1, store)])
    send_all(kafka, kafka.topic("outcomes"), outcome_records(*sample(CONCEPT_1, 1200, seed=3)))
    records = requested(kafka)
    settings = TrainerSettings(device="cpu", families="mlp")
    registry = RegistrySettings(artifact_dir=tmp / "artifacts")
    with following(kafka) as follower:
        Requests(kafka, settings, registry, CHECKS, follower).handle(records)  # published; the loop never commits
    first = load_registry(kafka).get("m", 2)
    ends = {r["partition"]: r["end"] for r in first.lineage["requests"]}
    assert ends[records[0].partition] == records[0].offset + 1  # the request was read before the training
    with following(kafka) as follower:
        restarted = Requests(kafka, settings, registry, CHECKS, follower)
        assert restarted.handle(records).to(Topic.DEAD_LETTERS) == []
        assert [v.version for v in load_registry(kafka).versions("m")] == [1, 2]
        assert load_registry(kafka).get("m", 2) == first
        restarted.handle(requested(kafka, "--reason", "later"))  # a request written after it gets its own training
    assert [v.version for v in load_registry(kafka).versions("m")] == [1, 2, 3]
    assert load_registry(kafka).get("m", 3).reason.endswith("cli: later")

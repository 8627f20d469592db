"""A training whose registry moved while it trained: done again on the registry as it is, then rejected."""

from dataclasses import replace

from loopline.agents import trainer as agent
from loopline.models import ModelVersion, Registry, Status
from loopline.records import Produced, SourceRecord
from loopline.settings import InferenceSettings, KafkaSettings, RegistrySettings, TrainerSettings
from loopline.trainer.core import Decision
from loopline.trainer.window import Window
from tests.samples import SAMPLES

BASE = replace(ModelVersion.from_record(SAMPLES["model_version"]), model_name="m", version=1)


def registry(*versions):
    folded = Registry()
    for version in versions:
        folded.apply(version)
    return folded


BEFORE = registry(BASE, replace(BASE, version=2, status=Status.SHADOW, event_id="v2"))
AFTER = registry(BASE.with_status(Status.RETIRED, "replaced"), replace(BASE, version=2, event_id="v2s"))
TYPED = registry(BASE.with_status(Status.RETIRED, "replaced"),
                 replace(BASE, version=2, feature_types=["float"] * 3, event_id="v2t"))  # fmt: skip


class Follower:
    """A registry follower whose catch-ups return ``reads`` in turn."""

    def __init__(self, reads):
        self.reads = [registry.snapshot() for registry in reads]

    def catch_up(self):
        return self.reads.pop(0)


def run(monkeypatch, tmp_path, reads):
    """One request answered while the registry reads as ``reads`` after each training; what was trained
    on and published."""
    requests = agent.Requests(KafkaSettings(bootstrap_servers="127.0.0.1:1"), TrainerSettings(),
                              RegistrySettings(artifact_dir=tmp_path), InferenceSettings(device="cpu"),
                              Follower(reads))  # fmt: skip
    trained, published = [], []

    def retrain(on, model, window, why, requests_read):
        trained.append(on.serving("m").version)
        candidate = replace(BASE, version=3, status=Status.CANDIDATE, event_id=f"c{len(trained)}")
        return Decision(candidate, False, "gate passed", [candidate])

    monkeypatch.setattr(requests, "_read_window", lambda model, since: (Window(None, [], []), BEFORE))
    monkeypatch.setattr(requests.trainer, "retrain", retrain)
    monkeypatch.setattr(agent, "publish", lambda kafka, records, producer: published.extend(records))
    record = SourceRecord(b"m", b"", "retrain-requests", 0, 0, 0)
    requests._retrain(Produced(), "m", [(record, {"requested_by": "drift", "reason": "r", "since": None,
                                                        "evidence": None})])  # fmt: skip
    return trained, published


def test_a_training_is_done_again_on_the_registry_that_moved_and_a_second_move_rejects_it(monkeypatch, tmp_path):
    trained, published = run(monkeypatch, tmp_path, [AFTER, AFTER])
    assert trained == [1, 2] and [r.status for r in published] == [Status.CANDIDATE]  # the second one, as decided
    trained, published = run(monkeypatch, tmp_path, [AFTER, registry(*AFTER.versions("m"), replace(
        BASE, version=4, status=Status.SHADOW, event_id="v4"))])  # fmt: skip
    assert trained == [1, 2] and [r.status for r in published] == [Status.REJECTED]
    assert published[0].reason.startswith("the registry moved during the training (shadow version None → 4)")


def test_a_serving_version_of_another_input_is_not_trained_on_the_old_window(monkeypatch, tmp_path):
    trained, published = run(monkeypatch, tmp_path, [TYPED])
    assert trained == [1] and published[0].status == Status.REJECTED
    assert "serving version 1 → 2" in published[0].reason

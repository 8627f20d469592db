"""The rollback guard's state saved batch by batch and restored: a comparison under way survives a restart."""

import numpy as np
import pytest

from loopline.models import ArtifactFormat, ModelVersion, Status
from loopline.trainer.guard import RollbackGuard
from tests.drift.test_state import apply

MODEL = "team/m"  # a "/" in the name: state keys must not split on it
VERSIONS = {
    1: ModelVersion(MODEL, 1, Status.RETIRED, ArtifactFormat.ONNX, "00", ["x0"], ["no", "yes"]),
    2: ModelVersion(MODEL, 2, Status.SERVING, ArtifactFormat.ONNX, "00", ["x0"], ["no", "yes"],
                    lineage={"parent_version": 1}),
}  # fmt: skip


def guard():
    return RollbackGuard(100, 0.05, lambda model, version: VERSIONS[version])


def outcomes():
    """300 outcomes of version 1 (90% right), then 300 of version 2 (60% right), in batches of 25."""
    rng = np.random.default_rng(0)
    correct = np.concatenate([rng.random(300) < 0.9, rng.random(300) < 0.6]).tolist()
    versions = [1] * 300 + [2] * 300
    batch = [
        {"model_name": MODEL, "model_version": v, "shadow": False, "correct": c}
        for v, c in zip(versions, correct, strict=True)
    ]
    return [batch[start : start + 25] for start in range(0, 600, 25)]


def run(watch, batches, store):
    """Verdicts per batch, and the store after each (the outcomes read from partition 3)."""
    verdicts, stores = [], []
    for batch in batches:
        verdicts.append([v for v in (watch.add(outcome, 3) for outcome in batch) if v is not None])
        changes = watch.changes()
        assert set(changes) <= {3}
        apply(store, changes.get(3, {}))
        stores.append(dict(store))
    return verdicts, stores


# Cuts before the predecessor's window is full, after the promotion, just before and after the verdict.
@pytest.mark.parametrize("cut", [2, 12, 14, 15, 16, 20])
def test_a_guard_restored_anywhere_gives_the_same_verdict_once(cut):
    batches = outcomes()
    verdicts, stores = run(guard(), batches, {})
    assert [i for i, found in enumerate(verdicts) if found] == [15]  # the 100th outcome of version 2
    restored = guard()
    restored.restore(3, sorted(stores[cut - 1].items()))
    assert ((MODEL, 2) in restored.partitions[3].judged) == (cut > 15)
    rest, after = run(restored, batches[cut:], dict(stores[cut - 1]))
    assert rest == verdicts[cut:] and after[-1] == stores[-1]


def test_a_revoked_partition_is_forgotten_and_starts_afresh():
    batches = outcomes()
    watch = guard()
    run(watch, batches[:14], {})
    watch.revoke([3])
    assert watch.partitions == {} and watch.changes() == {}
    verdicts, _ = run(watch, batches[14:], {})
    assert verdicts == [[]] * 10  # no predecessor window any more: nothing to compare with

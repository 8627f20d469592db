from dataclasses import replace

import pytest

from models import ArtifactError, ArtifactFormat, ArtifactStore, ModelVersion, Registry, RegistryError, Status
from streams.codec import Codec


def version(n, status=Status.CANDIDATE, name="fraud"):
    return ModelVersion(
        model_name=name, version=n, status=status, artifact_format=ArtifactFormat.ONNX, sha256="0" * 64,
        feature_names=["a", "b"], classes=["no", "yes"], artifact=b"x",
    )  # fmt: skip


def fold(*records):
    registry = Registry()
    for record in records:
        registry.apply(record)
    return registry


def test_the_latest_record_of_a_version_wins():
    registry = fold(version(1), version(1).with_status(Status.SERVING, "go"))
    assert registry.serving("fraud").version == 1
    assert [v.status for v in registry.versions("fraud")] == [Status.SERVING]


def test_promote_retires_the_previous_serving_version():
    registry = fold(version(1, Status.SERVING), version(2))
    records = registry.promote("fraud", 2, "better")
    assert [(r.version, r.status) for r in records] == [(1, Status.RETIRED), (2, Status.SERVING)]
    for record in records:
        registry.apply(record)
    assert registry.serving("fraud").version == 2
    assert registry.next_version("fraud") == 3


def test_rollback_returns_to_the_previous_version():
    registry = fold(version(1, Status.RETIRED), version(2, Status.RETIRED), version(3, Status.REJECTED),
                    version(4, Status.SERVING))  # fmt: skip
    records = registry.rollback("fraud", "accuracy fell")
    assert [(r.version, r.status) for r in records] == [(4, Status.RETIRED), (2, Status.SERVING)]
    assert "accuracy fell" in records[1].reason
    assert [r.version for r in registry.rollback("fraud", "by hand", to=1)] == [4, 1]


def test_rollback_without_anything_to_return_to_is_an_error():
    with pytest.raises(RegistryError, match="no serving version"):
        fold(version(1)).rollback("fraud", "x")
    with pytest.raises(RegistryError, match="no retired version"):
        fold(version(1, Status.SERVING)).rollback("fraud", "x")
    with pytest.raises(RegistryError, match="no version 9"):
        fold(version(1)).promote("fraud", 9, "x")


def test_when_two_say_serving_the_latest_published_wins():
    registry = fold(version(2, Status.SERVING), version(1, Status.SERVING))
    assert registry.serving("fraud").version == 1
    assert registry.shadow("fraud") is None


def test_a_version_round_trips_through_its_avro_record():
    codec = Codec.load("model_version")
    original = replace(version(3, Status.SHADOW), metrics={"accuracy": 0.5}, reason="staged")
    assert ModelVersion.from_record(codec.decode(codec.encode(original.to_record()))) == original


def test_small_artifacts_travel_inline_and_large_ones_by_uri(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=10)
    small = store.attach(version(1), b"tiny")
    assert small.artifact == b"tiny" and small.artifact_uri is None
    large = store.attach(version(2), b"x" * 100)
    assert large.artifact is None and large.artifact_uri.startswith("file://")
    assert ArtifactStore.fetch(small) == b"tiny"
    assert ArtifactStore.fetch(large) == b"x" * 100


def test_a_sha256_mismatch_is_refused(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=10)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        ArtifactStore.fetch(replace(store.attach(version(1), b"tiny"), artifact=b"tinY"))
    large = store.attach(version(2), b"x" * 100)
    (tmp_path / "fraud" / f"2-{large.sha256}.onnx").write_bytes(b"y" * 100)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        ArtifactStore.fetch(large)

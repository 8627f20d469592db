from dataclasses import replace

import pytest

from loopline.codec import Codec
from loopline.models import ArtifactError, ArtifactFormat, ArtifactStore, ModelVersion, Registry, RegistryError, Status


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
    first = version(1)  # one record's created_time: two would differ when a millisecond passes between them
    registry = fold(first, first.with_status(Status.SERVING, "go"))
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


def test_rollback_returns_to_a_retired_version_and_fallbacks_are_the_retired_ones_newest_first():
    registry = fold(version(1, Status.RETIRED), version(2, Status.RETIRED), version(3, Status.REJECTED),
                    version(4, Status.SERVING), version(5, Status.RETIRED))  # fmt: skip
    assert [v.version for v in registry.fallbacks("fraud")] == [5, 2, 1]
    assert [v.version for v in registry.fallbacks("fraud", below=4)] == [2, 1]
    records = registry.rollback("fraud", "accuracy fell", to=2)
    assert [(r.version, r.status) for r in records] == [(4, Status.RETIRED), (2, Status.SERVING)]
    assert "accuracy fell" in records[1].reason


def test_rollback_without_anything_to_return_to_is_an_error():
    with pytest.raises(RegistryError, match="no serving version"):
        fold(version(1)).rollback("fraud", "x", to=1)
    with pytest.raises(RegistryError, match="no version 9"):
        fold(version(1, Status.SERVING)).rollback("fraud", "x", to=9)
    with pytest.raises(RegistryError, match="no version 9"):
        fold(version(1)).promote("fraud", 9, "x")


def test_when_two_say_serving_the_latest_published_wins():
    registry = fold(version(2, Status.SERVING), version(1, Status.SERVING))
    assert registry.serving("fraud").version == 1
    assert registry.shadow("fraud") is None


def test_what_may_serve_is_every_version_that_says_serving_latest_first_then_the_retired_newest_first():
    registry = fold(version(1, Status.RETIRED), version(3, Status.SERVING), version(2, Status.RETIRED),
                    version(5, Status.SERVING), version(4, Status.SERVING), version(6, Status.REJECTED))  # fmt: skip
    assert [v.version for v in registry.serving_candidates("fraud")] == [4, 5, 3, 2, 1]
    assert fold(version(1, Status.RETIRED), version(2)).serving_candidates("fraud") == []  # none says serving


def test_a_promotion_or_a_rollback_retires_every_other_version_that_says_serving():
    registry = fold(version(1, Status.SERVING), version(2, Status.SERVING), version(3), version(4, Status.RETIRED))
    records = registry.promote("fraud", 3, "better")
    assert [(r.version, r.status) for r in records] == [(1, Status.RETIRED), (2, Status.RETIRED), (3, Status.SERVING)]
    records = registry.rollback("fraud", "worse", to=4)
    assert [(r.version, r.status) for r in records] == [(1, Status.RETIRED), (2, Status.RETIRED), (4, Status.SERVING)]
    assert records[-1].reason == "rollback from version 2: worse"
    for record in registry.promote("fraud", 2, "again"):
        registry.apply(record)
    assert [v.version for v in registry.serving_candidates("fraud")] == [2, 4, 1]


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
    assert store.fetch(small) == b"tiny"
    assert store.fetch(large) == b"x" * 100


def test_a_sha256_mismatch_is_refused(tmp_path):
    store = ArtifactStore(tmp_path, inline_limit=10)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        store.fetch(replace(store.attach(version(1), b"tiny"), artifact=b"tinY"))
    large = store.attach(version(2), b"x" * 100)
    store.path_of(large.artifact_uri).write_bytes(b"y" * 100)
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        store.fetch(large)


def test_a_published_version_is_immutable_but_its_status_changes():
    """Item 7: republishing version 1 with another artifact is refused; the first artifact stays version 1."""
    registry = fold(version(1, Status.SERVING))
    swapped = replace(version(1, Status.SERVING), artifact=b"another model", sha256="1" * 64)
    conflict = registry.apply(swapped)
    assert conflict is not None and "version 1 of 'fraud' is already published" in conflict
    assert "artifact" in conflict and "sha256" in conflict
    assert registry.serving("fraud").artifact == b"x" and registry.serving("fraud").sha256 == "0" * 64
    assert registry.apply(replace(version(1), feature_names=["b", "a"])) is not None
    assert registry.apply(registry.get("fraud", 1).with_status(Status.RETIRED, "replaced")) is None
    assert registry.get("fraud", 1).status == Status.RETIRED and registry.get("fraud", 1).artifact == b"x"


def test_a_status_change_of_a_version_with_a_nan_metric_is_no_conflict():
    first = replace(version(1), metrics={"holdout_accuracy": float("nan")})
    registry = fold(first)
    assert registry.apply(first.with_status(Status.SERVING, "go")) is None


def test_the_feature_contract_is_set_by_the_lowest_version_that_served():
    """Item 6: a version forced to serving with other features does not change what the model takes."""
    other = replace(version(2, Status.SERVING), feature_names=["c", "d", "e"])
    registry = fold(version(1, Status.CANDIDATE), replace(version(3), feature_names=["z"]))
    assert registry.contract("fraud") is None  # nothing served yet: the first version to serve sets it
    registry = fold(version(1, Status.RETIRED), other, version(3))
    assert registry.contract("fraud") == ["a", "b"]
    registry.apply(other.with_status(Status.RETIRED, "rolled back"))
    assert registry.contract("fraud") == ["a", "b"]

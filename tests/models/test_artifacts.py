"""Item 8: artifacts are regular files inside the artifact directory, within a size cap, read with a bound."""

import os
from dataclasses import replace
from pathlib import Path

import pytest

from loopline.models import ArtifactError, ArtifactFormat, ArtifactStore, ModelVersion, Status
from loopline.models.artifacts import read_bounded, sha256_hex


def draft(name="m", number=1):
    return ModelVersion(
        model_name=name, version=number, status=Status.CANDIDATE, artifact_format=ArtifactFormat.ONNX, sha256="",
        feature_names=["a"], classes=["no", "yes"],
    )  # fmt: skip


def pointing_at(path: Path, data: bytes = b"") -> ModelVersion:
    return replace(draft(), artifact_uri=path.absolute().as_uri(), sha256=sha256_hex(data))


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts", inline_limit=0, max_bytes=1000)


def test_an_artifact_in_the_directory_is_read_back(store):
    version = store.attach(draft(), b"model bytes")
    assert store.path_of(version.artifact_uri).parent == (store.directory / "m").resolve()
    assert store.fetch(version) == b"model bytes"


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "http://example.com/model.onnx", "file://host/etc/passwd",
                                 "file:relative/model.onnx"])  # fmt: skip
def test_uris_outside_the_directory_are_refused(store, uri):
    with pytest.raises(ArtifactError, match=r"outside the artifact directory|unsupported|no absolute path"):
        store.fetch(replace(draft(), artifact_uri=uri, sha256=sha256_hex(Path("/etc/passwd").read_bytes())))


def test_another_model_elsewhere_on_disk_and_a_symlink_out_of_the_directory_are_refused(store, tmp_path):
    elsewhere = tmp_path / "elsewhere.onnx"
    elsewhere.write_bytes(b"another model")
    with pytest.raises(ArtifactError, match="outside the artifact directory"):
        store.fetch(pointing_at(elsewhere, b"another model"))
    (store.directory / "m").mkdir(parents=True)
    link = store.directory / "m" / "1-link.onnx"
    link.symlink_to(elsewhere)
    with pytest.raises(ArtifactError, match="outside the artifact directory"):
        store.fetch(pointing_at(link, b"another model"))
    escape = store.directory / "m" / ".." / ".." / "elsewhere.onnx"
    with pytest.raises(ArtifactError, match="outside the artifact directory"):
        store.fetch(pointing_at(escape, b"another model"))


def test_a_fifo_in_the_directory_is_refused_without_being_opened(store):
    (store.directory / "m").mkdir(parents=True)
    fifo = store.directory / "m" / "1-fifo.onnx"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(ArtifactError, match="not a regular file"):
        store.fetch(pointing_at(fifo))


def test_a_device_is_never_read():
    with pytest.raises(ArtifactError, match="not a regular file"):
        read_bounded(Path("/dev/zero"), 1000)


def test_the_size_cap_holds_for_attached_inline_and_stored_artifacts(store, tmp_path):
    with pytest.raises(ArtifactError, match="more than the limit of 1000"):
        store.attach(draft(), b"x" * 1001)
    assert not store.directory.exists()  # nothing was written
    inline = ArtifactStore(tmp_path, inline_limit=1 << 20, max_bytes=1000)
    big = replace(draft(), artifact=b"x" * 1001, sha256=sha256_hex(b"x" * 1001))
    with pytest.raises(ArtifactError, match="more than the limit"):
        inline.fetch(big)
    version = store.attach(draft(), b"x" * 1000)
    store.path_of(version.artifact_uri).write_bytes(b"x" * 5000)  # grown on disk after it was registered
    with pytest.raises(ArtifactError, match="more than the artifact limit of 1000"):
        store.fetch(version)


def test_a_model_name_can_not_write_outside_the_directory(store):
    with pytest.raises(ArtifactError, match="outside"):
        store.attach(draft(name="../../escape"), b"model bytes")


def test_discard_removes_the_file_of_a_refused_version_only(store):
    kept, refused = store.attach(draft(number=1), b"same bytes"), store.attach(draft(number=1), b"same bytes")
    assert kept.artifact_uri != refused.artifact_uri  # the same bytes twice are two files
    store.discard(refused)
    assert store.fetch(kept) == b"same bytes"
    assert [p.name for p in (store.directory / "m").iterdir()] == [store.path_of(kept.artifact_uri).name]

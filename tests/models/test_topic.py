"""The model-versions topic: publishing refuses a changed version, reading it skips one."""

import pytest

from loopline.codec import Codec
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.topics import create_topics
from loopline.models import ArtifactStore, RegistryError, Status
from loopline.models.registry import load_registry, publish
from tests.helpers import small_model, version_of


def test_publishing_another_artifact_under_a_published_version_is_refused(kafka, tmp_path):
    """Item 7, the writing side: nothing is sent; the reading side keeps the first artifact."""
    create_topics(kafka)
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    first = version_of(small_model(0), 1, store)
    publish(kafka, [first])
    with pytest.raises(RegistryError, match="version 1 of 'm' is already published"):
        publish(kafka, [version_of(small_model(1), 1, store)])
    publish(kafka, [first.with_status(Status.RETIRED, "status changes stay allowed")])
    assert len(read_to_end(kafka, kafka.topic("model-versions"))) == 2
    codec = Codec.load("model_version")
    send_all(
        kafka, kafka.topic("model-versions"), [("m:1", codec.encode(version_of(small_model(1), 1, store).to_record()))]
    )
    registry = load_registry(kafka)
    assert registry.get("m", 1).sha256 == first.sha256 and registry.get("m", 1).status == Status.RETIRED

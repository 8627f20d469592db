import pytest

from loopline.codec import Codec
from loopline.kafka.clients import read_to_end, send_all
from loopline.kafka.topics import create_topics
from loopline.kafka.versions import VersionLookup, load_registry, publish_versions
from loopline.models import ArtifactStore, RegistryError, Status
from tests.helpers import small_model, version_of


def test_the_lookup_reads_the_topic_again_for_a_version_it_has_not_seen(kafka, tmp_path):
    create_topics(kafka)
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    publish_versions(kafka, [version_of(small_model(), 1, store)])
    lookup = VersionLookup(kafka, refresh_s=60)
    assert lookup("m", 1).version == 1
    with pytest.raises(KeyError):
        lookup("m", 3)
    publish_versions(kafka, [version_of(small_model(), 2, store)])
    assert lookup("m", 2).classes == ["no", "yes"]  # a new version is read at once...
    with pytest.raises(KeyError):
        lookup("m", 3)  # ...a version already missed waits for refresh_s


def test_publishing_another_artifact_under_a_published_version_is_refused(kafka, tmp_path):
    """Item 7, the writing side: nothing is sent; the reading side keeps the first artifact."""
    create_topics(kafka)
    store = ArtifactStore(tmp_path, inline_limit=1 << 20)
    first = version_of(small_model(0), 1, store)
    publish_versions(kafka, [first])
    with pytest.raises(RegistryError, match="version 1 of 'm' is already published"):
        publish_versions(kafka, [version_of(small_model(1), 1, store)])
    publish_versions(kafka, [first.with_status(Status.RETIRED, "status changes stay allowed")])
    assert len(read_to_end(kafka, kafka.topic("model-versions"))) == 2
    codec = Codec.load("model_version")
    send_all(
        kafka, kafka.topic("model-versions"), [("m:1", codec.encode(version_of(small_model(1), 1, store).to_record()))]
    )
    registry = load_registry(kafka)
    assert registry.get("m", 1).sha256 == first.sha256 and registry.get("m", 1).status == Status.RETIRED

import pytest

from models import ArtifactStore
from streams.kafka.topics import create_topics
from streams.kafka.versions import VersionLookup, publish_versions
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

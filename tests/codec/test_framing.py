import copy

import pytest

from loopline.codec import Codec, CodecError, load_schema, schema_names
from loopline.codec.framing import MAGIC
from tests.samples import SAMPLES


def test_every_schema_has_a_sample():
    assert set(schema_names()) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_schema_round_trips(name):
    codec = Codec.load(name)
    data = codec.encode(SAMPLES[name])
    assert data[:2] == MAGIC
    assert codec.decode(data) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_record_has_an_event_id_and_a_millisecond_event_time(name):
    fields = {f["name"]: f["type"] for f in load_schema(name)["fields"]}
    assert fields["event_id"] == "string"
    assert fields["event_time"] == {"type": "long", "logicalType": "timestamp-millis"}


def _with_new_field(schema):
    newer = copy.deepcopy(schema)
    newer["fields"].append({"name": "source", "type": "string", "default": "unknown"})
    return newer


def test_added_field_with_default_is_readable_by_old_and_new_readers():
    old_schema = load_schema("label")
    new_schema = _with_new_field(old_schema)
    old = Codec(old_schema, writers=[new_schema])
    new = Codec(new_schema, writers=[old_schema])
    record = SAMPLES["label"]

    from_new = new.encode(record | {"source": "crm"})
    assert old.decode(from_new) == record
    assert new.decode(old.encode(record)) == record | {"source": "unknown"}


def test_a_reader_rejects_a_writer_schema_it_was_not_told_about():
    newer = Codec(_with_new_field(load_schema("label")))
    data = newer.encode(SAMPLES["label"] | {"source": "crm"})
    with pytest.raises(CodecError) as err:
        Codec.load("label").decode(data)
    assert err.value.reason == "unknown-schema"
    assert newer.header[2:].hex() in str(err.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x01", b'{"event_id": 1}', MAGIC + b"\x00" * 3],
    ids=["empty", "no-marker", "json", "short-header"],
)
def test_bytes_that_are_not_a_framed_record_are_corrupt(data):
    with pytest.raises(CodecError) as err:
        Codec.load("label").decode(data)
    assert err.value.reason == "corrupt"


def test_truncated_and_padded_bodies_are_corrupt():
    codec = Codec.load("prediction")
    data = codec.encode(SAMPLES["prediction"])
    for broken in (data[:-3], data + b"\x00\x00"):
        with pytest.raises(CodecError) as err:
            codec.decode(broken)
        assert err.value.reason == "corrupt"


def test_a_record_that_does_not_match_the_schema_is_refused_on_encode():
    with pytest.raises(CodecError) as err:
        Codec.load("label").encode({"event_id": "e-1"})
    assert err.value.reason == "invalid-record"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_decoder_refuses_an_empty_event_id_and_times_clickhouse_cant_store(name):
    codec = Codec.load(name)
    times = [f["name"] for f in load_schema(name)["fields"] if isinstance(f["type"], dict)
             and f["type"].get("logicalType") == "timestamp-millis"]  # fmt: skip
    cases = [({"event_id": ""}, "invalid-id")] + [({t: 10_413_792_000_000}, "invalid-time") for t in times]
    for change, reason in cases:
        with pytest.raises(CodecError) as err:
            codec.decode(codec.encode(SAMPLES[name] | change))
        assert err.value.reason == reason, change


def test_records_written_with_an_earlier_version_of_a_schema_decode_with_the_defaults():
    import json

    from loopline.paths import SCHEMAS_DIR

    earlier = Codec(json.loads((SCHEMAS_DIR / "previous" / "retrain_request.1.avsc").read_text()))
    old = {k: v for k, v in SAMPLES["retrain_request"].items() if k != "since"}
    assert Codec.load("retrain_request").decode(earlier.encode(old)) == old | {"since": None}


def test_version_records_written_before_regression_sets_decode_without_one():
    import json

    from loopline.paths import SCHEMAS_DIR

    earlier = Codec(json.loads((SCHEMAS_DIR / "previous" / "model_version.1.avsc").read_text()))
    sample = {k: v for k, v in SAMPLES["model_version"].items() if k not in ("traffic", "feature_types")}
    old = sample | {"lineage": {k: v for k, v in sample["lineage"].items() if k != "regression_set"}}
    decoded = Codec.load("model_version").decode(earlier.encode(old))
    assert decoded == old | {"lineage": old["lineage"] | {"regression_set": None}, "traffic": 0.0, "feature_types": []}


def test_version_records_written_before_canaries_decode_with_no_traffic():
    import json

    from loopline.paths import SCHEMAS_DIR

    earlier = Codec(json.loads((SCHEMAS_DIR / "previous" / "model_version.2.avsc").read_text()))
    old = {k: v for k, v in SAMPLES["model_version"].items() if k not in ("traffic", "feature_types")}
    assert Codec.load("model_version").decode(earlier.encode(old)) == old | {"traffic": 0.0, "feature_types": []}


def test_records_written_before_typed_inputs_decode_as_dense_ones():
    import json

    from loopline.paths import SCHEMAS_DIR

    for name, added in (("model_version.3", {"feature_types": []}), ("features.1", {"fields": {}})):
        earlier = Codec(json.loads((SCHEMAS_DIR / "previous" / f"{name}.avsc").read_text()))
        current = name.split(".")[0]
        old = {k: v for k, v in SAMPLES[current].items() if k not in added}
        assert Codec.load(current).decode(earlier.encode(old)) == old | added


def test_version_records_carry_the_requests_their_training_answered_and_earlier_ones_decode_without():
    import json

    from loopline.paths import SCHEMAS_DIR

    codec = Codec.load("model_version")
    sample = SAMPLES["model_version"]
    trained = sample | {"lineage": sample["lineage"] | {"requests": [{"partition": 0, "end": 42}]}}
    assert codec.decode(codec.encode(trained)) == trained
    earlier = Codec(json.loads((SCHEMAS_DIR / "previous" / "model_version.4.avsc").read_text()))
    old = sample | {"lineage": {k: v for k, v in sample["lineage"].items() if k != "requests"}}
    assert codec.decode(earlier.encode(old)) == sample

import math

import numpy as np
import pytest

from loopline.codec import Codec, FeatureDecoder
from loopline.codec.typed import Vectoriser, category_code, parse_inputs

INPUTS = parse_inputs(["amount", "count", "country", "channel"], ["float", "int?", "category", "category?"])


def record(i, fields, values=()):
    return Codec.load("features").encode({"event_id": f"e{i}", "event_time": 1_795_000_000_000 + i,
                                          "entity_id": "u", "values": list(values), "fields": fields})  # fmt: skip


def test_named_fields_become_the_row_the_version_takes_with_missing_optional_values_as_nan():
    row = Vectoriser(INPUTS).row({"amount": 12, "count": None, "country": "NL", "extra": "ignored"})
    assert row[0] == 12.0 and math.isnan(row[1]) and row[2] == category_code("NL") and math.isnan(row[3])
    assert category_code("NL") == 0x4334FF  # `printf NL | sha256sum`: 4334ff...
    assert np.float32(category_code("NL")) == category_code("NL")  # exact in float32


@pytest.mark.parametrize(
    ("fields", "reason", "named"),
    [
        ({"count": 1, "country": "NL"}, "missing-field", "amount"),
        ({"amount": None, "country": "NL"}, "missing-field", "amount"),
        ({"amount": "12", "country": "NL"}, "wrong-type", "amount"),
        ({"amount": 1.0, "count": 1.5, "country": "NL"}, "wrong-type", "count"),
        ({"amount": 1.0, "count": 2**25, "country": "NL"}, "wrong-type", "count"),
        ({"amount": 1.0, "country": 7}, "wrong-type", "country"),
        ({"amount": math.inf, "country": "NL"}, "wrong-type", "amount"),
    ],
)
def test_a_missing_required_field_or_a_wrong_type_is_an_error_naming_the_field(fields, reason, named):
    with pytest.raises(Exception) as caught:
        Vectoriser(INPUTS).row(fields)
    assert caught.value.reason == reason and repr(named) in str(caught.value)


def test_a_typed_decoder_serves_fields_and_dead_letters_what_does_not_fit():
    decoder = FeatureDecoder(Codec.load("features"), 4, INPUTS)
    batch = decoder.decode([
        record(0, {"amount": 1.5, "count": 3, "country": "NL", "channel": "web"}),
        record(1, {"amount": 2.5, "country": "DE"}),
        record(2, {}, values=[1.0, 2.0, 3.0, 4.0]),  # a dense event: the typed version can't take it
        record(3, {"amount": "a lot", "country": "DE"}),
    ])  # fmt: skip
    assert batch.index.tolist() == [0, 1] and [(i, e.reason) for i, e in batch.errors] == [
        (2, "missing-field"),
        (3, "wrong-type"),
    ]
    np.testing.assert_array_equal(batch.matrix[0], np.float32([1.5, 3, category_code("NL"), category_code("web")]))
    assert np.isnan(batch.matrix[1, [1, 3]]).all()


def test_declared_types_must_be_known_and_one_per_feature():
    with pytest.raises(ValueError, match="not one of float, int, category"):
        parse_inputs(["a"], ["text"])
    with pytest.raises(ValueError, match="2 feature types for 1 features"):
        parse_inputs(["a"], ["float", "int"])

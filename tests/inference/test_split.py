import chdb
import numpy as np

from loopline.inference.split import bucket, canary_rows

ENTITIES = [f"user-{i}" for i in range(2000)]


def test_the_bucket_is_the_documented_sha256_prefix_that_clickhouse_computes_too():
    sql = ("SELECT entity, reinterpretAsUInt64(reverse(substring(SHA256(concat('fraud', '/', entity)), 1, 8))) "
           "/ pow(2, 64) FROM (SELECT arrayJoin(['user-0', 'user-1', 'card 99', '', 'ü']) AS entity)")  # fmt: skip
    rows = [line.split(",") for line in str(chdb.query(sql, "CSV")).splitlines() if line]
    assert len(rows) == 5
    for entity, value in rows:
        assert bucket("fraud", entity.strip('"')) == float(value)


def test_a_share_holds_about_that_share_of_the_entities_and_grows_without_moving_any_out():
    events = [f"ev-{i}" for i in range(len(ENTITIES))]
    small, large = canary_rows("m", ENTITIES, events, 0.2), canary_rows("m", ENTITIES, events, 0.5)
    assert 0.17 < small.mean() < 0.23 and 0.46 < large.mean() < 0.54  # binomial sd 0.009 and 0.011
    assert not (small & ~large).any()  # a ramp keeps the canary's entities
    assert (canary_rows("other", ENTITIES, events, 0.2) != small).any()  # each model splits on its own


def test_an_event_without_an_entity_is_placed_by_its_event_id():
    events = [f"ev-{i}" for i in range(400)]
    share = canary_rows("m", [""] * 400, events, 0.3)
    assert 0.2 < share.mean() < 0.4
    np.testing.assert_array_equal(share, [bucket("m", event) < 0.3 for event in events])

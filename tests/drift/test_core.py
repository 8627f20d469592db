import itertools

import numpy as np
import pytest

from loopline.codec import Codec
from tests.drift.streams import Records, drift_core, run, stream

DRIFT = Codec.load("drift_event")
REQUEST = Codec.load("retrain_request")
ONSET = 3000


def requests(outputs):
    return [REQUEST.decode(value) for out in outputs for _, value in out.retrain_requests]


def events(outputs):
    return [DRIFT.decode(value) for out in outputs for _, value in out.drift_events]


@pytest.mark.parametrize("seed", range(5))
def test_abrupt_concept_drift_is_requested_once_within_a_bound(seed):
    share = (np.arange(8000) >= ONSET).astype(float)
    records = Records().outcomes(*stream(8000, seed, after_share=share))
    found = requests(run(drift_core(follow_up_samples=0), records))
    assert len(found) == 1
    evidence = found[0]["evidence"]
    delay = evidence["offsets"][0]["end"] - ONSET
    assert 0 <= delay <= 300, delay
    assert evidence["kind"] == "concept" and evidence["detector"] == "ADWIN"
    assert evidence["statistics"]["error_recent"] > evidence["statistics"]["error_reference"]
    assert evidence["offsets"][0]["start"] == 0 and evidence["samples"] == evidence["offsets"][0]["end"] + 1
    assert found[0]["requested_by"] == "drift" and "concept drift" in found[0]["reason"]
    assert found[0]["since"] == [{"topic": "o", "partition": 0, "offset": evidence["offsets"][0]["end"] + 1}]


def test_gradual_concept_drift_is_detected():
    share = np.clip((np.arange(12000) - ONSET) / 5000, 0, 1)
    found = requests(run(drift_core(follow_up_samples=0), Records().outcomes(*stream(12000, 7, after_share=share))))
    ends = [r["evidence"]["offsets"][0]["end"] for r in found]
    assert ends and all(r["evidence"]["kind"] == "concept" for r in found)
    assert ONSET < ends[0] < ONSET + 5000
    # While the error keeps rising, a new request may come, but never within the cooldown.
    assert all(b - a >= 2000 for a, b in itertools.pairwise(ends))


def test_covariate_drift_is_attributed_to_the_feature_that_moved():
    records = Records()
    before = records.outcomes(*stream(ONSET, 3))
    after = records.outcomes(*stream(5000, 4, shift={5: 1.0}))
    outputs = run(drift_core(follow_up_samples=0), before + after)
    found = requests(outputs)
    assert len(found) == 1
    evidence = found[0]["evidence"]
    assert evidence["kind"] == "covariate" and evidence["feature"] == "x5"
    assert evidence["statistics"]["shift_in_std"] > 0.5
    assert all(e["evidence"]["feature"] == "x5" for e in events(outputs))


def test_stationary_outcomes_raise_no_request():
    records = Records().outcomes(*stream(120_000, 11))
    outputs = run(drift_core(), records, batch=2000)
    assert requests(outputs) == [] and events(outputs) == []


def test_prediction_drift_is_an_event_not_a_request():
    rng = np.random.default_rng(5)
    records = Records()
    scores = np.concatenate([rng.beta(2, 5, 3000), rng.beta(5, 2, 3000)])
    outputs = run(drift_core(), records.predictions(scores))
    found = events(outputs)
    assert found and requests(outputs) == []
    assert {e["evidence"]["kind"] for e in found} == {"prediction"}
    assert found[0]["evidence"]["feature"] in ("no", "yes")
    assert 3000 <= found[0]["evidence"]["offsets"][0]["end"] <= 4000


def test_cooldown_lets_a_second_drift_through():
    share = (np.arange(14000) >= ONSET).astype(float)
    x, predicted, truth = stream(14000, 2, after_share=share)
    truth[9000:] = predicted[9000:]  # the world changes again: the model is right once more...
    truth[11000:] = 1 - predicted[11000:]  # ...then always wrong
    core = drift_core(cooldown_samples=1000, follow_up_samples=0)
    found = requests(run(core, Records().outcomes(x, predicted, truth)))
    assert [r["evidence"]["kind"] for r in found] == ["concept", "concept"]


def test_while_the_error_stays_high_the_agent_asks_again_on_more_data_since_the_drift():
    share = (np.arange(40_000) >= ONSET).astype(float)
    found = requests(run(drift_core(), Records().outcomes(*stream(40_000, 3, after_share=share)), batch=500))
    first, *follow_ups = found
    detected = first["evidence"]["offsets"][0]["end"]
    assert first["evidence"]["kind"] == "concept"
    # The first check 1,000 outcomes after the detection, in the batch that reaches it (its last record
    # names the request); each next one twice as far after the last, up to 16,000.
    positions = [int(r["event_id"].rsplit("/", 1)[1]) - detected for r in follow_ups]
    assert 1000 <= positions[0] < 1500, positions
    assert [b - a for a, b in itertools.pairwise(positions)] == [2000, 4000, 8000, 16000], positions
    for r in follow_ups:
        assert r["evidence"] is None and r["since"] == first["since"] and r["requested_by"] == "drift"
        assert "follow-up" in r["reason"] and "before the drift" in r["reason"]


def test_a_model_back_at_its_old_error_is_not_asked_for_again_once_the_spacing_is_at_its_most():
    share = ((np.arange(40_000) >= ONSET) & (np.arange(40_000) < ONSET + 600)).astype(float)
    found = requests(run(drift_core(), Records().outcomes(*stream(40_000, 3, after_share=share))))
    first, *follow_ups = found
    assert first["evidence"]["kind"] == "concept"
    assert len(follow_ups) == 4  # 1,000, 3,000, 7,000 and 15,000 outcomes after; not 31,000


def test_a_record_stamped_beyond_what_the_schema_stores_still_makes_readable_drift_records():
    from loopline.codec.checks import MAX_TIME_MS

    share = (np.arange(6000) >= ONSET).astype(float)
    records = [r._replace(timestamp_ms=2**62) for r in Records().outcomes(*stream(6000, 0, after_share=share))]
    outputs = run(drift_core(), records)
    found, drifts = requests(outputs), events(outputs)  # decoding checks every time field
    assert found and drifts and {r["event_time"] for r in found + drifts} == {MAX_TIME_MS}

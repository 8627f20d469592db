from loopline.codec import Codec
from loopline.drift.evidence import Span
from loopline.drift.monitor import Detection
from loopline.drift.partition import PartitionState
from loopline.drift.recovery import Recovery
from loopline.drift.requests import RetrainRequests
from loopline.quality import SlidingMean
from loopline.records import Produced, SourceRecord, Topic
from loopline.settings import DriftSettings

REQUEST = Codec.load("retrain_request")
CONCEPT = Detection(0, 700, None, {"error_reference": 0.1, "error_recent": 0.4})
COVARIATE = Detection(0, 700, "x2", {"mean_reference": 0.0, "std_reference": 1.0, "mean_recent": 0.8,
                                     "shift_in_std": 0.8})  # fmt: skip


def at(offset):
    return SourceRecord(b"m", b"", "o", 3, offset, 1_795_000_000_000 + offset)


def sent(out):
    return [REQUEST.decode(value) for _, value in out.to(Topic.RETRAIN_REQUESTS)]


def drift(requests, part, detection, position, reference=None, kind="concept"):
    out = Produced()
    evidence = Span().evidence(kind, "ADWIN", detection, [at(position)])
    requests.drift(out, part, ("m", 1), detection, evidence, f"m/1/{kind}/{position}", at(position), position,
                   reference)  # fmt: skip
    return sent(out)


def test_a_drift_is_requested_once_per_cooldown_and_opens_a_recovery():
    requests, part = RetrainRequests(DriftSettings(cooldown_samples=1000, follow_up_samples=500)), PartitionState()
    (first,) = drift(requests, part, CONCEPT, 2000)
    assert first["event_id"] == "m/1/concept/2000" and first["requested_by"] == "drift"
    assert first["reason"] == "concept drift on version 1: error rate 0.100 → 0.400"
    assert first["since"] == [{"topic": "o", "partition": 3, "offset": 2001}]
    assert first["evidence"]["kind"] == "concept" and first["evidence"]["offsets"][0]["end"] == 2000
    assert part.requested_at == {"m": 2000}
    assert part.recovery["m"] == Recovery(2000, first["since"], 0.1, 0, 2500)
    assert drift(requests, part, CONCEPT, 2999) == [] and part.requested_at == {"m": 2000}  # within the cooldown
    (second,) = drift(requests, part, COVARIATE, 3000, reference=0.05, kind="covariate")
    assert second["reason"] == "covariate drift on x2: mean 0.000 → 0.800 (+0.80 std)"
    # A covariate drift recovers to the error before the batch; the lowest level of the two is kept.
    assert part.recovery["m"] == Recovery(3000, second["since"], 0.05, 0, 3500)


def test_a_covariate_drift_without_a_reference_keeps_the_earlier_recoverys_level():
    requests, part = RetrainRequests(DriftSettings(cooldown_samples=0)), PartitionState()
    drift(requests, part, CONCEPT, 100)
    drift(requests, part, COVARIATE, 200, reference=None, kind="covariate")
    assert part.recovery["m"].baseline == 0.1 and part.recovery["m"].detected_at == 200


def recovering(errors, outcomes_seen, follow_up_samples=1000):
    """A partition in model m's recovery from a drift at outcome 1000, with ``errors`` in its window."""
    part = PartitionState()
    window = SlidingMean(1000)
    for error in errors:
        window.add(1.0 - error)
    part.quality[("m", 1, False)] = (window, SlidingMean(1000))
    part.outcomes_seen["m"] = outcomes_seen
    part.requested_at["m"] = 1000
    since = [{"topic": "o", "partition": 3, "offset": 1001}]
    part.recovery["m"] = Recovery(1000, since, 0.1, 0, 1000 + follow_up_samples)
    return part


def test_a_follow_up_asks_again_when_due_with_the_data_since_the_drift():
    requests = RetrainRequests(DriftSettings())
    part = recovering([0] * 600 + [1] * 400, 1999)
    out = Produced()
    requests.follow_up(out, part, ("m", 1), at(1999))
    assert sent(out) == [] and part.recovery["m"].checks == 0  # not due yet
    part.outcomes_seen["m"] = 2000
    requests.follow_up(out, part, ("m", 1), at(2000))
    (request,) = sent(out)
    assert request["event_id"] == "m/1/follow-up/o/3/2000" and request["evidence"] is None
    assert request["since"] == [{"topic": "o", "partition": 3, "offset": 1001}]
    assert request["reason"] == (
        "follow-up 1 of the drift at outcome 1000: version 1's error 0.400 over its last 1000 outcomes, "
        "0.100 before the drift; training on the 1000 outcomes since"
    )
    assert part.requested_at["m"] == 2000 and part.recovery["m"].next_at == 4000


def test_no_follow_up_without_a_recovery_or_when_follow_ups_are_off():
    part = recovering([1] * 1000, 5000)
    out = Produced()
    RetrainRequests(DriftSettings(follow_up_samples=0)).follow_up(out, part, ("m", 1), at(5000))
    del part.recovery["m"]
    RetrainRequests(DriftSettings()).follow_up(out, part, ("m", 1), at(5000))
    assert sent(out) == [] and part.requested_at["m"] == 1000

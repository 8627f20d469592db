"""A wide model: a large shift on a few of its 5,000 features is found and named; a stationary stream raises nothing."""

import numpy as np
import pytest

from loopline.drift.core import DriftCore
from loopline.drift.monitor import BlockMonitor, reference_std
from loopline.models import ArtifactFormat, ModelVersion, Status
from loopline.models.datasets import feature_names
from loopline.settings import DriftSettings
from tests.drift.streams import OUTCOMES, Records
from tests.drift.test_core import events, requests

WIDTH = 5000
INDICATORS = slice(4000, WIDTH)
"""Columns of an indicator set in one row in 500: most of them are never set in a warm-up of 500."""
WIDE = ModelVersion("wide", 1, Status.SERVING, ArtifactFormat.ONNX, "00", feature_names(WIDTH), ["no", "yes"])
SHIFTED = [3, 250, 777, 1024, 1500, 2048, 2600, 3001, 3500, 3999]
ROWS, ONSET = 2000, 1200


def wide_records(seed, shift=0.0):
    """Standard-normal features but the indicators; ``shift`` standard deviations added to the
    :data:`SHIFTED` features from outcome :data:`ONSET` on."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, WIDTH)).astype(np.float32)
    x[:, INDICATORS] = rng.random((ROWS, WIDTH - INDICATORS.start)) < 0.002
    x[ONSET:, SHIFTED] += np.float32(shift)
    predicted = np.zeros(ROWS, dtype=np.int64)
    return Records().outcomes(x, predicted, predicted, model="wide")


def run_wide(records):
    core = DriftCore(DriftSettings(follow_up_samples=0), OUTCOMES, lambda model, version: WIDE)
    return [core.process(records[start : start + 500]) for start in range(0, len(records), 500)]


def test_a_three_std_shift_on_ten_of_5000_features_is_found_and_named():
    outputs = run_wide(wide_records(0, shift=3.0))
    found, (request,) = events(outputs), requests(outputs)
    names = {f"x{column}" for column in SHIFTED}
    assert found and all(e["evidence"]["kind"] == "covariate" and e["evidence"]["feature"] in names for e in found)
    evidence = request["evidence"]
    assert evidence["feature"] in names and evidence["statistics"]["shift_in_std"] > 2
    assert ONSET <= evidence["offsets"][0]["end"] <= ONSET + 600


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stationary_stream_of_5000_features_raises_nothing(seed):
    outputs = run_wide(wide_records(seed))
    assert events(outputs) == [] and requests(outputs) == []


def test_a_column_constant_through_the_warm_up_is_standardised_by_the_spread_of_one_value_off():
    full = np.zeros((400, 4))
    full[:, 1] = 5.0
    full[:, 2] = np.random.default_rng(0).normal(size=400)
    full[:200, 3] = np.nan  # an optional value, missing in half the warm-up
    mean = np.nanmean(full, axis=0)
    std = np.sqrt(np.nanmean((full - mean) ** 2, axis=0))
    got = reference_std(std, mean, (~np.isnan(full)).sum(axis=0))
    assert got.tolist() == [1 / 20, 5 / 20, std[2], 1 / 200**0.5]


def test_indicators_unset_through_the_warm_up_raise_no_false_alarm_when_set_later():
    # 2,000 columns, each set in one row in 1,000; three in five are never set in the warm-up, and
    # a block with one set row was a shift of millions of standard deviations in them.
    columns = [f"x{i}" for i in range(2000)]
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        monitor = BlockMonitor(columns, "ADWIN", {"delta": 1e-4, "clock": 1}, warmup=500, block=32, recent=200)
        for _ in range(3):
            assert monitor.update((rng.random((4000, 2000)) < 0.001).astype(np.float32)) == []


def test_an_indicator_unset_through_the_warm_up_that_becomes_common_is_a_drift():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(4000, 3)).astype(np.float32)
    rows[:, 1] = 0.0
    rows[2000:, 1] = rng.random(2000) < 0.3
    monitor = BlockMonitor(["a", "b", "c"], "ADWIN", {"delta": 1e-4, "clock": 1}, warmup=500, block=32, recent=200)
    (first, *_) = monitor.update(rows)
    assert first.column == "b" and 2000 <= first.index < 2500


@pytest.mark.parametrize("seed", range(3))
def test_two_extreme_values_are_no_drift_and_a_lasting_shift_still_is(seed):
    # A heavy-tailed feature's rare extreme values: two of 1,000 standard deviations, a block apart,
    # once the detectors' windows are long (20,000 samples).
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(26_000, 2)).astype(np.float32)
    rows[[20_000, 20_032], 0] += 1000.0
    rows[24_000:, 1] += 3.0
    monitor = BlockMonitor(["a", "b"], "ADWIN", {"delta": 1e-4, "clock": 1}, warmup=500, block=32, recent=200)
    (first, *_) = monitor.update(rows)
    assert first.column == "b" and 24_000 <= first.index < 24_400

"""Every detector through the same checks, in the monitors that use them."""

import numpy as np
import pytest

from loopline.drift.detectors import BINARY, DETECTORS, make_detector
from loopline.drift.monitor import BlockMonitor, ErrorMonitor


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_concept_detector_sees_the_error_jump_and_only_after_it(name):
    rng = np.random.default_rng(0)
    errors = (rng.random(6000) < np.where(np.arange(6000) < 2000, 0.05, 0.7)).astype(int)
    found = ErrorMonitor(name, {}, warmup=500, recent=100).update(errors.tolist())
    assert found and found[0].index >= 2000


@pytest.mark.parametrize("name", sorted(set(DETECTORS) - BINARY))
def test_every_block_detector_names_the_column_that_moved(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8000, 4))
    x[2000:, 1] += 2.0
    found = BlockMonitor(["a", "b", "c", "d"], name, {}, warmup=500, block=16, recent=64).update(x)
    assert found and found[0].index >= 2000 and found[0].column == "b"


def test_improvements_are_not_concept_drift():
    errors = [1] * 1000 + [0] * 3000
    assert ErrorMonitor("ADWIN", {}, warmup=500, recent=100).update(errors) == []


def test_a_monitor_restarts_after_a_detection_so_a_new_level_raises_nothing_more():
    rng = np.random.default_rng(1)
    errors = (rng.random(20_000) < np.where(np.arange(20_000) < 2000, 0.05, 0.5)).astype(int)
    found = ErrorMonitor("ADWIN", {"delta": 0.002}, warmup=500, recent=100).update(errors.tolist())
    assert len(found) == 1


def test_bad_detector_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown drift detector 'ADWINN'"):
        make_detector("ADWINN", {})
    with pytest.raises(ValueError, match="DDM takes 0/1 inputs"):
        make_detector("DDM", {})
    with pytest.raises(ValueError, match="bad parameters for ADWIN"):
        make_detector("ADWIN", {"threshold": 3})

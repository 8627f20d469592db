"""Drift state saved batch by batch and restored: a restored monitor or core goes on as if never stopped."""

import numpy as np
import pytest

from streams.drift import monitor
from streams.drift.detectors import BINARY, DETECTORS
from streams.drift.monitor import BlockMonitor, ErrorMonitor


def apply(store, changes):
    """Apply one save to a dict standing for the store (None: delete)."""
    for key, value in changes.items():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def record(make, batches):
    """Run a fresh monitor over ``batches``; its detections, its changes and the store after each batch."""
    running, store = make(), {}
    found, changes, stores = [], [], []
    for batch in batches:
        found.append(running.update(batch))
        changes.append(running.changes())
        apply(store, changes[-1])
        stores.append(dict(store))
    return found, changes, stores


def check_cuts(make, batches, cuts):
    """A monitor restored after batch ``cut - 1`` gives the same detections and saves as the one that ran on."""
    found, changes, stores = record(make, batches)
    for cut in cuts:
        restored = make()
        assert restored.load(stores[cut - 1])
        for i in range(cut, len(batches)):
            assert restored.update(batches[i]) == found[i], (cut, i)
            assert restored.changes() == changes[i], (cut, i)
    return found


def cuts(found, warmup, drift, batch):
    """Batches fed before a cut: before the warm-up ends, after it, just before the drift, just after the
    first detection (a restart)."""
    detected = next(i for i, detections in enumerate(found) if detections)
    return [(warmup - 1) // batch, warmup // batch + 1, drift // batch, detected + 1]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_an_error_monitor_restored_at_any_point_goes_on_as_if_never_stopped(name):
    rng = np.random.default_rng(3)
    rate = np.select([np.arange(3000) < 1000, np.arange(3000) < 2000], [0.05, 0.6], 0.05)
    errors = (rng.random(3000) < rate).astype(int).tolist()
    batches = [errors[start : start + 50] for start in range(0, 3000, 50)]

    def make():
        return ErrorMonitor(name, {}, warmup=300, recent=100)

    found, _, _ = record(make, batches)
    assert found[20:] != [[]] * 40  # the jump is seen (DDM and EDDM may raise a false alarm before)
    check_cuts(make, batches, cuts(found, 300, 1000, 50))


@pytest.mark.parametrize("name", sorted(set(DETECTORS) - BINARY))
def test_a_block_monitor_restored_at_any_point_goes_on_as_if_never_stopped(name):
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(8000, 3)).astype(np.float32)
    rows[3000:, 1] += 2.0
    batches = [rows[start : start + 250] for start in range(0, 8000, 250)]  # blocks straddle the batches

    def make():
        return BlockMonitor(["a", "b", "c"], name, {}, warmup=400, block=16, recent=64)

    found, _, _ = record(make, batches)
    assert [d.column for d in next(f for f in found if f)] == ["b"]
    check_cuts(make, batches, cuts(found, 400, 3000, 250))


def test_a_restart_deletes_the_chunks_of_the_history_it_ends(monkeypatch):
    monkeypatch.setattr(monitor, "ERROR_CHUNK", 256)
    errors = [0] * 2000 + [1] * 1000
    found, changes, stores = record(
        lambda: ErrorMonitor("ADWIN", {}, warmup=500, recent=100), [errors[:2000], errors[2000:]]
    )
    assert sorted(stores[0]) == [b"chunk/%d" % n for n in range(8)] + [b"head"]
    assert [d.index for d in found[1]] == [15]  # then 984 more errors: chunks 0 to 3
    assert sorted(stores[1]) == [b"chunk/%d" % n for n in range(4)] + [b"head"]
    assert [key for key, value in changes[1].items() if value is None] == [b"chunk/%d" % n for n in range(4, 8)]


def test_a_monitor_saved_under_other_settings_starts_afresh():
    running = ErrorMonitor("ADWIN", {}, warmup=500, recent=100)
    running.update([0, 1] * 400)
    store = running.changes()
    assert not ErrorMonitor("ADWIN", {}, warmup=600, recent=100).load(store)
    assert not ErrorMonitor("PageHinkley", {}, warmup=500, recent=100).load(store)
    assert ErrorMonitor("ADWIN", {}, warmup=500, recent=100).load(store)

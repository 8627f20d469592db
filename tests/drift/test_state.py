"""Drift state saved batch by batch and restored: a restored monitor or core goes on as if never stopped."""

import random

import numpy as np
import pytest

from loopline.drift import monitor
from loopline.drift.core import DriftCore
from loopline.drift.detectors import BINARY, DETECTORS
from loopline.drift.monitor import BlockMonitor, ErrorMonitor
from loopline.drift.state import History, dump_head, load_head
from loopline.settings import DriftSettings
from tests.drift.streams import OUTCOMES, VERSION, Records, drift_core, stream
from tests.drift.test_core import events, requests


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


def test_a_history_saves_the_chunks_that_changed_and_a_loaded_one_goes_on_saving_the_same():
    history = History("<f8", (2,), chunk=3, cap=6)
    history.extend(np.arange(8.0).reshape(4, 2))
    first = history.changes()
    assert sorted(first) == [b"chunk/0", b"chunk/1"] and np.frombuffer(first[b"chunk/1"]).tolist() == [6.0, 7.0]
    history.extend(np.arange(8.0, 16.0).reshape(4, 2))  # 8 rows, beyond the cap of 6: chunk 0 goes
    assert (history.first, history.count, history.rows()[:, 0].tolist()) == (1, 8, [6.0, 8.0, 10.0, 12.0, 14.0])
    second = history.changes()
    assert second[b"chunk/0"] is None and sorted(second) == [b"chunk/0", b"chunk/1", b"chunk/2"]
    store = {key: value for key, value in {**first, **second}.items() if value is not None}
    loaded = History("<f8", (2,), chunk=3, cap=6)
    loaded.load(history.head(), store)
    assert loaded.rows().tolist() == history.rows().tolist() and loaded.head() == history.head()
    assert loaded.changes() == history.changes() == {b"chunk/2": store[b"chunk/2"]}  # the last one, not yet full
    history.clear()
    assert history.changes() == {b"chunk/1": None, b"chunk/2": None}


def test_a_head_carries_its_format_and_one_in_another_is_refused():
    assert load_head(dump_head({"samples": 3, "mean": 0.1 + 0.2})) == {"format": 1, "samples": 3, "mean": 0.1 + 0.2}
    with pytest.raises(ValueError, match="unknown state format 2"):
        load_head(b'{"format": 2}')


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


@pytest.mark.parametrize("kind", ["errors", "blocks"])
def test_beyond_the_history_cap_the_oldest_chunks_go_and_a_restore_approximates(kind):
    rng = np.random.default_rng(6)
    if kind == "errors":
        cap, chunk, rows, batch = monitor.ERROR_HISTORY, monitor.ERROR_CHUNK, 150_000, 1000
        inputs = (rng.random(rows + 20_000) < np.where(np.arange(rows + 20_000) < rows, 0.1, 0.5)).astype(int).tolist()

        def make():
            return ErrorMonitor("ADWIN", {}, warmup=500, recent=100)
    else:
        cap, chunk, rows, batch = monitor.BLOCK_HISTORY, monitor.BLOCK_CHUNK, 2 * 15_000, 200  # blocks of 2
        inputs = rng.normal(size=(rows + 4000, 2))
        inputs[rows:, 0] += 2.0

        def make():
            return BlockMonitor(["a", "b"], "ADWIN", {}, warmup=100, block=2, recent=10)

    batches = [inputs[start : start + batch] for start in range(0, rows, batch)]  # less than a chunk each
    found, changes, stores = record(make, batches)
    assert found == [[]] * len(batches)  # no restart: the history only grows, up to the cap
    store = stores[-1]
    chunks = sorted(int(key.split(b"/")[1]) for key in store if key.startswith(b"chunk/"))
    assert chunks[0] > 0 and len(chunks) <= -(-cap // chunk) and chunks == list(range(chunks[0], chunks[-1] + 1))
    # The head, a block monitor's pending rows and recent window, two chunks, one chunk dropped:
    assert max(len(c) for c in changes) <= 6
    restored = make()
    assert restored.load(store)
    assert cap - chunk < len(restored.history.rows()) <= cap and len(restored.history.data) <= cap + chunk
    # The restored detectors only saw the newest inputs: the same drift is still found, not
    # necessarily at the same sample.
    assert restored.update(inputs[rows:])


def test_a_wide_monitor_saves_its_new_block_means_keeps_fewer_and_replays_only_those():
    assert monitor.block_history(8) == monitor.block_history(200) == monitor.BLOCK_HISTORY
    assert monitor.block_chunk(8) == monitor.block_chunk(64) == monitor.BLOCK_CHUNK
    assert (monitor.block_chunk(5000), monitor.block_history(5000)) == (1, 419)
    for columns in (65, 210, 1000, 5000, 20_000):
        chunk, cap = monitor.block_chunk(columns), monitor.block_history(columns)
        assert chunk == 1 or chunk * columns <= monitor.CHUNK_VALUES
        assert cap * columns <= monitor.BLOCK_VALUES
        assert cap == monitor.BLOCK_HISTORY or cap % chunk == 0
    rng = np.random.default_rng(7)
    names = [f"x{i}" for i in range(5000)]
    rows = rng.normal(size=(1700, 5000)).astype(np.float32)
    rows[-500:, 9] += 3.0

    def make():
        return BlockMonitor(names, "ADWIN", {}, warmup=100, block=2, recent=10)

    batches = [rows[start : start + 200] for start in range(0, 1200, 200)]
    found, changes, stores = record(make, batches)
    assert found == [[]] * len(batches)
    for batch in changes[1:]:  # 100 block means each, and no per-column number in the head
        assert sum(len(v) for k, v in batch.items() if k.startswith(b"chunk/") and v) == 100 * 5000 * 8
        assert len(batch[b"head"]) < 50_000 and b"reference" not in batch
    # 600 block means (50 of the warm-up, 550 after it) against a cap of 419: the oldest 181 dropped.
    chunks = sorted(int(key.split(b"/")[1]) for key in stores[-1] if key.startswith(b"chunk/"))
    assert chunks == list(range(181, 600))
    restored = make()
    assert restored.load(stores[-1])
    assert len(restored.history.rows()) == 419
    assert [d.column for d in restored.update(rows[1200:])][:1] == ["x9"]


def two_partitions():
    """Records over two partitions, interleaved as a consumer would get them.

    Model m's outcomes land in partition 1: a concept drift at its 3000th outcome, then feature x5
    moves at its 4000th, within the cooldown of the first request. Model team/n's land in
    partition 0, with a concept drift at its 5000th. m's predictions are spread over both, the
    scores moving half way.
    """
    records = Records()
    m = records.outcomes(*stream(4000, 1, after_share=(np.arange(4000) >= 3000) * 1.0), partition=1)
    m += records.outcomes(*stream(4000, 2, after_share=np.ones(4000), shift={5: 1.0}), partition=1)
    n = records.outcomes(*stream(8000, 3, after_share=(np.arange(8000) >= 5000) * 1.0), model="team/n", partition=0)
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.beta(2, 5, 4000), rng.beta(5, 2, 4000)])
    predictions = records.predictions(scores, partitions=(0, 1))
    return [r for three in zip(m, n, predictions, strict=True) for r in three]


def saved_run(core, batches, store=None):
    """The outputs of ``core`` over ``batches`` and the store (partition → key → value) after each batch."""
    store = {partition: dict(keys) for partition, keys in (store or {}).items()}
    outputs, stores = [], []
    for batch in batches:
        outputs.append(core.process(batch))
        for partition, changes in core.changes().items():
            apply(store.setdefault(partition, {}), changes)
        stores.append({partition: dict(keys) for partition, keys in store.items()})
    return outputs, stores


def test_a_core_killed_and_restored_per_partition_gives_the_same_events_and_requests():
    records = two_partitions()
    batches = [records[start : start + 600] for start in range(0, len(records), 600)]
    outputs, stores = saved_run(drift_core(), batches)
    found = [
        (e["model_name"], e["evidence"]["kind"], e["evidence"]["offsets"][0]["partition"]) for e in events(outputs)
    ]
    assert set(found) == {("m", "concept", 1), ("m", "covariate", 1), ("team/n", "concept", 0),
                          ("m", "prediction", 0), ("m", "prediction", 1)}  # fmt: skip
    assert [(r["model_name"], r["evidence"]["kind"] if r["evidence"] else "follow-up") for r in requests(outputs)] == [
        ("m", "concept"),
        ("m", "follow-up"),
        ("team/n", "concept"),
        ("m", "follow-up"),
        ("team/n", "follow-up"),
    ]
    requested = next(i for i, out in enumerate(outputs) if out.retrain_requests)
    cooled = next(i for i, out in enumerate(outputs) if "covariate" in out.kinds)
    assert requested < cooled and not outputs[cooled].retrain_requests  # the cooldown holds across a cut between
    followed = [i for i, out in enumerate(outputs) if any(r["evidence"] is None for r in requests([out]))]
    # In the warm-up, after it, before and after a request, in a recovery before and after a follow-up:
    for cut in (1, 5, requested, requested + 1, cooled, followed[0], followed[0] + 1):
        core = drift_core()
        for partition, keys in stores[cut - 1].items():
            items = list(keys.items())
            random.Random(cut).shuffle(items)  # a store may hand them back in any order
            core.restore(partition, items)
        rest, after = saved_run(core, batches[cut:], stores[cut - 1])
        assert rest == outputs[cut:], cut  # drift events, requests, quality, byte for byte
        assert after[-1] == stores[-1], cut


def test_a_batch_saves_its_own_changes_not_the_whole_history():
    records = Records().outcomes(*stream(100_000, 11))
    core, store, saved = drift_core(), {}, []
    for start in range(0, len(records), 500):
        core.process(records[start : start + 500])
        (changes,) = core.changes().values()
        apply(store, changes)
        saved.append(changes)
    total = sum(map(len, store.values()))
    windows = sum(len(value) for key, value in store.items() if b"/chunk/" not in key)  # heads: no history
    # 500 outcomes are less than a chunk of errors (4096) or of block means (128 blocks of 32): a
    # batch writes at most two chunks of each history and deletes none.
    bound = windows + 2 * (monitor.ERROR_CHUNK + monitor.BLOCK_CHUNK * 8 * 8)
    for changes in saved[1:]:
        chunks = [key for key in changes if b"/chunk/" in key]
        assert len(chunks) <= 4 and None not in changes.values()
        assert sum(len(value) for value in changes.values()) <= bound
    assert total > 5 * bound  # 100,000 errors and 3125 block means of 8 features, against about 50 KB


def watched(store):
    """The versions of model m with a watch in ``store``."""
    return {int(key.split(b"/")[2]) for key in store if key.startswith(b'w/"m"/')}


def test_evicted_versions_lose_their_keys_and_eviction_follows_creation_order_across_a_restore():
    def core():
        return DriftCore(DriftSettings(), OUTCOMES, lambda model, version: VERSION)

    x, predicted, truth = stream(6 * 600, 1)
    records = Records()
    # Watches made for versions 3, 1, 4 and 2 (a rollback puts an old one back); then 1 again, and
    # 5 evicts 3, the first made, not the lowest.
    order = [3, 1, 4, 2, 1, 5]
    batches = [
        records.outcomes(
            x[i * 600 : (i + 1) * 600], predicted[i * 600 : (i + 1) * 600], truth[i * 600 : (i + 1) * 600], version=v
        )
        for i, v in enumerate(order)
    ]
    _, stores = saved_run(core(), batches)
    assert [watched(store[0]) for store in stores[3:]] == [{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 4, 5}]
    restored = core()
    restored.restore(0, sorted(stores[4][0].items()))
    _, after = saved_run(restored, batches[5:], stores[4])
    assert after[-1] == stores[-1]


def test_a_monitor_saved_under_other_settings_is_replaced_and_its_chunks_deleted():
    records = Records().outcomes(*stream(6000, 1))
    batches = [records[start : start + 1000] for start in range(0, 6000, 1000)]
    _, stores = saved_run(drift_core(), batches[:5])
    assert {b'w/"m"/1/errors/chunk/0', b'w/"m"/1/errors/chunk/1'} <= set(stores[-1][0])
    core = drift_core(min_samples=600)
    core.restore(0, stores[-1][0].items())
    _, after = saved_run(core, batches[5:], stores[-1])
    errors = {key: value for key, value in after[-1][0].items() if key.startswith(b'w/"m"/1/errors/')}
    assert sorted(errors) == [b'w/"m"/1/errors/chunk/0', b'w/"m"/1/errors/head']
    assert load_head(errors[b'w/"m"/1/errors/head'])["samples"] == 1000  # a fresh monitor
    assert load_head(after[-1][0][b'm/"m"'])["outcomes_seen"] == 6000  # the rest was restored


def test_a_revoked_partition_is_forgotten():
    records = two_partitions()
    core = drift_core()
    core.process(records[:3000])
    assert set(core.changes()) == {0, 1}
    core.process(records[3000:6000])
    core.revoke([1])
    assert set(core.partitions) == {0} and set(core.changes()) == {0}

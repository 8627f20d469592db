from loopline.join.entry import Entry, encode_entry
from loopline.join.pending import Touched, by_deadline, index_key, reindex
from loopline.state.state import State
from loopline.state.store import MemoryStore
from loopline.testing import MemoryChangelog

T0 = 1_795_000_000_000


def state(partitions=(0,)):
    state = State("join", lambda p: MemoryStore(), MemoryChangelog())
    state.assign(partitions)
    return state


def test_a_batch_writes_each_entry_it_changed_once_at_its_end_and_logs_no_index():
    held = state()
    touched = Touched(held, "l", {0: 0})
    entry = touched.create(0, "a", T0)
    entry.features = b"f"
    touched.changed(0, "a")
    assert held.get(0, b"ea") is None and touched.get(0, "a") is entry and touched.counts == {0: 1}
    touched.save()
    assert held.get(0, b"ea") == encode_entry(entry)
    assert held.changes() == {0: {b"ea": encode_entry(entry)}}  # the index key stays out of the changelog
    assert [key for key, _ in held.items(0)] == [b"ea", index_key(T0, "a")]


def test_an_entry_read_again_comes_from_the_state_and_a_deleted_one_leaves_with_its_index_key():
    held = state()
    first = Touched(held, "l", {0: 0})
    first.create(0, "a", T0).prediction = b"p"
    first.save()
    held.committed()
    second = Touched(held, "l", {0: 1})
    entry = second.get(0, "a")
    assert entry is not None and entry.prediction == b"p" and second.get(0, "b") is None
    second.delete(0, "a", entry)
    second.save()
    assert list(held.items(0)) == [] and second.counts == {0: 0}


def test_entries_come_by_deadline_oldest_first_and_a_deadline_below_zero_sorts_as_zero():
    held = state()
    touched = Touched(held, "l", {0: 0})
    for event_id, deadline in (("late", T0 + 5), ("early", T0), ("replayed", -3)):
        touched.create(0, event_id, deadline)
    assert list(by_deadline(held, 0)) == [(0, 0, "replayed"), (T0, 0, "early"), (T0 + 5, 0, "late")]


def test_a_restored_store_gets_an_index_of_the_entries_it_holds_and_no_other():
    store = MemoryStore()
    store.write({b"ea": encode_entry(Entry(T0 + 9)), b"eb": encode_entry(Entry(T0)),
                 index_key(T0 - 1, "gone"): b""})  # fmt: skip
    assert reindex(store) == (2, T0 + 9)
    assert [key for key, _ in store.range(b"t", b"u")] == [index_key(T0, "b"), index_key(T0 + 9, "a")]
    assert reindex(MemoryStore()) == (0, None)

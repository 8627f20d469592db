"""State stores and their changelog, without a broker: overlay, commit, restore, checkpoints."""

import pytest

from loopline.state.state import OutOfRange, State
from loopline.state.store import DiskStore, MemoryStore
from loopline.testing import MemoryChangelog


def logged(state, changelog):
    """Commit the state's changes as the batch loop does: to the changelog, then into the stores."""
    for partition, changes in state.changes().items():
        changelog.log.setdefault(partition, []).extend(changes.items())
    state.committed()


@pytest.fixture(params=["memory", "disk"])
def open_store(request, tmp_path):
    if request.param == "memory":
        return lambda partition: MemoryStore()
    return lambda partition: DiskStore(tmp_path / "worker" / str(partition))


def test_writes_are_read_back_in_the_batch_and_stored_once_committed(open_store):
    changelog = MemoryChangelog()
    state = State("t", open_store, changelog)
    state.assign([0, 1])
    state.put(0, b"b", b"2")
    state.put(0, b"a", b"1")
    state.put(1, b"a", b"x")
    assert state.get(0, b"a") == b"1" and state.stores[0].get(b"a") is None  # not committed yet
    logged(state, changelog)
    assert state.stores[0].get(b"a") == b"1" and changelog.log[0] == [(b"b", b"2"), (b"a", b"1")]
    state.delete(0, b"a")
    state.put(0, b"c", b"3")
    assert list(state.items(0)) == [(b"b", b"2"), (b"c", b"3")]  # the overlay merged into the stored order
    assert list(state.range(0, b"b", b"c")) == [(b"b", b"2")]
    state.changes()
    state.discard()  # the batch was aborted
    assert list(state.items(0)) == [(b"a", b"1"), (b"b", b"2")]


def test_batches_of_one_transaction_see_each_other_and_each_logs_only_its_own_changes(open_store):
    state = State("t", open_store, MemoryChangelog())
    state.assign([0])
    state.put(0, b"a", b"1")
    state.put(0, b"b", b"1")
    assert state.changes() == {0: {b"a": b"1", b"b": b"1"}}  # the first batch, sent, not committed
    assert state.get(0, b"a") == b"1" and list(state.items(0)) == [(b"a", b"1"), (b"b", b"1")]
    state.delete(0, b"a")
    state.put(0, b"c", b"2")
    assert state.changes() == {0: {b"a": None, b"c": b"2"}}  # the second batch's own changes
    state.put(0, b"d", b"3")
    state.discard(batch_only=True)  # the third batch's core failed: its writes go, the others stay
    assert list(state.items(0)) == [(b"b", b"1"), (b"c", b"2")] and state.stores[0].get(b"b") is None
    state.committed()
    assert list(state.stores[0].range(b"", b"z")) == [(b"b", b"1"), (b"c", b"2")]


def test_a_new_owner_restores_the_committed_state_from_the_changelog(open_store, tmp_path):
    changelog = MemoryChangelog()
    first = State("t", open_store, changelog)
    first.assign([0])
    for i in range(5):
        first.put(0, f"k{i}".encode(), b"v")
    logged(first, changelog)
    first.delete(0, b"k1")
    logged(first, changelog)
    first.put(0, b"k9", b"lost")  # never committed
    first.changes()
    restored = []
    second = State("t", lambda p: MemoryStore(), changelog, on_restored=lambda *args: restored.append(args))
    second.assign([0])
    assert [k for k, _ in second.items(0)] == [b"k0", b"k2", b"k3", b"k4"]
    assert restored[0][:2] == (0, 6)


def test_a_disk_store_handed_back_cleanly_restores_from_its_checkpoint(tmp_path):
    changelog = MemoryChangelog()
    reads = []
    read = changelog.read
    changelog.read = lambda partition, start, apply: reads.append(start) or read(partition, start, apply)
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog)
    state.assign([0])
    state.put(0, b"a", b"1")
    logged(state, changelog)
    state.revoke([0], clean=True)
    state.assign([0])  # the same directory: from the checkpoint, nothing to read back
    assert reads == [None, 1] and state.get(0, b"a") == b"1"
    state.put(0, b"b", b"2")
    logged(state, changelog)
    state.revoke([0], clean=False)  # lost: another worker may have written since
    changelog.log[0].append((b"c", b"3"))  # and it did
    state.assign([0])  # from the checkpoint of the last restore: what came after it is read again
    assert reads == [None, 1, 1] and list(state.items(0)) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]


def test_a_disk_store_found_without_a_checkpoint_is_wiped_and_restored(tmp_path):
    changelog = MemoryChangelog()
    changelog.log[0] = [(b"a", b"1")]
    store = DiskStore(tmp_path / "0")
    store.write({b"ghost": b"x"})  # a store wiped and partly restored when its worker died
    store.close()
    again = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog)
    again.assign([0])
    assert list(again.items(0)) == [(b"a", b"1")]


def test_a_running_checkpoint_is_the_end_of_the_changelog_before_the_last_commit(tmp_path):
    changelog = MemoryChangelog()
    reads = []
    read = changelog.read
    changelog.read = lambda partition, start, apply: reads.append(start) or read(partition, start, apply)
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog, checkpoint_interval_s=0)
    state.assign([0, 1])
    for i in range(5):
        state.put(0, f"k{i % 3}".encode(), str(i).encode())
        if i == 3:
            state.delete(0, b"k1")
        logged(state, changelog)
        assert state.stores[0].checkpoint() == len(changelog.log[0]) - (2 if i == 3 else 1)
    assert state.stores[1].checkpoint() == 0  # nothing written there: the checkpoint of its restore
    expected = list(state.items(0))
    for store in state.stores.values():
        store.close()  # the stores as a killed worker leaves them: nothing recorded at the end
    again = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog)
    again.assign([0])
    assert reads == [None, None, 5] and list(again.items(0)) == expected == [
        (b"k0", b"3"),
        (b"k1", b"4"),
        (b"k2", b"2"),
    ]


def test_changes_committed_after_the_last_checkpoint_are_read_again_after_a_kill(tmp_path):
    changelog = MemoryChangelog()
    counts = []
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog, checkpoint_interval_s=0)
    state.assign([0])
    state.put(0, b"a", b"1")
    logged(state, changelog)
    state.put(0, b"b", b"1")
    logged(state, changelog)  # a checkpoint at offset 1 (the end of the changelog before this commit)
    state.checkpoint_interval_s = float("inf")
    state.put(0, b"a", b"2")
    state.delete(0, b"b")
    logged(state, changelog)
    state.put(0, b"c", b"3")
    logged(state, changelog)
    state.stores[0].close()
    again = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog, on_restored=lambda *a: counts.append(a[1]))
    again.assign([0])
    assert counts == [len(changelog.log[0]) - 1] and list(again.items(0)) == [(b"a", b"2"), (b"c", b"3")]


def test_a_checkpoint_is_recorded_only_once_its_transaction_is_committed(tmp_path):
    changelog = MemoryChangelog()
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog, checkpoint_interval_s=0)
    state.assign([0])
    state.put(0, b"a", b"1")
    logged(state, changelog)
    state.put(0, b"b", b"2")
    state.changes()  # the end of the changelog is read here
    state.discard()  # the transaction was aborted
    assert state.stores[0].checkpoint() == 0
    state.put(0, b"c", b"3")
    logged(state, changelog)
    assert state.stores[0].checkpoint() == 1 and state.get(0, b"b") is None


def test_a_partition_whose_transaction_may_have_committed_is_handed_back_on_its_last_checkpoint(tmp_path):
    changelog = MemoryChangelog()
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog, checkpoint_interval_s=float("inf"))
    state.assign([0])
    state.put(0, b"a", b"1")
    for partition, changes in state.changes().items():
        changelog.log.setdefault(partition, []).extend(changes.items())  # the broker committed it
    state.discard()  # though the commit's answer was lost: the batch loop rewinds,
    state.revoke([0], clean=True)  # handing the partition back
    state.assign([0])  # and taking it again, from the checkpoint of its last restore
    assert state.get(0, b"a") == b"1"


def test_a_checkpoint_the_changelog_does_not_have_restores_from_the_start(tmp_path):
    changelog = MemoryChangelog()
    calls = []

    def read(partition, start, apply):
        calls.append(start)
        if start is not None:
            raise OutOfRange("the changelog was made again")
        apply({b"a": b"new"})
        return 1  # records read

    changelog.read = read
    changelog.end = lambda partition: 50
    state = assigned_over_a_stale_store(tmp_path, changelog)
    assert calls == [40, None] and list(state.items(0)) == [(b"a", b"new")]
    assert state.stores[0].checkpoint() == 50


def assigned_over_a_stale_store(tmp_path, changelog):
    """A state given partition 0, whose store on disk holds a stale key and the checkpoint 40."""
    store = DiskStore(tmp_path / "0")
    store.write({b"stale": b"x"})
    store.save(40)
    store.close()
    state = State("t", lambda p: DiskStore(tmp_path / str(p)), changelog)
    state.assign([0])
    return state


def test_a_checkpoint_past_the_end_of_the_changelog_restores_from_the_start(tmp_path):
    changelog = MemoryChangelog()
    changelog.log[0] = [(b"a", b"new")]  # the topic made again, shorter
    state = assigned_over_a_stale_store(tmp_path, changelog)
    assert list(state.items(0)) == [(b"a", b"new")] and state.stores[0].checkpoint() == 1


def test_a_key_written_and_deleted_in_one_batch_or_deleted_unwritten_logs_nothing(open_store):
    changelog = MemoryChangelog()
    state = State("t", open_store, changelog)
    state.assign([0])
    state.put(0, b"kept", b"1")
    logged(state, changelog)
    state.put(0, b"brief", b"2")
    state.delete(0, b"brief")
    state.delete(0, b"never")
    state.delete(0, b"kept")
    logged(state, changelog)
    assert changelog.log[0] == [(b"kept", b"1"), (b"kept", None)]

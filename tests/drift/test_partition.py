import numpy as np
import pytest

from loopline.drift.partition import VERSIONS_KEPT, PartitionState, error_monitor, feature_monitor, score_monitor
from loopline.drift.recovery import Recovery
from loopline.quality import SlidingMean
from loopline.records import SourceRecord
from loopline.settings import DriftSettings

SETTINGS = DriftSettings(min_samples=20, block_size=4)
MODEL = "team/n"  # a "/" in a name: keys must not split on it


def filled():
    """A partition holding a watch with every monitor, quality windows, a cooldown and a recovery."""
    part = PartitionState()
    watch = part.watch(MODEL, 2)
    watch.errors = error_monitor(SETTINGS)
    watch.errors.update([0, 1] * 20)
    watch.features = feature_monitor(SETTINGS, ["a", "b"])
    watch.features.update(np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32))
    watch.scores = score_monitor(SETTINGS, ["no", "yes"])
    watch.scores.update(np.full((25, 2), 0.5, dtype=np.float32))
    watch.outcomes.saw([SourceRecord(b"k", b"v", "o", 0, 7, 100)])
    windows = SlidingMean(SETTINGS.quality_window), SlidingMean(SETTINGS.quality_window)
    windows[0].add(1.0)
    windows[1].add(0.25)
    part.quality[(MODEL, 2, True)] = windows
    part.outcomes_seen[MODEL] = 40
    part.requested_at[MODEL] = 12
    part.recovery[MODEL] = Recovery(12, [{"topic": "o", "partition": 0, "offset": 13}], 0.2, 1, 500)
    part.dirty.update({("w", MODEL, 2), ("q", MODEL, 2, True), ("m", MODEL)})
    return part


def test_a_save_writes_the_model_its_quality_windows_and_each_watch_and_monitor_under_the_json_name():
    saved = filled().save()
    prefix = b'w/"team/n"/2/'
    assert {b'm/"team/n"', b'q/"team/n"/2/1', prefix + b"head"} <= set(saved)
    assert {key[len(prefix) :].split(b"/")[0] for key in saved if key.startswith(prefix)} == {
        b"head", b"errors", b"features", b"scores"}  # fmt: skip
    assert all(prefix + name + b"/head" in saved for name in (b"errors", b"features", b"scores"))
    assert None not in saved.values()


def test_a_partition_loaded_from_its_keys_in_any_order_saves_the_same_as_the_one_that_saved_them():
    part = filled()
    saved = part.save()
    loaded = PartitionState()
    loaded.load(reversed(list(saved.items())), SETTINGS)
    assert loaded.stored == set(saved) and loaded.save() == {}
    assert (loaded.outcomes_seen, loaded.requested_at, loaded.recovery) == (
        part.outcomes_seen, part.requested_at, part.recovery)  # fmt: skip
    assert loaded.made == 1 and list(loaded.watches) == [(MODEL, 2)]
    watch = loaded.watches[(MODEL, 2)]
    assert watch.errors is not None and watch.features is not None and watch.scores is not None
    assert watch.features.columns == ["a", "b"] and watch.scores.columns == ["no", "yes"]
    for state in (part, loaded):
        state.dirty.update({("w", MODEL, 2), ("q", MODEL, 2, True), ("m", MODEL)})
    assert loaded.save() == part.save()


def test_a_new_watch_evicts_the_models_oldest_beyond_those_kept_and_the_save_deletes_its_keys():
    part = PartitionState()
    for version in (7, 3):
        part.watch("m", version).errors = error_monitor(SETTINGS)
        part.dirty.add(("w", "m", version))
    part.watch("other", 1)
    first = part.save()
    assert any(key.startswith(b'w/"m"/7/') for key in first)
    for version in range(10, 10 + VERSIONS_KEPT - 1):
        part.watch("m", version)
    assert [key for key in part.watches if key[0] == "m"] == [("m", 3), ("m", 10), ("m", 11), ("m", 12)]
    deleted = part.save()
    assert deleted == {key: None for key in first if key.startswith(b'w/"m"/7/')}
    assert ("other", 1) in part.watches and part.made == 2 + 1 + VERSIONS_KEPT - 1


def test_a_monitor_saved_under_other_settings_is_left_out_and_its_keys_deleted_at_the_next_save():
    saved = filled().save()
    loaded = PartitionState()
    loaded.load(saved.items(), DriftSettings(min_samples=20, block_size=8))  # the block monitors' config differs
    watch = loaded.watches[(MODEL, 2)]
    assert watch.errors is not None and watch.features is None and watch.scores is None
    deleted = loaded.save()
    assert deleted and set(deleted.values()) == {None}
    assert {key for key in saved if b"/features/" in key or b"/scores/" in key} == set(deleted)


def test_a_key_in_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown state format"):
        PartitionState().load([(b'm/"m"', b'{"format": 2}')], SETTINGS)

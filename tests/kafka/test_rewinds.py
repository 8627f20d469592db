"""Reads again after a rewind, alone: in halves down to one record while an unsendable record's input is
looked for, batch by batch after an aborted transaction of several, each until as many records are committed."""

from loopline.kafka.rewinds import Rewinds


def test_batches_are_whole_and_share_transactions_until_a_rewind():
    rewinds = Rewinds()
    assert rewinds.size(8) == 8 and not rewinds.alone


def test_a_batch_is_read_again_in_halves_down_to_one_record_until_it_is_committed():
    rewinds = Rewinds()
    assert rewinds.halve(8, pending=4) == 4  # the open transaction's 4 records are read again too
    assert rewinds.size(8) == 4 and rewinds.alone
    assert rewinds.halve(4, pending=0) == 2
    assert rewinds.halve(2, pending=0) == 1
    assert rewinds.halve(1, pending=0) == 1
    rewinds.committed(1)
    assert rewinds.size(8) == 8 and not rewinds.alone  # the one record was all there was to find


def test_the_halves_last_until_as_many_records_as_were_read_again_are_committed():
    rewinds = Rewinds()
    rewinds.halve(6, pending=6)
    for _ in range(3):
        rewinds.committed(3)
        assert rewinds.size(6) == 3
    rewinds.committed(3)
    assert rewinds.size(6) == 6


def test_an_aborted_transaction_is_read_again_batch_by_batch():
    rewinds = Rewinds()
    rewinds.batch_by_batch(9)
    assert rewinds.alone and rewinds.size(4) == 4  # whole batches, each committed on its own
    rewinds.committed(4)
    rewinds.committed(4)
    assert rewinds.alone  # one record left
    rewinds.committed(1)
    assert not rewinds.alone

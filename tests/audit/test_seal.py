"""Sealing: a signed checkpoint over the records written since the latest one, on demand, so the
unsigned tail of the log stays short - in either store (see conftest), and with several processes
sealing and appending to one log."""

import asyncio
import threading
import time

from gateway.audit.checkpoints import GENESIS
from tests.audit.test_chain import rehash_from
from tests.factories import CHECKPOINT_KEY, audit_record


def fill(store, *audit_ids):
    async def append_each():
        for audit_id in audit_ids:
            await store.append(audit_record(audit_id))

    asyncio.run(append_each())


def test_an_empty_log_has_nothing_to_seal(store):
    assert store.seal() is None
    assert store.checkpoints(0, 10) == []


def test_a_seal_signs_the_tail_once(store, backend):
    fill(store, "a1", "a2", "a3")  # below the checkpoint interval (5): no checkpoint yet
    assert store.checkpoints(0, 10) == []

    sealed = store.seal()

    ((head,),) = backend.query("SELECT hash FROM audit_log WHERE seq = 3")
    assert (sealed.seq, sealed.records, sealed.head, sealed.prev) == (3, 3, head, GENESIS)
    assert CHECKPOINT_KEY.problem_with(sealed) is None
    assert store.seal() is None  # nothing new since
    assert store.checkpoints(0, 10) == [sealed]
    report = store.verify()
    assert (report.ok, report.checkpoints, report.last_checkpoint) == (True, 1, sealed)


def test_seals_and_interval_checkpoints_form_one_chain(store):
    fill(store, "b1", "b2")
    first = store.seal()
    fill(store, "b3", "b4", "b5")  # crosses 5: the interval's own checkpoint
    assert store.seal() is None  # the interval's checkpoint already covers the tail
    fill(store, "b6", "b7")
    last = store.seal()

    checkpoints = store.checkpoints(0, 10)
    assert [c.seq for c in checkpoints] == [2, 5, 7]
    assert (checkpoints[0], checkpoints[-1]) == (first, last)
    assert [c.prev for c in checkpoints] == [GENESIS, first.digest(), checkpoints[1].digest()]
    assert [c.records for c in checkpoints] == [2, 5, 7]
    assert store.verify().ok


def test_checkpoints_are_listed_oldest_first_after_a_sequence_number(store):
    fill(store, *(f"c{i:02d}" for i in range(12)))  # interval checkpoints at 5 and 10
    store.seal()  # and 12

    assert [c.seq for c in store.checkpoints(0, 10)] == [5, 10, 12]
    assert [c.seq for c in store.checkpoints(5, 10)] == [10, 12]
    assert [c.seq for c in store.checkpoints(4, 1)] == [5]
    assert store.checkpoints(12, 10) == []


def test_a_rehashed_edit_of_the_tail_is_caught_once_sealed(backend):
    """Without the seal the last records are covered by no checkpoint, and an edit re-hashed
    there would verify; the seal's signature covers them."""
    store = backend.open_store()
    fill(store, *(f"d{i:02d}" for i in range(8)))  # a checkpoint at 5; 6-8 unsigned
    store.seal()
    store.close()
    backend.tamper("UPDATE audit_log SET outcome = 'NOT_FOUND' WHERE seq = 7")
    rehash_from(backend, 7)

    reader = backend.open_store()
    try:
        report = reader.verify()
    finally:
        reader.close()
    assert (report.ok, report.first_bad_seq) == (False, 8)
    assert "signed checkpoint" in report.problem


def test_a_second_process_sealing_while_another_appends_keeps_one_chain(backend):
    """Two stores on one log, as two gateway processes: one appends, the other seals as fast as
    it can. Every checkpoint, whoever signed it, names the one before; the log verifies."""
    writer, sealer = backend.open_store(), backend.open_store()
    sealed = []
    done = threading.Event()

    def seal_until_done():
        while not done.is_set():
            if (checkpoint := sealer.seal()) is not None:
                sealed.append(checkpoint)
            time.sleep(0.002)

    async def append_until_sealed_thrice():
        for i in range(1000):
            await writer.append(audit_record(f"e{i:03d}"))
            if len(sealed) >= 3:
                return
            await asyncio.sleep(0.001)

    thread = threading.Thread(target=seal_until_done)
    thread.start()
    try:
        asyncio.run(append_until_sealed_thrice())
    finally:
        done.set()
        thread.join()
    try:
        checkpoints = writer.checkpoints(0, 1000)
        report = writer.verify()
    finally:
        writer.close()
        sealer.close()
    assert len(sealed) >= 3
    assert set(sealed) <= set(checkpoints)
    assert [c.prev for c in checkpoints] == [GENESIS, *(c.digest() for c in checkpoints[:-1])]
    assert report.ok, report.describe()

"""The notification outbox in the audit database: a message is queued in its audit record's own
transaction, leased to one dispatcher at a time, erased once delivered and kept when dead - in
either store (see conftest)."""

import dataclasses
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.notifications import Notification
from gateway.audit import (
    OPERATIONS,
    PASSED_ON,
    AuditRecord,
    AuditUnavailable,
    CheckpointKeys,
    OutboxEntry,
    OutboxState,
    OutboxStats,
    passed_on_record,
)
from tests.factories import OPERATOR, audit_record, notifying_record, outbox_message


@pytest.mark.anyio
async def test_notifications_are_queued_exactly_when_their_audit_record_is_committed(store, outbox):
    await store.append(audit_record("a-1"), [outbox_message("m-1")])

    with pytest.raises(AuditUnavailable):
        # The same audit id again fails the audit write, and takes its notification with it.
        await store.append(audit_record("a-1"), [outbox_message("m-2")])

    assert [(e.message_id, e.state) for e in outbox.entries()] == [("m-1", OutboxState.PENDING)]
    assert [r["audit_id"] for r in store.records()] == ["a-1"]


@pytest.mark.anyio
async def test_a_claimed_message_is_hidden_from_other_dispatchers_until_its_lease_ends(
    store, outbox
):
    await store.append(audit_record("a-1"), [outbox_message("m-1")])
    now = time.time()

    first = outbox.claim(now, lease_s=10, limit=5)
    meanwhile = outbox.claim(now + 5, lease_s=10, limit=5)
    after_lease = outbox.claim(now + 11, lease_s=10, limit=5)

    assert [(m.message_id, m.attempts) for m in first] == [("m-1", 1)]
    assert meanwhile == []
    assert [(m.message_id, m.attempts) for m in after_lease] == [("m-1", 2)]


@pytest.mark.anyio
async def test_delivery_erases_the_payload_and_a_dead_letter_keeps_it(store, outbox):
    await store.append(
        audit_record("a-1"), [outbox_message("m-1"), outbox_message("m-2", source="health")]
    )

    outbox.delivered("m-1", time.time())
    outbox.dead("m-2", "UNREACHABLE", time.time())

    delivered, dead = outbox.entries()
    assert (delivered.state, delivered.payload) == (OutboxState.DELIVERED, None)
    assert (dead.state, dead.last_error) == (OutboxState.DEAD, "UNREACHABLE")
    assert Notification.model_validate_json(dead.payload or b"").message_id == "m-2"
    assert outbox.claim(time.time() + 3600, lease_s=1, limit=5) == []


@pytest.mark.anyio
async def test_dispatchers_claiming_at_once_never_take_the_same_message(backend, store):
    for batch in range(6):
        messages = [outbox_message(f"m-{batch}-{i}", audit_id=f"a-{batch}") for i in range(10)]
        await store.append(audit_record(f"a-{batch}"), messages)
    outboxes = [backend.open_outbox() for _ in range(3)]
    now = time.time()

    def drain(outbox):
        claimed = []
        while batch := outbox.claim(now, lease_s=60, limit=4):
            claimed += [m.message_id for m in batch]
        return claimed

    try:
        with ThreadPoolExecutor(len(outboxes)) as pool:
            claims = list(pool.map(drain, outboxes))
    finally:
        for outbox in outboxes:
            outbox.close()

    everything = [message_id for claimed in claims for message_id in claimed]
    assert len(everything) == len(set(everything)) == 60


@pytest.mark.anyio
async def test_stats_count_pending_and_dead_messages_and_date_the_oldest_pending(store, outbox):
    assert outbox.stats() == OutboxStats(pending=0, oldest_pending_at=None, dead=0)
    older = dataclasses.replace(outbox_message("m-1"), created_at=time.time() - 60)
    await store.append(
        audit_record("a-1"), [older, outbox_message("m-2"), outbox_message("m-3", source="health")]
    )
    outbox.dead("m-3", "UNREACHABLE", time.time())

    stats = outbox.stats()

    assert (stats.pending, stats.dead) == (2, 1)
    assert stats.oldest_pending_at == pytest.approx(older.created_at)


@pytest.mark.anyio
async def test_entries_are_chosen_by_state_and_id_and_say_when_queued_and_finished(store, outbox):
    await store.append(
        audit_record("a-1"), [outbox_message("m-1"), outbox_message("m-2", source="health")]
    )
    given_up = time.time()
    outbox.dead("m-2", "UNREACHABLE", given_up)

    (dead,) = outbox.entries(states=[OutboxState.DEAD])
    (pending,) = outbox.entries(states=[OutboxState.PENDING])
    both = outbox.entries(states=[OutboxState.PENDING, OutboxState.DEAD])

    assert (dead.message_id, dead.finished_at) == ("m-2", pytest.approx(given_up))
    assert (pending.message_id, pending.finished_at) == ("m-1", None)
    assert pending.queued_at == pytest.approx(outbox_message("m-1").created_at, abs=60)
    assert {e.message_id for e in both} == {"m-1", "m-2"}
    assert [e.message_id for e in outbox.entries(message_id="m-2")] == ["m-2"]
    assert outbox.entries(states=[OutboxState.DELIVERED]) == []


@pytest.mark.anyio
async def test_a_dead_letter_sent_again_is_due_at_once_with_its_attempts_counted_afresh(
    store, outbox
):
    long_ago = time.time() - 4 * 86400
    messages = [
        dataclasses.replace(outbox_message(f"m-{i}", source=source), created_at=long_ago)
        for i, source in enumerate(["social_care", "social_care", "health", "health"])
    ]
    await store.append(audit_record("a-1"), messages)
    assert len(outbox.claim(time.time(), lease_s=0, limit=10)) == 4  # one attempt each
    for message in messages[:3]:
        outbox.dead(message.message_id, "UNREACHABLE", time.time())
    now = time.time()

    assert outbox.resend(now, ["m-0", "m-3"]) == ["m-0"]  # m-3 is pending: left as it is
    assert outbox.resend(now, source="health") == ["m-2"]
    assert outbox.resend(now) == ["m-1"]
    assert outbox.resend(now) == []

    assert {e.state for e in outbox.entries()} == {OutboxState.PENDING}
    again = {m.message_id: m for m in outbox.claim(now, lease_s=60, limit=10)}
    assert set(again) == {"m-0", "m-1", "m-2", "m-3"}
    # Counted afresh: the first attempt since, and queued now rather than four days ago, so
    # the limits that gave up on it do not give up again at once.
    assert (again["m-0"].attempts, again["m-3"].attempts) == (1, 2)
    assert again["m-0"].created_at == pytest.approx(now)
    assert again["m-3"].created_at == pytest.approx(long_ago)
    (resent,) = outbox.entries(message_id="m-0")
    assert (resent.finished_at, resent.payload is not None) == (None, True)


@pytest.mark.anyio
async def test_the_audit_store_lists_dead_letters_first_given_up_first_without_their_payloads(
    store, outbox
):
    messages = [outbox_message(f"m-{i}", audit_id="a-1", source=s) for i, s in enumerate("xyzw")]
    await store.append(audit_record("a-1"), messages)
    now = time.time()
    outbox.dead("m-2", "REFUSED", now)
    outbox.dead("m-0", "UNREACHABLE", now + 1)
    outbox.dead("m-3", "UNREACHABLE", now + 2)
    outbox.delivered("m-1", now)

    listed = store.dead_letters(limit=10)

    assert [(e.message_id, e.source, e.last_error) for e in listed] == [
        ("m-2", "z", "REFUSED"),
        ("m-0", "x", "UNREACHABLE"),
        ("m-3", "w", "UNREACHABLE"),
    ]
    assert {(e.audit_id, e.state, e.payload) for e in listed} == {("a-1", OutboxState.DEAD, None)}
    assert [e.finished_at for e in listed] == pytest.approx([now, now + 1, now + 2])
    assert [e.message_id for e in store.dead_letters(limit=2)] == ["m-2", "m-0"]
    outbox.resend(now + 3, ["m-0"])
    assert [e.message_id for e in store.dead_letters(limit=10)] == ["m-2", "m-3"]


@pytest.mark.anyio
async def test_a_dead_letter_passed_on_by_other_means_is_closed_with_its_audit_record(
    store, outbox
):
    for i in range(3):
        await store.append(audit_record(f"a-{i}"))
    await store.append(*notifying_record("a-last", "m-0", "m-1", "m-2"))
    store.seal()  # the 4th record: the close is the 5th, the fixture's checkpoint
    now = time.time()
    outbox.dead("m-0", "UNREACHABLE", now)
    outbox.dead("m-1", "REFUSED", now)
    how = "Phoned the duty manager at X on 29 Nov; gave the audit reference (J. Smith, ops)"
    record = functools.partial(passed_on_record, OPERATOR)

    closing = store.pass_on(["m-0", "m-2", "m-9"], how, now + 5, record)  # m-2 is pending
    assert [e.message_id for e in closing] == ["m-0"]
    assert store.pass_on([], how, now + 6, record) == []

    closed, dead, pending = outbox.entries()
    assert (closed.state, closed.payload, closed.passed_on) == (OutboxState.DELIVERED, None, how)
    assert closed.finished_at == pytest.approx(now + 5)
    assert (closed.last_error, closed.attempts) == ("UNREACHABLE", 0)  # why it had to be
    assert (dead.state, dead.passed_on, pending.state) == (
        OutboxState.DEAD,
        None,
        OutboxState.PENDING,
    )
    assert dead.payload is not None
    assert [e.message_id for e in store.dead_letters(limit=10)] == ["m-1"]
    assert outbox.stats().dead == 1
    assert outbox.resend(now + 7, ["m-0"]) == []  # closed: never sent after all
    # The close is in the hash chain: who, how, which message and agency, and why it was dead.
    (entry,) = store.records(subject=OPERATOR.subject)
    assert (entry["request_id"], entry["outcome"]) == ("m-0", PASSED_ON)
    assert entry["access"]["purpose"] == OPERATIONS
    assert entry["access"]["justification"] == how
    assert entry["access"]["child_ref"] is None
    assert [(s["source"], s["error_code"]) for s in entry["sources"]] == [
        ("social_care", "UNREACHABLE")
    ]
    assert (store.latest_checkpoint() or pytest.fail("no checkpoint")).seq == 5
    assert store.verify().ok


@pytest.mark.anyio
async def test_a_close_whose_record_cannot_be_made_is_not_made(store, outbox):
    """The close and its records are one transaction: when the second record cannot be made,
    neither message is closed and nothing is chained."""
    await store.append(*notifying_record("a-1", "m-0", "m-1"))
    store.seal()
    for message_id in ("m-0", "m-1"):
        outbox.dead(message_id, "UNREACHABLE", time.time())

    def record(closed: OutboxEntry) -> AuditRecord:
        if closed.message_id == "m-1":
            raise ValueError("no record for m-1")
        return passed_on_record(OPERATOR, closed)

    with pytest.raises(ValueError, match="no record for m-1"):
        store.pass_on(["m-0", "m-1"], "told by phone", time.time(), record)

    assert [(e.state, e.passed_on) for e in outbox.entries()] == [(OutboxState.DEAD, None)] * 2
    assert [r["audit_id"] for r in store.records()] == ["a-1"]
    assert store.verify().ok


@pytest.mark.anyio
async def test_a_close_is_signed_only_with_the_key_that_signs_the_log(backend, store, outbox):
    """A store whose key did not sign the log's latest checkpoint - another environment's, a
    retired one - closes nothing: a checkpoint it signed would fail verification for good. Nor
    does one before the log has a checkpoint to check its key against."""
    await store.append(*notifying_record("a-1", "m-0"))
    outbox.dead("m-0", "UNREACHABLE", time.time())
    record = functools.partial(passed_on_record, OPERATOR)
    with pytest.raises(ValueError, match="no signed checkpoint"):
        store.pass_on(["m-0"], "told by phone", time.time(), record)
    store.seal()
    other = backend.open_store(keys=CheckpointKeys.signing_with(Ed25519PrivateKey.generate()))
    try:
        with pytest.raises(ValueError, match="did not sign the log's latest checkpoint"):
            other.pass_on(["m-0"], "told by phone", time.time(), record)
    finally:
        other.close()

    assert [(e.state, e.passed_on) for e in outbox.entries()] == [(OutboxState.DEAD, None)]
    assert [r["audit_id"] for r in store.records()] == ["a-1"]
    assert [e.message_id for e in store.pass_on(["m-0"], "by phone", time.time(), record)] == [
        "m-0"
    ]

"""The notification outbox in the audit database: a message is queued in its audit record's own
transaction, leased to one dispatcher at a time, erased once delivered and kept when dead."""

import time

import pytest

from connectors.notifications import Notification
from gateway.audit import AuditUnavailable, Outbox, OutboxState, SqliteAuditStore
from tests.factories import CHECKPOINT_KEY, audit_record, outbox_message


@pytest.fixture
def store(tmp_path):
    audit = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    outbox = Outbox(audit.path)
    yield audit, outbox
    outbox.close()
    audit.close()


@pytest.mark.anyio
async def test_notifications_are_queued_exactly_when_their_audit_record_is_committed(store):
    audit, outbox = store
    await audit.append(audit_record("a-1"), [outbox_message("m-1")])

    with pytest.raises(AuditUnavailable):
        # The same audit id again fails the audit write, and takes its notification with it.
        await audit.append(audit_record("a-1"), [outbox_message("m-2")])

    assert [(e.message_id, e.state) for e in outbox.entries()] == [("m-1", OutboxState.PENDING)]
    assert [r["audit_id"] for r in audit.records()] == ["a-1"]


@pytest.mark.anyio
async def test_a_claimed_message_is_hidden_from_other_dispatchers_until_its_lease_ends(store):
    audit, outbox = store
    await audit.append(audit_record("a-1"), [outbox_message("m-1")])
    now = time.time()

    first = outbox.claim(now, lease_s=10, limit=5)
    meanwhile = outbox.claim(now + 5, lease_s=10, limit=5)
    after_lease = outbox.claim(now + 11, lease_s=10, limit=5)

    assert [(m.message_id, m.attempts) for m in first] == [("m-1", 1)]
    assert meanwhile == []
    assert [(m.message_id, m.attempts) for m in after_lease] == [("m-1", 2)]


@pytest.mark.anyio
async def test_delivery_erases_the_payload_and_a_dead_letter_keeps_it(store):
    audit, outbox = store
    await audit.append(
        audit_record("a-1"), [outbox_message("m-1"), outbox_message("m-2", source="health")]
    )

    outbox.delivered("m-1", time.time())
    outbox.dead("m-2", "UNREACHABLE", time.time())

    delivered, dead = outbox.entries()
    assert (delivered.state, delivered.payload) == (OutboxState.DELIVERED, None)
    assert (dead.state, dead.last_error) == (OutboxState.DEAD, "UNREACHABLE")
    assert Notification.model_validate_json(dead.payload or b"").message_id == "m-2"
    assert outbox.claim(time.time() + 3600, lease_s=1, limit=5) == []

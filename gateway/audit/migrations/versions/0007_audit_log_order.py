"""The auditors' feeds read in the log's own order, the order entries were committed in, not by the
time each gateway's clock stamped them with (gateway.audit.pages): read on by time, an entry
committed after an auditor read a page but stamped before its last entry was never read.

- `audit_log_subject_seq`, an index on `audit_log (subject, seq)`: a user's trail in that order,
  each page read on from its cursor. A child's trail is found through the child's index and the
  alerts feeds through the alerts' own key, `seq`.
- `notification_outbox.given_up_seq`, a dead letter's place in the order notifications were given
  up in, from the counter `outbox_given_up` (one row, `last_seq`), taken in the transaction that
  gives a message up (gateway.audit.outbox.GIVEN_UP_ORDER); `notification_outbox_given_up`, an
  index on `notification_outbox (state, given_up_seq)`, serves undeliveredNotifications in it.
  The dead letters already there are numbered in the order of the times they were given up at.

The SQLite log makes the same when it is opened (gateway.audit.sqlite).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from gateway.audit.migrations import writer_role

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("audit_log_subject_seq", "audit_log", ["subject", "seq"])
    op.add_column("notification_outbox", sa.Column("given_up_seq", sa.BigInteger()))
    op.create_table(
        "outbox_given_up",
        sa.Column(
            "id", sa.Integer(), sa.CheckConstraint("id = 1"), primary_key=True, autoincrement=False
        ),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "UPDATE notification_outbox AS o SET given_up_seq = numbered.n FROM ("
        " SELECT message_id, row_number() OVER (ORDER BY finished_at, message_id) AS n"
        " FROM notification_outbox WHERE state = 'DEAD') AS numbered"
        " WHERE o.message_id = numbered.message_id"
    )
    op.execute(
        "INSERT INTO outbox_given_up (id, last_seq)"
        " SELECT 1, count(*) FROM notification_outbox WHERE state = 'DEAD'"
    )
    op.create_index(
        "notification_outbox_given_up", "notification_outbox", ["state", "given_up_seq"]
    )
    schema = op.get_context().version_table_schema
    assert schema is not None, "run through gateway.audit.migrations.upgrade"
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON outbox_given_up TO "{writer_role(schema)}"')


def downgrade() -> None:
    op.drop_index("notification_outbox_given_up", "notification_outbox")
    op.drop_table("outbox_given_up")
    op.drop_column("notification_outbox", "given_up_seq")
    op.drop_index("audit_log_subject_seq", "audit_log")

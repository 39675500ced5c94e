"""Whole-row hashes and signed checkpoints: `audit_log.format` (1 for the rows already written,
which keep verifying under the old rule up to the first row of format 2), and the columns of a
signed checkpoint (`records`, `prev`, `key_id`, `signature`), its `mac` now only for the MAC'd
checkpoints written before (see gateway.audit.chain and gateway.audit.checkpoints).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SIGNED = (
    ("records", sa.BigInteger()),
    ("prev", sa.Text()),
    ("key_id", sa.Text()),
    ("signature", sa.Text()),
)


def upgrade() -> None:
    # Adding columns fires no UPDATE trigger: the append-only guards stay as they are.
    op.add_column(
        "audit_log", sa.Column("format", sa.SmallInteger(), nullable=False, server_default="1")
    )
    op.alter_column("audit_checkpoint", "mac", existing_type=sa.Text(), nullable=True)
    for name, kind in _SIGNED:
        op.add_column("audit_checkpoint", sa.Column(name, kind))


def downgrade() -> None:
    """Refused (by the NOT NULL on `mac`) once a signed checkpoint was written: the old code could
    not verify the log past it."""
    for name, _ in _SIGNED:
        op.drop_column("audit_checkpoint", name)
    op.alter_column("audit_checkpoint", "mac", existing_type=sa.Text(), nullable=False)
    op.drop_column("audit_log", "format")

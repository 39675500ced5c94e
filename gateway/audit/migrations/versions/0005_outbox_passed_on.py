"""Dead letters passed on by other means: `notification_outbox.passed_on`, what an operator said
of how the agency was told (`childlookup notifications passed-on`), on a message then closed as
delivered with its payload erased. NULL for everything delivered by the gateway.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notification_outbox", sa.Column("passed_on", sa.Text()))


def downgrade() -> None:
    op.drop_column("notification_outbox", "passed_on")

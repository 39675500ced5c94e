"""The alerts feeds in their order: `audit_alert_time`, an index on `audit_alert (at, seq)`.
overrideAlerts and limitAlerts are read oldest first, a page at a time, each page strictly after
the last one's position (gateway.audit.pages); without it every page read the whole table and
sorted it, so reading a harvesting script's burst of limit alerts (one a refused call) took time
quadratic in its size. With it a page reads on from the cursor, in order, and stops at a page.
The SQLite log makes the same index when it is opened (gateway.audit.sqlite).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("audit_alert_time", "audit_alert", ["at", "seq"])


def downgrade() -> None:
    op.drop_index("audit_alert_time", "audit_alert")

"""The children a lookup reached beyond the one it was looked up by: `audit_log_link`, one row per
lookup and NHS-number pseudonym its linked records hold (`AuditRecord.linked_refs`, which the
hash-chained body carries too). A child's trail and its owner's access history, looked for by NHS
number, then hold the lookups made by UPN or demographics that reached it. Append-only like the
log, deleted only with the records it indexes, by `audit archive`. Records written before it have
no rows here.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from gateway.audit.migrations import writer_role

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log_link",
        sa.Column("child_ref", sa.Text(), primary_key=True),
        sa.Column("audit_id", sa.Text(), primary_key=True),
    )
    op.execute(
        "CREATE TRIGGER audit_log_link_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
        " ON audit_log_link FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )
    schema = op.get_context().version_table_schema
    assert schema is not None, "run through gateway.audit.migrations.upgrade"
    op.execute(f'GRANT SELECT, INSERT ON audit_log_link TO "{writer_role(schema)}"')


def downgrade() -> None:
    op.drop_table("audit_log_link")

"""Retention: `audit_archive`, one row per segment of the log archived by `childlookup audit
archive` (gateway.audit.archive), append-only like the log; and the append-only guard lets a
DELETE through in the one transaction that archives, which says so with `SET LOCAL
childlookup.archiving = 'on'`. Only the schema's owner may delete at all (the writer role has no
DELETE privilege), and the owner could always disable the triggers; what the guard still stops is
a deletion by mistake. Every deletion is visible to `audit verify`, which checks the live log from
the anchor the archive left (gateway.audit.chain.Anchor).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from gateway.audit.migrations import writer_role

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_GUARD = (
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "{archiving} RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
)
_ARCHIVING = (
    " IF TG_OP = 'DELETE' AND current_setting('childlookup.archiving', true) = 'on'"
    " THEN RETURN NULL; END IF;"
)


def upgrade() -> None:
    op.create_table(
        "audit_archive",
        sa.Column("last_seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.Text(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("at", sa.Text(), nullable=False),
    )
    op.execute(_GUARD.format(archiving=_ARCHIVING))
    op.execute(
        "CREATE TRIGGER audit_archive_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
        " ON audit_archive FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
    )
    schema = op.get_context().version_table_schema
    assert schema is not None, "run through gateway.audit.migrations.upgrade"
    op.execute(f'GRANT SELECT ON audit_archive TO "{writer_role(schema)}"')


def downgrade() -> None:
    op.drop_table("audit_archive")
    op.execute(_GUARD.format(archiving=""))

"""The audit log, its alerts and checkpoints (append-only), the notification outbox, the readiness
heartbeat, and the `<schema>_writer` role gateways append as.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from gateway.audit.migrations import writer_role

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_log", "audit_alert", "audit_checkpoint")
"""Tables nothing may change or empty once written; the hash chain shows any edit that bypasses
this (a superuser disabling triggers)."""

_TEXT = sa.Text()
_TIME = sa.DateTime(timezone=True)


def _schema() -> str:
    schema: str | None = op.get_context().version_table_schema
    assert schema is not None, "run through gateway.audit.migrations.upgrade"
    return schema


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("audit_id", _TEXT, nullable=False, unique=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("child_ref", _TEXT),
        sa.Column("subject", _TEXT, nullable=False),
        sa.Column("role", _TEXT, nullable=False),
        sa.Column("organisation", _TEXT, nullable=False),
        sa.Column("purpose", _TEXT, nullable=False),
        sa.Column("outcome", _TEXT, nullable=False),
        # The exact JSON the chain hashes: text, never jsonb, which would re-encode it.
        sa.Column("body", _TEXT, nullable=False),
        sa.Column("prev_hash", _TEXT, nullable=False),
        sa.Column("hash", _TEXT, nullable=False),
    )
    op.create_index("audit_log_child", "audit_log", ["child_ref", "at"])
    op.create_index("audit_log_subject", "audit_log", ["subject", "at"])
    op.create_table(
        "audit_alert",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("kind", _TEXT, nullable=False),
        sa.Column("audit_id", _TEXT, nullable=False),
        sa.Column("subject", _TEXT, nullable=False),
        sa.Column("role", _TEXT, nullable=False),
        sa.Column("organisation", _TEXT, nullable=False),
        sa.Column("justification", _TEXT),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", _TEXT, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("mac", _TEXT, nullable=False),
    )
    op.create_table(
        "audit_heartbeat",
        sa.Column(
            "id", sa.Integer(), sa.CheckConstraint("id = 1"), primary_key=True, autoincrement=False
        ),
        sa.Column("at", _TIME, nullable=False),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("message_id", _TEXT, primary_key=True),
        sa.Column("audit_id", _TEXT, nullable=False),
        sa.Column("source", _TEXT, nullable=False),
        # Seconds since the epoch, as every gateway process reads them.
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column(
            "state",
            _TEXT,
            sa.CheckConstraint("state IN ('PENDING', 'DELIVERED', 'DEAD')"),
            nullable=False,
            server_default="PENDING",
        ),
        sa.Column("payload", sa.LargeBinary()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("last_error", _TEXT),
        sa.Column("finished_at", sa.Double()),
    )
    op.create_index("notification_outbox_due", "notification_outbox", ["state", "next_attempt_at"])
    op.execute(
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in APPEND_ONLY:
        # Per statement: an UPDATE or DELETE is refused even when it matches no row.
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
        )
    schema, role = _schema(), writer_role(_schema())
    op.execute(
        "DO $$ BEGIN"
        f" IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN"
        f' CREATE ROLE "{role}" NOLOGIN;'
        " END IF; END $$"
    )
    op.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
    op.execute(f'GRANT SELECT, INSERT ON {", ".join(APPEND_ONLY)} TO "{role}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON notification_outbox, audit_heartbeat TO "{role}"')
    op.execute(f'GRANT SELECT ON alembic_version TO "{role}"')


def downgrade() -> None:
    schema, role = _schema(), writer_role(_schema())
    op.execute(f'REVOKE ALL ON alembic_version FROM "{role}"')
    op.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM "{role}"')
    for table in ("notification_outbox", "audit_heartbeat", *APPEND_ONLY):
        op.drop_table(table)
    op.execute("DROP FUNCTION audit_append_only()")
    # A role still granted something elsewhere (another database) stays, with a notice.
    op.execute(
        f'DO $$ BEGIN DROP ROLE IF EXISTS "{role}";'
        " EXCEPTION WHEN dependent_objects_still_exist THEN"
        f" RAISE NOTICE 'role {role} kept: it holds privileges elsewhere'; END $$"
    )

"""Schema migrations of the PostgreSQL audit database, run by alembic.

`childlookup db upgrade` (`upgrade_schema` here) brings the schema named by
CHILDLOOKUP_DATABASE_SCHEMA to the newest revision: it creates the schema if missing, keeps
alembic's version table in it, and runs every revision in one transaction under an advisory lock,
so two upgrades started at once run one after the other. It is a deployment step, run as the
database user that owns the schema (and may create roles), before gateways of the new version
start. A gateway never migrates: at start-up `require_current` refuses a schema that is missing
or not at this code's revision.

Roles. The first revision creates a NOLOGIN group role `<schema>_writer` (if it does not exist;
roles are cluster-wide) holding exactly what a gateway needs:

| table | privileges |
|---|---|
| audit_log, audit_alert, audit_checkpoint | SELECT, INSERT |
| notification_outbox | SELECT, INSERT, UPDATE (delivery progress) |
| outbox_given_up | SELECT, INSERT, UPDATE (the order notifications are given up in) |
| audit_heartbeat | SELECT, INSERT, UPDATE (readiness) |
| alembic_version | SELECT |

Operators create one login user per deployment in that group and give it to the gateways, e.g.
`CREATE ROLE gateway LOGIN PASSWORD '...' IN ROLE childlookup_writer`; the owner's credentials
stay with whoever runs `db upgrade`. Under the writer role the audit tables cannot be updated,
deleted or truncated (no such privilege), and even their owner is refused by triggers; only a
superuser disabling triggers gets past both, and the hash chain shows what they changed.

A new revision is a file in `versions/` whose `down_revision` is the previous head; it grants the
writer role what it needs on any table it creates.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

SCRIPTS: Final = Path(__file__).parent
_SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,54}$")
"""Lower-case, unquoted-safe, and short enough for `<schema>_writer` to fit PostgreSQL's 63."""


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"not a usable PostgreSQL schema name: {schema!r}")
    return schema


def writer_role(schema: str) -> str:
    """The group role whose members may append to the audit log in `schema`."""
    return f"{check_schema_name(schema)}_writer"


def advisory_key(schema: str, purpose: str) -> int:
    """A 64-bit advisory lock key for one purpose in one schema, the same in every process."""
    digest = hashlib.sha256(f"childlookup:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def head() -> str:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory(str(SCRIPTS)).get_current_head()
    assert revision is not None
    return revision


def upgrade_schema(url: str, schema: str) -> str:
    """Bring `schema` to the newest revision (creating it if missing); returns that revision."""
    _migrate(url, schema, "upgrade", "head")
    return head()


def downgrade_schema(url: str, schema: str, revision: str = "base") -> None:
    """Take `schema` back to `revision` (by default, empty: every table dropped, and the writer
    role too unless it holds privileges elsewhere). The audit log goes with its tables."""
    _migrate(url, schema, "downgrade", revision)


def _migrate(url: str, schema: str, direction: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    check_schema_name(schema)
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=NullPool
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": advisory_key(schema, "migrate")},
            )
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
            config = Config()
            config.set_main_option("script_location", str(SCRIPTS))
            config.attributes["connection"] = conn
            config.attributes["schema"] = schema
            getattr(command, direction)(config, revision)
    except DBAPIError as exc:
        raise ValueError(
            f"cannot migrate the audit database (schema {schema}): {_one_line(exc.orig)}"
        ) from exc
    finally:
        engine.dispose()


def require_current(url: str, schema: str) -> None:
    """Raise ValueError, saying what to do, unless `schema` is at this code's revision."""
    check_schema_name(schema)
    query = sql.SQL("SELECT version_num FROM {}.alembic_version").format(sql.Identifier(schema))
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(query).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    except psycopg.Error as exc:
        raise ValueError(
            f"cannot read the audit database (schema {schema}): {_one_line(exc)}"
        ) from exc
    wanted = head()
    if row is None:
        raise ValueError(
            f"no audit log in PostgreSQL schema {schema}: run `childlookup db upgrade` first"
        )
    if row[0] != wanted:
        raise ValueError(
            f"the audit database (schema {schema}) is at revision {row[0]}, this gateway needs"
            f" {wanted}: run `childlookup db upgrade` with this version"
        )


def _one_line(error: BaseException | None) -> str:
    return " ".join(str(error).split())

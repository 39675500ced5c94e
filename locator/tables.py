"""The locator's tables: who holds a record under which pseudonym, who published what and when,
and who asked.

Nothing here can name a child: a holding is a key version, 32 bytes of HMAC and an agency. Rows
are kept small because there is one per agency per identifier per child - several per child,
twelve million children - so agencies and key versions are small integers, pseudonyms raw bytes
rather than their 43-character text, and times Unix seconds.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

metadata = MetaData()

agencies = Table(
    "agencies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(40), nullable=False, unique=True),
)

key_versions = Table(
    "key_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(32), nullable=False, unique=True),
    # Set by `retire-key`: the version's holdings are deleted, and its publications refused.
    Column("retired_at", BigInteger, nullable=True),
)

holdings = Table(
    "holdings",
    metadata,
    Column("key_version_id", Integer, ForeignKey(key_versions.c.id), nullable=False),
    Column("pseudonym", LargeBinary(32), nullable=False),
    Column("agency_id", Integer, ForeignKey(agencies.c.id), nullable=False),
    # No time: when an agency began to hold a child's record (a case opened, a child taken into
    # care) is what it holds, not that it holds (principle 1). See store.FORGOTTEN_COLUMNS.
    # Locate reads by (key version, pseudonym): the primary key's prefix.
    PrimaryKeyConstraint("key_version_id", "pseudonym", "agency_id"),
    # An agency lists its own holdings in pseudonym order, and counts them.
    Index("holdings_by_agency", "agency_id", "key_version_id", "pseudonym"),
    sqlite_with_rowid=False,
)

publications = Table(
    "publications",
    metadata,
    Column("agency_id", Integer, ForeignKey(agencies.c.id), nullable=False),
    Column("batch_id", String(64), nullable=False),
    Column("key_version_id", Integer, ForeignKey(key_versions.c.id), nullable=False),
    Column("published", Integer, nullable=False),
    Column("withdrawn", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),
    # SHA-256 of the batch's content: a batch id sent again with other content is refused.
    Column("digest", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("agency_id", "batch_id"),
)

queries = Table(
    "queries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("issuer", String(200), nullable=False),
    # How many pseudonyms were asked about, and how many agencies named: never which.
    Column("pseudonyms", Integer, nullable=False),
    Column("agencies", Integer, nullable=False),
    Index("queries_by_time", "at"),
)

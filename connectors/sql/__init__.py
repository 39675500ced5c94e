"""A connector over any relational database, configured by a mapping file rather than coded.

An agency names its child table, identifier, name, address and flag columns, its carers and
involvements tables, and each indicator as "an open episode in table X" in a TOML file
(`load_mapping`; worked example in `connectors.sql.la_case_records`), and serves it with
`create_sql_app`. Lookups run as indexed SQL against the agency's own tables; demographic search
runs on a blocking-key table the connector keeps beside them (`refresh_blocking_keys`).
"""

from connectors.backend import today_in_england
from connectors.sql.app import create_sql_app, prepare, refresh_blocking_keys, sql_profile
from connectors.sql.backend import SqlBackend, open_tables
from connectors.sql.blocks import RefreshSummary
from connectors.sql.engine import DatabaseUnreachable, create_engine, redacted
from connectors.sql.mapping import Mapping, MappingError, load_mapping

__all__ = [
    "DatabaseUnreachable",
    "Mapping",
    "MappingError",
    "RefreshSummary",
    "SqlBackend",
    "create_engine",
    "create_sql_app",
    "load_mapping",
    "open_tables",
    "prepare",
    "redacted",
    "refresh_blocking_keys",
    "sql_profile",
    "today_in_england",
]

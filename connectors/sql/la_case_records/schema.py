"""A local authority's case records, as the worked example of a mapped database.

Shaped like what children's services case systems hold and report: one row per child (the LA's
own child id, NHS number, UPN and former UPN, names, birth date, gender, address, shielding), the
children in need census's episodes, child protection plans and section 47 enquiries, the SSDA903
looked-after episodes, early help, allocated workers and carers. Names and addresses come from
the authority's own system (the statutory returns carry none); the importers fill the returns'
tables and create children by LA child id (connectors.sql.la_case_records.returns).

Column names are the authority's, not the protocol's: `mapping.toml` beside this file is what
tells the connector what they mean. Every column a lookup filters on is indexed.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
)

LA_CHILD_ID: Final = 36
"""Longest LA child id accepted: the census allows up to 36 characters."""

GENDER_CODES: Final = ("0", "1", "2", "9")
"""The census and SSDA903 codes: 0 not known, 1 male, 2 female, 9 not specified."""

metadata = MetaData()


def _per_child(name: str, *columns: Column[Any]) -> Table:
    """A table of rows about one child each (episodes, plans, carers): a row id and the child's
    key, indexed; deleting the child deletes its rows."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column(
            "la_child_id",
            String(LA_CHILD_ID),
            ForeignKey("children.la_child_id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        *columns,
    )


children = Table(
    "children",
    metadata,
    Column("la_child_id", String(LA_CHILD_ID), primary_key=True),
    Column("nhs_number", String(10), index=True),
    Column("upn", String(13), index=True),
    Column("former_upn", String(13), index=True),
    Column("given_name", String(100)),
    Column("family_name", String(100)),
    Column("former_family_names", String(300)),
    Column("known_as", String(300)),
    Column("birth_date", Date),
    Column("gender", String(1)),
    Column("address_line1", String(200)),
    Column("address_line2", String(200)),
    Column("address_line3", String(200)),
    Column("address_line4", String(200)),
    Column("postcode", String(8)),
    Column("shielded", Boolean, nullable=False, default=False),
    Column("as_of", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=func.now()),
    Index("children_updated_at", "updated_at"),
)

cin_episodes = _per_child(
    "cin_episodes",
    Column("referral_date", Date, nullable=False),
    Column("referral_source", String(8)),
    Column("primary_need_code", String(8)),
    Column("closure_date", Date),
    Column("reason_for_closure", String(8)),
)

child_protection_plans = _per_child(
    "child_protection_plans",
    Column("start_date", Date, nullable=False),
    Column("end_date", Date),
    Column("initial_category_of_abuse", String(8)),
    Column("latest_category_of_abuse", String(8)),
)

section47_enquiries = _per_child(
    "section47_enquiries",
    Column("actual_start_date", Date, nullable=False),
    Column("initial_cpc_target", Date),
    Column("date_of_initial_cpc", Date),
    Column("icpc_not_required", Boolean),
)

looked_after_episodes = _per_child(
    "looked_after_episodes",
    Column("start_date", Date, nullable=False),
    Column("reason_new_episode", String(8)),
    Column("legal_status", String(8)),
    Column("cin_category", String(8)),
    Column("placement_type", String(8)),
    Column("placement_provider", String(8)),
    Column("end_date", Date),
    Column("reason_episode_ceased", String(8)),
    Column("reason_place_change", String(8)),
    Column("home_postcode", String(8)),
    Column("placement_postcode", String(8)),
    Column("school_urn", String(8)),
)

early_help_episodes = _per_child(
    "early_help_episodes",
    Column("start_date", Date, nullable=False),
    Column("end_date", Date),
)

allocations = _per_child(
    "allocations",
    Column("position", Integer, nullable=False, default=0),
    Column("service", String(100), nullable=False),
    Column("team", String(200)),
    Column("worker_name", String(200)),
    Column("worker_role", String(100)),
    Column("worker_phone", String(40)),
    Column("worker_email", String(200)),
    Column("is_lead", Boolean, nullable=False, default=False),
    Column("start_date", Date),
    Column("end_date", Date),
)

carers = _per_child(
    "carers",
    Column("position", Integer, nullable=False, default=0),
    Column("name", String(200), nullable=False),
    Column("relationship", String(100), nullable=False),
    Column("parental_responsibility", Boolean, nullable=False, default=False),
    Column("phone", String(40)),
)

statutory_imports = Table(
    "statutory_imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("return_name", String(20), nullable=False),
    Column("reference_date", Date, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("children", Integer, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)
"""Each import of a statutory return: which return, as of when, from which file (by digest), so
an operator can see what snapshot the connector's indicators rest on."""

return_snapshots = Table(
    "return_snapshots",
    metadata,
    Column(
        "la_child_id",
        String(LA_CHILD_ID),
        ForeignKey("children.la_child_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("return_name", String(20), primary_key=True),
    Column("reference_date", Date, nullable=False),
)
"""Per child, the reference date of each return whose rows it holds: a child in two returns of
different years (this year's census, last year's SSDA903) is answered as of the older, since its
indicators rest on both."""

RETURN_TABLES: Final = {
    "cin_census": (cin_episodes, child_protection_plans, section47_enquiries),
    "ssda903": (looked_after_episodes,),
}
"""The tables each return's import replaces, per child it carries."""

"""Who to call at a school: the designated safeguarding lead (DSL) per school URN.

A Common Transfer File names the school but never its safeguarding lead, who is the person a
practitioner needs. The education connector therefore takes the leads from a small JSON file the
local authority keeps (it already holds this list to run its safeguarding training and audits):

    {"schools": {"100001": {"name": "Northtown Academy", "phone": "0113 496 0001",
                            "safeguarding_lead": {"name": "Ann Lee", "phone": "0113 496 0002",
                                                  "email": "a.lee@northtown.sch.uk"}}}}

It is read once at start-up; a change needs a restart. A school missing from it is still served,
without a lead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connectors.backend import summarise_validation_error

SAFEGUARDING_LEAD_ROLE: Final = "Designated safeguarding lead"

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SafeguardingLead(_Model):
    name: _Text
    phone: _Text | None = None
    email: _Text | None = None


class SchoolContact(_Model):
    """What the authority knows about one school beyond what its CTFs carry."""

    name: _Text | None = None
    phone: _Text | None = None
    safeguarding_lead: SafeguardingLead | None = None


class SchoolContacts(_Model):
    """School contacts by URN (six digits, as the DfE's Get Information About Schools gives it)."""

    schools: dict[Annotated[str, StringConstraints(pattern=r"^\d{6,7}$")], SchoolContact] = Field(
        default_factory=dict
    )

    def get(self, urn: str) -> SchoolContact | None:
        return self.schools.get(urn)


NO_SCHOOL_CONTACTS: Final = SchoolContacts()


class SchoolContactsError(ValueError):
    """A school contacts file that cannot be used; the message names the file and the entry."""


def load_school_contacts(path: Path) -> SchoolContacts:
    """Read the school contacts file; raises SchoolContactsError at start-up when it is unreadable
    or malformed, rather than serving schools without the leads the operator meant to give."""
    try:
        return SchoolContacts.model_validate_json(path.read_bytes())
    except OSError as error:
        raise SchoolContactsError(f"{path}: cannot be read ({error.strerror})") from None
    except ValidationError as error:
        reason = summarise_validation_error(error)
        raise SchoolContactsError(f"{path}: not a school contacts file: {reason}") from None

"""Agency connector SDK: implement `ConnectorBackend.lookup`, serve it with `create_connector_app`.

The protocol models re-exported here are the ones an agency needs to read a request and build its
records; the rest of `connectors.protocol` is handled by the SDK.
"""

from connectors.app import create_connector_app
from connectors.backend import ConnectorBackend, ConnectorError
from connectors.check_digits import (
    is_nhs_number,
    is_permanent_upn,
    nhs_check_digit,
    upn_check_letter,
)
from connectors.minimisation import minimise
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    Demographics,
    ErrorCode,
    FieldId,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    LookupRequest,
    PersonName,
    RecordFlags,
    School,
    Sex,
)
from connectors.records import FileBackend, RecordFileError
from connectors.reference import REFERENCE_AGENCIES, AgencyProfile, create_reference_app
from connectors.search import CandidateIndex

__all__ = [
    "REFERENCE_AGENCIES",
    "Address",
    "AgencyProfile",
    "CandidateIndex",
    "Carer",
    "ConnectorBackend",
    "ConnectorError",
    "ConnectorRecord",
    "Contact",
    "Demographics",
    "ErrorCode",
    "FieldId",
    "FileBackend",
    "GpPractice",
    "Identifiers",
    "Indicators",
    "Involvement",
    "LookupRequest",
    "PersonName",
    "RecordFileError",
    "RecordFlags",
    "School",
    "Sex",
    "create_connector_app",
    "create_reference_app",
    "is_nhs_number",
    "is_permanent_upn",
    "minimise",
    "nhs_check_digit",
    "upn_check_letter",
]

"""The health connector over FHIR R4: NHS England's Personal Demographics Service (PDS) for who the
child is, and Child Protection - Information Sharing (CP-IS) for their plans.

- `create_fhir_app` serves a connector answering from live PDS and CP-IS base URLs, authenticating
  with `NoAuth`, `BearerToken` or `SignedJwtAuth` (OAuth 2.0 client credentials, RS512 assertion).
- `FhirSandbox` / `create_fhir_sandbox_app` serve a PDS- and CP-IS-shaped test server loaded from
  connector records (`FhirSandbox.from_files` reads `childlookup synth` output).
- `patient_resource`, `related_person_resources`, `flag_resource` and `plans_from_record` write
  records and plans as the FHIR resources those services serve.

See docs/connectors.md for what the mapping covers and what it does not.
"""

from connectors.fhir.app import HEALTH_FHIR_PROFILE, create_fhir_app, fhir_profile
from connectors.fhir.auth import BearerToken, FhirAuth, NoAuth, SignedJwtAuth
from connectors.fhir.backend import FhirBackend
from connectors.fhir.client import FhirClient
from connectors.fhir.plans import CpisPlan, ResponsibleAuthority
from connectors.fhir.resources import (
    flag_resource,
    patient_resource,
    plans_from_record,
    related_person_resources,
)
from connectors.fhir.sandbox import (
    CPIS_PATH,
    DEMO_AUTHORITY,
    PDS_PATH,
    TOKEN_PATH,
    FhirSandbox,
    SandboxClient,
    SandboxFault,
    create_fhir_sandbox_app,
)
from connectors.fhir.terminology import Confidentiality, PlanKind, SpineError

__all__ = [
    "CPIS_PATH",
    "DEMO_AUTHORITY",
    "HEALTH_FHIR_PROFILE",
    "PDS_PATH",
    "TOKEN_PATH",
    "BearerToken",
    "Confidentiality",
    "CpisPlan",
    "FhirAuth",
    "FhirBackend",
    "FhirClient",
    "FhirSandbox",
    "NoAuth",
    "PlanKind",
    "ResponsibleAuthority",
    "SandboxClient",
    "SandboxFault",
    "SignedJwtAuth",
    "SpineError",
    "create_fhir_app",
    "create_fhir_sandbox_app",
    "fhir_profile",
    "flag_resource",
    "patient_resource",
    "plans_from_record",
    "related_person_resources",
]

"""The FHIR health connector as an app: its profile, and `create_fhir_app` to serve it.

It stands in for the reference "health" connector: same name, same place in the gateway's plan,
but answering from PDS (and CP-IS) live instead of from a file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import httpx
from starlette.applications import Starlette

from connectors.app import create_connector_app
from connectors.fhir.auth import FhirAuth, NoAuth
from connectors.fhir.backend import FhirBackend
from connectors.fhir.client import FhirClient
from connectors.notifications import NotificationSink, received_notifications
from connectors.protocol import FieldId
from connectors.reference import REFERENCE_AGENCIES, AgencyProfile
from connectors.trust import AnswerSigner, RequestVerifier
from connectors.witness import WitnessStore

_PDS_FIELDS: Final = (
    FieldId.NHS_NUMBER,
    FieldId.NAME,
    FieldId.DATE_OF_BIRTH,
    FieldId.SEX,
    FieldId.ADDRESS,
    FieldId.GP_PRACTICE,
    FieldId.CARERS,
)
_CPIS_FIELDS: Final = (
    FieldId.CHILD_PROTECTION_PLAN,
    FieldId.LOOKED_AFTER,
    FieldId.INVOLVEMENTS,
)


def fhir_profile(*, with_cpis: bool) -> AgencyProfile:
    """The health agency as PDS (and, `with_cpis`, CP-IS) can answer for it: demographics,
    registered GP and related people for every child with an NHS number; with CP-IS, the child
    protection and looked-after plans and the responsible authority as an involvement. No health
    visiting, school nursing or CAMHS involvements, and so no sensitive service details: PDS and
    CP-IS hold no practitioners."""
    reference = REFERENCE_AGENCIES["health"]
    return AgencyProfile(
        name="health",
        title="NHS health records (PDS" + (" and CP-IS)" if with_cpis else ")"),
        description=(
            "Demographics, registered GP (ODS code) and related people from the Personal "
            "Demographics Service FHIR API, with its restricted flag withholding location"
            + (
                "; child protection and looked-after plans from CP-IS, with the responsible "
                "local authority's office-hours and emergency duty contacts."
                if with_cpis
                else "."
            )
        ),
        provides=_PDS_FIELDS + (_CPIS_FIELDS if with_cpis else ()),
        shield_authority=False,
        holds_every_child=True,
        default_port=reference.default_port,
    )


HEALTH_FHIR_PROFILE: Final = fhir_profile(with_cpis=True)


def create_fhir_app(
    *,
    pds_url: str,
    cpis_url: str | None = None,
    auth: FhirAuth | None = None,
    cpis_auth: FhirAuth | None = None,
    verifier: RequestVerifier | None = None,
    signer: AnswerSigner | None = None,
    notifications: NotificationSink | None = None,
    witness: WitnessStore | None = None,
    source: str = "health",
    timeout_s: float = 5.0,
    cpis_for_candidates: bool = False,
) -> Starlette:
    """A connector app answering lookups from the PDS FHIR API at `pds_url` and, with `cpis_url`,
    the CP-IS FHIR API there (base URLs, e.g. ".../personal-demographics/FHIR/R4").

    `auth` authenticates to PDS (`NoAuth`, `BearerToken` or `SignedJwtAuth`; none by default) and
    to CP-IS unless `cpis_auth` is given. `timeout_s` bounds each FHIR call, within the lookup's
    deadline. `verifier`, `signer`, `notifications` and `witness` are as for
    `create_reference_app`: with a `verifier` the app serves only requests the gateway signed and
    keeps its owner notifications (in an in-memory `NotificationLog` unless `notifications` is
    given), and with a `witness` too the gateway's audit checkpoints. `cpis_for_candidates`
    also asks CP-IS about demographic candidates (see `connectors.fhir.backend`).

    One HTTP client is shared by every lookup and closed when the app shuts down.
    """
    pds_auth = auth or NoAuth()
    http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
    pds = FhirClient(pds_url, service="PDS", auth=pds_auth, http=http, timeout_s=timeout_s)
    cpis = (
        None
        if cpis_url is None
        else FhirClient(
            cpis_url, service="CP-IS", auth=cpis_auth or pds_auth, http=http, timeout_s=timeout_s
        )
    )
    backend = FhirBackend(pds, cpis, cpis_for_candidates=cpis_for_candidates)
    notifications = received_notifications(notifications, verified=verifier is not None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return create_connector_app(
        backend,
        source=source,
        verifier=verifier,
        signer=signer,
        notifications=notifications,
        witness=witness,
        lifespan=lifespan,
    )

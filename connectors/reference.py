"""The three reference agencies: what each holds, and a connector app serving it from a file.

They stand in for real agency systems in the demo, the end-to-end tests and the benchmarks. Their
profiles are the same facts the gateway's planner needs (which fields a source can provide, whether
it is an authority on shielding), kept as data so a new agency is a new entry rather than new code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from starlette.applications import Starlette

from connectors.app import create_connector_app
from connectors.backend import ConnectorBackend
from connectors.notifications import NotificationSink, received_notifications
from connectors.protocol import ConnectorRecord, FieldId, LookupRequest
from connectors.records import FileBackend
from connectors.trust import AnswerSigner, RequestVerifier
from connectors.witness import WitnessStore

_IDENTITY: Final = (FieldId.NHS_NUMBER, FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX)


@dataclass(frozen=True)
class AgencyProfile:
    """What one kind of agency holds about children, as the gateway plans against it."""

    name: str
    title: str
    description: str
    provides: tuple[FieldId, ...]
    shield_authority: bool
    holds_every_child: bool
    default_port: int
    restriction_authority: bool = False
    """It carries the NHS restricted (R) flag (the Personal Demographics Service): until it has
    answered, nobody can say the child is not restricted."""


REFERENCE_AGENCIES: Final[Mapping[str, AgencyProfile]] = MappingProxyType(
    {
        profile.name: profile
        for profile in (
            AgencyProfile(
                name="health",
                title="NHS health records",
                description=(
                    "Demographics and registered GP as the Personal Demographics Service and GP "
                    "systems hold them, with health visiting, school nursing and CAMHS "
                    "involvements. Carries the PDS restricted flag, which withholds location."
                ),
                provides=(
                    *_IDENTITY,
                    FieldId.ADDRESS,
                    FieldId.GP_PRACTICE,
                    FieldId.CARERS,
                    FieldId.INVOLVEMENTS,
                    FieldId.SENSITIVE_SERVICE_DETAILS,
                ),
                shield_authority=False,
                holds_every_child=True,
                default_port=8101,
                restriction_authority=True,
            ),
            AgencyProfile(
                name="education",
                title="Schools and education",
                description=(
                    "Current school and its designated safeguarding lead, keyed by UPN, with the "
                    "pupil's contacts (parents and carers, as the Common Transfer File carries "
                    "them). Rarely holds the NHS number, so its records are often matched on "
                    "demographics."
                ),
                provides=(
                    *_IDENTITY,
                    FieldId.ADDRESS,
                    FieldId.SCHOOL,
                    FieldId.CARERS,
                    FieldId.INVOLVEMENTS,
                ),
                shield_authority=False,
                holds_every_child=False,
                default_port=8102,
            ),
            AgencyProfile(
                name="social_care",
                title="Local authority children's social care",
                description=(
                    "Allocated social worker and early help lead, child protection plan, "
                    "looked-after, child in need and early help status; often holds the NHS "
                    "number. The authority that shields a child, so its answer is needed to "
                    "know whether location may be shown at all."
                ),
                provides=(
                    *_IDENTITY,
                    FieldId.ADDRESS,
                    FieldId.CARERS,
                    FieldId.INVOLVEMENTS,
                    FieldId.CHILD_PROTECTION_PLAN,
                    FieldId.LOOKED_AFTER,
                    FieldId.CHILD_IN_NEED,
                    FieldId.EARLY_HELP,
                ),
                shield_authority=True,
                holds_every_child=False,
                default_port=8103,
            ),
        )
    }
)


@dataclass(frozen=True)
class _ReferenceBackend:
    """A file of records served as one agency would: never beyond what the agency provides (the
    records hold nothing more once loaded), and as slowly as asked, so benchmarks and timeout
    tests can model a distant or struggling system."""

    records: FileBackend
    latency_s: float

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return await self.records.lookup(request)


def create_reference_app(
    agency: str,
    records: Path,
    latency_ms: float = 0.0,
    *,
    verifier: RequestVerifier | None = None,
    signer: AnswerSigner | None = None,
    notifications: NotificationSink | None = None,
    witness: WitnessStore | None = None,
) -> Starlette:
    """A connector app for one reference agency over a JSON Lines file of its records; with a
    `verifier` it serves only requests the gateway signed, with a `signer` it signs its answers.
    With a `verifier` it also receives the gateway's owner notifications, into `notifications` or
    else an in-memory `NotificationLog`, and lists them locally as the agency's recent accesses.
    With a `witness` too, it keeps the gateway's audit checkpoints there (connectors.witness).

    Raises ValueError for an unknown agency or a negative latency, and RecordFileError for a bad
    records file: all at start-up, before any lookup is served.
    """
    profile = REFERENCE_AGENCIES.get(agency)
    if profile is None:
        known = ", ".join(sorted(REFERENCE_AGENCIES))
        raise ValueError(f"unknown reference agency {agency!r}; known agencies: {known}")
    if latency_ms < 0:
        raise ValueError(f"latency_ms must not be negative, got {latency_ms}")
    backend: ConnectorBackend = _ReferenceBackend(
        records=FileBackend.from_jsonl(records, fields=profile.provides),
        latency_s=latency_ms / 1000,
    )
    notifications = received_notifications(notifications, verified=verifier is not None)
    return create_connector_app(
        backend,
        source=profile.name,
        verifier=verifier,
        signer=signer,
        notifications=notifications,
        witness=witness,
    )

"""The education connector: a folder of Common Transfer Files served over protocol v1."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Final

from starlette.applications import Starlette

from connectors.app import create_connector_app
from connectors.ctf.backend import DEFAULT_INTERVAL_S, CtfFolderBackend
from connectors.ctf.schools import NO_SCHOOL_CONTACTS, load_school_contacts
from connectors.notifications import NotificationSink, received_notifications
from connectors.protocol import FieldId
from connectors.reference import REFERENCE_AGENCIES
from connectors.trust import AnswerSigner, RequestVerifier
from connectors.witness import WitnessStore

_REFERENCE: Final = REFERENCE_AGENCIES["education"]

EDUCATION_CTF: Final = replace(
    _REFERENCE,
    title="Schools and education (Common Transfer Files)",
    description=(
        "Pupils as their schools' Common Transfer Files describe them, keyed by UPN: names, "
        "date of birth, sex, home address, parents and carers, and current school with its "
        "designated safeguarding lead (from the authority's school contacts list). Holds no "
        "NHS number, so its records are often matched on demographics."
    ),
    provides=tuple(f for f in _REFERENCE.provides if f is not FieldId.NHS_NUMBER),
)
"""The reference education agency as CTF can serve it: everything but the NHS number."""


def create_ctf_app(
    *,
    folder: Path,
    school_contacts: Path | None = None,
    verifier: RequestVerifier | None = None,
    signer: AnswerSigner | None = None,
    notifications: NotificationSink | None = None,
    witness: WitnessStore | None = None,
    source: str = EDUCATION_CTF.name,
    reload_interval_s: float = DEFAULT_INTERVAL_S,
) -> Starlette:
    """A connector app serving the CTFs in `folder`, re-read as files arrive, change or go
    (looked at every `reload_interval_s` while the app's lifespan runs, as uvicorn runs it). With
    `school_contacts` (see connectors.ctf.schools) each school's safeguarding lead is served as an
    involvement. `verifier`, `signer`, `notifications` and `witness` are as for
    `create_reference_app`: with a verifier, owner notifications are received, into an in-memory
    log unless a sink is given, and with a `witness` too the gateway's audit checkpoints.

    Raises ValueError for a missing folder or a non-positive interval, and SchoolContactsError for
    an unreadable contacts file: at start-up, before any lookup is served. Bad CTF files are
    logged and served around.
    """
    contacts = load_school_contacts(school_contacts) if school_contacts else NO_SCHOOL_CONTACTS
    backend = CtfFolderBackend(folder, contacts, interval_s=reload_interval_s)
    notifications = received_notifications(notifications, verified=verifier is not None)
    return create_connector_app(
        backend,
        source=source,
        verifier=verifier,
        signer=signer,
        notifications=notifications,
        witness=witness,
        lifespan=backend.watching,
    )

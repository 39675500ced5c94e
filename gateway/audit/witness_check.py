"""Comparing the audit log with what its witnesses hold: `childlookup audit verify --witness URL`.

A log that verifies on its own may still have been cut back, with every checkpoint after the cut,
or rewritten and re-hashed past the checkpoints deleted over it (gateway.audit.chain says why).
Each witness kept the checkpoints it was sent (gateway.audit.witnessing); every one of them must
be in the log, exactly. The first that is not names where the log diverges: its sequence number,
record count and time say how far the log reached when the witness saw it.

A witness is believed only as far as the gateway's signature goes: a witnessed checkpoint whose
signature fails was not the gateway's, and is reported as the witness holding a forgery, not as
the log diverging. Conflicts a witness recorded (the gateway once sent it a checkpoint
contradicting one it held) are reported too. A witness that cannot be read fails the comparison:
an auditor who asked for it must not be told all is well without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import httpx

from connectors.witness import MAX_BATCH, WitnessListing
from gateway.audit.checkpoints import Checkpoint, CheckpointKeys
from gateway.audit.store import AuditStore
from gateway.audit.witnessing import WitnessError, as_checkpoint, witness_url, witnessed

TIMEOUT_S: Final = 10.0
"""How long one page of a witness's listing may take."""
_PAGE: Final = 1_000


@dataclass(frozen=True)
class WitnessComparison:
    """The verdict on the log against one witness."""

    ok: bool
    message: str


def compare(
    url: str,
    log: Sequence[Checkpoint],
    listing: WitnessListing,
    keys: CheckpointKeys,
    covers_from: int = 0,
) -> WitnessComparison:
    """Every checkpoint the witness at `url` holds (`listing`, all of it) against the log's
    signed checkpoints (`log`). Witnessed checkpoints below `covers_from`, the first checkpoint
    still in the live log, are archived: not compared."""
    if not listing.checkpoints:
        return WitnessComparison(
            False,
            f"witness {url} holds no checkpoint of log {listing.log}: nothing to compare with (is"
            " CHILDLOOKUP_AUDIT_LOG_NAME, by default CHILDLOOKUP_GATEWAY_ID, the gateways'?)",
        )
    ours = {c.seq: c for c in log}
    compared = [as_checkpoint(c) for c in listing.checkpoints if c.seq >= covers_from]
    for theirs in compared:
        where = f"checkpoint #{theirs.seq} ({theirs.records} records, {theirs.at})"
        if problem := keys.problem_with(theirs):
            return WitnessComparison(
                False,
                f"witness {url} holds a FORGED {where}: {problem}. The gateway did not sign it:"
                " the witness's store was tampered with",
            )
        held = ours.get(theirs.seq)
        if held is None or held.digest() != theirs.digest():
            differs = (
                "the log has no such checkpoint" if held is None else "the log's checkpoint differs"
            )
            return WitnessComparison(
                False, f"audit log DIVERGES from witness {url} at {where}: {differs}"
            )
    if listing.conflicts:
        first = listing.conflicts[0]
        return WitnessComparison(
            False,
            f"witness {url} recorded {len(listing.conflicts)} conflicting checkpoints, the first"
            f" #{first.offered.seq} offered at {first.received_at}: the log was rewritten after"
            " the witness kept that checkpoint",
        )
    archived = len(listing.checkpoints) - len(compared)
    latest = f", latest #{compared[-1].seq}" if compared else ""
    also = f" ({archived} archived, not compared)" if archived else ""
    return WitnessComparison(
        True, f"agrees with witness {url}: {len(compared)} checkpoints{latest}{also}"
    )


async def compare_with_witnesses(
    store: AuditStore,
    urls: Sequence[str],
    log: str,
    keys: CheckpointKeys,
    covers_from: int = 0,
    archived: Sequence[Checkpoint] = (),
) -> list[WitnessComparison]:
    """The log against each witness (base URLs), in order. The witnesses are read first, then the
    log: a checkpoint sealed by a running gateway in between is only one the witness lacks.
    `archived` are the checkpoints of the archived segments (`audit verify --archive`), compared
    like the live log's."""
    latest = await asyncio.to_thread(store.latest_checkpoint)
    # A page past the log's latest checkpoint (and what a running gateway may seal meanwhile)
    # already shows checkpoints the log lacks; reading on would only show more of them.
    read_to = (0 if latest is None else latest.seq) + MAX_BATCH
    async with httpx.AsyncClient() as client:
        listings = await asyncio.gather(
            *(
                witnessed(client, witness_url(url), log, timeout_s=TIMEOUT_S, read_to=read_to)
                for url in urls
            ),
            return_exceptions=True,
        )
    ours = [*archived, *await asyncio.to_thread(_all_checkpoints, store)]
    verdicts = []
    for url, listing in zip(urls, listings, strict=True):
        if isinstance(listing, WitnessError):
            verdicts.append(
                WitnessComparison(False, f"cannot compare with witness {url}: {listing}")
            )
        elif isinstance(listing, BaseException):
            raise listing
        else:
            verdicts.append(compare(url, ours, listing, keys, covers_from))
    return verdicts


def _all_checkpoints(store: AuditStore) -> list[Checkpoint]:
    found: list[Checkpoint] = []
    while page := store.checkpoints(found[-1].seq if found else 0, _PAGE):
        found += page
    return found

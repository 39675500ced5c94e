"""The locator, seen from an agency: keyed pseudonyms, the locator's protocol, and the publisher.

At national scale the gateway cannot ask every agency about every child. Each agency therefore
tells a locator "I hold a record for child P", where P is a keyed pseudonym of the child's NHS
number (and of the UPN): HMAC-SHA256 under a secret shared by agencies and gateways, which the
locator never holds, so it can neither compute nor reverse a pseudonym. The gateway asks the
locator with the same pseudonyms and fans out only to the agencies it names.

Keys rotate without downtime: the key file lists every version in use (the first is current);
publishers publish under every version and gateways ask under every version, until the old one
is retired at the locator.

This module is the SDK's side, importing nothing from the gateway or the locator service: the
protocol's models (strict, sized, as the service validates them) and `LocatorPublisher`, which
keeps an agency's holdings at the locator equal to the records it holds, by difference, so a
publisher keeps no state of its own and may restart at any time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from connectors.logs import log_event
from connectors.protocol import PROTOCOL_VERSION, ErrorResponse, Identifiers, random_id
from connectors.trust import key_id, request_authorization

HOLDINGS_PATH: Final = "/v1/holdings"
HOLDINGS_LIST_PATH: Final = "/v1/holdings/list"
LOCATE_PATH: Final = "/v1/locate"
STATUS_PATH: Final = "/v1/status"
DEFAULT_LOCATOR_ID: Final = "childlookup-locator"
"""The locator's id: the audience of the tokens sent to it, the issuer of its answers."""

MAX_BATCH: Final = 10_000
"""Most pseudonyms one publication carries, published and withdrawn together."""
MAX_PAGE: Final = 10_000
"""Most pseudonyms one page of an agency's holdings lists."""
MAX_LOCATE: Final = 8
"""Most pseudonyms one locate asks about: one child's identifiers under each key in use."""
PSEUDONYM_KINDS: Final = ("nhs_number", "upn")
"""The identifiers published, in `Identifiers` field names: the ones agencies share."""

MIN_SECRET_BYTES: Final = 32
_VERSION_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,31}$"
_PSEUDONYM_PATTERN: Final = r"^[A-Za-z0-9_-]{43}$"
"""base64url without padding of the 32 bytes of an HMAC-SHA256."""

_logger = logging.getLogger("childlookup.locator.publisher")

PseudonymKind = Literal["nhs_number", "upn"]


@dataclass(frozen=True)
class PseudonymKey:
    """One version of the pseudonym secret. Its repr never shows the secret."""

    version: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(_VERSION_PATTERN, self.version):
            raise ValueError(
                f"pseudonym key version {self.version!r} is not lower-case letters, digits and"
                " hyphens (at most 32, starting with a letter or digit)"
            )
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"pseudonym key {self.version!r}: the secret must be at least"
                f" {MIN_SECRET_BYTES} bytes"
            )


def pseudonym(key: PseudonymKey, kind: PseudonymKind | str, value: str) -> str:
    """The pseudonym of identifier `value` of `kind` under `key`: base64url (no padding) of
    HMAC-SHA256(secret, "kind:value"). The value is normalised as the gateway normalises it (an
    NHS number without spaces or hyphens, a UPN in upper case), so a record written "943 476 5919"
    meets a lookup for "9434765919"."""
    if kind == "nhs_number":
        value = re.sub(r"[\s-]", "", value)
    elif kind == "upn":
        value = value.strip().upper()
    else:
        raise ValueError(f"no pseudonyms are made of {kind!r}")
    digest = hmac.new(key.secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pseudonyms(key: PseudonymKey, identifiers: Identifiers) -> Iterator[str]:
    """The pseudonyms of every shared identifier a record carries, under `key`."""
    for kind in PSEUDONYM_KINDS:
        value = getattr(identifiers, kind)
        if value:
            yield pseudonym(key, kind, value)


def load_pseudonym_keys(path: Path) -> tuple[PseudonymKey, ...]:
    """The keys of a key file, `{"keys": [{"version", "secret": "<hex>"}, ...]}`, current first.

    Raises ValueError naming the file and what is wrong with it, never quoting a secret."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = document["keys"]
        keys = tuple(
            PseudonymKey(str(entry["version"]), bytes.fromhex(entry["secret"])) for entry in entries
        )
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a pseudonym key file ({type(error).__name__})") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if not keys:
        raise ValueError(f"{path}: lists no pseudonym key")
    versions = [key.version for key in keys]
    if len(set(versions)) != len(versions):
        raise ValueError(f"{path}: a key version is listed twice")
    return keys


def new_pseudonym_key(version: str) -> PseudonymKey:
    """A fresh random 32-byte key under `version`."""
    return PseudonymKey(version, secrets.token_bytes(MIN_SECRET_BYTES))


def write_pseudonym_keys(path: Path, keys: Sequence[PseudonymKey]) -> None:
    """Write `keys` (current first) as a key file readable by its owner only, from the moment the
    file exists; an existing file is replaced whole, so a reader never sees half of it."""
    document = {"keys": [{"version": k.version, "secret": k.secret.hex()} for k in keys]}
    # A fresh file of its own (mkstemp: 0600, never an existing file or a link another left).
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise


# --- protocol v1 -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Pseudonym = Annotated[str, Field(pattern=_PSEUDONYM_PATTERN)]
KeyVersion = Annotated[str, Field(pattern=_VERSION_PATTERN)]
AgencyName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
BatchId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]


class PublishRequest(_Model):
    """An agency's publication: pseudonyms it now holds a record for, and ones it no longer
    does, under one key version. `batch_id` makes a retry harmless: a batch the locator has
    applied already is answered with its first receipt and changes nothing."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    agency: AgencyName
    batch_id: BatchId
    key_version: KeyVersion
    publish: list[Pseudonym] = Field(default_factory=list, max_length=MAX_BATCH)
    withdraw: list[Pseudonym] = Field(default_factory=list, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_batch(self) -> PublishRequest:
        if len(self.publish) + len(self.withdraw) > MAX_BATCH:
            raise ValueError(f"a batch carries at most {MAX_BATCH} pseudonyms")
        if not set(self.publish).isdisjoint(self.withdraw):
            raise ValueError("a pseudonym is both published and withdrawn")
        return self


class PublishReceipt(_Model):
    """What a publication changed, and how many pseudonyms the agency now holds under its key
    version."""

    batch_id: BatchId
    published: int = Field(ge=0)
    withdrawn: int = Field(ge=0)
    held: int = Field(ge=0)


class HoldingsListRequest(_Model):
    """One page of the agency's own holdings under a key version, in pseudonym order after
    `after`."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    agency: AgencyName
    key_version: KeyVersion
    after: Pseudonym | None = None
    limit: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE)


class HoldingsPage(_Model):
    pseudonyms: list[Pseudonym] = Field(max_length=MAX_PAGE)
    next: Pseudonym | None = None
    """Ask again with `after` set to this for the next page; null on the last."""


class PseudonymRef(_Model):
    key_version: KeyVersion
    value: Pseudonym


class LocateRequest(_Model):
    """The gateway's question: which agencies hold a record under any of these pseudonyms."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    request_id: str = Field(min_length=1, max_length=128)
    pseudonyms: list[PseudonymRef] = Field(min_length=1, max_length=MAX_LOCATE)


class Holder(_Model):
    key_version: KeyVersion
    value: Pseudonym
    agencies: list[AgencyName]


class LocateResponse(_Model):
    """Per pseudonym asked that anyone holds, the agencies holding it; pseudonyms nobody holds
    are left out."""

    protocol_version: Literal["1"] = PROTOCOL_VERSION
    request_id: str = Field(min_length=1, max_length=128)
    holders: list[Holder]


# --- the publisher -----------------------------------------------------------------------------


_AnswerT = TypeVar("_AnswerT", bound=BaseModel)


class PublishError(Exception):
    """The locator refused or could not take a publication; the message says why, without any
    pseudonym."""


@dataclass(frozen=True)
class SyncReport:
    """What one sync changed, summed over key versions, and what the agency now holds under each
    version."""

    published: int
    withdrawn: int
    held: Mapping[str, int]
    batches: int


class LocatorPublisher:
    """Keeps an agency's holdings at the locator equal to the records it holds.

    Each `sync` lists what the locator holds for the agency under each key version, and publishes
    or withdraws the difference - nothing when nothing changed - so a publisher restarted, or one
    whose earlier sync failed half way, converges on the next sync without local state. A closed
    record is one no longer in `held`: it is withdrawn.
    """

    def __init__(
        self,
        agency: str,
        locator_url: str,
        signing_key: ec.EllipticCurvePrivateKey,
        keys: Sequence[PseudonymKey],
        client: httpx.AsyncClient,
        *,
        locator_id: str = DEFAULT_LOCATOR_ID,
        batch_size: int = MAX_BATCH,
        attempts: int = 3,
    ) -> None:
        if not keys:
            raise ValueError("a publisher needs at least one pseudonym key")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self._agency = agency
        self._url = locator_url.rstrip("/")
        self._key = signing_key
        self._kid = key_id(signing_key.public_key())
        self._keys = tuple(keys)
        self._client = client
        self._locator_id = locator_id
        self._batch_size = batch_size
        self._attempts = max(1, attempts)

    async def sync(self, held: Iterable[Identifiers]) -> SyncReport:
        """Publish every pseudonym of `held` not yet at the locator, under every key version, and
        withdraw those at the locator no longer in `held`. Raises PublishError on failure; what
        was applied before it stays applied, and the next sync finishes the work."""
        identifiers = list(held)
        published = withdrawn = batches = 0
        counts: dict[str, int] = {}
        for key in self._keys:
            wanted = {p for ids in identifiers for p in pseudonyms(key, ids)}
            listed = await self.listed(key.version)
            additions, removals = sorted(wanted - listed), sorted(listed - wanted)
            counts[key.version] = len(listed)
            for publish, withdraw in _batches(additions, removals, self._batch_size):
                receipt = await self.publish(key.version, publish, withdraw)
                published += receipt.published
                withdrawn += receipt.withdrawn
                counts[key.version] = receipt.held
                batches += 1
        log_event(
            _logger,
            logging.INFO,
            "locator_sync",
            agency=self._agency,
            published=published,
            withdrawn=withdrawn,
            batches=batches,
        )
        return SyncReport(published, withdrawn, counts, batches)

    async def listed(self, key_version: str) -> set[str]:
        """Every pseudonym the locator holds for this agency under `key_version`."""
        found: set[str] = set()
        after: str | None = None
        while True:
            request = HoldingsListRequest(agency=self._agency, key_version=key_version, after=after)
            page = await self._post(HOLDINGS_LIST_PATH, request, HoldingsPage)
            # Pages come in pseudonym order, each after the last: one that does not move on
            # (a broken locator, or one answering in its place) would be asked for ever.
            moved = [*page.pseudonyms, *([] if page.next is None else [page.next])]
            if after is not None and any(_raw(p) <= _raw(after) for p in moved):
                raise PublishError(
                    f"the locator's list of holdings under {key_version} does not advance"
                )
            found.update(page.pseudonyms)
            if page.next is None:
                return found
            after = page.next

    async def publish(
        self, key_version: str, publish: Sequence[str], withdraw: Sequence[str] = ()
    ) -> PublishReceipt:
        """One batch under a fresh batch id, retried under the same id (so applied at most once)
        when the locator cannot be reached or is briefly unavailable."""
        request = PublishRequest(
            agency=self._agency,
            batch_id=random_id(),
            key_version=key_version,
            publish=list(publish),
            withdraw=list(withdraw),
        )
        return await self._post(HOLDINGS_PATH, request, PublishReceipt)

    async def _post(self, path: str, request: BaseModel, answer: type[_AnswerT]) -> _AnswerT:
        body = request.model_dump_json().encode()
        failure = PublishError(f"nothing was sent to {path}")
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                await asyncio.sleep(0.2 * attempt)
            authorization = request_authorization(
                self._key, body, issuer=self._agency, audience=self._locator_id, kid=self._kid
            )
            try:
                reply = await self._client.post(
                    self._url + path,
                    content=body,
                    headers={"content-type": "application/json", "authorization": authorization},
                )
            except httpx.TransportError as error:
                failure = PublishError(
                    f"the locator at {self._url} could not be reached: {type(error).__name__}"
                )
                continue
            if reply.status_code == 200:
                return _validated(reply, answer)
            failure = PublishError(f"the locator refused {path}: {_refusal(reply)}")
            if reply.status_code != 503:
                break
        raise failure


def _batches(
    additions: Sequence[str], removals: Sequence[str], size: int
) -> Iterator[tuple[Sequence[str], Sequence[str]]]:
    """Additions and removals cut into batches of at most `size` pseudonyms in all."""
    combined = [(p, True) for p in additions] + [(p, False) for p in removals]
    for start in range(0, len(combined), size):
        chunk = combined[start : start + size]
        yield [p for p, add in chunk if add], [p for p, add in chunk if not add]


def _raw(value: str) -> bytes:
    """A pseudonym's 32 bytes: the order the locator lists holdings in (base64url text sorts
    otherwise)."""
    return base64.urlsafe_b64decode(value + "=")


def _validated(reply: httpx.Response, answer: type[_AnswerT]) -> _AnswerT:
    try:
        return answer.model_validate_json(reply.content)
    except ValidationError:
        raise PublishError(f"the locator's answer is not a {answer.__name__}") from None


def _refusal(reply: httpx.Response) -> str:
    try:
        error = ErrorResponse.model_validate_json(reply.content).error
    except ValidationError:
        return f"HTTP {reply.status_code}"
    return f"HTTP {reply.status_code} {error.code.value}: {error.message}"


async def run_periodically(
    publisher: LocatorPublisher,
    held: Callable[[], Iterable[Identifiers] | Awaitable[Iterable[Identifiers]]],
    interval_s: float,
) -> None:
    """Sync `held()` every `interval_s` seconds until cancelled. A failed sync is logged (without
    a pseudonym) and tried again at the next interval: the locator converges when it is back."""
    while True:
        try:
            records = held()
            if isinstance(records, Awaitable):
                records = await records
            await publisher.sync(records)
        except PublishError as error:
            log_event(_logger, logging.WARNING, "locator_sync_failed", reason=str(error))
        await asyncio.sleep(interval_s)

"""Keyed pseudonyms: how the audit log names a child without holding anything that identifies one.

Child and source-record identifiers are HMACs under a key the log does not hold, so the log cannot
be reversed into a list of children, yet an auditor holding the key can still find every access to
one child.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence

from connectors.protocol import Demographics
from gateway.config import Mode, Settings
from gateway.linkage import Person
from gateway.types import Corroboration, LookupQuery


def audit_key(settings: Settings, *, create: bool = True) -> bytes:
    """The pseudonymisation key; in dev mode one is generated once and kept in the state dir.

    With `create=False` (reading an existing log) a missing key is an error: a new one would make
    every checkpoint look forged and every child's earlier accesses unfindable."""
    if settings.audit_key is not None:
        return settings.audit_key.encode()
    if settings.mode is Mode.PRODUCTION:
        raise ValueError("CHILDLOOKUP_AUDIT_KEY is required in production mode")
    path = settings.state_dir / "audit.key"
    if not create and not path.exists():
        raise ValueError(
            f"no audit key at {path}: set CHILDLOOKUP_AUDIT_KEY, or CHILDLOOKUP_STATE_DIR (or"
            " --state-dir) to the gateway's state directory"
        )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def previous_audit_keys(settings: Settings) -> tuple[bytes, ...]:
    """The pseudonymisation keys retired by rotations (CHILDLOOKUP_AUDIT_PREVIOUS_KEYS), newest
    first: they find earlier records, and check a log's MAC'd checkpoints made under them."""
    return tuple(key.encode() for key in settings.audit_previous_keys)


def derive_key(master: bytes, purpose: str) -> bytes:
    """A key for one purpose, so the pseudonym key and the checkpoint key never coincide."""
    return hmac.new(master, f"childlookup:{purpose}".encode(), hashlib.sha256).digest()


class Pseudonymiser:
    """Keyed HMAC-SHA256 of identifiers: stable for one key, meaningless without it.

    After a rotation, records are written under the new key, and the keys retired (`previous`,
    CHILDLOOKUP_AUDIT_PREVIOUS_KEYS) only find a child's earlier accesses (`refs`): an auditor's
    trail and an owner's history span the rotation."""

    def __init__(self, key: bytes, previous: Sequence[bytes] = ()) -> None:
        for each in (key, *previous):
            if len(each) < 32:
                raise ValueError("a pseudonymisation key must be at least 32 bytes")
        self._key = key
        self._previous = tuple(previous)

    def ref(self, kind: str, value: str) -> str:
        """The pseudonym a record is written under now."""
        return _ref(self._key, kind, value)

    def refs(self, kind: str, value: str) -> tuple[str, ...]:
        """Every pseudonym the log may name this identifier by: the current key's, then each
        previous key's."""
        return tuple(_ref(key, kind, value) for key in (self._key, *self._previous))

    def derived_keys(self, purpose: str) -> tuple[bytes, ...]:
        """Keys for another use of the audit key (`derive_key`), never the pseudonyms' own: the
        current key's, then each previous key's."""
        return tuple(derive_key(key, purpose) for key in (self._key, *self._previous))

    def child_ref(self, query: LookupQuery) -> str:
        """The pseudonym a lookup is counted and audited under: keyed on its one identifier, or
        on the normalised search (demographics and what corroborates them), so the same search
        by the same means is the same child."""
        if query.nhs_number is not None:
            return self.ref("nhs", query.nhs_number)
        if query.upn is not None:
            return self.ref("upn", query.upn)
        assert query.demographics is not None
        return self.ref("demographics", _search(query.demographics, query.corroboration))


def _search(demographics: Demographics, corroboration: Corroboration) -> str:
    """A demographic search as matching reads it (gateway.linkage.person): names case-folded
    without accents or punctuation, the names the child is known by as a set. Two searches that
    matching cannot tell apart find the same child, so typing AMELIA HART after Amelia Hart, or
    the known-as names in another order, is not counted (nor audited) as a second child. The
    house and carers given with it are part of it when given: they tip a search over the link
    threshold for one child or another, so the same demographics with another house single out
    another child, which must count as another (a search without them keeps its pseudonym)."""
    person = Person.from_demographics(
        demographics,
        address_lines=corroboration.address_lines,
        carers=corroboration.carer_names,
    )
    born = person.date_of_birth
    corroborated: dict[str, object] = {}
    if person.house is not None:
        corroborated["house"] = [sorted(person.house.numbers), sorted(person.house.words)]
    if person.carer_keys:
        corroborated["carers"] = sorted(person.carer_keys)
    return json.dumps(
        corroborated
        | {
            "given": person.given,
            "family": person.family,
            "former_family": sorted(person.former_family),
            "known_as": sorted(person.known_as),
            "date_of_birth": None if born is None else born.isoformat(),
            "postcode": person.postcode,
            "sex": None if person.sex is None else person.sex.value,
        },
        sort_keys=True,
    )


def _ref(key: bytes, kind: str, value: str) -> str:
    digest = hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}:{digest[:32]}"

"""Development bearer tokens: an ES256 key pair the demo generates, and tokens signed with it.

Dev tokens use the same verification path as production tokens (an asymmetric signature checked
against a public key, with issuer, audience and expiry), so nothing about the demo teaches the
gateway to trust an unsigned header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from connectors.protocol import random_id
from connectors.trust import ensure_key_pair
from gateway.auth import DEFAULT_MAX_LIFETIME_S, describe_duration

PRIVATE_KEY_FILE = "dev-signing-key.pem"
PUBLIC_KEY_FILE = "dev-signing-key.pub.pem"
DEV_TOKEN_TTL_S = 8 * 3600


@dataclass(frozen=True)
class DemoUser:
    """A practitioner the demo issues tokens for: in its banner, and in the portal's sign-in."""

    role: str
    organisation: str
    name: str


DEMO_USERS = (
    DemoUser("social_worker", "LA-LEEDS", "Sam Social"),
    DemoUser("health_visitor", "RR8", "Hana Visitor"),
    DemoUser("school_dsl", "URN-107000", "Dee Lead"),
    DemoUser("ed_clinician", "RR8-ED", "Ed Clinician"),
    DemoUser("auditor", "LA-LEEDS-IG", "Ada Auditor"),
)


def ensure_dev_keys(state_dir: Path) -> Path:
    """Create the dev key pair once (private key readable by the owner only); return its path."""
    return ensure_key_pair(state_dir / PRIVATE_KEY_FILE, state_dir / PUBLIC_KEY_FILE)


def issue_dev_token(
    private_key_pem: bytes,
    *,
    role: str,
    organisation: str,
    name: str,
    issuer: str,
    audience: str,
    ttl_s: int = DEV_TOKEN_TTL_S,
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S,
    now: float | None = None,
) -> str:
    """Sign a short-lived token carrying the claims the gateway needs to identify a practitioner.

    Raises ValueError for a lifetime the gateway would refuse: none, or over `max_lifetime_s` (the
    gateway's CHILDLOOKUP_TOKEN_MAX_LIFETIME_S).
    """
    if not 0 < ttl_s <= max_lifetime_s:
        raise ValueError(
            f"a token's lifetime must be from 1 second to {describe_duration(max_lifetime_s)}"
            f" (the gateway's CHILDLOOKUP_TOKEN_MAX_LIFETIME_S); {ttl_s} seconds was asked for"
        )
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": f"dev:{organisation}:{name}",
        "name": name,
        "role": role,
        "org": organisation,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": random_id(),
    }
    return jwt.encode(claims, private_key_pem, algorithm="ES256")

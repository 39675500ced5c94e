"""Trust between the gateway and a connector: signed requests in, signed answers out.

The gateway signs every lookup it sends with a short-lived ES256 token (`Authorization: Bearer`)
whose audience is the connector's name and whose `body_sha256` claim commits to the exact request
bytes; the connector checks it against the gateway's published keys and remembers each token id
until it expires, so a request cannot be forged, redirected to another agency, altered, replayed
or kept for later. The ids are kept in the connector's memory (`MemoryReplayCache`) or, for
replicas behind one address, in Redis (`connectors.redis_replay`), where a request one replica
accepted is refused by the others. The connector signs each answer body the same way
(`X-Childlookup-Signature`), so the gateway can refuse an answer that did not come, unaltered,
from the agency it asked.

This module holds the connector's side (RequestVerifier, AnswerSigner) and the pieces both sides
share (the formats, key ids, published-key lookup); the gateway's side is `gateway.signing`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import heapq
import hmac
import json
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

import certifi
import httpx
import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from connectors.bounded_reads import MAX_DOCUMENT_BYTES, read_answer
from connectors.pem import pem_blocks
from connectors.protocol import random_id

ALGORITHM: Final = "ES256"
SIGNATURE_HEADER: Final = "x-childlookup-signature"
"""Response header carrying the connector's signature over the answer body (a compact JWS)."""
JWKS_PATH: Final = "/.well-known/jwks.json"
TOKEN_TTL_S: Final = 30
"""Lifetime of a request token or an answer signature."""
BODY_HASH_CLAIM: Final = "body_sha256"
ANSWER_LEEWAY_S: Final = 5
"""Clock leeway a gateway allows an answer signature."""


class TrustError(Exception):
    """A signature, token or key could not be trusted; the message is safe to show and log."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownKey(TrustError):
    """The signer names a key its publisher does not publish."""


class CheckUnavailable(TrustError):
    """The check could not be made just now (the signer's published keys, or the store of tokens
    seen, out of reach): nothing was found wrong with the request, which was not read, and may be
    sent again. Answered 503 UNAVAILABLE rather than 401, which would send its sender looking
    for a fault in its own keys."""


class KeysUnavailable(CheckUnavailable):
    """The published keys could not be fetched."""


class ReplayRefused(TrustError):
    """The request's token id was seen before, and the token has not expired."""

    def __init__(self) -> None:
        super().__init__("This request was already received: replays are refused.")


class ReplayCheckUnavailable(CheckUnavailable):
    """Whether the request is a replay could not be known (its store is down): not read."""

    def __init__(self) -> None:
        super().__init__("Replay protection is unavailable; the request was not read. Retry.")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (SHA-256, base64url): one key, one id, everywhere."""
    jwk = _public_jwk(public_key)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def jwks_document(public_keys: list[ec.EllipticCurvePublicKey]) -> dict[str, Any]:
    """A JWKS publishing `public_keys` for ES256 signatures, each under its thumbprint."""
    return {
        "keys": [
            _public_jwk(key) | {"kid": key_id(key), "alg": ALGORITHM, "use": "sig"}
            for key in public_keys
        ]
    }


def _public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    return jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)


def read_private_key(path: Path) -> PrivateKeyTypes:
    """The PEM private key in `path`; ValueError naming the file for one that is not a key, for a
    passphrase-protected one, which a server started unattended cannot open, and for a key of an
    algorithm or curve cryptography cannot load (TypeError and UnsupportedAlgorithm, which would
    end a command in a traceback rather than its one-line error)."""
    data = path.read_bytes()
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(
            f"{path} is encrypted: give an unencrypted key (readable by its owner only)"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"{path}: a key of an unsupported kind: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM private key: {exc}") from None


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read a PEM EC private key (P-256) for ES256 signing; raises ValueError otherwise."""
    key = read_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: an ES256 signing key must be a P-256 EC private key")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PEM EC public key (P-256); raises ValueError naming the file otherwise."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path}: not a usable PEM public key: {exc}") from exc
    return _p256(key, path)


def load_public_keys(path: Path) -> list[ec.EllipticCurvePublicKey]:
    """Every P-256 public key in `path` (PEM blocks, one after another); ValueError otherwise."""
    return [_p256(key, path) for key in pem_public_keys(path)]


def pem_public_keys(path: Path) -> list[PublicKeyTypes]:
    """Every public key in `path`, PEM blocks one after another (a key set kept through a
    rotation); ValueError when the file cannot be read, a block is not a key, or there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the public keys at {path}: {exc}") from exc
    keys = []
    for block in pem_blocks(data, "PUBLIC KEY"):
        try:
            keys.append(serialization.load_pem_public_key(block))
        except ValueError as exc:
            raise ValueError(f"{path}: not a PEM public key: {exc}") from exc
        except UnsupportedAlgorithm as exc:  # a curve cryptography cannot load: not a ValueError
            raise ValueError(f"{path}: a public key of an unsupported kind: {exc}") from exc
    if not keys:
        raise ValueError(f"{path}: holds no public key")
    return keys


def _p256(key: PublicKeyTypes, path: Path) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: an ES256 public key must be a P-256 EC public key")
    return key


def ensure_key_pair(private_path: Path, public_path: Path) -> Path:
    """Create a P-256 key pair once (private key readable by the owner only); return its path."""
    return ensure_key_files(
        private_path, public_path, lambda: ec.generate_private_key(ec.SECP256R1()), load_private_key
    )


def ensure_key_files(
    private_path: Path,
    public_path: Path,
    generate: Callable[[], PrivateKeyTypes],
    load: Callable[[Path], PrivateKeyTypes],
) -> Path:
    """Create a key pair once - a key from `generate`, owner-readable only, at `private_path`,
    its public half at `public_path` - and return `private_path`; `load` reads the key back.

    Safe when several processes start together on one directory (`serve --workers N`, gateways
    sharing a state directory): one key is made and every process uses it. A missing public half
    is written again from the private key, never by replacing the key."""
    if not private_path.exists():
        write_once(private_path, private_pem(generate()))
    if not public_path.exists():
        write_once(public_path, public_pem(load(private_path).public_key()), 0o644)
    return private_path


def write_once(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Put `data` at `path` (with permissions `mode`) unless a file is there already; True if
    this call's data is what stands.

    Written beside it first, then linked into place: a reader never sees the file part-written,
    and of processes writing at once exactly one wins (the others' link fails, their data is
    dropped), where checking first and then writing let two processes each write a different
    key, or one fail on the other's half-made file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            os.fchmod(out.fileno(), mode)
        try:
            os.link(staged, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(staged)


def private_pem(key: PrivateKeyTypes) -> bytes:
    """`key` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(public_key: PublicKeyTypes) -> bytes:
    """`public_key` as PEM (SubjectPublicKeyInfo), as `load_public_key` reads it."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Write `key` as unencrypted PKCS#8 PEM, readable by its owner only from the moment the file
    exists (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem(key))


def write_public_key(path: Path, public_key: ec.EllipticCurvePublicKey) -> None:
    """Write `public_key` as PEM (SubjectPublicKeyInfo), as `load_public_key` reads it."""
    path.write_bytes(public_pem(public_key))


class KeySource(Protocol):
    """Finds the public key a signature claims to be made with."""

    async def key(self, kid: str | None) -> Any: ...


class StaticKey:
    """One public key, whatever the signature's key id (tests, or a key file shared out of band)."""

    def __init__(self, key: Any) -> None:
        self._key = key

    async def key(self, kid: str | None) -> Any:
        return self._key


class StaticKeys:
    """P-256 public keys shared out of band (a PEM file), by key id (`key_id`, as every signer here
    names its key): a file holding the old and the new key lets a signer switch whenever it
    likes, with nothing refused meanwhile. One key alone is used whatever the signature names,
    as `StaticKey` is."""

    def __init__(self, keys: Sequence[ec.EllipticCurvePublicKey]) -> None:
        self._by_id = {key_id(key): key for key in keys}
        self._only = keys[0] if len(keys) == 1 else None

    @classmethod
    def from_pem_file(cls, path: Path) -> StaticKeys:
        """Every key in `path`; ValueError naming it unless each is a P-256 public key."""
        return cls(load_public_keys(path))

    async def key(self, kid: str | None) -> Any:
        if self._only is not None:
            return self._only
        if kid is None:
            raise UnknownKey("The signature does not say which key made it.")
        if kid not in self._by_id:
            raise UnknownKey("The signature was made with a key not among those configured.")
        return self._by_id[kid]


class PublishedKeys:
    """A publisher's JWKS by key id: fetched when first needed, again when a signature names a
    key not yet seen (rotation) - at most once per `min_refresh_s`, so forged key ids cannot make
    us hammer the publisher - and again once the keys are `max_age_s` old, so that a key the
    publisher withdrew (leaked, say) stops being accepted soon after; kept only as long as no
    signature named an unknown key, it was accepted for as long as the process ran. That refresh
    runs behind the signatures checked meanwhile with the keys held (no caller waits for it: a
    publisher gone silent would otherwise hold every check for the fetch's timeout), and one that
    fails keeps the keys last fetched, tried again after `min_refresh_s` - but only for
    `max_stale_s` after the last fetch that succeeded. Past that, a check cannot be made
    (KeysUnavailable): whoever can keep the publisher out of reach could otherwise keep a key it
    withdrew (leaked) in use for as long as they did so."""

    def __init__(
        self,
        url: str,
        *,
        min_refresh_s: float = 30.0,
        max_age_s: float = 300.0,
        max_stale_s: float = 3600.0,
        timeout_s: float = 3.0,
        client: httpx.AsyncClient | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`client`, when given, is what the keys are fetched with (one client for the thousands
        of publishers a locator or a national gateway checks); else a short-lived one each time,
        over `tls` - the context the publisher is otherwise reached with, its CA and client
        certificate - or by default one trusting the public CAs, made once per process: making
        one costs ~100 ms of CPU, which thousands of first fetches would spend blocking the
        event loop."""
        if max_stale_s < max_age_s:
            raise ValueError("keys must be usable unrefreshed at least until they are refreshed")
        self._url = url
        self._min_refresh = min_refresh_s
        self._max_age = max_age_s
        self._max_stale = max_stale_s
        self._timeout = timeout_s
        self._tls = tls
        self._client = client
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._usable_until = float("-inf")
        """When the keys last fetched stop being used if no fetch succeeds meanwhile (monotonic)."""
        self._stale_at = float("-inf")
        """When the keys held are to be fetched again (monotonic)."""
        self._fetching: asyncio.Future[None] | None = None
        self._failed = False
        """The last fetch failed: a key not held may be one the signer publishes."""

    async def key(self, kid: str | None) -> Any:
        """The key `kid` names. A fetch runs to its end even if the caller that started it gives
        up (a lookup's deadline): cancelled half way, it would leave no keys and forbid another
        fetch for `min_refresh_s`, failing every answer from this signer meanwhile."""
        if kid is None:
            raise UnknownKey("The signature does not say which key made it.")
        now = time.monotonic()
        known = kid in self._keys
        if not known or now >= self._stale_at:
            due = known or now - self._fetched_at >= self._min_refresh
            if self._fetching is None and due:
                self._fetched_at = now
                self._fetching = asyncio.ensure_future(self._fetch())
                self._fetching.add_done_callback(self._fetched)
            if self._fetching is not None and (not known or now >= self._usable_until):
                # Never fetched, a key not seen yet, or keys held too long to use unrefreshed.
                await asyncio.shield(self._fetching)
        if kid not in self._keys:
            if self._failed:
                # Not knowing the key is not knowing it is absent: until a fetch succeeds, the
                # check cannot be made (503), rather than failed (401).
                raise KeysUnavailable("The signer's published keys could not be fetched.")
            raise UnknownKey("The signature was made with a key the signer does not publish.")
        if time.monotonic() >= self._usable_until:
            raise KeysUnavailable(
                f"The signer's published keys could not be fetched for {self._max_stale:g} s."
            )
        return self._keys[kid]

    def _fetched(self, fetch: asyncio.Future[None]) -> None:
        self._fetching = None
        failed = fetch.cancelled() or fetch.exception() is not None  # retrieved here, in any case
        self._failed = failed
        # Fresh for `max_age_s`; after a failure, the keys last fetched serve until another try.
        self._stale_at = time.monotonic() + (self._min_refresh if failed else self._max_age)

    async def _fetch(self) -> None:
        """The JWKS, read to MAX_DOCUMENT_BYTES and whole within the timeout: a publisher is
        another party, and one streaming or dripping without end would otherwise hold the
        fetch, and every caller waiting for this key, for as long as it went on."""
        try:
            if self._client is not None:
                response, body = await self._read(self._client)
            else:
                verify = _tls() if self._tls is None else self._tls
                async with httpx.AsyncClient(timeout=self._timeout, verify=verify) as client:
                    response, body = await self._read(client)
            response.raise_for_status()
        except (httpx.HTTPError, ValueError) as exc:
            raise KeysUnavailable("The signer's published keys could not be fetched.") from exc
        try:
            keys = _key_set(body)
        except Exception as exc:  # any: another party wrote it (see _key_set)
            raise KeysUnavailable("The signer's published keys could not be fetched.") from exc
        # Set with the keys, not in `_fetched`: a check running between the two must not find
        # new keys with the old deadline.
        self._keys = {k.key_id: k.key for k in keys if k.key_id}
        self._usable_until = time.monotonic() + self._max_stale

    async def _read(self, client: httpx.AsyncClient) -> tuple[httpx.Response, bytes]:
        return await read_answer(
            client,
            "GET",
            self._url,
            max_bytes=MAX_DOCUMENT_BYTES,
            within_s=self._timeout,
        )


def _key_set(body: bytes) -> list[jwt.PyJWK]:
    """The keys of a JWKS another party wrote. PyJWT reads a member of a shape it does not expect
    with whatever its code happens to raise - TypeError for a list where a string belongs,
    NotImplementedError for `"alg": "none"` - so any exception here is a set that could not be
    read, never one out of the check that asked for a key."""
    document = json.loads(body)
    if not isinstance(document, dict):  # PyJWKSet would fail with an AttributeError
        raise ValueError("a JWKS is a JSON object")
    keys = jwt.PyJWKSet.from_dict(document).keys
    if any(not isinstance(k.key_id, str | None) for k in keys):
        raise ValueError("a key id is a string")
    return keys


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS context published keys are fetched over: the public CAs httpx trusts by default."""
    return ssl.create_default_context(cafile=certifi.where())


def signed_token(
    private_key: ec.EllipticCurvePrivateKey,
    claims: dict[str, Any],
    body: bytes,
    *,
    kid: str | None = None,
    issued_at: int | None = None,
) -> str:
    """An ES256 token over `claims`, valid for TOKEN_TTL_S, committing to `body` by its hash.

    `kid` is the key's id (`key_id`), when the caller keeps it: working it out again costs a
    quarter of the signature. `issued_at` (Unix time) is now unless given: only a test of a
    verifier wants a token made earlier, to see it refused as expired."""
    issued = int(time.time()) if issued_at is None else issued_at
    payload = claims | {
        "iat": issued,
        "exp": issued + TOKEN_TTL_S,
        BODY_HASH_CLAIM: body_digest(body),
    }
    header = _token_header(key_id(private_key.public_key()) if kid is None else kid)
    signing_input = header + b"." + _base64url(json.dumps(payload, separators=(",", ":")).encode())
    # JWS compact serialisation (RFC 7515) written out: every lookup signs one token per agency,
    # and PyJWT's general-purpose encoder cost as much again as the ES256 signature itself.
    r, s = decode_dss_signature(private_key.sign(signing_input, _ES256))
    signature = r.to_bytes(_ES256_HALF, "big") + s.to_bytes(_ES256_HALF, "big")
    return (signing_input + b"." + _base64url(signature)).decode("ascii")


_ES256: Final = ec.ECDSA(hashes.SHA256())
"""The ES256 signature algorithm, immutable: built once rather than for every token."""

_ES256_HALF: Final = 32
"""Bytes of each of an ES256 signature's two numbers (RFC 7518, 3.4)."""


@functools.lru_cache(maxsize=64)
def _token_header(kid: str) -> bytes:
    header = {"alg": ALGORITHM, "kid": kid, "typ": "JWT"}
    return _base64url(json.dumps(header, separators=(",", ":")).encode())


def _base64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def request_authorization(
    private_key: ec.EllipticCurvePrivateKey,
    body: bytes,
    *,
    issuer: str,
    audience: str,
    kid: str | None = None,
    jti: str | None = None,
    issued_at: int | None = None,
) -> str:
    """The `Authorization` header a gateway sends with `body` to the connector `audience`: a
    fresh token (a new random `jti` unless given) from `issuer`, committing to the body."""
    claims = {"iss": issuer, "aud": audience, "jti": random_id() if jti is None else jti}
    return "Bearer " + signed_token(private_key, claims, body, kid=kid, issued_at=issued_at)


async def verify_answer(
    signature: str | None, body: bytes, keys: KeySource, *, source: str
) -> None:
    """Raise TrustError unless `signature` is `source`'s valid answer signature over `body`."""
    if not signature:
        raise TrustError("The answer is not signed.")
    await verified_claims(
        signature, keys, body, issuer=source, audience=None, leeway_s=ANSWER_LEEWAY_S
    )


async def verified_claims(
    token: str,
    keys: KeySource,
    body: bytes,
    *,
    issuer: str,
    audience: str | None,
    leeway_s: int,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check an ES256 token made by `issuer` (for `audience`, when given) over exactly `body`, and
    that it was made recently and for no longer than TOKEN_TTL_S; return its claims."""
    try:
        parts, header = _unverified(token)
    except jwt.PyJWTError as exc:
        raise TrustError("The signature is not a well-formed token.") from exc
    if header.get("alg") != ALGORITHM:
        raise TrustError(f"Only {ALGORITHM} signatures are accepted.")
    key = await keys.key(header.get("kid"))
    if not _is_p256(key):
        # A publisher's RSA or P-384 key under the id its signature names: PyJWT would raise
        # TypeError rather than fail the check (out of a lookup's fan-out, failing the lookup).
        raise UnknownKey(f"The signature names a key {ALGORITHM} cannot use.")
    required_claims = ("iss", "iat", "exp", BODY_HASH_CLAIM, *required)
    claims = _plainly_valid(parts, key, issuer, audience, leeway_s, required_claims)
    if claims is None:
        claims = _decoded(token, key, issuer, audience, leeway_s, required_claims)
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int | float) or not isinstance(expires, int | float):
        raise TrustError("The signature's times are not numbers.")
    now = time.time()
    if issued > now + leeway_s or now - issued > TOKEN_TTL_S + leeway_s:
        raise TrustError("The signature is stale: it was not made just now.")
    if expires - issued > TOKEN_TTL_S:
        raise TrustError(f"The signature is valid for longer than {TOKEN_TTL_S} s.")
    stated = claims[BODY_HASH_CLAIM]
    # Compared as bytes: compare_digest raises TypeError on a str holding anything but ASCII.
    if not isinstance(stated, str) or not hmac.compare_digest(
        stated.encode("utf-8", "surrogatepass"), body_digest(body).encode()
    ):
        raise TrustError("The body is not the one that was signed.")
    return claims


def _decoded(
    token: str,
    key: Any,
    issuer: str,
    audience: str | None,
    leeway_s: int,
    required: tuple[str, ...],
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            leeway=leeway_s,
            options={"require": list(required), "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TrustError("The signature has expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise TrustError("The request is addressed to another connector.") from exc
    except jwt.PyJWTError as exc:
        raise TrustError("The signature could not be verified.") from exc
    return claims


def _plainly_valid(
    parts: _Parts | None,
    key: Any,
    issuer: str,
    audience: str | None,
    leeway_s: int,
    required: tuple[str, ...],
) -> dict[str, Any] | None:
    """The claims of a token of the usual shape that PyJWT would accept with these options, read
    and checked here; None for anything else, which `_decoded` then judges.

    PyJWT spends as long again as the ES256 verification itself on its general-purpose decoding
    and claim checks (options merged, segments decoded twice, a datetime for "now"), once for
    every request a connector answers and, where answers are signed, for each of a lookup's
    answers. Only acceptance is done here: a token this refuses goes to PyJWT, so what is
    refused, and how it is reported, is PyJWT's verdict."""
    if (
        parts is None
        or not isinstance(key, ec.EllipticCurvePublicKey)
        or not isinstance(key.curve, ec.SECP256R1)
    ):
        return None
    signature = parts.signature
    if len(signature) != 2 * _ES256_HALF:
        return None
    try:
        key.verify(
            encode_dss_signature(
                int.from_bytes(signature[:_ES256_HALF]), int.from_bytes(signature[_ES256_HALF:])
            ),
            parts.signing_input,
            _ES256,
        )
        claims = _json(parts.payload)
    except (InvalidSignature, ValueError, RecursionError):
        return None
    if not isinstance(claims, dict) or any(claims.get(name) is None for name in required):
        return None
    now = time.time()
    issued, expires = claims["iat"], claims["exp"]
    if (
        type(issued) is not int
        or type(expires) is not int
        or issued > now + leeway_s
        or expires <= now - leeway_s
        or "nbf" in claims
        or claims["iss"] != issuer
        or not isinstance(claims.get("sub", ""), str)
        or not isinstance(claims.get("jti", ""), str)
    ):
        return None
    if audience is not None:
        addressed = claims.get("aud")
        if not (
            addressed == audience
            or (
                isinstance(addressed, list)
                and audience in addressed
                and all(isinstance(name, str) for name in addressed)
            )
        ):
            return None
    return claims


_BASE64URL_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_BASE64URL_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_PLAIN_HEADER: Final = frozenset({"alg", "typ", "kid"})


class _Parts(NamedTuple):
    """A token of the usual shape, its segments decoded once."""

    signing_input: bytes
    """The first two segments as sent, joined by their dot: what the signature covers."""
    payload: bytes
    signature: bytes


def _unverified(token: str) -> tuple[_Parts | None, dict[str, Any]]:
    """The token's parts when it has the usual shape, and its header: what
    `jwt.get_unverified_header(token)` returns, raising what it raises.

    PyJWT checks every segment of the token a character at a time in Python before it reads the
    header, then does it all again to verify the signature: the first pass cost a fifth of
    checking a request. Tokens of the usual shape - three unpadded, canonical base64url segments
    and a header holding only `alg`, `typ` and `kid` strings, which PyJWT would accept as they are
    - are read here in C, each segment decoded once; anything else is left to PyJWT, so its
    verdict is the same.
    """
    segments = token.encode("utf-8").split(b".")
    if len(segments) == 3:
        head, payload, signature = (_canonical_base64url(segment) for segment in segments)
        if head is not None and payload is not None and signature is not None:
            try:
                header = _json(head)
            except (ValueError, RecursionError):
                header = None
            if (
                isinstance(header, dict)
                and header.keys() <= _PLAIN_HEADER
                and all(isinstance(value, str) for value in header.values())
            ):
                return _Parts(segments[0] + b"." + segments[1], payload, signature), header
    return None, jwt.get_unverified_header(token)


def _canonical_base64url(segment: bytes) -> bytes | None:
    """What unpadded base64url `segment` decodes to, if it encodes back to itself (PyJWT's test
    of a segment); None if it does not."""
    if len(segment) % 4 == 1 or segment.translate(None, _BASE64URL_ALPHABET):
        return None
    padded = segment.translate(_BASE64URL_TO_STANDARD) + b"=" * (-len(segment) % 4)
    data = binascii.a2b_base64(padded)
    return data if binascii.b2a_base64(data, newline=False) == padded else None


def _json(data: bytes) -> Any:
    """`json.loads(data)` for UTF-8 without a byte-order mark; ValueError for anything else.

    Given bytes, `json.loads` first guesses their encoding in Python. A token's JSON is UTF-8 (RFC
    7519); bytes that are not - another encoding PyJWT would still read - fail here as they fail to
    parse, and the token goes to PyJWT."""
    return json.loads(data.decode("utf-8"))


class ReplayCache(Protocol):
    """Where a connector remembers the request token ids it has accepted."""

    async def remember(self, jti: str, forget_after: float) -> None:
        """Remember `jti` until `forget_after` (Unix time). Raise ReplayRefused if it is
        remembered already, ReplayCheckUnavailable if that cannot be known."""
        ...


class MemoryReplayCache:
    """Token ids seen by this process and not yet expired. Full means refuse, never forget early:
    forgetting an unexpired id would let it be replayed."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._ids: set[str] = set()
        self._expiries: list[tuple[float, str]] = []

    async def remember(self, jti: str, forget_after: float) -> None:
        now = time.time()
        while self._expiries and self._expiries[0][0] < now:
            self._ids.discard(heapq.heappop(self._expiries)[1])
        if jti in self._ids:
            raise ReplayRefused()
        if len(self._ids) >= self._capacity:
            raise ReplayCheckUnavailable()  # full: nothing wrong with the request, so 503
        self._ids.add(jti)
        heapq.heappush(self._expiries, (forget_after, jti))


_TOKEN_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
"""A request token's id as the gateway makes them (`random_id`: hex) and a replay store keeps
them: anything else - a key-space of its own in Redis, text Redis cannot encode - is refused."""


class RequestVerifier:
    """The connector's check that a request was signed by the gateway, for this connector, just
    now, over these exact bytes, and never received before."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        leeway_s: int = 5,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._leeway = leeway_s
        self._seen = MemoryReplayCache() if replay_cache is None else replay_cache

    async def verify(self, authorization: str | None, body: bytes, *, audience: str) -> None:
        """Raise TrustError unless `authorization` carries a valid gateway token for `body`."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TrustError("This connector accepts only requests signed by the gateway.")
        claims = await verified_claims(
            token,
            self._keys,
            body,
            issuer=self._issuer,
            audience=audience,
            leeway_s=self._leeway,
            required=("aud", "jti"),
        )
        jti = claims["jti"]
        if not isinstance(jti, str) or not _TOKEN_ID.fullmatch(jti):
            raise TrustError(
                "The request token's id (jti) is not 1-128 letters, digits, '-', '_' or '.'."
            )
        await self._seen.remember(jti, float(claims["exp"]) + self._leeway)


class AnswerSigner:
    """The connector's signature over each answer body, with the key the gateway is configured
    to trust for this source."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        also_published: Sequence[ec.EllipticCurvePublicKey] = (),
    ) -> None:
        """`also_published`: keys the JWKS serves beside this one's, for a rotation."""
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self._published = published_keys(private_key, also_published)

    @classmethod
    def from_pem_file(cls, path: Path, published: Path | None = None) -> AnswerSigner:
        """The private key in `path`, publishing the public keys in `published` beside its own."""
        also = () if published is None else load_public_keys(published)
        return cls(load_private_key(path), also_published=also)

    def sign(self, body: bytes, *, source: str) -> str:
        return signed_token(self._key, {"iss": source}, body, kid=self._kid)

    def jwks(self) -> dict[str, Any]:
        return jwks_document(self._published)


def published_keys(
    signing: ec.EllipticCurvePrivateKey, others: Sequence[ec.EllipticCurvePublicKey]
) -> list[ec.EllipticCurvePublicKey]:
    """What a signer's JWKS serves: its own key first, then `others` (a rotation's next or
    previous key), each once. Whoever checks its signatures replaces the keys it holds with a
    fetched set, so while replicas sign with two keys each must publish both."""
    keys = {key_id(signing.public_key()): signing.public_key()}
    for key in others:
        keys.setdefault(key_id(key), key)
    return list(keys.values())

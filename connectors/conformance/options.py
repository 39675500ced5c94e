"""How a run of the kit is set up, read once from the command line (`childlookup connector
check`) or built directly by a caller."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from connectors.conformance.holdings import Flag
from connectors.protocol import FieldId

DEFAULT_ISSUER: Final = "childlookup-conformance"
DEFAULT_KEY_FILE: Final = Path("conformance-gateway-key.pem")
DEFAULT_JWKS_PORT: Final = 8199
DEFAULT_MAX_MS: Final = 500.0
DEFAULT_LOOKUPS: Final = 20


@dataclass(frozen=True)
class ConformanceOptions:
    """One run against the connector at `url` holding the conformance dataset for `agency`."""

    url: str
    agency: str
    source: str | None = None
    """The connector's source name (the audience of requests, the issuer of answers); the
    agency name unless given."""
    fields: tuple[FieldId, ...] | None = None
    """What the agency provides, when not its reference profile's."""
    flags: tuple[Flag, ...] | None = None
    """Which record flags the agency sets, when not its reference profile's."""
    key_file: Path = DEFAULT_KEY_FILE
    issuer: str = DEFAULT_ISSUER
    jwks_host: str = "127.0.0.1"
    jwks_port: int | None = DEFAULT_JWKS_PORT
    """Where the kit serves its JWKS during the run; None serves none (use `jwks_file`)."""
    jwks_file: Path | None = None
    answer_key: Path | None = None
    """The connector's answer-signing public key (PEM); its published JWKS when None."""
    max_ms: float = DEFAULT_MAX_MS
    lookups: int = DEFAULT_LOOKUPS
    timeout_s: float = 10.0
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def source_name(self) -> str:
        return self.source or self.agency


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the kit's arguments to `parser` (the lead's `childlookup connector check`)."""
    parser.add_argument(
        "url", nargs="?", help="the connector's base URL, e.g. http://127.0.0.1:8101"
    )
    parser.add_argument(
        "--agency",
        help="the agency profile: health, education, social_care, or any name with --fields",
    )
    parser.add_argument("--source", help="the connector's source name (default: the agency)")
    parser.add_argument(
        "--fields",
        type=_fields,
        help="comma-separated field ids the agency provides, overriding its profile",
    )
    parser.add_argument(
        "--flags",
        type=_flags,
        help="comma-separated record flags the agency sets (shielded, restricted), or 'none'",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=DEFAULT_KEY_FILE,
        metavar="PEM",
        help="the kit's request-signing key, created when missing (public key beside it as "
        "NAME.pub.pem)",
    )
    parser.add_argument(
        "--issuer",
        default=DEFAULT_ISSUER,
        help="the issuer the kit signs as (the connector's --gateway-issuer)",
    )
    parser.add_argument("--jwks-host", default="127.0.0.1")
    parser.add_argument(
        "--jwks-port",
        type=int,
        default=DEFAULT_JWKS_PORT,
        help="serve the kit's JWKS at http://HOST:PORT/.well-known/jwks.json during the run",
    )
    parser.add_argument(
        "--no-jwks-server",
        dest="jwks_port",
        action="store_const",
        const=None,
        help="do not serve the JWKS (give the connector --jwks-file or the public key)",
    )
    parser.add_argument("--jwks-file", type=Path, help="also write the kit's JWKS to this file")
    parser.add_argument(
        "--answer-key",
        type=Path,
        metavar="PEM",
        help="the connector's answer-signing public key (default: its /.well-known/jwks.json)",
    )
    parser.add_argument(
        "--max-ms", type=float, default=DEFAULT_MAX_MS, help="the p95 a lookup must answer within"
    )
    parser.add_argument(
        "--lookups", type=int, default=DEFAULT_LOOKUPS, help="lookups timed for the p95"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument(
        "--tls-ca", type=Path, metavar="PEM", help="CA the connector's cert chains to"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="client certificate's key")
    parser.add_argument(
        "--write-dataset",
        type=Path,
        metavar="DIR",
        help="write the conformance dataset (AGENCY.jsonl per agency) into DIR and exit",
    )


def options_from_args(args: argparse.Namespace) -> ConformanceOptions:
    """The options `add_arguments` parsed; ValueError when the URL or agency is missing."""
    if not args.url:
        raise ValueError("name the connector's URL (or use --write-dataset DIR)")
    if not args.agency:
        raise ValueError("name the agency with --agency")
    if args.lookups < 1:
        raise ValueError("--lookups must be at least 1")
    return ConformanceOptions(
        url=args.url,
        agency=args.agency,
        source=args.source,
        fields=args.fields,
        flags=args.flags,
        key_file=args.key_file,
        issuer=args.issuer,
        jwks_host=args.jwks_host,
        jwks_port=args.jwks_port,
        jwks_file=args.jwks_file,
        answer_key=args.answer_key,
        max_ms=args.max_ms,
        lookups=args.lookups,
        timeout_s=args.timeout,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


def _fields(text: str) -> tuple[FieldId, ...]:
    try:
        return tuple(FieldId(name.strip()) for name in text.split(",") if name.strip())
    except ValueError:
        known = ", ".join(FieldId)
        raise argparse.ArgumentTypeError(f"field ids are: {known}") from None


def _flags(text: str) -> tuple[Flag, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(Flag(name.strip()) for name in text.split(",") if name.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("flags are: shielded, restricted, or none") from None

"""The connector command line: `childlookup connector ...` beside the gateway, and
`childlookup-connector ...` where an agency installs the SDK alone.

One parser serves both, so an agency's runbook reads the same whichever it installed. Every
command fails with one line naming what to fix (exit 2), never a traceback: the person reading it
is an agency's operator, not this project's developer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.logs import configure as configure_logging
from connectors.tls import (
    RELOAD_EVERY_S,
    ReloadingContext,
    ServerFiles,
    load_identity,
    load_trust,
)

if TYPE_CHECKING:  # imported where used: `childlookup --help` should not load a web stack
    from starlette.applications import Starlette

    from connectors.fhir import FhirAuth
    from connectors.trust import AnswerSigner, KeySource, ReplayCache, RequestVerifier
    from connectors.witness import WitnessStore


def add_tls_arguments(
    parser: argparse.ArgumentParser, clients: str | None, *, serving: bool = True
) -> None:
    """The --tls-* options of a serving command, or, without `serving`, of `tls-check`, which
    checks the same files; client certificate options unless `clients` is None (the locator,
    whose callers - agencies' publishers among them - present none)."""
    parser.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve https with this certificate (chain)"
    )
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    if clients is not None:
        _add_client_ca_arguments(parser, clients)
    if not serving:
        return
    parser.add_argument(
        "--tls-reload-s",
        type=float,
        metavar="S",
        default=RELOAD_EVERY_S,
        help="look at the TLS files this often and take up changed ones without a restart"
        " (0: never; default %(default)s)",
    )


def _add_client_ca_arguments(parser: argparse.ArgumentParser, clients: str) -> None:
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help=f"mutual TLS: require {clients} to present a certificate from this CA",
    )
    parser.add_argument(
        "--tls-client-crl",
        type=Path,
        metavar="PEM",
        help="and refuse those this CA's revocation lists name (PEM, one list per CA)",
    )


def add_tls_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tls-check`: the checks `serve` makes of its TLS files, for new files before they are put
    in place (a server takes up changed files while it runs)."""
    check = commands.add_parser(
        "tls-check",
        help="check a certificate and key (and client CA and CRLs) as serve would, and say until "
        "when they work",
    )
    add_tls_arguments(check, "clients", serving=False)
    check.set_defaults(run=_tls_check)


def _tls_check(args: argparse.Namespace) -> int:
    files = tls_files(args)
    if files is None:
        raise ValueError("name the files to check: --tls-cert and --tls-key at least")
    until = files.load().until
    print(f"usable: {', '.join(str(path) for path in files.paths())}; until {until.isoformat()}")
    return 0


def tls_files(args: argparse.Namespace) -> ServerFiles | None:
    """The files the --tls-* options name, or None when none is given.

    Raises ValueError when only one of certificate and key is given.
    """
    client_ca = getattr(args, "tls_client_ca", None)  # not an option of every command
    client_crl = getattr(args, "tls_client_crl", None)
    if all(option is None for option in (args.tls_cert, args.tls_key, client_ca, client_crl)):
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("serving https needs both --tls-cert and --tls-key")
    return ServerFiles(args.tls_cert, args.tls_key, client_ca, client_crl)


def serving_tls(args: argparse.Namespace) -> ReloadingContext | None:
    """The server context the --tls-* options ask for, watching its files every --tls-reload-s;
    None when they ask for none."""
    files = tls_files(args)
    return None if files is None else ReloadingContext(files, every_s=args.tls_reload_s)


def gateway_keys(args: argparse.Namespace) -> KeySource | None:
    """The gateway's request-signing keys: read from --gateway-key, or fetched from --gateway-jwks
    (over https trusting --gateway-jwks-ca when given, else the public CAs, and presenting
    --gateway-jwks-cert when given); None with neither. A federation whose gateway holds a
    certificate from its own CA needs the CA or the key: the public CAs would refuse it, and
    every request with it. A gateway requiring client certificates (mutual TLS for its portals)
    answers a fetch only with one."""
    from connectors.trust import PublishedKeys, StaticKeys

    fetching = {
        "--gateway-jwks-ca": args.gateway_jwks_ca,
        "--gateway-jwks-cert": args.gateway_jwks_cert,
        "--gateway-jwks-key": args.gateway_jwks_key,
    }
    given = [option for option, path in fetching.items() if path is not None]
    if given and not args.gateway_jwks:
        raise ValueError(f"{', '.join(given)}: for fetching --gateway-jwks, so give it too")
    if (args.gateway_jwks_cert is None) != (args.gateway_jwks_key is None):
        raise ValueError("give --gateway-jwks-cert and --gateway-jwks-key together")
    if args.gateway_key is not None:
        return StaticKeys.from_pem_file(args.gateway_key)
    if not args.gateway_jwks:
        return None
    fetched_with = None
    if args.gateway_jwks_ca is not None:
        fetched_with = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        load_trust(fetched_with, args.gateway_jwks_ca)
    elif args.gateway_jwks_cert is not None:
        import httpx

        fetched_with = httpx.create_ssl_context()  # the public CAs, as without a certificate
    if fetched_with is not None:
        fetched_with.minimum_version = ssl.TLSVersion.TLSv1_2
        if args.gateway_jwks_cert is not None:
            load_identity(fetched_with, args.gateway_jwks_cert, args.gateway_jwks_key)
    return PublishedKeys(args.gateway_jwks, tls=fetched_with)


def _verifier(args: argparse.Namespace) -> RequestVerifier | None:
    """Who may ask: requests signed by the gateway (`gateway_keys`), each accepted once (across
    replicas with --redis-url)."""
    from connectors.trust import RequestVerifier

    keys = gateway_keys(args)
    if keys is None:
        if args.redis_url:
            raise ValueError(
                "--redis-url keeps signed requests' ids: it needs --gateway-jwks or --gateway-key"
            )
        return None
    replay_cache: ReplayCache | None = None
    if args.redis_url:
        from connectors.redis_replay import RedisReplayCache

        replay_cache = RedisReplayCache.from_url(args.redis_url, f"childlookup:{args.agency}")
    return RequestVerifier(keys, issuer=args.gateway_issuer, replay_cache=replay_cache)


def _connector_app(
    args: argparse.Namespace, verifier: RequestVerifier | None, signer: AnswerSigner | None
) -> Starlette:
    """The app for whichever record store the command names.

    Raises ValueError unless exactly one store is named.
    """
    named = [option for option in _STORES if getattr(args, option.lstrip("-")) is not None]
    if len(named) != 1:
        raise ValueError("name the agency's records with one of " + ", ".join(_STORES))
    witness = _witness_store(args, verifier)
    if args.fhir is not None:
        from connectors.fhir import create_fhir_app

        return create_fhir_app(
            pds_url=args.fhir,
            cpis_url=args.cpis,
            auth=_fhir_auth(args),
            verifier=verifier,
            signer=signer,
            witness=witness,
            source=args.agency,
        )
    if args.sql is not None:
        if args.mapping is None:
            raise ValueError("--sql needs --mapping: the file mapping your tables to the protocol")
        from connectors.sql import create_sql_app

        return create_sql_app(
            database_url=args.sql,
            mapping=args.mapping,
            verifier=verifier,
            signer=signer,
            witness=witness,
            source=args.agency,
        )
    if args.ctf is not None:
        from connectors.ctf import create_ctf_app

        return create_ctf_app(
            folder=args.ctf,
            school_contacts=args.school_contacts,
            verifier=verifier,
            signer=signer,
            witness=witness,
            source=args.agency,
        )
    from connectors.reference import create_reference_app

    return create_reference_app(
        args.agency,
        args.records,
        args.latency_ms,
        verifier=verifier,
        signer=signer,
        witness=witness,
    )


def _witness_store(
    args: argparse.Namespace, verifier: RequestVerifier | None
) -> WitnessStore | None:
    """The store for --witness-db, when given.

    Raises ValueError without the gateway's keys (--gateway-jwks or --gateway-key).
    """
    if args.witness_db is None:
        return None
    if verifier is None:
        raise ValueError(
            "--witness-db keeps checkpoints the gateway signed: it needs --gateway-jwks or"
            " --gateway-key"
        )
    from connectors.witness import WitnessStore

    return WitnessStore(args.witness_db)


def _fhir_auth(args: argparse.Namespace) -> FhirAuth:
    """How the connector authenticates to the FHIR servers: a signed JWT client assertion (as NHS
    APIs require), a bearer token read from a file (never from the command line, where `ps` would
    show it), or nothing.

    Raises ValueError for a half-given client-credentials set.
    """
    from connectors.fhir import BearerToken, NoAuth, SignedJwtAuth

    jwt_options = (args.fhir_client_id, args.fhir_key, args.fhir_kid, args.fhir_token_url)
    if any(option is not None for option in jwt_options):
        if None in jwt_options or args.fhir_token_file is not None:
            raise ValueError(
                "OAuth client credentials need all of --fhir-client-id, --fhir-key, --fhir-kid "
                "and --fhir-token-url, and no --fhir-token-file"
            )
        return SignedJwtAuth.from_pem_file(
            args.fhir_token_url,
            args.fhir_client_id,
            args.fhir_key,
            args.fhir_kid,
        )
    if args.fhir_token_file is not None:
        return BearerToken(args.fhir_token_file.read_text(encoding="utf-8").strip())
    return NoAuth()


_STORES = ("--records", "--fhir", "--sql", "--ctf")
"""The options naming where an agency's records are; a connector serves exactly one."""


def _serve(args: argparse.Namespace) -> int:
    app = _connector_app(args, _verifier(args), _signer(args))
    return _serve_app(args, app, f"{args.agency} connector")


def _witness(args: argparse.Namespace) -> int:
    from connectors.app import create_witness_app
    from connectors.trust import RequestVerifier
    from connectors.witness import WitnessStore

    keys = gateway_keys(args)
    assert keys is not None  # one of the two is required
    verifier = RequestVerifier(keys, issuer=args.gateway_issuer)
    app = create_witness_app(
        WitnessStore(args.db), name=args.name, verifier=verifier, signer=_signer(args)
    )
    return _serve_app(args, app, f"{args.name} witness")


def _signer(args: argparse.Namespace) -> AnswerSigner | None:
    from connectors.trust import AnswerSigner

    if args.signing_key is None:
        if args.published_keys is not None:
            raise ValueError("--published-keys are published beside --signing-key: name it too")
        return None
    return AnswerSigner.from_pem_file(args.signing_key, args.published_keys)


def _serve_app(args: argparse.Namespace, app: Starlette, what: str) -> int:
    """Serve `app` on --host and --port (https with --tls-*) until interrupted."""
    from connectors.serving import ServedApp, bind_socket, run, serve_all

    served = ServedApp(what, app, bind_socket(args.host, args.port), serving_tls(args))
    print(f"{what} on {served.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        run(serve_all([served], log_level="info"))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from connectors.trust import ensure_key_pair

    private = args.out
    public = private.with_name(private.stem + ".pub.pem")
    if private.exists():
        raise ValueError(f"{private} exists already; a signing key is never overwritten")
    if public.exists():  # another key's: kept, the gateway would be told a key nothing signs with
        raise ValueError(
            f"{public} exists already, the public half of another key: move it aside first"
        )
    ensure_key_pair(private, public)
    print(f"answer-signing key {private}; give the gateway {public} as answer_key_file")
    return 0


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="serve an agency's records over the protocol")
    serve.add_argument("--agency", required=True, help="the source name the gateway knows it by")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    store = serve.add_argument_group("records (one of)")
    store.add_argument("--records", type=Path, help="records file (JSON Lines), for reference")
    serve.add_argument("--latency-ms", type=float, default=0.0, help="added latency (--records)")
    store.add_argument(
        "--fhir",
        metavar="URL",
        help="a FHIR R4 server shaped like NHS PDS (base URL, e.g. .../personal-demographics/"
        "FHIR/R4), for health",
    )
    fhir = serve.add_argument_group("FHIR (with --fhir)")
    fhir.add_argument("--cpis", metavar="URL", help="the CP-IS FHIR base URL, for plan flags")
    fhir.add_argument("--fhir-token-file", type=Path, metavar="FILE", help="a bearer token")
    fhir.add_argument("--fhir-client-id", help="OAuth 2.0 client credentials: the client id")
    fhir.add_argument("--fhir-key", type=Path, metavar="PEM", help="its RSA key (signs RS512)")
    fhir.add_argument("--fhir-kid", help="the key's id registered with the token service")
    fhir.add_argument("--fhir-token-url", metavar="URL", help="the token endpoint")
    store.add_argument(
        "--sql",
        metavar="URL",
        help="a relational database (SQLAlchemy URL, e.g. postgresql+psycopg://host/db or "
        "sqlite+aiosqlite:///cases.db), read through --mapping",
    )
    serve.add_argument(
        "--mapping",
        type=Path,
        metavar="TOML",
        help="how the database's tables map to protocol fields (--sql; docs/connectors.md)",
    )
    store.add_argument(
        "--ctf", type=Path, metavar="DIR", help="a folder of DfE Common Transfer Files (education)"
    )
    serve.add_argument(
        "--school-contacts",
        type=Path,
        metavar="JSON",
        help="each school's safeguarding lead, by URN (--ctf; CTF does not carry it)",
    )
    _add_gateway_arguments(serve, required=False)
    serve.add_argument(
        "--witness-db",
        type=Path,
        metavar="FILE",
        help="also witness the gateway's audit checkpoints, kept in this SQLite file (needs "
        "--gateway-jwks or --gateway-key)",
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="replicas of this connector sharing this Redis refuse a request any of them has "
        "accepted (replay protection across replicas), e.g. redis://127.0.0.1:6379/0, or "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE for a master under Sentinel, or "
        "redis+cluster://HOST:PORT[,HOST:PORT...] for a Redis Cluster",
    )
    add_tls_arguments(serve, "the gateway")
    serve.set_defaults(run=_serve)


def _add_witness(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    witness = commands.add_parser(
        "witness",
        help="keep the gateway's signed audit checkpoints and list them to auditors, as a witness "
        "the gateway's operator does not run (docs/connectors.md)",
    )
    witness.add_argument(
        "--name", required=True, help="the witness's name in the gateway's configuration"
    )
    witness.add_argument("--db", type=Path, required=True, metavar="FILE", help="its SQLite file")
    witness.add_argument("--port", type=int, required=True)
    witness.add_argument("--host", default="127.0.0.1")
    _add_gateway_arguments(witness, required=True)
    add_tls_arguments(witness, "the gateway")
    witness.set_defaults(run=_witness)


def _add_gateway_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Whose signed requests a server reads, and the key it signs its answers with."""
    keys = parser.add_mutually_exclusive_group(required=required)
    keys.add_argument(
        "--gateway-jwks",
        metavar="URL",
        help="require requests signed by the gateway publishing these keys, e.g. "
        "https://gateway.internal/.well-known/jwks.json (fetched when first needed, and again "
        "for a key not seen before)",
    )
    keys.add_argument(
        "--gateway-key",
        type=Path,
        metavar="PEM",
        help="require requests signed by one of these P-256 public keys (PEM blocks: the "
        "gateway's, and during a rotation its next one), given out of band rather than fetched",
    )
    parser.add_argument(
        "--gateway-jwks-ca",
        type=Path,
        metavar="PEM",
        help="the CA the gateway's https certificate chains to, for fetching --gateway-jwks "
        "(default: the public CAs)",
    )
    parser.add_argument(
        "--gateway-jwks-cert",
        type=Path,
        metavar="PEM",
        help="a client certificate (with --gateway-jwks-key) to present when fetching "
        "--gateway-jwks, for a gateway that requires one",
    )
    parser.add_argument(
        "--gateway-jwks-key",
        type=Path,
        metavar="PEM",
        help="the private key of --gateway-jwks-cert",
    )
    parser.add_argument(
        "--gateway-issuer",
        default="childlookup-gateway",
        help="the gateway's id (its CHILDLOOKUP_GATEWAY_ID)",
    )
    parser.add_argument(
        "--signing-key",
        type=Path,
        metavar="PEM",
        help="sign every answer with this P-256 private key (public key served at "
        "/.well-known/jwks.json)",
    )
    parser.add_argument(
        "--published-keys",
        type=Path,
        metavar="PEM",
        help="more P-256 public keys (PEM blocks) served at /.well-known/jwks.json after the "
        "signing key's own: while replicas change keys, the next key, then the previous one",
    )


def _import(args: argparse.Namespace) -> int:
    """Load a statutory return into the worked case records schema, all or nothing."""
    from connectors.sql import la_case_records
    from connectors.sql.engine import redacted

    if args.cin_census is not None:
        summary = asyncio.run(la_case_records.import_cin_census(args.sql, args.cin_census))
    else:
        if args.reference_date is None:
            raise ValueError("--ssda903 needs --reference-date: the files do not say their date")
        header, episodes = args.ssda903
        summary = asyncio.run(
            la_case_records.import_ssda903(
                args.sql, header, episodes, reference_date=args.reference_date
            )
        )
    rows = ", ".join(f"{table} {count}" for table, count in summary.rows.items())
    print(
        f"imported {summary.return_name} as of {summary.reference_date} into "
        f"{redacted(args.sql)}: {summary.children} children ({summary.created} new); {rows}"
    )
    return 0


def _index(args: argparse.Namespace) -> int:
    from connectors.sql import refresh_blocking_keys

    summary = asyncio.run(refresh_blocking_keys(args.sql, args.mapping, full=args.full))
    if summary.skipped:
        print("blocking keys not refreshed: another replica holds the refresh lock")
    else:
        kind = "full" if summary.full else "changed children only"
        print(f"blocking keys refreshed ({kind}): {summary.children} children, {summary.keys} keys")
    return 0


def _add_sql_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "import",
        help="load a children in need census (XML) or SSDA903 return (CSV) into the worked "
        "local authority case records schema (creates its tables when missing)",
    )
    load.add_argument("--sql", required=True, metavar="URL", help="the case records database")
    which = load.add_mutually_exclusive_group(required=True)
    which.add_argument("--cin-census", type=Path, metavar="XML", help="a CIN census file")
    which.add_argument(
        "--ssda903",
        type=Path,
        nargs=2,
        metavar=("HEADER_CSV", "EPISODES_CSV"),
        help="the SSDA903 header and episodes files",
    )
    load.add_argument(
        "--reference-date",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the SSDA903 collection year's end (31 March), which becomes the records' as-of",
    )
    load.set_defaults(run=_import)
    index = commands.add_parser(
        "index",
        help="bring the SQL connector's demographic search keys up to date (after bulk loads, "
        "or on a schedule when the mapping names no updated_at)",
    )
    index.add_argument("--sql", required=True, metavar="URL")
    index.add_argument("--mapping", required=True, type=Path, metavar="TOML")
    index.add_argument("--full", action="store_true", help="rewrite every child's keys")
    index.set_defaults(run=_index)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the connector commands on a parser's subcommands."""
    from connectors.agencies import add_serve_agencies
    from connectors.conformance import add_arguments, conformance_command

    _add_serve(commands)
    _add_witness(commands)
    add_tls_check(commands)
    add_serve_agencies(commands)
    _add_sql_commands(commands)
    keygen = commands.add_parser(
        "keygen", help="create the P-256 key pair a connector signs its answers with"
    )
    keygen.add_argument("out", type=Path, metavar="PEM", help="the private key file to create")
    keygen.set_defaults(run=_keygen)
    check = commands.add_parser(
        "check",
        help="run the protocol's conformance suite against a connector, in any language "
        "(docs/conformance.md)",
    )
    add_arguments(check)
    check.set_defaults(run=conformance_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="childlookup-connector",
        description="An agency's connector to the childlookup gateway.",
    )
    add_commands(parser.add_subparsers(dest="connector_command", required=True))
    return parser


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run the parsed command; a mistake or an unusable file is one line naming it (exit 2)."""
    try:
        code: int = args.run(args)
    except (ValueError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    return run_command(args, "childlookup-connector")


if __name__ == "__main__":
    raise SystemExit(main())

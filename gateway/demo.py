"""`childlookup demo`: three reference agency connectors and the gateway, on loopback, in one
process.

Everything runs on embedded defaults: a seeded synthetic population (only synthetic NHS numbers), a
dev signing key and audit key generated into the state directory, and the reference connectors'
profiles as the gateway's source config. Connector trust is on: each connector accepts only
requests signed by the gateway (checked against its /.well-known/jwks.json), and signs its answers
with its own key, generated into the state directory, which the gateway checks. The reference
connectors also witness the audit log (gateway.audit.witnessing), each keeping the checkpoints it
is sent in `witness-<agency>.sqlite3` in the state directory, as `connector serve --witness-db`
would: `childlookup audit verify --witness <connector URL>` compares the log with them.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from starlette.applications import Starlette

from connectors.protocol import Contact
from connectors.reference import REFERENCE_AGENCIES, AgencyProfile, create_reference_app
from connectors.serving import ServedApp, bind_socket, run, serve_all, socket_url
from connectors.synthetic import Population, generate_population, showcase, write_population
from connectors.trust import (
    JWKS_PATH,
    AnswerSigner,
    PublishedKeys,
    RequestVerifier,
    ensure_key_pair,
)
from connectors.witness import WitnessStore
from gateway.app import create_app
from gateway.components import build_components
from gateway.config import Mode, Settings, SourceConfig
from gateway.demo_formats import FormatConnector, format_connectors
from gateway.document_registry import APOLLO_FORMAT, DocumentRegistry, document_id
from gateway.tokens import DEMO_USERS, DEV_TOKEN_TTL_S, ensure_dev_keys, issue_dev_token

CONNECTOR_TIMEOUT_MS = 800
DEMO_ORGANISATIONS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"social_care": ("LA-LEEDS",), "health": ("RR8",), "education": ("URN-107000",)}
)
"""Who acts for each demo agency (`SourceConfig.organisations`), as the demo users' tokens name
them: the social worker's local authority holds the plans, so it alone reads access histories."""
DEMO_BROKERS: Final[Mapping[str, Contact]] = MappingProxyType(
    {
        "health": Contact(name="Health safeguarding hub", role="named nurse", phone="01632 960999"),
        "education": Contact(
            name="School safeguarding lead",
            role="designated safeguarding lead",
            phone="01632 960501",
        ),
        "social_care": Contact(
            name="Children's front door", role="duty social worker", phone="01632 960003"
        ),
    }
)
"""Each demo agency's own contact for brokering access to its sensitive services
(`SourceConfig.sensitive_broker`): a sensitive involvement it sends without a broker shows this
one (fictional numbers, from Ofcom's drama range)."""


def reference_source(
    agency: str,
    url: str,
    *,
    timeout_ms: int = 1_000,
    answer_key_file: Path | None = None,
    organisations: Sequence[str] = (),
    sensitive_broker: Contact | None = None,
) -> SourceConfig:
    """The source entry for one of the reference agencies, from its published profile."""
    return agency_source(
        REFERENCE_AGENCIES[agency],
        url,
        timeout_ms=timeout_ms,
        answer_key_file=answer_key_file,
        organisations=organisations,
        sensitive_broker=sensitive_broker,
    )


def agency_source(
    profile: AgencyProfile,
    url: str,
    *,
    timeout_ms: int = 1_000,
    answer_key_file: Path | None = None,
    organisations: Sequence[str] = (),
    witness: bool = False,
    sensitive_broker: Contact | None = None,
) -> SourceConfig:
    """The source entry for an agency's connector, from its profile; `organisations` act for
    it (read the access histories of the children it holds a plan or status for); with
    `witness`, it is sent the audit log's checkpoints to keep; `sensitive_broker` brokers its
    sensitive involvements that come without a broker."""
    return SourceConfig.model_validate(
        {
            "name": profile.name,
            "url": url,
            "timeout_ms": timeout_ms,
            "provides": profile.provides,
            "shield_authority": profile.shield_authority,
            "restriction_authority": profile.restriction_authority,
            "holds_every_child": profile.holds_every_child,
            "answer_key_file": answer_key_file,
            "organisations": tuple(organisations),
            "witness": witness,
            "sensitive_broker": sensitive_broker,
        }
    )


@dataclass(frozen=True)
class DemoOptions:
    host: str
    port: int
    seed: int
    children: int
    state_dir: Path
    latency_ms: float
    agency_formats: bool = False
    trusted_documents: Path | bool = False
    """Run in trusted-documents mode: True, with a manifest of the banner's example queries
    (written to the state dir); a path, with that manifest (a portal's)."""


def _bind_preferred(host: str, port: int) -> socket.socket:
    """The agency's usual port when free, otherwise any free port."""
    try:
        return bind_socket(host, port)
    except OSError:
        return bind_socket(host, 0)


def run_demo(options: DemoOptions) -> None:
    state = options.state_dir
    key_path = ensure_dev_keys(state)
    population = generate_population(options.seed, options.children)
    population_dir = state / f"population-{options.seed}-{options.children}"
    write_population(population, population_dir)
    examples = showcase(population)
    searches = _search_examples(population, examples)
    trusted = options.trusted_documents
    if trusted is True:
        trusted = _write_examples_manifest(
            state / "demo-operations.json", _example_queries(examples, searches)
        )

    settings = Settings(
        mode=Mode.DEV,
        state_dir=state,
        host=options.host,
        port=options.port,
        trusted_documents=trusted or None,
    )
    gateway_sock = bind_socket(options.host, options.port)
    gateway_keys = PublishedKeys(socket_url(gateway_sock) + JWKS_PATH)
    served: list[ServedApp] = []
    backing: list[ServedApp] = []
    sources: list[SourceConfig] = []
    if options.agency_formats:
        connectors = format_connectors(population, population_dir, state, options.host)
    else:
        connectors = _reference_connectors(population_dir, options.latency_ms, state)
    for name, connector in connectors.items():
        sock = _bind_preferred(options.host, connector.profile.default_port)
        answer_key = state / f"connector-{name}-key.pem"
        answer_public_key = state / f"connector-{name}-key.pub.pem"
        ensure_key_pair(answer_key, answer_public_key)
        app = connector.build(
            RequestVerifier(gateway_keys, issuer=settings.gateway_id),
            AnswerSigner.from_pem_file(answer_key),
        )
        served.append(ServedApp(name, app, sock))
        backing.extend(connector.backing)
        sources.append(
            agency_source(
                connector.profile,
                served[-1].url,
                timeout_ms=CONNECTOR_TIMEOUT_MS,
                answer_key_file=answer_public_key,
                organisations=DEMO_ORGANISATIONS.get(name, ()),
                witness=not options.agency_formats,
                sensitive_broker=DEMO_BROKERS.get(name),
            )
        )
    components = build_components(settings, sources)
    gateway = ServedApp("gateway", create_app(components), gateway_sock)

    def banner() -> None:
        print(
            _banner(
                gateway.url,
                served,
                {name: connector.reads for name, connector in connectors.items()},
                key_path.read_bytes(),
                settings,
                examples,
                searches,
                state,
                components.trusted_documents,
                [str(source.url).rstrip("/") for source in sources if source.witness],
            ),
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        run(serve_all([*backing, *served, gateway], on_started=banner))
    print("childlookup demo stopped.")


def _reference_connectors(
    population_dir: Path, latency_ms: float, state: Path
) -> dict[str, FormatConnector]:
    """The three reference connectors, each over its agency's JSON Lines file, each witnessing
    the audit log into its own file in `state`."""

    def reference(name: str) -> Callable[[RequestVerifier, AnswerSigner], Starlette]:
        def build(verifier: RequestVerifier, signer: AnswerSigner) -> Starlette:
            records = population_dir / f"{name}.jsonl"
            return create_reference_app(
                name,
                records,
                latency_ms,
                verifier=verifier,
                signer=signer,
                witness=WitnessStore(state / f"witness-{name}.sqlite3"),
            )

        return build

    return {
        name: FormatConnector(profile, reference(name), f"{population_dir / name}.jsonl")
        for name, profile in REFERENCE_AGENCIES.items()
    }


def _banner(
    url: str,
    connectors: list[ServedApp],
    reads: dict[str, str],
    private_key: bytes,
    settings: Settings,
    examples: dict[str, str],
    searches: list[str],
    state_dir: Path,
    trusted: DocumentRegistry | None = None,
    witnesses: Sequence[str] = (),
) -> str:
    lines = [
        "",
        "childlookup demo is running (synthetic data only; Ctrl-C stops everything).",
        "",
        f"  Portal:    {url}/portal/   (sign in as a demo user; no GraphQL needed)",
        f"  GraphiQL:  {url}/graphql",
        f"  Health:    {url}/healthz   Ready: {url}/readyz",
        "  Connectors:",
        *(f"    {c.name} {c.url}, reading {reads[c.name]}" for c in connectors),
        *_trusted_documents_lines(trusted),
        "",
        "Bearer tokens (paste into GraphiQL's Headers tab as"
        ' {"Authorization": "Bearer <token>"}):',
    ]
    for user in DEMO_USERS:
        token = issue_dev_token(
            private_key,
            role=user.role,
            organisation=user.organisation,
            name=user.name,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl_s=min(DEV_TOKEN_TTL_S, settings.token_max_lifetime_s),
            max_lifetime_s=settings.token_max_lifetime_s,
        )
        lines += [f"  {user.role} ({user.organisation}):", f"    {token}"]
    lines += ["", "NHS numbers to try:"]
    lines += [f"  {label.replace('_', ' '):24} {nhs}" for label, nhs in examples.items()]
    first = next(iter(examples.values()))
    lookup = lookup_example(first)
    lines += [
        "",
        "Example query:",
        # In trusted mode a query runs only as registered, character for character: one line.
        *([f"  {lookup}"] if trusted is not None else wrapped_lookup(lookup)),
        "",
        "Without an NHS number, by UPN or by demographics (records { source method score }"
        " says how each record was matched):",
        *(f"  {search}" for search in searches),
        "",
        "Who has looked at a child, and why (the auditor's token only; reading it is audited):",
        f"  {_trail_example(first)}",
        "",
        *_verify_lines(witnesses, state_dir),
        "More tokens: ./dev token --role gp --org A81001" + _state_dir_option(state_dir),
        "  (`childlookup token ...` inside .venv; any role listed in README.md)",
        "",
    ]
    return "\n".join(lines)


def lookup_example(nhs: str) -> str:
    return (
        f'{{ child(identify: {{nhsNumber: "{nhs}"}}, purpose: SAFEGUARDING_ENQUIRY) {{'
        " outcome complete child { name { given family } involvements { service"
        " organisation practitioner { name phone } } }"
        " sources { source status latencyMs } withheld { field source reason } auditId } }"
    )


def wrapped_lookup(lookup: str) -> list[str]:
    """The example lookup over three lines, for reading."""
    head, rest = lookup.split(" outcome ", 1)
    middle, tail = rest.split(" sources ", 1)
    return [f"  {head}", f"      outcome {middle}", f"      sources {tail}"]


def _trail_example(nhs: str) -> str:
    return (
        f'{{ auditTrail(nhsNumber: "{nhs}") {{ at subject role purpose justification'
        " outcome released withheld { field source reason } } }"
    )


def _example_queries(examples: dict[str, str], searches: list[str]) -> list[str]:
    """Every query the banner prints, exactly as printed."""
    first = next(iter(examples.values()))
    return [lookup_example(first), *searches, _trail_example(first)]


def _write_examples_manifest(path: Path, queries: list[str]) -> Path:
    """An Apollo persisted-query manifest registering `queries`, as a portal's build would."""
    operations = [
        {"id": document_id(query), "name": f"DemoExample{n}", "type": "query", "body": query}
        for n, query in enumerate(queries, start=1)
    ]
    manifest = {"format": APOLLO_FORMAT, "version": 1, "operations": operations}
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def _trusted_documents_lines(trusted: DocumentRegistry | None) -> list[str]:
    if trusted is None:
        return ["  Trusted documents: off (any query runs; persisted queries by hash too)"]
    return [
        f"  Trusted documents: ON - only the {trusted.operations} operations in {trusted.path}"
        " run,",
        "    by id, hash or exact text; anything else is refused (OPERATION_NOT_TRUSTED),"
        " GraphiQL's",
        "    schema explorer included. Paste a query below exactly as printed, on one line.",
    ]


def _verify_lines(witnesses: Sequence[str], state_dir: Path) -> list[str]:
    """How to check the audit log against the connectors witnessing it (once it is sealed, a few
    seconds after a lookup)."""
    if not witnesses:
        return []
    options = "".join(f" --witness {url}" for url in witnesses)
    return [
        "Is the audit log intact, and does it agree with the connectors witnessing it:",
        f"  ./dev audit verify{_state_dir_option(state_dir)}{options}",
        "",
    ]


def _state_dir_option(state_dir: Path) -> str:
    """What `token` needs to sign with this demo's key: nothing for the default state dir."""
    if state_dir == Path(".childlookup"):
        return ""
    return f" --state-dir {shlex.quote(str(state_dir))}"


def _search_examples(population: Population, examples: dict[str, str]) -> list[str]:
    """A UPN lookup for the education-linked child and a demographic one for the ordinary child,
    as the child's school and GP would write them."""
    by_nhs = {r.identifiers.nhs_number: r for r in population.health}
    upn = next(
        r.identifiers.upn
        for r in population.education
        if r.identifiers.nhs_number == examples["education_linked"]
    )
    ordinary = by_nhs[examples["ordinary"]]
    assert ordinary.name is not None
    assert ordinary.address is not None
    return [
        f'{{ child(identify: {{upn: "{upn}"}}, purpose: SAFEGUARDING_ENQUIRY) {{ outcome records'
        " { source method score } } }",
        f'{{ child(identify: {{demographics: {{givenName: "{ordinary.name.given}", familyName:'
        f' "{ordinary.name.family}", dateOfBirth: "{ordinary.date_of_birth}", postcode:'
        f' "{ordinary.address.postcode}"}}}}, purpose: SAFEGUARDING_ENQUIRY) {{ outcome records'
        " { source method score } } }",
    ]

"""Gateway configuration, in one typed place, read once at start-up.

Every setting can come from a `CHILDLOOKUP_`-prefixed environment variable. Production mode
refuses to start on development defaults (a generated audit or request-signing key, the dev token
key, GraphiQL), since a gateway quietly running on demo keys is a ContactPoint-style leak waiting
to happen.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from connectors.protocol import Contact, FieldId
from connectors.tls import RELOAD_EVERY_S, ServerFiles
from locator.settings import Settings as LocatorSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY_DIR = REPO_ROOT / "policies"
DEV_ISSUER = "childlookup-dev"
DEFAULT_POLICY_VET_MAX_BYTES: Final = 1024 * 1024 * 1024
ENV_PREFIX: Final = "CHILDLOOKUP_"
"""Every setting is read from the environment variable of its name in capitals after this."""


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class Tracing(StrEnum):
    """Where lookup traces go (gateway.tracing)."""

    OFF = "off"
    CONSOLE = "console"
    OTLP = "otlp"


class Asked(StrEnum):
    """When a source is asked (gateway.routing)."""

    ALWAYS = "always"
    """On every lookup the plan allows: the national identity sources, or every agency of a
    regional deployment small enough to ask them all."""
    WHEN_ROUTED = "when_routed"
    """Only when the locator names it as holding a record about the child, or an identity route
    leads to it (the registered GP practice, the local authority of the home postcode, the school
    on roll): one of thousands of agencies, most of which never heard of the child."""


ROUTE_KEY_PATTERN: Final = r"^(la|ods|urn):[A-Z0-9]{1,16}$"
"""How an identity route names an agency: `la:<local authority code>`, `ods:<GP practice ODS
code>` or `urn:<school URN>`."""


SENSITIVE_SERVICE: Final = "sensitive_service"
"""The name a source that is a sensitive service itself (`SourceConfig.sensitive`) is shown by to
a caller not shown the lookup's sensitive service details (gateway.agency_names): no source or
kind may take it."""


class AnswerKeys(BaseModel):
    """How the gateway checks that what a party answers (a connector's answers and receipts, a
    witness's receipts) was signed by it: one key or the other, or neither (unsigned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    answer_key_file: Path | None = None
    """The party's public key (PEM): its answers must carry a valid signature by it."""
    answer_jwks_url: HttpUrl | None = None
    """Or the party's published keys (JWKS), e.g. its `/.well-known/jwks.json`."""

    @model_validator(mode="after")
    def _one_answer_key(self) -> AnswerKeys:
        if self.answer_key_file is not None and self.answer_jwks_url is not None:
            raise ValueError("set answer_key_file or answer_jwks_url, not both")
        return self


class SourceConfig(AnswerKeys):
    """One agency connector the gateway fans out to."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    url: HttpUrl
    timeout_ms: Annotated[int, Field(gt=0, le=30_000)] = 1_000
    provides: tuple[FieldId, ...]
    shield_authority: bool = False
    restriction_authority: bool = False
    """It carries the NHS restricted (R) flag (the Personal Demographics Service, or a health
    source holding it): while it is silent, the child may be restricted, and location is
    withheld (RESTRICTION_STATUS_UNKNOWN), break-glass or not."""
    holds_every_child: bool = False
    """It holds a record of every child in the area (a population register, such as the NHS
    spine): until it has answered, a differing given name may be an unseen twin's."""
    notification_url: HttpUrl | None = None
    """Where the agency receives owner notifications; unset, `url` + `/v1/notifications`."""
    organisations: tuple[str, ...] = ()
    """The organisation codes (the token's organisation claim, e.g. `LA-LEEDS`) that act for this
    agency: when it holds a child protection plan or looked-after status, they may read the access
    history of its children (gateway.audit.history). Unset, none."""
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")] | None = None
    """What the plan policy sees this source as. Unset, its own name. Agencies asked only when
    routed are planned by kind (`social_care`, `gp_practice`, `school`), so a policy decides once
    for the 153 local authorities rather than 153 times."""
    asked: Asked = Asked.ALWAYS
    routes: tuple[Annotated[str, Field(pattern=ROUTE_KEY_PATTERN)], ...] = ()
    """The identity routes that lead to this agency (see ROUTE_KEY_PATTERN)."""
    witness: bool = False
    """The connector witnesses the audit log: it is sent every signed checkpoint, at `url` +
    `/v1/witness/checkpoints`, and keeps them (gateway.audit.witnessing)."""
    sensitive_broker: Contact | None = None
    """The agency's own contact for brokering access to its sensitive services (a safeguarding
    hub, a duty desk): the broker of a sensitive involvement it sends without one, such as a
    service the gateway marked sensitive that the agency did not (gateway.decide). Unset, such an
    involvement has no broker, and the practitioner is told to contact the agency itself."""
    sensitive: bool = False
    """The agency is itself a sensitive service (a sexual health clinic, a CAMHS trust, a drug and
    alcohol service): that it holds a record says the child uses one. Every involvement it sends
    is brokered, marked or not (gateway.decide), so it needs a `sensitive_broker`; and a caller
    not shown the lookup's sensitive service details sees it only as `sensitive_service`
    (gateway.agency_names). The audit keeps its name."""

    @model_validator(mode="after")
    def _broker_reachable(self) -> SourceConfig:
        # A broker is the practitioner's only route to a sensitive service: one with no name or
        # no phone to call is no route at all - nor is none, for a source all of whose services
        # are sensitive.
        broker = self.sensitive_broker
        if broker is None and self.sensitive:
            raise ValueError("a sensitive source needs a sensitive_broker: it is all brokered")
        if broker is not None and not (broker.name.strip() and (broker.phone or "").strip()):
            raise ValueError("sensitive_broker needs a name and a phone number")
        return self

    @model_validator(mode="after")
    def _restriction_asked_always(self) -> SourceConfig:
        # Asked only when routed, it may never be reached (no route found), and a lookup could
        # not tell its silence from its answer: a restriction is only ruled out by asking.
        if self.restriction_authority and self.asked is Asked.WHEN_ROUTED:
            raise ValueError("a restriction_authority is asked on every lookup, not when routed")
        return self

    @property
    def policy_name(self) -> str:
        return self.kind or self.name


def registers(sources: Iterable[SourceConfig]) -> frozenset[str]:
    """The sources holding every child (`holds_every_child`): matching waits for them before a
    differing given name is read as the same child, and their records linked by demographics
    vouch for the identifiers they carry (gateway.match, gateway.second_round)."""
    return frozenset(s.name for s in sources if s.holds_every_child)


def sensitive_sources(sources: Iterable[SourceConfig]) -> frozenset[str]:
    """The sources that are sensitive services themselves (`sensitive`): decide brokers all they
    send, and the caller is shown them by a neutral name (gateway.agency_names)."""
    return frozenset(s.name for s in sources if s.sensitive)


def sensitive_brokers(sources: Iterable[SourceConfig]) -> Mapping[str, Contact]:
    """Source name -> its configured `sensitive_broker`, for the sources that have one: decide
    gives it to a sensitive involvement of that source's that came without a broker."""
    return MappingProxyType(
        {s.name: s.sensitive_broker for s in sources if s.sensitive_broker is not None}
    )


class WitnessConfig(AnswerKeys):
    """A witness of the audit log that is not one of the sources: a service run by someone other
    than the gateway's operator, keeping every signed checkpoint it is sent (`[[witnesses]]`)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    """The witness's name: the audience of the gateway's requests to it, as it was started with
    (`connector witness --name`)."""
    url: HttpUrl
    """Its base URL; checkpoints go to `url` + `/v1/witness/checkpoints`."""
    timeout_ms: Annotated[int, Field(gt=0, le=30_000)] = 5_000


class SourcesFile(BaseModel):
    """The connector config file: `[[sources]]` tables in TOML (or the same shape in JSON)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig] = Field(min_length=1)
    postcode_districts: dict[
        Annotated[str, Field(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")],
        Annotated[str, Field(pattern=r"^[A-Z0-9]{1,16}$")],
    ] = Field(default_factory=dict)
    """Postcode district (the outward code, e.g. `LS1`) -> the code of the local authority it
    lies in: the address route to children's social care (gateway.routing)."""
    witnesses: list[WitnessConfig] = Field(default_factory=list)
    """Witnesses of the audit log besides the sources with `witness = true`."""

    @model_validator(mode="after")
    def _unique_names(self) -> SourcesFile:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError("source names must be unique")
        witnesses = [s.name for s in self.sources if s.witness] + [w.name for w in self.witnesses]
        if len(witnesses) != len(set(witnesses)):
            raise ValueError("witness names (and the names of sources that witness) must be unique")
        kinds = {s.policy_name for s in self.sources if s.asked is Asked.WHEN_ROUTED}
        if clash := kinds & set(names):
            raise ValueError(f"a kind cannot also be a source name: {sorted(clash)}")
        if SENSITIVE_SERVICE in kinds | set(names):
            raise ValueError(f"{SENSITIVE_SERVICE} is how sensitive sources are shown: not a name")
        return self


class ClientTls(BaseModel):
    """How the gateway reaches connectors over https (`CHILDLOOKUP_CONNECTOR_TLS`, JSON).

    With `ca_file`, a connector's server certificate must chain to that CA and no other (the
    federation's own CA, not every public one), and with `crl_file` too (that CA's revocation
    lists, PEM), not be one they list; with `cert_file` and `key_file`, the gateway presents that
    client certificate, so connectors requiring mutual TLS let it in. Every `reload_s` seconds
    (0: never) the files are looked at, and changed ones taken up for new connections without a
    restart (pooled connections made before are not reused).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = None
    crl_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    reload_s: float = Field(default=RELOAD_EVERY_S, ge=0)

    @model_validator(mode="after")
    def _cert_with_key(self) -> ClientTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")
        if self.crl_file is not None and self.ca_file is None:
            raise ValueError("crl_file lists revoked certificates of ca_file's CA: give ca_file")
        return self


class ServerTls(BaseModel):
    """How a server (the gateway, or a connector) serves https (`CHILDLOOKUP_SERVER_TLS`, JSON).

    With `client_ca_file`, every client must present a certificate chaining to that CA (mutual
    TLS): a portal or gateway without one is refused during the handshake, before any HTTP. With
    `client_crl_file` too (the CA's revocation lists, PEM), a certificate they list is refused.
    Every `reload_s` seconds (0: never) the files are looked at, and changed ones taken up
    without a restart (`connectors.tls.ReloadingContext`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_crl_file: Path | None = None
    reload_s: float = Field(default=RELOAD_EVERY_S, ge=0)

    def files(self) -> ServerFiles:
        return ServerFiles(self.cert_file, self.key_file, self.client_ca_file, self.client_crl_file)


def _read_utf8(path: Path) -> str:
    """The text of the file at `path`; one that is not UTF-8 is a ValueError saying at which
    byte. Python's own error named no file, and its repr (as some messages quote an error)
    holds the file's whole content."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None


def load_sources(path: Path) -> list[SourceConfig]:
    """Read a connector config file's sources; raises ValueError with the file name on any
    problem."""
    return load_sources_file(path).sources


def load_sources_file(path: Path) -> SourcesFile:
    """Read a connector config file; raises ValueError with the file name on any problem."""
    try:
        text = _read_utf8(path)
        raw = (
            tomllib.loads(text) if path.suffix == ".toml" else SourcesFile.model_validate_json(text)
        )
        parsed = raw if isinstance(raw, SourcesFile) else SourcesFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid connector config: {_problems(exc)}") from None
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid connector config: {exc}") from exc
    return parsed


def _problems(exc: ValidationError) -> str:
    """What is wrong with a connector config, on one line for a start-up error, each problem
    after where it is (`sources (item 1)`), never quoting the value given (a broker's phone, a
    URL with credentials): pydantic's own report spans lines and quotes each input."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field, *within = error["loc"] or ("connector config",)
        problems.append(f"{field}{f' ({_place(within)})' if within else ''}: {_why(error)}")
    return "; ".join(problems)


DEFAULT_FIELD_AUTHORITY: Final[Mapping[FieldId, tuple[str, ...]]] = {
    # The NHS spine (PDS, via GP systems) is the authority for who the child is and where they live.
    FieldId.NAME: ("health",),
    FieldId.DATE_OF_BIRTH: ("health",),
    FieldId.SEX: ("health",),
    FieldId.ADDRESS: ("health",),
    FieldId.GP_PRACTICE: ("health",),
    FieldId.SCHOOL: ("education",),
    # The local authority knows who holds parental responsibility and who the carers are.
    FieldId.CARERS: ("social_care",),
    FieldId.CHILD_PROTECTION_PLAN: ("social_care",),
    FieldId.LOOKED_AFTER: ("social_care",),
    FieldId.CHILD_IN_NEED: ("social_care",),
    FieldId.EARLY_HELP: ("social_care",),
}
"""Who is authoritative for what, from DOMAIN.md's "who holds what"."""


def _origin(value: str) -> str:
    """An origin as browsers serialise it in `Origin` (scheme, host, port only when not the
    default), so comparing strings is exact matching; anything else could never match."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    serialised = f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")
    if default is None or not host or "*" in value or value != serialised:
        raise ValueError(
            f"{value!r} is not an origin: give scheme and host (and a port that is not the"
            " scheme's default), lower case, with no path or trailing slash and no wildcard,"
            " e.g. https://portal.example.org"
        )
    return value


Origin = Annotated[str, AfterValidator(_origin)]
"""One web origin, e.g. `https://portal.example.org` (see _origin)."""


_HTTP_URL: Final = TypeAdapter(HttpUrl)


def _fetchable_url(value: str) -> str:
    """An http(s) URL as HttpUrl parses it (so httpx can send to it), kept as text for what reads
    it as such. Unchecked, a typo (`https://[::1/...`) started the gateway and was found only
    when a page was loaded."""
    try:
        return str(_HTTP_URL.validate_python(value))
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ValueError(f"{value!r} is not an http(s) URL ({reason})") from None


FetchableUrl = Annotated[str, AfterValidator(_fetchable_url)]
"""An http(s) URL, held as text (see _fetchable_url)."""


def setting_variable(field: str) -> str:
    """The environment variable a setting is read from: `lookup_deadline_ms` ->
    `CHILDLOOKUP_LOOKUP_DEADLINE_MS`."""
    return f"{ENV_PREFIX}{field.upper()}"


class InvalidVariable(ValueError):
    """A CHILDLOOKUP_ variable whose text cannot be read at all: a list or map that is not JSON."""


class _Environment(EnvSettingsSource):
    """The CHILDLOOKUP_ variables as pydantic-settings reads them, but a list or map that is not
    JSON is an InvalidVariable naming the variable and why, where pydantic-settings said only
    `error parsing value for field "token_algorithms" from source "EnvSettingsSource"`."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError as exc:
            raise InvalidVariable(
                f"{setting_variable(field_name)} is not JSON ({exc}): lists and maps are given"
                """ as JSON, e.g. '["ES256"]' or '{"gp": 30}'"""
            ) from None


def _place(within: Iterable[int | str]) -> str:
    """Where in a structured setting a problem is: `key_file`, `key 'adress'`, `item 0`."""
    parts = [f"item {part}" if isinstance(part, int) else part for part in within]
    if parts[-1:] == ["[key]"]:
        parts = [*parts[:-2], f"key {parts[-2]!r}"]
    return ".".join(parts)


def _why(error: ErrorDetails) -> str:
    """A validation error in words: a check's own message, or pydantic's for a wrong type."""
    return str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]


def invalid_settings_message(
    exc: ValidationError | SettingsError, flags: Mapping[str, str] | None = None
) -> str:
    """What is wrong with the settings, on one line for a start-up error: each problem after the
    variable it is in (or the command-line flag `flags` names for its field), and never the
    value given. Pydantic's own report spans lines, names fields rather than variables, and
    quotes each input: a 20-character CHILDLOOKUP_AUDIT_KEY, or the whole settings (audit key
    included) when a check across settings failed, went to the process manager's log."""
    if isinstance(exc, SettingsError):
        cause = exc.__cause__
        return str(cause if isinstance(cause, InvalidVariable) else exc)
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        why = _why(error)
        if not error["loc"]:  # a check across settings: its message names the variables
            problems.append(why)
            continue
        field, *within = error["loc"]
        name = (flags or {}).get(str(field)) or setting_variable(str(field))
        problems.append(f"{name}{f' ({_place(within)})' if within else ''}: {why}")
    return "; ".join(problems)


def _locator_variables() -> set[str]:
    """The variables the locator (locator.settings) reads: its prefix and each field's name, or
    the names a field's aliases give instead."""
    prefix = str(LocatorSettings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in LocatorSettings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


TEST_VARIABLES_PREFIX: Final = "CHILDLOOKUP_TEST_"
"""Variables of the project's own test suite (`.ci/run` sets them), which no gateway reads."""


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The CHILDLOOKUP_ variables in `environ` that are no setting, each with the setting it is
    closest to (the one probably meant), if any. pydantic-settings ignores them: a misspelt
    CHILDLOOKUP_AUDIT_PREVIOUS_KEY or CHILDLOOKUP_MOD would leave the gateway on a default with
    no word said. The locator's own variables (`CHILDLOOKUP_LOCATOR_*`, locator.settings) and
    the test suite's are not unknown. Compared in capitals, as the settings are read."""
    settings = {setting_variable(name) for name in Settings.model_fields}
    locator = _locator_variables()
    unknown = (
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in settings | locator
        and not name.upper().startswith(TEST_VARIABLES_PREFIX)
    )
    return {
        name: next(iter(difflib.get_close_matches(name.upper(), settings, n=1, cutoff=0.8)), None)
        for name in sorted(unknown)
    }


READ_FILE_SETTINGS: Final = (
    "pseudonym_keys_file",
    "audit_checkpoint_key_file",
    "audit_checkpoint_public_keys_file",
    "token_public_key_file",
    "trusted_documents",
    "linkage_model_file",
    "name_frequencies_file",
    "request_signing_key_file",
    "request_signing_published_keys_file",
    "metrics_token_file",
)
"""The settings naming a file the gateway reads at start-up (Settings.check_paths); the sources
file is not among them: it may come from --config, and load_sources_file names it."""


class Settings(BaseSettings):
    """Everything the gateway process needs to know, validated before it serves a request."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, the environment read by _Environment."""
        return init_settings, _Environment(settings_cls), dotenv_settings, file_secret_settings

    mode: Mode = Mode.DEV
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65_535)] = 8000
    state_dir: Path = Path(".childlookup")
    sources_file: Path | None = None
    policy_dir: Path = DEFAULT_POLICY_DIR
    opa_url: str | None = None
    """An OPA server serving the policy bundle (e.g. http://127.0.0.1:8181); unset, the gateway
    evaluates `policy_dir` in-process."""
    opa_timeout_ms: Annotated[int, Field(gt=0, le=10_000)] = 250
    locator_url: HttpUrl | None = None
    """The locator (the `locator` package): which agencies hold a record about a child, by keyed
    pseudonym. Set, agencies with `asked = "when_routed"` are asked when it or an identity route
    names them (gateway.routing); needs CHILDLOOKUP_PSEUDONYM_KEYS_FILE."""
    locator_jwks_url: HttpUrl | None = None
    """Where the locator publishes the key its answers are signed with; unset, the locator's
    /.well-known/jwks.json."""
    locator_id: str = Field(default="childlookup-locator", min_length=1)
    """The locator's name: the audience of the gateway's signed requests, the issuer of its
    answers."""
    locator_timeout_ms: Annotated[int, Field(gt=0, le=10_000)] = 500
    locator_agencies_max: Annotated[int, Field(gt=0, le=1_000)] = 20
    """The most agencies one lookup follows the locator to. A locator naming more is not followed
    at all (its status FAILED, TOO_MANY_AGENCIES; the lookup incomplete): a child is held by a
    handful, and a broken or hostile locator naming hundreds would have the child's identifiers
    sent to every one of them."""
    pseudonym_keys_file: Path | None = None
    """The keys (JSON, connectors.locator) that turn an NHS number or UPN into the pseudonyms the
    locator knows; shared with the agencies' connectors, never with the locator."""
    audit_db: Path | None = None
    database_url: str | None = None
    """postgresql://... : the audit log with its chain and checkpoints, the notification outbox and
    the distinct-children counts live in this PostgreSQL database, shared by every gateway process
    (gateway.audit.postgres); unset, in the SQLite file `audit_db`."""
    database_schema: str = Field(default="childlookup", pattern=r"^[a-z_][a-z0-9_]{0,54}$")
    """The PostgreSQL schema holding those tables, made by `childlookup db upgrade`; gateways
    connect as a member of its `<schema>_writer` role (see gateway.audit.migrations)."""
    redis_url: str | None = None
    """redis://... : the per-user and per-organisation rate limits and the daily distinct-children
    cap are kept here, exact across every gateway process, and so are automatic persisted queries'
    texts; unset, each process keeps its own. Never any child data: the answer cache stays in
    process memory."""
    redis_prefix: str = Field(default="childlookup", min_length=1, max_length=64)
    """Prefix of every Redis key the gateway writes."""
    audit_key: str | None = Field(default=None, min_length=32)
    audit_previous_keys: tuple[Annotated[str, Field(min_length=32)], ...] = ()
    """Audit keys retired by rotations, newest first (a JSON list): records are written under
    `audit_key`; these still find a child's earlier records, and check MAC'd checkpoints made
    under them (gateway.audit.pseudonyms)."""
    audit_synchronous: str = Field(default="FULL", pattern=r"^(FULL|NORMAL)$")
    audit_checkpoint_key_file: Path | None = None
    """The Ed25519 private key (PEM) the gateway signs audit checkpoints with
    (gateway.audit.checkpoints): keep it where those who can reach the audit database cannot, never
    in the SQLite log's directory. Required in production; in dev, one is generated in the state
    dir's `keys/` folder, its public key beside it."""
    audit_archive_after_days: Annotated[int, Field(gt=0, le=36_500)] = 90
    """What `childlookup audit archive` moves out of the live audit log when not told a cutoff:
    records older than this many days (gateway.audit.archive)."""
    audit_checkpoint_public_keys_file: Path | None = None
    """The Ed25519 public keys (PEM, one after another) checkpoints may be signed with: the
    current key and every key used before a rotation. `audit verify` needs only this file. Unset,
    the `.pub.pem` beside the private key file (or that key's own public key)."""
    token_public_key_file: Path | None = None
    jwks_url: HttpUrl | None = None
    token_algorithms: tuple[str, ...] = ("ES256", "RS256", "PS256")
    role_claim: str = "role"
    organisation_claim: str = "org"
    assurance_claim: str | None = None
    issuer: str = DEV_ISSUER
    audience: str = "childlookup-gateway"
    token_leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    token_max_lifetime_s: Annotated[int, Field(ge=60, le=24 * 3600)] = 12 * 3600
    """The longest a bearer token may be valid (`exp` - `iat`); longer ones are refused. 12 hours
    is one shift: see gateway.auth.DEFAULT_MAX_LIFETIME_S."""
    lookup_deadline_ms: Annotated[int, Field(gt=0, le=60_000)] = 2_500
    demographic_answer_floor_ms: Annotated[int, Field(ge=0, le=10_000)] = 200
    """A demographic search answers no sooner than this after it started, so a search that reached
    a hidden (shielded or restricted) child and a search for nobody take the same time
    (gateway.shield_safe). Keep it above what such searches take; identifier lookups never wait.
    Where the gateway routes (CHILDLOOKUP_LOCATOR_URL set, or agencies asked `when_routed`), a
    search that found a child goes on to ask the locator and the agencies named, up to the
    lookup's deadline, before it may be hidden: there the floor is at least
    CHILDLOOKUP_LOOKUP_DEADLINE_MS, whatever is set here (shorten the deadline to shorten it)."""
    max_lookups_in_flight: Annotated[int, Field(gt=0, le=10_000)] = 64
    """Lookups one gateway process runs at once; more wait (see max_queue_wait_ms). Past what the
    process can finish in time, more concurrency only makes every lookup's sources time out. Size
    it as throughput x time per lookup (Little's law): about 150 lookups/s on two cores times the
    connectors' latency plus ~0.1 s of the gateway's own; docs/benchmarks.md has the measurements
    behind the default."""
    max_queue_wait_ms: Annotated[int, Field(ge=0, le=60_000)] = 2_000
    """How long a lookup may wait for one of those places before it is refused (OVERLOADED)
    without anything being asked of any agency."""
    cache_ttl_s: Annotated[int, Field(ge=0, le=300)] = 30
    shutdown_drain_s: Annotated[float, Field(ge=0, le=300)] = 0.0
    """On SIGTERM, how long `childlookup serve` keeps serving with /readyz answering 503 before
    it stops, so a load balancer takes it out first. Behind one, set it to at least the health
    check interval times the failures that mark an instance down."""
    policy_reload_s: Annotated[float, Field(ge=0, le=3600)] = 2.0
    policy_vet_max_bytes: Annotated[int, Field(ge=256 * 1024 * 1024)] = DEFAULT_POLICY_VET_MAX_BYTES
    """A changed policy whose tests hold more memory than this is rejected, its test process stopped
    (gateway.policy.reload). The shipped policies' tests hold about 180 MB."""
    decision_log: str | None = None
    decision_log_max_bytes: Annotated[int, Field(ge=0)] = 256 * 1024 * 1024
    """A decision log file past this size is rotated (gateway.policy.decision_log.RotatingFile);
    0: never. `childlookup audit archive` moves the rotated files into the archive."""
    max_body_bytes: Annotated[int, Field(gt=0)] = 32 * 1024
    trusted_documents: Path | None = None
    """Only the operations registered in this file run: an Apollo persisted-query manifest or
    GraphQL Code Generator's persisted-documents.json (gateway.document_registry)."""
    persisted_queries: bool = True
    """Automatic persisted queries (Apollo's APQ) where trusted documents are off: a query may be
    sent by its SHA-256 once its text has been (resolvers.persisted_queries). Query text only is
    kept, never variables; with trusted documents on, nothing is ever registered this way."""
    persisted_queries_max: Annotated[int, Field(gt=0, le=100_000)] = 1_000
    """How many query texts one process keeps (least recently used dropped first), without Redis."""
    persisted_queries_ttl_s: Annotated[int, Field(gt=0, le=30 * 86_400)] = 86_400
    """With CHILDLOOKUP_REDIS_URL, how long a text is kept in Redis after it was last used."""
    lookups_per_user_per_minute: Annotated[int, Field(gt=0)] = 60
    lookups_per_user_per_minute_by_role: dict[str, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict
    )
    """A role's own limit of lookups a user a minute, where its work differs (JSON: {"gp": 30});
    an auditor's readings of children's audit trails count as lookups do. Roles not named have
    CHILDLOOKUP_LOOKUPS_PER_USER_PER_MINUTE. Only known roles (`known_roles`)."""
    lookups_per_organisation_per_minute: Annotated[int, Field(gt=0)] = 3_000
    distinct_children_per_user_per_day: Annotated[int, Field(gt=0)] = 200
    distinct_children_per_user_per_day_by_role: dict[str, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict
    )
    """A role's own daily cap of different children, where its work differs from a
    practitioner's (JSON: {"auditor": 2000}): an auditor's readings of children's audit trails
    count as lookups do. Roles not named have CHILDLOOKUP_DISTINCT_CHILDREN_PER_USER_PER_DAY. Only
    known roles (`known_roles`)."""
    auditor_roles: tuple[str, ...] = ("auditor",)
    justification_max_chars: Annotated[int, Field(gt=0)] = 1_000
    linkage_model_file: Path | None = None
    """Weights and thresholds for demographic matching (TOML); unset, the packaged defaults
    documented in docs/matching.md."""
    name_frequencies_file: Path | None = None
    """How common each name is in the area (JSON, from `python -m bench.linkage_calibration
    --em --write-frequencies`): exact matches on rare names weigh more, on common ones less.
    Unset, every exact name match weighs the same."""
    link_threshold: float | None = None
    """Overrides the model file's match weight at or above which a candidate is linked."""
    possible_threshold: float | None = None
    """Overrides the model file's weight at or above which a candidate is a possible match."""
    field_authority: dict[FieldId, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_FIELD_AUTHORITY)
    )
    """Per field, the sources whose value wins when linked records disagree, most authoritative
    first; among sources not listed (or listed equally), the most recent record wins."""
    gateway_id: str = Field(default="childlookup-gateway", min_length=1)
    """The `iss` of the tokens the gateway signs its connector requests with."""
    request_signing_key_file: Path | None = None
    """The gateway's P-256 private key (PEM) for signing connector requests; in dev, one is
    generated into the state dir. Its public key is served at /.well-known/jwks.json."""
    request_signing_published_keys_file: Path | None = None
    """More P-256 public keys (PEM blocks, one after another) served at /.well-known/jwks.json
    beside the signing key's own, for a rotation without refused requests: the next key, on every
    gateway before any signs with it; then the previous one, until every connector has seen the
    switch (docs/deployment.md, "Gateway request-signing key")."""
    notification_timeout_ms: Annotated[int, Field(gt=0, le=60_000)] = 5_000
    """How long one delivery attempt of an owner notification may take."""
    notification_retry_base_s: Annotated[float, Field(gt=0)] = 2.0
    """Wait before the second attempt; it doubles per attempt (with jitter) up to the maximum."""
    notification_retry_max_s: Annotated[float, Field(gt=0)] = 900.0
    notification_max_attempts: Annotated[int, Field(gt=0)] = 300
    notification_max_age_s: Annotated[float, Field(gt=0)] = 72 * 3600.0
    """After this many attempts, or this long since the lookup, a notification is dead-lettered
    and an alert raised: the owner must then be told by other means."""
    notification_poll_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """How often the outbox is checked when no lookup has just queued a notification."""
    audit_seal_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """How often, at most, the audit log is sealed: a checkpoint signed over the records written
    since the last one, so the unsigned tail of the log is never older than this (and reaches the
    witnesses). Also sealed when the gateway stops."""
    audit_witness_poll_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """How often checkpoints the witnesses have not acknowledged are sent again."""
    audit_log_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")] | None = (
        None
    )
    """The name witnesses keep this audit log's checkpoints under; unset, the gateway's id. Change
    it only to start a new witnessed log after restoring a backup (docs/deployment.md)."""
    server_tls: ServerTls | None = None
    """Serve https (optionally requiring portals' client certificates); unset, plain http."""
    connector_tls: ClientTls = ClientTls()
    """The CA connectors' certificates must chain to, and the gateway's client certificate."""
    circuit_failures: Annotated[int, Field(ge=0, le=1_000)] = 5
    """Consecutive failed attempts (no answer in time, connection refused, or UNAVAILABLE) after
    which a source is skipped at once, FAILED with CIRCUIT_OPEN (gateway.breakers); 0 never."""
    circuit_cool_down_s: Annotated[float, Field(gt=0, le=3_600)] = 10.0
    """How long an open circuit skips its source before one lookup probes it again."""
    tracing: Tracing = Tracing.OFF
    """Lookup traces: off, console (stderr) or otlp (OTEL_EXPORTER_OTLP_* variables say where)."""
    metrics_token: str | None = Field(default=None, min_length=32)
    """The bearer token Prometheus scrapes /metrics with. Unset (and no `metrics_token_file`),
    /metrics is served to loopback clients in dev mode and not at all in production."""
    metrics_token_file: Path | None = None
    """Instead: a file of such tokens, one a line, read again when it changes, so a token is
    rotated with no restart (gateway.scrape_tokens)."""

    portal_idle_timeout_s: Annotated[int, Field(ge=60, le=12 * 3600)] = 900
    """The portal (gateway.portal_site) signs the practitioner out after this long without a key
    press or click, and forgets the answer on the page."""
    portal_client_id: str | None = None
    """The portal's OpenID Connect client id at the identity provider (`issuer`), for production
    sign-in (authorization code with PKCE, a public client with no secret); set, the page signs
    in through the identity provider, whatever the mode (gateway.portal_site)."""
    portal_oidc_discovery_url: FetchableUrl | None = None
    """The identity provider's OpenID Connect discovery document, which the gateway reads for the
    authorization and token endpoints (gateway.identity_provider); unset,
    `{CHILDLOOKUP_ISSUER}/.well-known/openid-configuration`."""
    portal_oidc_scopes: tuple[str, ...] = ("openid",)
    """The scopes the portal asks for, as a JSON list; `openid` is always among them. Add the
    scope your identity provider needs to put the role and organisation claims in the access
    token, and the one whose tokens have the gateway's `CHILDLOOKUP_AUDIENCE`."""

    cors_origins: tuple[Origin, ...] = ()
    """Origins (`https://portal.example.org`, exactly as a browser sends `Origin`) whose pages may
    call /graphql from another origin (gateway.cors), as a JSON list. Unset, none: no CORS headers
    at all. Matched exactly: no wildcards, and an origin not listed is never echoed back."""
    cors_max_age_s: Annotated[int, Field(ge=0, le=86_400)] = 600
    """How long a browser may keep a preflight's answer before asking again."""

    @model_validator(mode="after")
    def _production_needs_real_keys(self) -> Settings:
        if self.mode is Mode.PRODUCTION:
            missing = [
                name
                for name in (
                    "audit_key",
                    "sources_file",
                    "request_signing_key_file",
                    "audit_checkpoint_key_file",
                )
                if getattr(self, name) is None
            ]
            if self.jwks_url is None and self.token_public_key_file is None:
                missing.append("jwks_url")
            if missing:
                names = ", ".join(f"CHILDLOOKUP_{m.upper()}" for m in missing)
                raise ValueError(f"production mode needs {names}")
            if self.issuer == DEV_ISSUER:
                raise ValueError(
                    "production mode does not accept dev tokens: set CHILDLOOKUP_ISSUER"
                )
        return self

    @model_validator(mode="after")
    def _checkpoint_key_apart_from_the_log(self) -> Settings:
        key = self.audit_checkpoint_key_file
        if (
            key is not None
            and self.database_url is None
            and key.resolve().parent == self.resolved_audit_db().resolve().parent
        ):
            raise ValueError(
                "CHILDLOOKUP_AUDIT_CHECKPOINT_KEY_FILE must not be in the audit log's"
                " directory: whoever can edit the log could then re-sign it"
            )
        return self

    @model_validator(mode="after")
    def _one_way_to_give_metrics_tokens(self) -> Settings:
        if self.metrics_token is not None and self.metrics_token_file is not None:
            raise ValueError(
                "set CHILDLOOKUP_METRICS_TOKEN or CHILDLOOKUP_METRICS_TOKEN_FILE, not both"
            )
        return self

    @model_validator(mode="after")
    def _one_source_of_token_keys(self) -> Settings:
        """With both, tokens were checked against the JWKS alone and the key file was never read
        (one that did not exist started the gateway): the operator could not tell which held."""
        if self.jwks_url is not None and self.token_public_key_file is not None:
            raise ValueError(
                "set CHILDLOOKUP_JWKS_URL or CHILDLOOKUP_TOKEN_PUBLIC_KEY_FILE, not both"
            )
        return self

    @model_validator(mode="after")
    def _locator_needs_keys(self) -> Settings:
        if self.locator_url is not None and self.pseudonym_keys_file is None:
            raise ValueError("CHILDLOOKUP_LOCATOR_URL needs CHILDLOOKUP_PSEUDONYM_KEYS_FILE")
        return self

    @model_validator(mode="after")
    def _portal_scopes_include_openid(self) -> Settings:
        if "openid" not in self.portal_oidc_scopes:
            raise ValueError("CHILDLOOKUP_PORTAL_OIDC_SCOPES must include openid")
        return self

    @model_validator(mode="after")
    def _limits_by_role_name_known_roles(self) -> Settings:
        """A role misspelt in a per-role limit ("social-worker", "Social_Worker") would leave that
        role on the general limit while the operator believes its own is in force: refused."""
        by_role = {
            "lookups_per_user_per_minute_by_role": self.lookups_per_user_per_minute_by_role,
            "distinct_children_per_user_per_day_by_role": (
                self.distinct_children_per_user_per_day_by_role
            ),
        }
        if not any(by_role.values()):
            return self
        try:
            known = self.known_roles()
        except ValueError as exc:
            raise ValueError(f"per-role limits cannot be checked against roles: {exc}") from None
        for name, limits in by_role.items():
            if unknown := sorted(set(limits) - known):
                raise ValueError(
                    f"CHILDLOOKUP_{name.upper()} names {', '.join(map(repr, unknown))}, not a"
                    f" known role; the roles known are {', '.join(sorted(known))} (the roles of"
                    f" the policy data in {self.policy_dir}, and CHILDLOOKUP_AUDITOR_ROLES)"
                )
        return self

    def policy_catalogue(self) -> dict[str, Any]:
        """The policy data's catalogue (`childlookup` in the policy directory's data.json: roles,
        purposes, fields), as the gateway's own checks and pages read it; the policy still
        decides. ValueError naming the file when it cannot be read."""
        data_file = self.policy_dir / "data.json"
        try:
            catalogue = json.loads(_read_utf8(data_file))["childlookup"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read the policy catalogue in {data_file}: {exc!r}") from None
        if not isinstance(catalogue, dict):
            raise ValueError(f"{data_file}: childlookup is not a JSON object")
        return catalogue

    def known_roles(self) -> frozenset[str]:
        """The roles a caller may have that the gateway knows: those the policy data catalogues
        (`childlookup.roles`, which the policy refuses any other role by) and the auditor roles.
        ValueError when the policy data cannot be read."""
        roles = self.policy_catalogue().get("roles")
        if not isinstance(roles, dict):
            raise ValueError(
                f"{self.policy_dir / 'data.json'}: childlookup.roles is not a JSON object"
            )
        return frozenset(roles) | frozenset(self.auditor_roles)

    @property
    def explorable(self) -> bool:
        """Introspection, field suggestions and GraphiQL: in dev mode only, so the production API
        cannot be mapped by probing it."""
        return self.mode is Mode.DEV

    def check_paths(self) -> None:
        """Raise one ValueError line naming the variable when the state directory cannot be made
        or a file a setting names cannot be opened for reading, or (a regular file) is not UTF-8
        text, as each is read: each reader's own error named the path alone (`[Errno 2] ...`) or
        not even that, leaving the operator to guess which setting it was. Opened without
        blocking, so a FIFO with no writer yet is no hang; a FIFO is not read, for its reader."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"CHILDLOOKUP_STATE_DIR: cannot make {self.state_dir}: {exc.strerror}"
            ) from None
        for name in READ_FILE_SETTINGS:
            path: Path | None = getattr(self, name)
            if path is None:
                continue
            variable = f"CHILDLOOKUP_{name.upper()}"
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except OSError as exc:
                raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
            if path.is_dir():
                raise ValueError(f"{variable}: cannot read {path}: it is a directory")
            if path.is_file():
                try:
                    _read_utf8(path)
                except ValueError as exc:
                    raise ValueError(f"{variable}: cannot read {path}: {exc}") from None

    def resolved_audit_log_name(self) -> str:
        return self.audit_log_name or self.gateway_id

    def resolved_audit_db(self) -> Path:
        return self.audit_db or self.state_dir / "audit.sqlite3"

    def resolved_checkpoint_key_file(self) -> Path:
        return self.audit_checkpoint_key_file or self.state_dir / "keys" / "audit-checkpoint.pem"

    def resolved_decision_log(self) -> str:
        """Where decisions are logged: off, stdout, or a file (by default in the state dir)."""
        return self.decision_log or str(self.state_dir / "decision-log.jsonl")

    def resolved_public_key_file(self) -> Path:
        return self.token_public_key_file or self.state_dir / "dev-signing-key.pub.pem"

    def verifies_dev_tokens(self) -> bool:
        """Tokens are checked against the dev key pair in the state dir: dev mode, with neither
        an identity provider's JWKS nor a token key configured."""
        return (
            self.mode is Mode.DEV and self.jwks_url is None and self.token_public_key_file is None
        )
